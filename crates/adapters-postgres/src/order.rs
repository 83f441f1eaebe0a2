//! A drawn line's order, kept beside the tokens rather than written into them.
//!
//! A draw orders the `P` entrants by `room::drawn_positions(seed, P)` over their token values.
//! Rewriting the `seq` of every entrant is one non-HOT update per token, each with a new entry
//! in every index of `queue_tokens`: for a pre-queue of a million, minutes of index churn on a
//! small server, far past the draw's budget. So the draw makes the entrants the first `P`
//! *arrivals* (usually they are already: they came first; a few tokens near the opening may
//! need a move), and writes the place of each into `queue_draw_positions` (narrow rows,
//! inserted in one statement): the stored `seq` stays the arrival number, and the line's
//! `seq` (the domain's) is the drawn `position` of an arrival `<= P`, the arrival itself after
//! them. Reads of a room's token join that table in the statement that reads the token and
//! the cursor (a reader sees the draw whole or not at all); admission looks up which arrivals
//! hold the next places.

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use crate::sql::prepared;

/// The arrivals at the drawn places `($2, $3]` of line `$1`.
pub(crate) const PLACES: &str = "SELECT position, arrival FROM queue_draw_positions \
     WHERE room = $1 AND position > $2 AND position <= $3";

#[derive(Debug, QueryableByName)]
struct Place {
    #[diesel(sql_type = BigInt)]
    position: i64,
    #[diesel(sql_type = BigInt)]
    arrival: i64,
}

/// A line's order: its number of drawn entrants (0: arrival order).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Order {
    entrants: i64,
}

impl Order {
    pub(crate) fn new(entrants: u64) -> Self {
        Self { entrants: i64::try_from(entrants).unwrap_or(i64::MAX) }
    }

    /// Whether places `from + 1 ..` are arrivals as they are (no drawn entrant among them).
    pub(crate) fn is_identity_after(self, from: i64) -> bool {
        from >= self.entrants
    }

    /// `(place, stored seq)` of the places `(from, to]`, in place order.
    pub(crate) fn arrivals(
        self,
        conn: &mut PgConnection,
        room: &str,
        from: i64,
        to: i64,
    ) -> QueryResult<Vec<(i64, i64)>> {
        let mut places: Vec<(i64, i64)> = if from < self.entrants {
            prepared(PLACES)
                .bind::<diesel::sql_types::Text, _>(room)
                .bind::<BigInt, _>(from)
                .bind::<BigInt, _>(to.min(self.entrants))
                .load::<Place>(conn)?
                .into_iter()
                .map(|p| (p.position, p.arrival))
                .collect()
        } else {
            Vec::new()
        };
        places.sort_unstable();
        places.extend((from.max(self.entrants) + 1..=to).map(|p| (p, p)));
        Ok(places)
    }
}
