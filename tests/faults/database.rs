//! The database failing under load: going away and coming back, hanging, its connections
//! terminated, a row held locked by another session.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection as _;
use serde_json::json;

use uuid::Uuid;

use crate::harness::procs::Concert;
use crate::harness::{rows, server_env, Answer, Api, Req};
use crate::load::{
    assert_clean, audit, charge_req, pay_req, retry_unanswered, retry_unavailable, send_recorded, Load, Op, Rec, Seats,
    Shape,
};
use crate::support::private::PrivatePostgres;
use crate::support::{Database, PG_SERVER};

/// The contract's bound for a 503.
const ANSWER_WITHIN: Duration = Duration::from_secs(5);

/// Client timeout: a request unanswered this long is a hang.
const HANG: Duration = Duration::from_secs(15);

fn wait_for_payments(db: &Database, n: i64, limit: Duration) {
    let mut conn = db.connect();
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if rows(&mut conn, "SELECT count(*) FROM payments", 1)[0][0].parse::<i64>().unwrap_or(0) >= n {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls `/health/ready` every 200 ms on its own thread until stopped; returns the answers.
struct ReadyProbe {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<(Duration, Answer)>>,
}

impl ReadyProbe {
    fn start(api: &Arc<Api>, started: Instant) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s, api) = (stop.clone(), api.clone());
        let thread = std::thread::spawn(move || {
            let mut seen = Vec::new();
            while !s.load(Ordering::SeqCst) {
                let at = started.elapsed();
                seen.push((at, api.send(&Req::get("/health/ready"))));
                std::thread::sleep(Duration::from_millis(200));
            }
            seen
        });
        Self { stop, thread }
    }

    fn stop(self) -> Vec<(Duration, Answer)> {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("probe thread")
    }
}

/// Asserts that every request sent in `phase` was answered, within the contract's 5 s, and
/// never with a 500 except the one outcome the service cannot know: a write whose COMMIT was on
/// its way when the server died answers 500 "outcome unknown" (at most one per pooled
/// connection). A charge's or payment's retry with its key tells the outcome (see
/// `retry_unanswered`); a hold has no key, and the audit lets it exist or not. Returns how many
/// answered 503.
fn assert_answered_in_time(recs: &[Rec], phase: usize, what: &str) -> usize {
    let mut unavailable = 0;
    let unknown = recs.iter().filter(|r| r.phase == phase && r.answer.is(500)).count();
    assert!(unknown <= POOL_SIZE, "{what}: {unknown} answers of 500, more than the {POOL_SIZE} connections");
    for r in recs.iter().filter(|r| r.phase == phase) {
        let a = &r.answer;
        assert!(
            a.status.is_some(),
            "{what}: {} {} went unanswered after {:?}: {:?}",
            r.req.method,
            r.req.path,
            a.elapsed,
            a.error
        );
        assert!(
            a.elapsed < ANSWER_WITHIN,
            "{what}: {} {} answered {:?} after {:?}",
            r.req.method,
            r.req.path,
            a.status,
            a.elapsed
        );
        assert!(
            !a.is(500) || r.key().is_some() || matches!(r.op, Op::Hold { .. }),
            "{what}: a 500 for a request that commits nothing: {r:?}"
        );
        if a.is(503) {
            unavailable += 1;
            assert_eq!(a.code(), "UNAVAILABLE", "{what}: {r:?}");
        }
    }
    unavailable
}

/// Like [`assert_answered_in_time`], for a server that froze: a request whose COMMIT was
/// already on its way when the database froze cannot be told "nothing was done", so the
/// service waits for its real outcome instead; such a late answer must be that outcome (never
/// a 503 or a 500), and there can be at most one per pooled connection. Returns the 503s and the
/// late answers.
fn assert_answered_in_time_or_with_their_outcome(recs: &[Rec], phase: usize, what: &str) -> (usize, usize) {
    let late: Vec<&Rec> = recs.iter().filter(|r| r.phase == phase && r.answer.elapsed >= ANSWER_WITHIN).collect();
    for r in &late {
        let a = &r.answer;
        assert!(
            a.status.is_some_and(|s| s != 503 && s != 500),
            "{what}: {} {} answered {:?} after {:?}: a late answer must be the call's real outcome",
            r.req.method,
            r.req.path,
            a.status,
            a.elapsed
        );
    }
    assert!(late.len() <= IN_FLIGHT, "{what}: {} late answers, more than the {IN_FLIGHT} calls in flight", late.len());
    let in_time: Vec<Rec> = recs.iter().filter(|r| r.answer.elapsed < ANSWER_WITHIN).cloned().collect();
    (assert_answered_in_time(&in_time, phase, what), late.len())
}

/// The most store calls the service has in flight with its defaults: `STORE_CALLS_AT_ONCE` (4)
/// and, for token issue, `DATABASE_POOL_SIZE` (16).
const IN_FLIGHT: usize = 4 + 16;

/// The service's `DATABASE_POOL_SIZE` (its default): at most this many calls can be committing.
const POOL_SIZE: usize = 16;

fn max_elapsed(recs: &[Rec], phase: usize) -> Duration {
    recs.iter().filter(|r| r.phase == phase).map(|r| r.answer.elapsed).max().unwrap_or_default()
}

/// Clients charging in a loop (one keyed charge every 50 ms each) until `until`, recorded in
/// `phase`: requests that are sure to meet a fault, whatever the buyers are doing then.
struct Chargers(Vec<std::thread::JoinHandle<(String, Vec<Rec>)>>);

impl Chargers {
    fn start(api: &Arc<Api>, started: Instant, phase: usize, until: Instant) -> Self {
        Self(
            (0..12)
                .map(|_| {
                    let api = api.clone();
                    std::thread::spawn(move || {
                        let user = Uuid::new_v4().to_string();
                        let mut recs = Vec::new();
                        while Instant::now() < until {
                            let req = charge_req(&user, 7);
                            recs.push(send_recorded(&api, &user, Op::Charge { amount: 7 }, req, started, phase));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        (user, recs)
                    })
                })
                .collect(),
        )
    }

    fn join_into(self, users: &mut Vec<String>, recs: &mut Vec<Rec>) {
        for t in self.0 {
            let (user, mut r) = t.join().expect("charger thread");
            users.push(user);
            recs.append(&mut r);
        }
    }
}

/// Charges a new user with one `Idempotency-Key` until it goes through (at most `limit`),
/// recording every attempt: the first sign that the service recovered. Returns the records,
/// the user and how long it took.
fn charge_until_through(api: &Api, started: Instant, phase: usize, limit: Duration) -> (Vec<Rec>, String, Duration) {
    let user = Uuid::new_v4().to_string();
    let req = charge_req(&user, 1);
    let begin = Instant::now();
    let mut recs = Vec::new();
    loop {
        let r = send_recorded(api, &user, Op::Charge { amount: 1 }, req.clone(), started, phase);
        let ok = r.answer.ok();
        recs.push(r);
        if ok {
            return (recs, user, begin.elapsed());
        }
        assert!(begin.elapsed() < limit, "the service did not recover within {limit:?}: {:?}", recs.last());
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The database crashes (`pg_ctl stop -m immediate`) mid-load and comes back 4 s later: every
/// request meanwhile is answered 503 within 5 s, readiness says 503, the service recovers by
/// itself, and the audit finds every 2xx in place and no effect of a 503.
#[test]
fn database_crash_and_return_mid_load_answers_503_in_time_and_recovers() {
    let mut cluster = PrivatePostgres::running();
    let db = Database::fresh_on(&cluster.server_url());
    db.seed();
    let url = db.url();
    let server = Concert::start(&server_env(&url, &[]));
    let api = Arc::new(Api::new(&server.base(), HANG));
    let (schedule, seats) = api.create_schedule(1_500);
    let seats = Arc::new(Seats::new(schedule, seats));
    let load = Load::start(&api, &seats, Shape { buyers: 12, think: Duration::from_millis(10) });
    wait_for_payments(&db, 15, Duration::from_secs(20));
    let ready_probe = ReadyProbe::start(&api, load.started);

    load.phase(1);
    let down_at = load.started.elapsed();
    cluster.crash();
    let chargers = Chargers::start(&api, load.started, 1, Instant::now() + Duration::from_secs(4));
    std::thread::sleep(Duration::from_secs(4));
    cluster.start();
    load.phase(2);
    let up_at = load.started.elapsed();
    // Recovery without a restart: a charge goes through again.
    let (probe, probe_user, recovery) = charge_until_through(&api, load.started, 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let mut users = load.users.clone();
    let started = load.started;
    let mut recs = load.stop();
    chargers.join_into(&mut users, &mut recs);
    let ready = ready_probe.stop();

    let outage_503 = assert_answered_in_time(&recs, 1, "while the database was down");
    assert!(outage_503 > 0, "nothing answered 503 while the database was down");
    assert!(
        ready.iter().any(|(at, a)| *at > down_at && *at < up_at && a.is(503)),
        "/health/ready never answered 503 while the database was down: {ready:?}"
    );
    assert!(
        ready.last().is_some_and(|(_, a)| a.is(200)),
        "/health/ready is not 200 after recovery: {:?}",
        ready.last()
    );
    assert!(
        recs.iter().filter(|r| r.phase == 2).any(|r| r.answer.ok()),
        "no request succeeded after the database came back"
    );

    let mut conn = db.connect();
    let retries = retry_unanswered(&api, &recs, 3, started);
    let mut all = recs;
    all.extend(retries);
    all.extend(probe);
    users.push(probe_user);
    let (problems, t) = audit(&mut conn, &api, &url, &all, &users);
    assert_clean("after the database came back", &problems);
    // Every 503 recorded nothing: retried with its key, each runs afresh, and the audit holds.
    let rerun = retry_unavailable(&api, &all, 4, started);
    let rerun_ok = rerun.iter().filter(|r| r.answer.ok()).count();
    let rerun_len = rerun.len();
    all.extend(rerun);
    let (problems, _) = audit(&mut conn, &api, &url, &all, &users);
    assert_clean("after retrying the 503s", &problems);
    eprintln!(
        "database down {down_at:?}..{up_at:?}: {outage_503} requests answered 503 during the outage, slowest answer \
         {:?}; first charge through {recovery:?} after the restart; overall: {t}; {rerun_len} keyed 503s retried: \
         {rerun_ok} ran afresh with 2xx, none replayed",
        max_elapsed(&all, 1)
    );
}

/// The database hangs (every server process stopped with SIGSTOP: connections stay open and
/// nothing answers) for 8 s mid-load: requests are still answered within 5 s (503), except a
/// call whose COMMIT was already on its way when the server froze, which gets its real outcome
/// when the server wakes up (a 503 there could be false); the service recovers without a
/// restart; the audit finds every 2xx in place and no effect of a 503.
#[test]
fn hung_database_mid_load_answers_503_in_time_and_recovers() {
    let cluster = PrivatePostgres::running();
    let db = Database::fresh_on(&cluster.server_url());
    db.seed();
    let url = db.url();
    let server = Concert::start(&server_env(&url, &[]));
    let api = Arc::new(Api::new(&server.base(), HANG));
    let (schedule, seats) = api.create_schedule(1_500);
    let seats = Arc::new(Seats::new(schedule, seats));
    let load = Load::start(&api, &seats, Shape { buyers: 12, think: Duration::from_millis(10) });
    wait_for_payments(&db, 15, Duration::from_secs(20));

    load.phase(1);
    let frozen = cluster.freeze();
    // Besides the buyers, 12 clients charging in a loop: some of their calls are sure to be on
    // a connection to the hung server.
    let freeze_end = Instant::now() + Duration::from_secs(8);
    let chargers = Chargers::start(&api, load.started, 1, freeze_end);
    std::thread::sleep(freeze_end.saturating_duration_since(Instant::now()));
    cluster.thaw(&frozen);
    load.phase(2);
    let (probe, probe_user, recovery) = charge_until_through(&api, load.started, 2, Duration::from_secs(30));
    std::thread::sleep(Duration::from_secs(2));
    let mut users = load.users.clone();
    let started = load.started;
    let mut recs = load.stop();
    chargers.join_into(&mut users, &mut recs);

    let slowest = max_elapsed(&recs, 1);

    let hung = recs
        .iter()
        .filter(|r| r.phase == 1 && (r.answer.status.is_none() || r.answer.elapsed >= ANSWER_WITHIN))
        .count();
    let mut conn = db.connect();
    let retries = retry_unanswered(&api, &recs, 3, started);
    let mut all = recs.clone();
    all.extend(retries);
    all.extend(probe);
    users.push(probe_user);
    let (problems, t) = audit(&mut conn, &api, &url, &all, &users);
    eprintln!(
        "database frozen 8 s: {hung} requests sent during the freeze took 5 s or more (slowest {slowest:?}); \
         first charge through {recovery:?} after the thaw; overall: {t}"
    );
    assert_clean("after the database woke up", &problems);
    let (unavailable, late) = assert_answered_in_time_or_with_their_outcome(&recs, 1, "while the database hung");
    eprintln!("{unavailable} answered 503 in time; {late} were committing and got their real outcome after the thaw");
    assert!(unavailable > 0, "nothing answered 503 while the database hung");
}

/// The service's backends are terminated (`pg_terminate_backend`, found by the adapter's
/// `application_name` in this test's database only) five times under load: each terminated
/// connection fails at most the one request using it, with a 503 (never a 500), the pool
/// recovers by itself, and the audit is clean.
#[test]
fn terminated_connections_fail_few_requests_and_the_pool_recovers() {
    let db = Database::fresh();
    db.seed();
    let url = db.url();
    let server = Concert::start(&server_env(&url, &[]));
    let api = Arc::new(Api::new(&server.base(), HANG));
    let (schedule, seats) = api.create_schedule(1_500);
    let seats = Arc::new(Seats::new(schedule, seats));
    let load = Load::start(&api, &seats, Shape { buyers: 12, think: Duration::from_millis(10) });
    wait_for_payments(&db, 10, Duration::from_secs(20));

    let mut admin = diesel::Connection::establish(&format!("{PG_SERVER}/postgres")).expect("connect");
    let mut terminated = 0_usize;
    load.phase(1);
    for _ in 0..5 {
        let killed = rows(
            &mut admin,
            &format!(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = '{}' AND application_name = 'concert' AND pid <> pg_backend_pid()",
                db.name
            ),
            1,
        );
        terminated += killed.iter().filter(|r| r[0] == "true").count();
        std::thread::sleep(Duration::from_millis(1_500));
    }
    load.phase(2);
    let (probe, probe_user, _) = charge_until_through(&api, load.started, 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let users = load.users.clone();
    let started = load.started;
    let recs = load.stop();

    let failed = assert_answered_in_time(&recs, 1, "while backends were terminated");
    let after = recs.iter().filter(|r| r.phase == 2).count();
    let after_ok = recs.iter().filter(|r| r.phase == 2 && !r.answer.is(503) && r.answer.status.is_some()).count();
    assert!(terminated > 0, "no backend of the service was found to terminate");
    assert!(
        failed <= terminated,
        "{failed} requests answered 503 for {terminated} terminated connections: more than one per connection"
    );
    assert!(
        after_ok > 0 && after_ok == after,
        "requests still fail after the last termination: {after_ok}/{after} answered"
    );
    let mut conn = db.connect();
    let retries = retry_unanswered(&api, &recs, 3, started);
    let mut all = recs;
    all.extend(retries);
    all.extend(probe);
    let mut users = users;
    users.push(probe_user);
    let (problems, t) = audit(&mut conn, &api, &url, &all, &users);
    assert_clean("after the terminations", &problems);
    eprintln!("{terminated} backends terminated in 5 rounds: {failed} requests answered 503; overall: {t}");
}

/// Another session holds one user's account row `FOR UPDATE` for 12 s under a mixed load of
/// other buyers. That user's charges and payment answer 503 (or 409 in flight) within 5 s
/// (`lock_timeout`) and none of them commits after the lock is released; the other buyers
/// get no 503 and keep completing purchases; afterwards every balance is what its client was
/// told.
#[test]
fn a_row_locked_by_another_session_fails_only_its_own_requests_and_none_commits_later() {
    let db = Database::fresh();
    db.seed();
    let url = db.url();
    let server = Concert::start(&server_env(&url, &[]));
    let api = Arc::new(Api::new(&server.base(), HANG));
    let (schedule, seats) = api.create_schedule(1_500);
    let seats = Arc::new(Seats::new(schedule.clone(), seats));
    let load = Load::start(&api, &seats, Shape { buyers: 8, think: Duration::from_millis(10) });
    let started = load.started;

    // The victim: an account, an ACTIVE token and a held seat to pay for.
    let victim = Uuid::new_v4().to_string();
    let mut recs =
        vec![send_recorded(&api, &victim, Op::Charge { amount: 10_000 }, charge_req(&victim, 10_000), started, 0)];
    assert!(recs[0].answer.ok(), "{:?}", recs[0].answer);
    let token = api.active_token(&victim, Duration::from_secs(30));
    let seat = seats.seats.last().expect("a seat").0.clone();
    let hold = Req::post("/reservations", json!({ "scheduleId": schedule, "seatId": seat })).bearer(&token);
    let held = send_recorded(&api, &victim, Op::Hold { seat }, hold, started, 0);
    assert!(held.answer.is(201), "{:?}", held.answer);
    let reservation = held.answer.body["id"].as_str().expect("reservation id").to_owned();
    recs.push(held);
    wait_for_payments(&db, 5, Duration::from_secs(20));

    let mut locker = db.connect();
    locker
        .batch_execute(&format!("BEGIN; SELECT balance FROM accounts WHERE user_id = '{victim}' FOR UPDATE;"))
        .expect("lock the victim's account row");
    load.phase(1);
    let locked_at = Instant::now();
    let pay = pay_req(&token, &reservation);
    recs.push(send_recorded(&api, &victim, Op::Pay { reservation: reservation.clone() }, pay.clone(), started, 1));
    while locked_at.elapsed() < Duration::from_secs(12) {
        recs.push(send_recorded(&api, &victim, Op::Charge { amount: 1_000 }, charge_req(&victim, 1_000), started, 1));
        std::thread::sleep(Duration::from_millis(100));
    }
    // The same payment again with its key, still under the lock.
    recs.push(send_recorded(&api, &victim, Op::Pay { reservation: reservation.clone() }, pay.clone(), started, 1));
    locker.batch_execute("ROLLBACK").expect("release the lock");
    load.phase(2);
    // Anything that was going to commit late would have by now.
    std::thread::sleep(Duration::from_secs(3));

    // Released: the victim's payment with the same key now runs, once.
    let paid = send_recorded(&api, &victim, Op::Pay { reservation }, pay, started, 2);
    assert!(paid.answer.is(201), "the victim's payment after the release: {:?}", paid.answer);
    recs.push(paid);
    recs.push(send_recorded(&api, &victim, Op::Charge { amount: 500 }, charge_req(&victim, 500), started, 2));
    let mut users = load.users.clone();
    let mut others = load.stop();

    let victim_locked: Vec<Rec> = recs.iter().filter(|r| r.phase == 1).cloned().collect();
    for r in &victim_locked {
        let a = &r.answer;
        assert!(
            a.is(503) || (a.is(409) && a.code() == "IDEMPOTENCY_KEY_IN_FLIGHT"),
            "the locked user's request answered {:?} {}: {r:?}",
            a.status,
            a.body
        );
        assert!(a.elapsed < ANSWER_WITHIN, "the locked user's request took {:?}", a.elapsed);
    }
    let others_503 = others.iter().filter(|r| r.phase == 1 && r.answer.is(503)).count();
    let others_lost = others.iter().filter(|r| r.phase == 1 && r.answer.status.is_none()).count();
    assert_eq!((others_503, others_lost), (0, 0), "other users' requests failed while one row was locked");
    let others_ok = others.iter().filter(|r| r.phase == 1 && r.answer.ok()).count();
    let buyers_ok: std::collections::HashSet<&str> =
        others.iter().filter(|r| r.phase == 1 && r.answer.ok()).map(|r| r.user.as_str()).collect();
    assert_eq!(buyers_ok.len(), users.len(), "some buyers got nothing done while another user's row was locked");
    let others_pay =
        others.iter().filter(|r| r.phase == 1 && r.answer.is(201) && matches!(r.op, Op::Pay { .. })).count();

    let mut conn = db.connect();
    users.push(victim);
    recs.append(&mut others);
    let (problems, t) = audit(&mut conn, &api, &url, &recs, &users);
    assert_clean("after the lock was released", &problems);
    let slowest = victim_locked.iter().map(|r| r.answer.elapsed).max().unwrap_or_default();
    let in_flight = victim_locked.iter().filter(|r| r.answer.is(409)).count();
    eprintln!(
        "row locked 12 s: the locked user's {} requests answered 503 or 409 in flight ({in_flight} were 409), slowest \
         {slowest:?}; meanwhile the other \
         {} buyers made {others_ok} successful requests ({others_pay} payments), 0 answered 503; overall: {t}",
        victim_locked.len(),
        users.len() - 1
    );
}
