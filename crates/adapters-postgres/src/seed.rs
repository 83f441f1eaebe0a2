//! Idempotent insert of a catalogue: fixed ids plus `ON CONFLICT DO NOTHING`, in one
//! transaction, so two instances seeding at once cannot half-seed.

use diesel::prelude::*;
use domain::demo::DemoCatalogue;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::schema::{concerts, schedules, seats};

#[derive(Debug, Insertable)]
#[diesel(table_name = concerts)]
struct NewConcert<'a> {
    id: Uuid,
    title: &'a str,
    artist: &'a str,
    venue: &'a str,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = schedules)]
struct NewSchedule {
    id: Uuid,
    concert_id: Uuid,
    starts_at: OffsetDateTime,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = seats)]
struct NewSeat {
    id: Uuid,
    schedule_id: Uuid,
    number: i32,
    price: i64,
}

/// Inserts what is missing; `true` if anything was.
pub(crate) fn seed(conn: &mut PgConnection, catalogue: &DemoCatalogue) -> anyhow::Result<bool> {
    let mut seat_rows = Vec::new();
    for s in &catalogue.schedules {
        for seat in &s.seats {
            seat_rows.push(NewSeat {
                id: seat.id.as_uuid(),
                schedule_id: s.id.as_uuid(),
                number: i32::try_from(seat.number)?,
                price: seat.price.get(),
            });
        }
    }
    let inserted = conn.transaction(|c| {
        let concerts_n = diesel::insert_into(concerts::table)
            .values(
                catalogue
                    .concerts
                    .iter()
                    .map(|k| NewConcert { id: k.id.as_uuid(), title: &k.title, artist: &k.artist, venue: &k.venue })
                    .collect::<Vec<_>>(),
            )
            .on_conflict_do_nothing()
            .execute(c)?;
        let schedules_n = diesel::insert_into(schedules::table)
            .values(
                catalogue
                    .schedules
                    .iter()
                    .map(|s| NewSchedule {
                        id: s.id.as_uuid(),
                        concert_id: s.concert_id.as_uuid(),
                        starts_at: s.starts_at,
                    })
                    .collect::<Vec<_>>(),
            )
            .on_conflict_do_nothing()
            .execute(c)?;
        // Chunked: PostgreSQL takes at most 65,535 bind parameters per statement.
        let mut seats_n = 0;
        for chunk in seat_rows.chunks(1000) {
            seats_n += diesel::insert_into(seats::table).values(chunk).on_conflict_do_nothing().execute(c)?;
        }
        diesel::QueryResult::Ok(concerts_n + schedules_n + seats_n)
    })?;
    if inserted > 0 {
        tracing::info!(rows = inserted, "seeded catalogue");
    }
    Ok(inserted > 0)
}
