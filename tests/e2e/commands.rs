//! One-shot commands and `make run`'s fallback.

use super::*;

/// Short-lived commands exit cleanly every time. They once crashed in about one run in eight:
/// the process exited while the pool was still opening TLS connections in the background.
#[test]
pub(crate) fn one_shot_commands_exit_cleanly_every_time() {
    let db = Database::fresh();
    let mut failures = Vec::new();
    for (cmd, runs) in [("seed-demo", 25), ("check-invariants", 15)] {
        for _ in 0..runs {
            let out = run_command(cmd, &db.url());
            if !out.status.success() {
                failures.push(format!("{cmd}: {} {}", out.status, String::from_utf8_lossy(&out.stderr)));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Per demo concert: its future schedules, and the seats of each (count, numbers 1..=50,
/// positive prices).
pub(crate) fn demo_shape(url: &str) -> Vec<(i64, i64)> {
    let concerts = support::query_i64s(url, "SELECT count(*) AS n FROM concerts GROUP BY id ORDER BY id");
    assert!(!concerts.is_empty(), "no demo concert");
    let future = support::query_i64s(
        url,
        "SELECT count(s.id) AS n FROM concerts c LEFT JOIN schedules s ON s.concert_id = c.id AND s.starts_at > now() \
         GROUP BY c.id ORDER BY c.id",
    );
    let bad_maps = query_i64(
        url,
        "SELECT count(*) AS n FROM (SELECT schedule_id FROM seats GROUP BY schedule_id \
         HAVING count(*) <> 50 OR min(number) <> 1 OR max(number) <> 50 OR min(price) <= 0) x",
    );
    assert_eq!(bad_maps, 0, "every demo schedule has seats 1 to 50 with positive prices");
    let all = support::query_i64s(url, "SELECT count(s.id) AS n FROM concerts c LEFT JOIN schedules s ON s.concert_id = c.id GROUP BY c.id ORDER BY c.id");
    future.into_iter().zip(all).collect()
}

#[test]
pub(crate) fn seed_demo_is_idempotent_and_keeps_three_future_schedules() {
    let db = Database::fresh();
    let seed = || {
        let out = run_command("seed-demo", &db.url());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    seed();
    let first = demo_shape(&db.url());
    assert!(first.iter().all(|(future, _)| *future >= 3), "{first:?}");
    seed();
    assert_eq!(demo_shape(&db.url()), first, "a second run adds nothing");

    // Time passes: every schedule is in the past. The next run adds future ones again.
    support::execute(&db.url(), "UPDATE schedules SET starts_at = now() - interval '1 day'");
    assert!(demo_shape(&db.url()).iter().all(|(future, _)| *future == 0));
    seed();
    let later = demo_shape(&db.url());
    assert!(later.iter().all(|(future, _)| *future >= 3), "{later:?}");
    seed();
    assert_eq!(demo_shape(&db.url()), later, "idempotent again");
}

#[test]
pub(crate) fn migrate_creates_the_database_and_a_second_run_changes_nothing() {
    let db = Database::fresh();
    let migrations = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count() as i64;
    for _ in 0..2 {
        let out = run_command("migrate", &db.url());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(query_i64(&db.url(), "SELECT count(*) AS n FROM __diesel_schema_migrations"), migrations);
    }
    for table in ["concerts", "schedules", "seats", "reservations", "accounts", "payments", "queue_tokens"] {
        assert_eq!(query_i64(&db.url(), &format!("SELECT count(*) AS n FROM {table}")), 0, "{table}");
    }
}

#[test]
pub(crate) fn check_invariants_passes_on_a_sound_database_and_names_a_violation() {
    let db = Database::fresh();
    assert!(run_command("seed-demo", &db.url()).status.success());
    let out = run_command("check-invariants", &db.url());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    // A balance with no ledger behind it.
    support::execute(&db.url(), "INSERT INTO accounts (user_id, balance) VALUES (gen_random_uuid(), 5)");
    let out = run_command("check-invariants", &db.url());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(stdout.contains("violation:") && stdout.contains("ledger sum"), "{stdout}");
}

/// `make run` tries `concert seed-demo` first and falls back to memory when it fails: against a
/// database nobody answers at, it exits non-zero quickly, naming the variable to fix.
#[test]
pub(crate) fn seed_demo_without_a_reachable_database_fails_fast_naming_database_url() {
    let url = format!("postgres://postgres@127.0.0.1:{}/concert", free_port());
    let out = run_command_within("seed-demo", &url, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr}");
}

/// `make run`'s fallback, `concert serve --store memory`, with the binary's own defaults and no
/// database at all: the demo catalogue is served and bookable.
#[test]
pub(crate) fn serve_store_memory_serves_the_demo_catalogue_without_a_database() {
    let unreachable = format!("postgres://postgres@127.0.0.1:{}/concert", free_port());
    let mut s = Server::launch(None, Launch::bare().arg("--store").arg("memory").env("DATABASE_URL", &unreachable));
    let (user, token) = s.active_user();
    let (_, concerts) = s.get("/concerts", Some(&token));
    let concert = concerts[0]["id"].as_str().unwrap().to_owned();
    let (_, schedules) = s.get(&format!("/concerts/{concert}/schedules"), Some(&token));
    let schedules = schedules.as_array().unwrap();
    assert!(schedules.len() >= 3, "{schedules:?}");
    let now = OffsetDateTime::now_utc();
    for sc in schedules {
        assert!(time_of(&sc["startsAt"]) > now);
        let (_, seats) = s.get(&format!("/schedules/{}/seats", sc["id"].as_str().unwrap()), Some(&token));
        let numbers: Vec<i64> = seats.as_array().unwrap().iter().map(|x| x["number"].as_i64().unwrap()).collect();
        assert_eq!(numbers, (1..=50).collect::<Vec<_>>());
        assert!(seats.as_array().unwrap().iter().all(|x| x["price"].as_i64().unwrap() > 0));
    }
    let schedule = schedules[0]["id"].as_str().unwrap();
    let (_, seats) = s.get(&format!("/schedules/{schedule}/seats"), Some(&token));
    let (seat, price) = seat_price(seats.as_array().unwrap(), 0);
    s.charge(&user, price);
    let (st, r) = s.post("/reservations", Some(&token), json!({"scheduleId": schedule, "seatId": seat}));
    assert_eq!(st, 201, "{r}");
    let (st, p) = s.post("/payments", Some(&token), json!({"reservationId": r["id"]}));
    assert_eq!(st, 201, "{p}");
    assert!(s.stop("TERM").success());
}

/// Every metric the deployment files name (`deploy/prometheus/alerts.yml`, the Grafana
/// dashboard `deploy/grafana/concert.json`) is a family a running server exposes: a renamed
/// or misspelt metric would make an alert that can never fire or a panel that stays empty.
/// (`make test-deploy` checks that the rules and queries parse.)
#[test]
fn the_deployment_files_name_only_metrics_the_service_exposes() {
    let s = Server::start(Queue::Postgres, &[]);
    let (_, token) = s.active_user();
    s.first_schedule(&token);
    wait_scheduler_passes(&[&s], 1.0);
    let scrape = s.metrics();
    let families: std::collections::HashSet<&str> =
        scrape.lines().filter_map(|l| l.strip_prefix("# TYPE ")).filter_map(|l| l.split(' ').next()).collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy");
    let prefixes = ["http_", "queue_", "store_", "db_", "reservations_", "payments_", "scheduler_"];
    let mut named = std::collections::BTreeSet::new();
    for file in ["prometheus/alerts.yml", "prometheus/alerts.test.yml", "grafana/concert.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
        for word in words.filter(|w| prefixes.iter().any(|p| w.starts_with(p))) {
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| word.strip_suffix(s)).unwrap_or(word);
            named.insert((file, family.to_owned()));
        }
    }
    assert!(named.len() > 10, "too few metrics found: {named:?}");
    let unknown: Vec<_> = named.iter().filter(|(_, f)| !families.contains(f.as_str())).collect();
    assert!(unknown.is_empty(), "named in deploy/ but not exposed: {unknown:?}\n{scrape}");
}
