//! Whole-database consistency checks. The race tests run them after every race; an operator
//! can run them against a live database too (read-only, one snapshot).
//!
//! Each returned string describes one violation; an empty list means consistent.

use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::error::from_diesel;
use crate::PgStore;
use domain::ports::StoreError;

#[derive(Debug, QueryableByName)]
struct Violation {
    #[diesel(sql_type = Text)]
    problem: String,
}

/// Each query returns one row per violation, already phrased.
const CHECKS: &[&str] = &[
    // A seat never has two live claims (the partial unique index should make this impossible).
    "SELECT 'seat ' || seat_id || ' has ' || count(*) || ' live reservations' AS problem \
     FROM reservations WHERE status IN ('HELD', 'PAID') GROUP BY seat_id HAVING count(*) > 1",
    // Every balance equals the sum of its ledger; no ledger without an account.
    "SELECT 'account ' || a.user_id || ' balance ' || a.balance || ' != ledger sum ' || COALESCE(sum(l.amount), 0) AS problem \
     FROM accounts a LEFT JOIN ledger_entries l ON l.user_id = a.user_id \
     GROUP BY a.user_id, a.balance HAVING a.balance <> COALESCE(sum(l.amount), 0)",
    "SELECT 'account ' || user_id || ' has a negative balance ' || balance AS problem FROM accounts WHERE balance < 0",
    // The last ledger entry of each user states the current balance.
    "SELECT 'account ' || a.user_id || ' last ledger balance_after ' || l.balance_after || ' != balance ' || a.balance AS problem \
     FROM accounts a JOIN LATERAL (SELECT balance_after FROM ledger_entries e WHERE e.user_id = a.user_id \
       ORDER BY entry_no DESC LIMIT 1) l ON TRUE WHERE l.balance_after <> a.balance",
    // Payments and PAID reservations match one to one, amount = price, payer = holder.
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
    // The queue: one live token per user, gapless seq, the cursor consistent with the rows.
    "SELECT 'user ' || user_id || ' has ' || count(*) || ' live tokens' AS problem \
     FROM queue_tokens WHERE status IN ('WAITING', 'ACTIVE') GROUP BY user_id HAVING count(*) > 1",
    "SELECT 'queue seq is not gapless: ' || count(t.seq) || ' tokens, max seq ' || COALESCE(max(t.seq), 0) \
       || ', counter ' || c.last_seq AS problem \
     FROM queue_counter c LEFT JOIN queue_tokens t ON TRUE GROUP BY c.last_seq \
     HAVING count(t.seq) <> c.last_seq OR COALESCE(max(t.seq), 0) <> c.last_seq",
    "SELECT 'token ' || t.seq || ' is WAITING at or below admitted_through ' || a.admitted_through AS problem \
     FROM queue_tokens t CROSS JOIN queue_admission a WHERE t.status = 'WAITING' AND t.seq <= a.admitted_through",
    "SELECT 'token ' || t.seq || ' was activated above admitted_through ' || a.admitted_through AS problem \
     FROM queue_tokens t CROSS JOIN queue_admission a WHERE t.activated_at IS NOT NULL AND t.seq > a.admitted_through",
    "SELECT 'admitted_through ' || a.admitted_through || ' is past the last seq ' || c.last_seq AS problem \
     FROM queue_admission a CROSS JOIN queue_counter c WHERE a.admitted_through > c.last_seq",
];

/// Runs every check in one REPEATABLE READ snapshot.
///
/// # Errors
/// When the database fails.
pub fn check(store: &PgStore) -> Result<Vec<String>, StoreError> {
    let mut conn = store.conn()?;
    conn.run(|c| {
        c.build_transaction().read_only().repeatable_read().run(|c| {
            let mut problems = Vec::new();
            for sql in CHECKS {
                problems.extend(diesel::sql_query(*sql).load::<Violation>(c)?.into_iter().map(|v| v.problem));
            }
            diesel::QueryResult::Ok(problems)
        })
    })
    .map_err(from_diesel)
}
