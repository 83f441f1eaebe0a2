//! Start-up while a store is down (issue 13).

use super::*;

/// The process serves, but nothing that needs the store: live 200, ready 503, and a
/// store-backed request 503 `UNAVAILABLE` with `Retry-After`, answered within 5 s.
pub(crate) fn assert_store_down(s: &Server, store_backed: reqwest::blocking::RequestBuilder) {
    assert_eq!(s.get("/health/live", None).0, 200);
    let ready = s.http.get(s.url("/health/ready")).timeout(Duration::from_secs(5)).send().unwrap();
    assert_eq!(ready.status().as_u16(), 503);
    let resp = store_backed.timeout(Duration::from_secs(5)).send().expect("an answer within 5 s");
    let (st, headers, body) = read_full(resp);
    assert_eq!((st, body["code"].as_str()), (503, Some("UNAVAILABLE")), "{body}");
    assert!(headers.contains_key("retry-after"), "{headers:?}");
}

pub(crate) fn serve_starts_while_its_store_is_down_and_recovers_without_a_restart(q: Queue) {
    match q {
        Queue::Postgres => {
            // Declared first, dropped last: after the server has stopped.
            let mut cluster = PrivatePostgres::init();
            let d = Deployment::on_database(q, &cluster.url("concert_e2e_late"), &[("ADMIN_TOKEN", ADMIN)]);
            let mut s = d.launch(Launch::new().live_only());
            let issue = s.http.post(s.url("/queue/tokens")).json(&json!({"userId": Uuid::new_v4().to_string()}));
            assert_store_down(&s, issue);
            let charge =
                s.http.post(s.url(&format!("/users/{}/balance/charge", Uuid::new_v4()))).json(&json!({"amount": 1}));
            assert_store_down(&s, charge);

            cluster.start();
            let up = std::time::Instant::now();
            wait_for("ready within a few seconds of the database coming up", Duration::from_secs(10), || {
                s.get("/health/ready", None).0 == 200
            });
            eprintln!("ready {:?} after the database came up", up.elapsed());
            let future = (OffsetDateTime::now_utc() + time::Duration::days(3)).format(&Rfc3339).unwrap();
            let body =
                json!({"title": "Late", "schedules": [{"startsAt": future, "seats": [{"number": 1, "price": 3000}]}]});
            let (st, created) = s.send(s.admin(Method::POST, "/admin/concerts").json(&body));
            assert_eq!(st, 201, "{created}");
            let schedule = created["schedules"][0]["id"].as_str().unwrap().to_owned();
            buy_one_seat(&s, &schedule, 0);
            assert!(s.is_running(), "the same process served throughout");
            d.assert_invariants();
        }
        Queue::Redis | Queue::RedisCluster => {
            let mut redis = PrivateRedis::reserve();
            let d = Deployment::with_redis_at(q, &redis.url(), &[]);
            let mut s = d.launch(Launch::new().live_only());
            // What needs only PostgreSQL works (once the schema task has checked the database).
            let user = Uuid::new_v4().to_string();
            let charge = || s.post(&format!("/users/{user}/balance/charge"), None, json!({"amount": 5})).0;
            wait_for("a charge, which needs only PostgreSQL", Duration::from_secs(30), || charge() == 200);
            let issue = s.http.post(s.url("/queue/tokens")).json(&json!({"userId": Uuid::new_v4().to_string()}));
            assert_store_down(&s, issue);
            // A value Redis' layout could hold (a random part and `seq` 1), so the poll asks
            // Redis; one that cannot be a token is refused (401) without asking.
            let token = format!("{}{:016x}", "ab".repeat(24), 1);
            let poll = s.http.get(s.url("/queue/token")).bearer_auth(&token);
            assert_store_down(&s, poll);
            assert_eq!(s.balance(&user), 5);

            redis.start();
            let up = std::time::Instant::now();
            wait_for("ready within a few seconds of Redis coming up", Duration::from_secs(10), || {
                s.get("/health/ready", None).0 == 200
            });
            eprintln!("ready {:?} after Redis came up", up.elapsed());
            let (_, token) = s.active_user();
            let (schedule, _) = s.first_schedule(&token);
            buy_one_seat(&s, &schedule, 4);
            assert!(s.is_running(), "the same process served throughout");
            d.assert_invariants();
        }
    }
}
