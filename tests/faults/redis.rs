//! The Redis queue store (`QUEUE_STORE=redis`) going away under load.

use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use serde_json::json;

use uuid::Uuid;

use crate::harness::procs::Concert;
use crate::harness::{rand_hex, server_env, Api, Req};
use crate::load::{assert_clean, audit, charge_req, pay_req, retry_unanswered, send_recorded, Load, Op, Seats, Shape};
use crate::support::private::PrivateRedis;
use crate::support::{Database, ADMIN};

const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Requests that need the queue and readiness answer 503 within 5 s while Redis hangs
/// (SIGSTOP, 6 s) and while it is down (killed, 3 s, then started again from its append-only
/// file); requests that need only PostgreSQL (balance, charge) keep working; the service
/// recovers without a restart both times, the tokens issued before survive, and the audit of
/// PostgreSQL is clean.
#[test]
fn redis_outage_answers_503_in_time_keeps_postgres_whole_and_recovers() {
    let mut redis = PrivateRedis::reserve().with_append_only_file();
    redis.start();
    let db = Database::fresh();
    db.seed();
    let url = db.url();
    let redis_url = redis.url();
    let prefix = format!("faults{}", rand_hex(4));
    let server = Concert::start(&server_env(
        &url,
        &[("QUEUE_STORE", "redis"), ("REDIS_URL", &redis_url), ("REDIS_KEY_PREFIX", &prefix)],
    ));
    let api = Arc::new(Api::new(&server.base(), Duration::from_secs(15)));
    let (schedule, seats) = api.create_schedule(1_500);
    let seats = Arc::new(Seats::new(schedule, seats));
    // A token from before the outages, to poll after them.
    let old_user = Uuid::new_v4().to_string();
    let old_token = api.active_token(&old_user, Duration::from_secs(30));
    let load = Load::start(&api, &seats, Shape { buyers: 10, think: Duration::from_millis(10) });
    std::thread::sleep(Duration::from_secs(3));

    let mut observed = Vec::new();
    for (round, outage) in ["hang", "down"].into_iter().enumerate() {
        load.phase(2 * round + 1);
        match outage {
            "hang" => redis.freeze(),
            _ => redis.crash(),
        }
        // While it is out: the queue answers 503 in time, readiness 503, PostgreSQL-only calls work.
        let until = Instant::now() + Duration::from_secs(if outage == "hang" { 6 } else { 3 });
        let side_user = Uuid::new_v4().to_string();
        let (mut queue_503, mut ready_503, mut pg_ok, mut slowest) = (0, 0, 0, Duration::ZERO);
        while Instant::now() < until {
            for req in [
                Req::post("/queue/tokens", json!({ "userId": Uuid::new_v4().to_string() })),
                Req::get("/queue/token").bearer(&old_token),
                Req::get("/concerts").bearer(&old_token),
            ] {
                let a = api.send(&req);
                assert!(
                    a.status.is_some() && a.elapsed < ANSWER_WITHIN,
                    "{outage}: {} {}: {a:?}",
                    req.method,
                    req.path
                );
                assert!(a.is(503) && a.code() == "UNAVAILABLE", "{outage}: {} {} answered {a:?}", req.method, req.path);
                slowest = slowest.max(a.elapsed);
                queue_503 += 1;
            }
            let a = api.send(&Req::get("/health/ready"));
            assert!(a.is(503) && a.elapsed < ANSWER_WITHIN, "{outage}: readiness answered {a:?}");
            ready_503 += 1;
            let a = api.send(&Req::post(format!("/users/{side_user}/balance/charge"), json!({ "amount": 10 })));
            assert!(a.is(200), "{outage}: a charge (PostgreSQL only) answered {a:?}");
            pg_ok += 1;
            std::thread::sleep(Duration::from_millis(50));
        }
        match outage {
            "hang" => redis.thaw(),
            _ => redis.start(),
        }
        load.phase(2 * round + 2);
        let back = Instant::now();
        let polled = api.must(&Req::get("/queue/token").bearer(&old_token), Duration::from_secs(30));
        assert_eq!(polled["status"], "ACTIVE", "the token issued before the outage: {polled}");
        let recovery = back.elapsed();
        api.must(&Req::get("/health/ready"), Duration::from_secs(30));
        observed.push(format!(
            "{outage}: {queue_503} queue requests answered 503 (slowest {slowest:?}), readiness 503 x{ready_503}, \
             {pg_ok} charges answered 200 meanwhile; queue back {recovery:?} after Redis"
        ));
        std::thread::sleep(Duration::from_secs(2));
    }
    let users = load.users.clone();
    let started = load.started;
    let recs = load.stop();
    for r in &recs {
        assert!(r.answer.status.is_some(), "a buyer's request went unanswered: {r:?}");
        assert_ne!(r.answer.status, Some(500), "a 500: {r:?}");
        assert!(!r.answer.is(503) || r.answer.elapsed < ANSWER_WITHIN, "a 503 after {:?}", r.answer.elapsed);
    }
    assert!(recs.iter().filter(|r| r.phase == 4).any(|r| r.answer.ok()), "no buyer succeeded after Redis came back");
    let mut conn = db.connect();
    let retries = retry_unanswered(&api, &recs, 9, started);
    let mut all = recs;
    all.extend(retries);
    let (problems, t) = audit(&mut conn, &api, &url, &all, &users);
    assert_clean("after the Redis outages", &problems);
    eprintln!("{}\nbuyers overall: {t}", observed.join("\n"));
}

/// Redis hangs in the instant after a payment commits in PostgreSQL and before the token is
/// marked used in Redis. The payment is still answered 201 (and is in the database), its
/// replay with the same key is the same 201, and the token — still ACTIVE in Redis until its
/// TTL — can never pay again: a second payment with it is refused and changes nothing.
///
/// The instant is made, not hoped for: the buyer's account row is held locked by another
/// session, so the payment waits inside its transaction; Redis is stopped (SIGSTOP) and only
/// then the lock released.
#[test]
fn a_redis_hiccup_after_a_payment_commits_keeps_the_payment_and_the_token_pays_once() {
    let mut redis = PrivateRedis::reserve().with_append_only_file();
    redis.start();
    let db = Database::fresh();
    db.seed();
    let url = db.url();
    let redis_url = redis.url();
    let server = Concert::start(&server_env(
        &url,
        &[
            ("QUEUE_STORE", "redis"),
            ("REDIS_URL", &redis_url),
            ("REDIS_KEY_PREFIX", "faults"),
            // A wider window to stop Redis in while the payment waits for the row.
            ("DATABASE_LOCK_TIMEOUT_MILLIS", "1200"),
        ],
    ));
    let api = Arc::new(Api::new(&server.base(), Duration::from_secs(15)));
    let (schedule, seats) = api.create_schedule(10);
    let user = Uuid::new_v4().to_string();
    let started = Instant::now();
    let mut recs =
        vec![send_recorded(&api, &user, Op::Charge { amount: 100_000 }, charge_req(&user, 100_000), started, 0)];
    let token = api.active_token(&user, Duration::from_secs(30));
    let mut reservations = Vec::new();
    for (seat, _) in &seats[..2] {
        let hold = Req::post("/reservations", json!({ "scheduleId": schedule, "seatId": seat })).bearer(&token);
        let r = send_recorded(&api, &user, Op::Hold { seat: seat.clone() }, hold, started, 0);
        assert!(r.answer.is(201), "{:?}", r.answer);
        reservations.push(r.answer.body["id"].as_str().expect("id").to_owned());
        recs.push(r);
    }

    let mut locker = db.connect();
    locker
        .batch_execute(&format!("BEGIN; SELECT balance FROM accounts WHERE user_id = '{user}' FOR UPDATE;"))
        .expect("lock the account row");
    let pay = pay_req(&token, &reservations[0]);
    let payer = {
        let (api, user, pay, reservation) = (api.clone(), user.clone(), pay.clone(), reservations[0].clone());
        std::thread::spawn(move || send_recorded(&api, &user, Op::Pay { reservation }, pay, started, 1))
    };
    // The payment is now waiting for the row (it read the token in Redis first).
    std::thread::sleep(Duration::from_millis(400));
    redis.freeze();
    locker.batch_execute("ROLLBACK").expect("release the row");
    let paid = payer.join().expect("payer thread");
    redis.thaw();
    assert!(paid.answer.is(201), "the payment whose token could not be marked used: {:?}", paid.answer);
    assert!(paid.answer.elapsed < Duration::from_secs(5), "answered after {:?}", paid.answer.elapsed);
    recs.push(paid.clone());

    assert!(
        server.log_tail(500).contains("could not be marked used"),
        "the server did not meet the stopped Redis after the commit (the instant was missed):\n{}",
        server.log_tail(30)
    );
    // Redis never heard of the payment: the token still reads ACTIVE there...
    let polled = api.must(&Req::get("/queue/token").bearer(&token), Duration::from_secs(10));
    // ...but it has paid once, and that is final.
    let again = pay_req(&token, &reservations[1]);
    let second = send_recorded(&api, &user, Op::Pay { reservation: reservations[1].clone() }, again, started, 2);
    assert!(
        second.answer.is(401) && second.answer.code() == "TOKEN_EXPIRED",
        "a second payment with the token: {:?}",
        second.answer
    );
    recs.push(second);
    let replay = send_recorded(&api, &user, Op::Pay { reservation: reservations[0].clone() }, pay, started, 2);
    assert!(replay.answer.is(201) && replay.answer.replayed, "the replay: {:?}", replay.answer);
    assert_eq!(replay.answer.body, paid.answer.body, "the replay differs from the answer");
    recs.push(replay);

    let mut conn = db.connect();
    let (problems, t) = audit(&mut conn, &api, &url, &recs, &[user]);
    assert_clean("after the Redis hiccup", &problems);
    eprintln!(
        "payment committed while Redis was stopped: answered {:?} after {:?}; the token then polled {} in Redis; \
         a second payment with it: {:?} {}; the replay: 201, Idempotent-Replayed; {t}",
        paid.answer.status,
        paid.answer.elapsed,
        polled["status"],
        recs[recs.len() - 2].answer.status,
        recs[recs.len() - 2].answer.code()
    );
}

/// Issue 21: Redis loses its data (killed, started again without persistence) while buyers
/// poll. Its next line has another epoch: every token of the lost line is refused (401
/// `TOKEN_INVALID`, "join again") at its first poll after the poll cache's window, never
/// answered with its old place, while the new line's tokens get their own exact positions.
#[test]
fn a_redis_that_lost_its_data_refuses_the_old_lines_tokens_and_numbers_the_new_one() {
    const OLD: usize = 30;
    let mut redis = PrivateRedis::reserve();
    redis.start();
    let db = Database::fresh();
    db.seed();
    let url = db.url();
    let redis_url = redis.url();
    let server = Concert::start(&server_env(
        &url,
        &[
            ("QUEUE_STORE", "redis"),
            ("REDIS_URL", &redis_url),
            ("REDIS_KEY_PREFIX", "lost"),
            ("QUEUE_ADMIT_BATCH", "1"),
            ("QUEUE_ADMIT_INTERVAL_SECS", "86400"),
        ],
    ));
    let api = Arc::new(Api::new(&server.base(), Duration::from_secs(10)));
    let issue = |api: &Api| {
        let a = api.send(&Req::post("/queue/tokens", json!({ "userId": Uuid::new_v4().to_string() })));
        assert!(a.is(201), "{a:?}");
        a.body["token"].as_str().expect("token").to_owned()
    };
    let old: Arc<Vec<String>> = Arc::new((0..OLD).map(|_| issue(&api)).collect());
    let admitted =
        || api.must(&Req::get("/admin/queue").bearer(ADMIN), Duration::from_secs(10))["admittedThrough"].clone();
    let waited = Instant::now();
    while admitted() != 1 {
        assert!(waited.elapsed() < Duration::from_secs(10), "the first tick did not admit token 1");
        std::thread::sleep(Duration::from_millis(50));
    }
    for (i, t) in old.iter().enumerate().skip(1) {
        let polled = api.must(&Req::get("/queue/token").bearer(t), Duration::from_secs(5));
        assert_eq!(polled["position"], i, "{polled}");
    }

    // Pollers of the old line's tokens, through the crash and after.
    let started = Instant::now();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pollers: Vec<_> = (0..3)
        .map(|k| {
            let (api, old, stop) = (api.clone(), old.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut i = k;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let sent = started.elapsed();
                    let a = api.send(&Req::get("/queue/token").bearer(&old[i % OLD]));
                    seen.push((sent, i % OLD, a));
                    i += 3;
                }
                seen
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    redis.crash();
    std::thread::sleep(Duration::from_secs(1));
    redis.start();
    let back = started.elapsed();
    // The new line: tokens issued now number from 1 again.
    let new_at = started.elapsed();
    let new: Vec<String> = (0..5)
        .map(|_| {
            let req = Req::post("/queue/tokens", json!({ "userId": Uuid::new_v4().to_string() }));
            api.must(&req, Duration::from_secs(10))["token"].as_str().expect("token").to_owned()
        })
        .collect();
    let new_done = started.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen: Vec<_> = pollers.into_iter().flat_map(|p| p.join().expect("poller")).collect();

    let window = Duration::from_millis(250) + Duration::from_secs(1);
    let (mut refused, mut old_places_after_new) = (0, 0);
    for (sent, i, a) in &seen {
        if *sent >= new_done || *sent >= back + window {
            assert!(
                a.is(401) && a.code() == "TOKEN_INVALID",
                "token {} of the lost line, polled {sent:?} after the start ({back:?}: Redis back, {new_done:?}: new line issued): {a:?}",
                i + 1
            );
            refused += 1;
        } else if *sent >= new_at && a.is(200) {
            old_places_after_new += 1;
        }
        assert!(a.status.is_some() && !a.is(500), "{a:?}");
    }
    assert!(refused > 10, "too few polls after the window: {refused}");
    let a = admitted().as_i64().expect("admittedThrough");
    for (i, t) in new.iter().enumerate() {
        let seq = i64::try_from(i).expect("small") + 1;
        let polled = api.must(&Req::get("/queue/token").bearer(t), Duration::from_secs(5));
        if seq <= a {
            assert_eq!(polled["status"], "ACTIVE", "{polled}");
        } else {
            assert_eq!(
                (polled["status"].as_str(), polled["position"].as_i64()),
                (Some("WAITING"), Some(seq - a)),
                "{polled}"
            );
        }
    }
    eprintln!(
        "{} polls of the lost line's tokens; Redis back {back:?} after the start, new line issued by {new_done:?}; \
         {refused} polls after the window all 401 TOKEN_INVALID; {old_places_after_new} answered 200 between the \
         first new issue and its answer; the new line admitted through {a}",
        seen.len()
    );
}
