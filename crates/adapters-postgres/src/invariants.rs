//! Whole-database consistency checks. The race tests run them after every race, the bench after
//! every write phase (their twin is `bench/sql/invariants.sql`: keep the two in step), and an
//! operator against a live database (`concert check-invariants`: read-only, one snapshot).
//!
//! Each returned string describes one violation; an empty list means consistent.

use diesel::prelude::*;
use diesel::sql_types::Text;
use domain::ports::StoreError;

use crate::PgStore;

#[derive(Debug, QueryableByName)]
struct Violation {
    #[diesel(sql_type = Text)]
    problem: String,
}

/// The tokens stored WAITING at or below their line's cursor, with their place (`room`,
/// `seq`, `position`): past a drawn line's entrants the stored `seq`, among them the drawn
/// place. Each is a token an admission's range holds (admitted or skipped: its state is
/// derived, `queue::admitted_join`), or a violation.
macro_rules! waiting_passed {
    () => {
        "(SELECT t.room, t.seq, t.seq AS position FROM queue_admission a JOIN queue_tokens t ON t.room = a.room \
           AND t.seq > COALESCE(a.draw_entrants, 0) AND t.seq <= a.admitted_through WHERE t.status = 'WAITING' \
         UNION ALL SELECT t.room, t.seq, d.position FROM queue_admission a \
           JOIN queue_draw_positions d ON d.room = a.room AND d.position <= a.admitted_through \
           JOIN queue_tokens t ON t.room = d.room AND t.seq = d.arrival WHERE t.status = 'WAITING')"
    };
}

/// Whether the place `$position` of line `$room` is in a range some tick recorded, with
/// `$kind` on the range `s` (`TRUE`, or `s.expires_at IS NULL` for a tick that skipped).
macro_rules! in_range {
    ($room:literal, $position:literal, $kind:literal) => {
        concat!(
            "EXISTS (SELECT 1 FROM queue_admission_ranges s WHERE s.room = ",
            $room,
            " AND s.after < ",
            $position,
            " AND s.through >= ",
            $position,
            " AND ",
            $kind,
            ")"
        )
    };
}

/// Each query returns one row per violation, already phrased.
const CHECKS: &[&str] = &[
    // Seats: never two live claims (the partial unique index should make this impossible).
    "SELECT 'seat ' || seat_id || ' has ' || count(*) || ' live reservations' AS problem \
     FROM reservations WHERE status IN ('HELD', 'PAID') GROUP BY seat_id HAVING count(*) > 1",
    // Money: every balance equals the sum of its ledger and its last entry; none negative.
    "SELECT 'account ' || a.user_id || ' balance ' || a.balance || ' != ledger sum ' || COALESCE(sum(l.amount), 0) AS problem \
     FROM accounts a LEFT JOIN ledger_entries l ON l.user_id = a.user_id \
     GROUP BY a.user_id, a.balance HAVING a.balance <> COALESCE(sum(l.amount), 0)",
    "SELECT 'account ' || user_id || ' has a negative balance ' || balance AS problem FROM accounts WHERE balance < 0",
    "SELECT 'account ' || a.user_id || ' last ledger balance_after ' || l.balance_after || ' != balance ' || a.balance AS problem \
     FROM accounts a JOIN LATERAL (SELECT balance_after FROM ledger_entries e WHERE e.user_id = a.user_id \
       ORDER BY entry_no DESC LIMIT 1) l ON TRUE WHERE l.balance_after <> a.balance",
    // Payments: one per PAID reservation and none for another, amount = price, payer = holder,
    // each with exactly one PAYMENT ledger entry.
    "SELECT 'reservation ' || r.id || ' is PAID without a payment' AS problem \
     FROM reservations r LEFT JOIN payments p ON p.reservation_id = r.id WHERE r.status = 'PAID' AND p.id IS NULL",
    "SELECT 'payment ' || p.id || ' is for reservation ' || r.id || ' in status ' || r.status AS problem \
     FROM payments p JOIN reservations r ON r.id = p.reservation_id WHERE r.status <> 'PAID'",
    "SELECT 'payment ' || p.id || ' does not match its reservation (amount or user)' AS problem \
     FROM payments p JOIN reservations r ON r.id = p.reservation_id \
     WHERE p.amount <> r.price OR p.user_id <> r.user_id",
    "SELECT 'payment ' || p.id || ' has ' || count(l.id) || ' ledger entries' AS problem \
     FROM payments p LEFT JOIN ledger_entries l ON l.payment_id = p.id AND l.kind = 'PAYMENT' \
     GROUP BY p.id HAVING count(l.id) <> 1",
    // A token pays once, and the token that paid is used up (when this store holds it): stored
    // EXPIRED, whether it was stored ACTIVE or read ACTIVE off its admission's range.
    "SELECT 'token ' || left(token, 8) || '... paid ' || count(*) || ' times' AS problem \
     FROM payments WHERE token IS NOT NULL GROUP BY token HAVING count(*) > 1",
    "SELECT 'token ' || t.seq || ' paid but is still ' || t.status AS problem \
     FROM payments p JOIN queue_tokens t ON t.token = p.token WHERE t.status <> 'EXPIRED'",
    // The lines (one per room): one live token per user per line, gapless seq per line, each
    // line's cursor consistent with its rows: WAITING are exactly the tokens above
    // admitted_through (and those an admission's range holds, which read ACTIVE or EXPIRED),
    // so waiting = issued_through - admitted_through.
    "SELECT 'user ' || user_id || ' has ' || count(*) || ' live tokens in ' || room AS problem \
     FROM queue_tokens WHERE status IN ('WAITING', 'ACTIVE') GROUP BY room, user_id HAVING count(*) > 1",
    "SELECT 'queue seq of ' || room || ' is not gapless: ' || count(seq) || ' tokens, max seq ' || max(seq) AS problem \
     FROM queue_tokens GROUP BY room HAVING count(seq) <> max(seq)",
    "SELECT 'line ' || t.room || ' has tokens but no cursor' AS problem \
     FROM (SELECT DISTINCT room FROM queue_tokens) t LEFT JOIN queue_admission a ON a.room = t.room \
     WHERE a.room IS NULL",
    // A drawn line stores its entrants as arrivals 1..=P and places them by its seed
    // (`order`): past them the stored seq is the place; among them, as many are admitted as
    // the cursor has passed. An admitted or skipped token stays stored WAITING at or below
    // the cursor, inside the range its tick recorded in queue_admission_ranges
    // (`queue::admitted_join`); any other WAITING token at or below the cursor is a violation.
    concat!(
        "SELECT 'token ' || w.room || '/' || w.seq || ' at place ' || w.position \
           || ' is WAITING at or below admitted_through and in no range' AS problem FROM ",
        waiting_passed!(),
        " w WHERE NOT ",
        in_range!("w.room", "w.position", "TRUE")
    ),
    "SELECT 'token ' || t.room || '/' || t.seq || ' is ' || t.status || ' above admitted_through ' || a.admitted_through AS problem \
     FROM queue_tokens t JOIN queue_admission a ON a.room = t.room \
     WHERE t.status <> 'WAITING' AND t.seq > a.admitted_through AND t.seq > COALESCE(a.draw_entrants, 0)",
    concat!(
        "SELECT 'drawn line ' || a.room || ' has admitted ' || n.admitted || ' of its ' || a.draw_entrants || ' entrants, its cursor ' || a.admitted_through AS problem \
         FROM queue_admission a CROSS JOIN LATERAL (SELECT count(*) AS admitted FROM queue_tokens t \
           JOIN queue_draw_positions d ON d.room = t.room AND d.arrival = t.seq \
           WHERE t.room = a.room AND t.seq <= a.draw_entrants AND (t.status <> 'WAITING' OR ",
        in_range!("t.room", "d.position", "TRUE"),
        ")) n WHERE a.draw_entrants > 0 AND n.admitted <> LEAST(a.admitted_through, a.draw_entrants)"
    ),
    "SELECT 'drawn line ' || a.room || ' places ' || count(d.arrival) || ' of its ' || a.draw_entrants || ' entrants' AS problem \
     FROM queue_admission a LEFT JOIN queue_draw_positions d ON d.room = a.room \
       AND d.arrival <= a.draw_entrants AND d.position <= a.draw_entrants \
     WHERE a.draw_entrants IS NOT NULL GROUP BY a.room, a.draw_entrants HAVING count(d.arrival) <> a.draw_entrants",
    "SELECT 'line ' || d.room || ' has places but no draw' AS problem FROM queue_draw_positions d \
     LEFT JOIN queue_admission a ON a.room = d.room AND a.draw_entrants IS NOT NULL \
     WHERE a.room IS NULL GROUP BY d.room",
    "SELECT 'admitted_through ' || a.admitted_through || ' of ' || a.room || ' is past the last seq ' || COALESCE(max(t.seq), 0) AS problem \
     FROM queue_admission a LEFT JOIN queue_tokens t ON t.room = a.room \
     GROUP BY a.room, a.admitted_through HAVING a.admitted_through > COALESCE(max(t.seq), 0)",
    // The admissions' ranges: each a range of places the cursor has passed, in a line with a
    // cursor, and none overlapping another of its line (a place is passed at most once).
    "SELECT 'range (' || s.after || ', ' || s.through || '] of ' || s.room || ' is past its cursor ' \
       || COALESCE(a.admitted_through::text, 'that does not exist') AS problem \
     FROM queue_admission_ranges s LEFT JOIN queue_admission a ON a.room = s.room \
     WHERE a.room IS NULL OR s.through > a.admitted_through",
    "SELECT 'range (' || s.after || ', ' || s.through || '] of ' || s.room || ' overlaps the one through ' || s.before AS problem \
     FROM (SELECT room, after, through, lag(through) OVER (PARTITION BY room ORDER BY through) AS before \
       FROM queue_admission_ranges) s WHERE s.before > s.after",
    // Abandoned: the tokens stored ABANDONED (skipped before the ranges, or re-joined since)
    // and those a skipping tick's range holds.
    concat!(
        "SELECT 'line ' || a.room || ' counts ' || a.abandoned || ' abandoned, its rows ' || n.stored \
           || ' stored and ' || n.skipped || ' skipped' AS problem \
         FROM queue_admission a CROSS JOIN LATERAL (SELECT \
           (SELECT count(*) FROM queue_tokens t WHERE t.room = a.room AND t.expired_reason = 'ABANDONED') AS stored, \
           (SELECT count(*) FROM ",
        waiting_passed!(),
        " w WHERE w.room = a.room AND ",
        in_range!("w.room", "w.position", "s.expires_at IS NULL"),
        ") AS skipped) n \
         WHERE a.abandoned <> n.stored + n.skipped"
    ),
    // Idempotency: a record exists only with its effect (a ledger entry of the same user: the
    // charge's, or the payment's), and only complete.
    "SELECT 'idempotency record ' || k.key || ' of user ' || k.user_id || ' has no effect of that user' AS problem \
     FROM idempotency_keys k LEFT JOIN ledger_entries l ON l.id = k.ledger_entry_id \
     WHERE l.id IS NULL OR l.user_id <> k.user_id OR k.status IS NULL",
];

/// Runs every check in one REPEATABLE READ snapshot.
///
/// # Errors
/// When the database fails.
pub fn check(store: &PgStore) -> Result<Vec<String>, StoreError> {
    store.autocommit(|c| {
        c.build_transaction().read_only().repeatable_read().run(|c| {
            // Whole-table scans: on a large database they outlast the pool's statement timeout,
            // which is sized for requests.
            diesel::sql_query("SET LOCAL statement_timeout = '10min'").execute(c)?;
            let mut problems = Vec::new();
            for sql in CHECKS {
                problems.extend(diesel::sql_query(*sql).load::<Violation>(c)?.into_iter().map(|v| v.problem));
            }
            QueryResult::Ok(problems)
        })
    })
}
