//! `kill -9` of the server in the middle of a payment-heavy load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::PgConnection;

use crate::harness::procs::Concert;
use crate::harness::{rows, server_env, Api};
use crate::load::{assert_clean, audit, retry_unanswered, Load, Op, Seats, Shape};
use crate::support::Database;

fn payments(conn: &mut PgConnection) -> i64 {
    rows(conn, "SELECT count(*) FROM payments", 1)[0][0].parse().unwrap_or(0)
}

/// Three times, once payments are flowing, the server is killed with SIGKILL and started
/// again on the same database while the buyers go on. Then: every request answered 2xx is in
/// the database with the answer's figures, every one answered 4xx or 503 changed nothing,
/// `concert check-invariants` passes, and every keyed request the kills cut off converges to
/// one effect when retried (twice) with its key.
#[test]
fn kill_9_mid_payments_keeps_every_answer_and_retries_converge() {
    let db = Database::fresh();
    db.seed();
    let url = db.url();
    let mut server = Concert::start(&server_env(&url, &[]));
    let api = Arc::new(Api::new(&server.base(), Duration::from_secs(10)));
    let (schedule, seats) = api.create_schedule(1_500);
    let seats = Arc::new(Seats::new(schedule, seats));
    let load = Load::start(&api, &seats, Shape { buyers: 16, think: Duration::from_millis(5) });
    let mut conn = db.connect();

    let mut kills = Vec::new();
    for round in 0..3 {
        // Kill once 15 more payments have committed (or after 20 s, whatever came).
        let target = payments(&mut conn) + 15;
        let deadline = Instant::now() + Duration::from_secs(20);
        while payments(&mut conn) < target && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        load.phase(round + 1);
        server.kill9();
        kills.push(load.started.elapsed());
        server.restart();
        api.set_base(&server.base());
    }
    // A little more load on the last incarnation, then stop.
    std::thread::sleep(Duration::from_secs(1));
    let users = load.users.clone();
    let started = load.started;
    let recs = load.stop();

    let (problems, before) = audit(&mut conn, &api, &url, &recs, &users);
    assert_clean("after the kills", &problems);

    let retries = retry_unanswered(&api, &recs, 9, started);
    for r in &retries {
        assert!(r.answer.status.is_some(), "a retry went unanswered: {r:?}");
        assert_ne!(r.answer.status, Some(500), "a retry answered 500: {r:?}");
    }
    let replays = retries.iter().step_by(2).filter(|r| r.answer.replayed).count();
    let fresh = retries.iter().step_by(2).filter(|r| r.answer.ok() && !r.answer.replayed).count();
    let refused = retries.iter().step_by(2).filter(|r| !r.answer.ok()).count();
    let mut all = recs;
    all.extend(retries.iter().cloned());
    let (problems, after) = audit(&mut conn, &api, &url, &all, &users);
    assert_clean("after the retries", &problems);

    let pays = all.iter().filter(|r| matches!(r.op, Op::Pay { .. }) && r.phase < 9).count();
    eprintln!(
        "kill -9 at {kills:?} under 16 buyers ({pays} payment requests)\n\
         before the retries: {before}\n\
         {} unanswered keyed requests retried twice each: {replays} replays of effects that had committed, \
         {fresh} ran fresh, {refused} refused; after the retries: {after}",
        retries.len() / 2
    );
}
