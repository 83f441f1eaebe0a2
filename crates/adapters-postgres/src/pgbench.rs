//! Keeps `bench/pgbench/*.sql` equal to the statements the adapter sends.
//!
//! The bench compares each endpoint with pgbench running the same SQL, so the scripts must not
//! drift from the adapter. They are generated here from the adapter's own statement constants
//! (one source): each script lists, per transaction, the statements one request of that phase
//! sends, in order, with pgbench expressions in place of the bind parameters. The test fails
//! when a checked-in script differs from what the constants give; regenerate them with
//!
//! ```text
//! UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench
//! ```
//!
//! Where pgbench cannot send what the adapter sends, the script says so in its header (the
//! adapter sends `BEGIN` and a lock in one round trip; pgbench sends them as two commands).

use std::fs;
use std::path::PathBuf;

use crate::{accounts, catalogue, issue, locks, payments, queue, reservations};

/// A user id, a token, a schedule and a seat as `bench/sql/prepare.sql` makes them. The token
/// is `bench.tok(:n)` spelled out with its seq from `bench.seq(:n)`: PostgreSQL inlines
/// `bench.seq` (an immutable `CASE`), but not `bench.tok` (`'t' || n` is not immutable), whose
/// call would cost the ceiling what the adapter's statements, given the value, do not pay.
const UID: &str = "lpad(to_hex(:n::bigint), 32, '0')::uuid";
const TOK: &str = "(md5('t' || :n) || left(md5('u' || :n), 16) || lpad(to_hex(bench.seq(:n)), 16, '0'))";
const SCHED: &str = "lpad(to_hex(:s::bigint), 32, '0')::uuid";
const SEAT: &str = "lpad(to_hex(:seat::bigint), 32, '0')::uuid";
/// The line every bench request uses: `main`'s.
const MAIN: &str = "'main'";
/// `locks::token_key` of [`TOK`]: its first 32 bits, signed.
const TOKEN_KEY: &str = "('x' || left(md5('t' || :n), 8))::bit(32)::int";
/// `locks::user_key` of [`UID`] (`:n` below 2^31: the UUID's last word, the others are 0).
const USER_KEY_SET: &str = "\\set hk (:n >> 32) # (:n & 4294967295)";

/// Replaces `$1`, `$2`, ... in `sql` by `binds[0]`, `binds[1]`, ... (`$10` is not `$1`).
fn render(sql: &str, binds: &[&str]) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let digits = rest[at + 1..].bytes().take_while(u8::is_ascii_digit).count();
        let n: usize = rest[at + 1..at + 1 + digits].parse().unwrap_or(0);
        out.push_str(binds.get(n.wrapping_sub(1)).copied().unwrap_or("$?"));
        rest = &rest[at + 1 + digits..];
    }
    out.push_str(rest);
    out
}

/// A statement of the adapter with its binds, ended by `;`.
fn sql(statement: &str, binds: &[&str]) -> String {
    format!("{};", render(statement, binds))
}

/// A statement whose one row pgbench keeps in variables `prefix*`.
fn gset(statement: &str, binds: &[&str], prefix: &str) -> String {
    format!("{} \\gset {prefix}", render(statement, binds))
}

/// `BEGIN` plus a lock, which the adapter sends as one simple query, as two commands.
fn begin(begin_and_lock: &str) -> Vec<String> {
    begin_and_lock.split("; ").map(|s| format!("{s};")).collect()
}

fn issue_lines() -> Vec<String> {
    let mut lines = vec!["-- POST /queue/tokens: the group-commit batch, here of one request".to_owned()];
    lines.extend(begin(locks::ISSUE_BEGIN));
    lines.push(sql(issue::ISSUE_LIVE, &[&format!("ARRAY[{UID}]"), "ARRAY[now()]", MAIN]));
    lines.push(sql(issue::ISSUE_INSERT, &[&format!("ARRAY[{UID}]"), &format!("ARRAY[{TOK}]"), "ARRAY[now()]", MAIN]));
    lines.push("COMMIT;".to_owned());
    lines
}

fn poll_lines() -> Vec<String> {
    vec!["-- GET /queue/token".to_owned(), sql(queue::FIND_WITH_CURSOR, &[TOK, MAIN])]
}

fn authorize_line() -> String {
    sql(queue::FIND_TOKEN, &[TOK, MAIN])
}

fn seats_lines() -> Vec<String> {
    vec!["-- GET /schedules/{id}/seats".to_owned(), authorize_line(), sql(catalogue::SEATS, &[SCHED])]
}

/// The hold; with `keep`, its row is kept in `r_*` (`:r_id` is the reservation).
fn reserve_lines(keep: bool) -> Vec<String> {
    let mut lines = vec!["-- POST /reservations".to_owned(), authorize_line(), USER_KEY_SET.to_owned()];
    lines.push("BEGIN;".to_owned());
    lines.push(format!("SELECT pg_advisory_xact_lock({}, :hk);", locks::HOLDS));
    let binds = ["gen_random_uuid()", UID, SCHED, SEAT, "now()", "now() + interval '300 seconds'", "4"];
    lines.push(if keep { gset(reservations::HOLD, &binds, "r_") } else { sql(reservations::HOLD, &binds) });
    lines.push("COMMIT;".to_owned());
    lines
}

fn charge_lines(amount: &str) -> Vec<String> {
    vec![
        "-- POST /users/{id}/balance/charge".to_owned(),
        sql(accounts::CREDIT, &[UID, amount, "10000000000", "gen_random_uuid()", "now()"]),
    ]
}

/// The payment of reservation `reservation` (an SQL expression) with user n's token.
fn pay_lines(reservation: &str) -> Vec<String> {
    let after = "(:f_balance::bigint - :f_price::bigint)";
    let minus = "(-:f_price::bigint)";
    vec![
        "-- POST /payments".to_owned(),
        authorize_line(),
        "BEGIN;".to_owned(),
        format!("SELECT pg_advisory_xact_lock({}, {TOKEN_KEY});", locks::TOKEN_PAYMENTS),
        gset(payments::FACTS, &[reservation, UID, TOK], "f_"),
        sql(
            payments::SETTLE,
            &[
                reservation,
                "now()",
                ":f_price",
                UID,
                after,
                "gen_random_uuid()",
                TOK,
                "gen_random_uuid()",
                minus,
                after,
                "now()",
                "NULL::int",
                "NULL::text",
                "NULL::uuid",
                "NULL::text",
                // The derived activation of a token admitted by a range: the bench's payers hold
                // tokens stored ACTIVE, for which the server sends NULL.
                "NULL::timestamptz",
            ],
        ),
        "COMMIT;".to_owned(),
    ]
}

/// One checked-in script.
struct Script {
    file: &'static str,
    header: &'static str,
    lines: Vec<String>,
}

impl Script {
    fn text(&self) -> String {
        let mut text = String::from(GENERATED);
        text.push_str(self.header);
        for line in &self.lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

const GENERATED: &str =
    "-- Generated from the PostgreSQL adapter's statements by crates/adapters-postgres/src/pgbench.rs;\n\
     -- do not edit: UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench\n";

fn scripts() -> Vec<Script> {
    let funnel = [
        issue_lines(),
        poll_lines(),
        seats_lines(),
        reserve_lines(true),
        charge_lines("300000"),
        pay_lines(":r_id::uuid"),
    ]
    .concat();
    vec![
        Script {
            file: "issue.sql",
            header: "-- POST /queue/tokens for a new user: the transaction the adapter's issue batcher runs, for a\n\
                     -- batch of one (the server batches concurrent issues; pgbench cannot). The cursor read is part\n\
                     -- of the batch's first statement.\n\
                     \\set k :k + 1\n\
                     \\set n :base + :offset + :client_id + :k * :clients\n",
            lines: issue_lines(),
        },
        Script {
            file: "poll.sql",
            header: "-- GET /queue/token: QueueStore::find_with_cursor. The same tokens as the wrk data file:\n\
                     -- users :base, :base + :step, ... (:count of them).\n\
                     \\set i random(0, :count - 1)\n\
                     \\set n :base + :i * :step\n",
            lines: poll_lines(),
        },
        Script {
            file: "seats.sql",
            header: "-- GET /schedules/{id}/seats: authorize (QueueStore::find) + CatalogueStore::seats. The same\n\
                     -- (user, schedule) pairs as the wrk data file.\n\
                     \\set i random(0, 9999)\n\
                     \\set n 1 + :i % 2000\n\
                     \\set s 1 + (:i * 7) % :schedules\n",
            lines: seats_lines(),
        },
        Script {
            file: "reserve.sql",
            header: "-- POST /reservations: authorize + ReservationStore::hold (the user's hold lock, then one\n\
                     -- conditional insert). Seat i of the pool is (schedule :sbase + i % :nsched, number\n\
                     -- :numbase + (i / :nsched) % :nseats); user 1 + i % 2000.\n\
                     \\set k :k + 1\n\
                     \\set i :offset + :client_id + :k * :clients\n\
                     \\set n 1 + :i % 2000\n\
                     \\set s :sbase + :i % :nsched\n\
                     \\set num :numbase + (:i / :nsched) % :nseats\n\
                     \\set seat :s * 1000 + :num\n",
            lines: reserve_lines(false),
        },
        Script {
            file: "charge.sql",
            header: "-- POST /users/{id}/balance/charge without a key: AccountStore::credit, one autocommit\n\
                     -- statement, over the same users as wrk.\n\
                     \\set n 100001 + random(0, 9999)\n",
            lines: charge_lines("1000"),
        },
        Script {
            file: "pay.sql",
            header: "-- POST /payments without a key: authorize + PaymentStore::pay (token lock, locked facts,\n\
                     -- one settlement statement), for pay user n = :base + i (its HELD reservation, its balance).\n\
                     \\set k :k + 1\n\
                     \\set n :base + :offset + :client_id + :k * :clients\n",
            lines: pay_lines(UID),
        },
        Script {
            file: "funnel.sql",
            header: "-- One whole purchase, as the HTTP funnel makes it: issue, one poll, the seat map, reserve,\n\
                     -- charge, pay, for a new user :base + i who takes seat i of the funnel pool (schedules\n\
                     -- :sbase.., :nseats seats each). Admission itself is the scheduler's (one transaction a\n\
                     -- tick for everyone), not per-user work, so it is not here: the new token stays WAITING\n\
                     -- and the settlement runs anyway (pgbench does not decide), the same statements as for an\n\
                     -- admitted user. Variables kept between statements are bound as parameters (-M prepared\n\
                     -- or extended, as bench/run.sh runs it).\n\
                     \\set k :k + 1\n\
                     \\set i :offset + :client_id + :k * :clients\n\
                     \\set n :base + :i\n\
                     \\set s :sbase + :i % :nsched\n\
                     \\set num 1 + (:i / :nsched) % :nseats\n\
                     \\set seat :s * 1000 + :num\n",
            lines: funnel,
        },
    ]
}

// The idempotency statements (`idempotency::CLAIM`, `READ_RECORD`, `RECORD`) are in no script:
// the bench sends no keys. A keyed phase would be written from them.

#[test]
fn pgbench_scripts_follow_the_adapters_sql() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench/pgbench");
    let update = std::env::var_os("UPDATE_PGBENCH").is_some();
    let mut stale = Vec::new();
    for script in scripts() {
        let path = dir.join(script.file);
        let want = script.text();
        if update {
            fs::write(&path, &want).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        } else if fs::read_to_string(&path).ok().as_deref() != Some(want.as_str()) {
            stale.push(script.file);
        }
    }
    assert!(
        stale.is_empty(),
        "bench/pgbench scripts differ from the adapter's SQL: {stale:?}; regenerate them with \
         UPDATE_PGBENCH=1 cargo test -p adapters-postgres --lib pgbench"
    );
}

#[test]
fn binds_are_replaced_by_number() {
    assert_eq!(render("a $1 b $10 c $2", &["x", "y", "", "", "", "", "", "", "", "z"]), "a x b z c y");
}
