//! Settings parsing: flags, their environment fallbacks (a flag wins), and the contract's
//! defaults. One test function, because the environment is process-wide.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

use app::{Cli, Command, QueueStoreKind, Settings, StoreKind};
use clap::Parser as _;

const VARS: [&str; 28] = [
    "DATABASE_URL",
    "STORE_CALLS_AT_ONCE",
    "BIND_ADDR",
    "QUEUE_ADMIT_INTERVAL_SECS",
    "QUEUE_ADMIT_BATCH",
    "QUEUE_ACTIVE_TTL_SECS",
    "QUEUE_MAX_ACTIVE",
    "SEAT_HOLD_SECS",
    "SCHEDULER_ENABLED",
    "SCHEDULER_CHECK_MILLIS",
    "QUEUE_STORE",
    "REDIS_URL",
    "REDIS_KEY_PREFIX",
    "MAX_HOLDS_PER_USER",
    "ISSUE_RATE_PER_MIN",
    "TRUSTED_PROXIES",
    "IDEMPOTENCY_TTL_SECS",
    "ADMIN_TOKEN",
    "STORE",
    "DATABASE_POOL_SIZE",
    "DATABASE_CONNECT_TIMEOUT_MILLIS",
    "DATABASE_LOCK_TIMEOUT_MILLIS",
    "DATABASE_STATEMENT_TIMEOUT_MILLIS",
    "LOG_FORMAT",
    "QUEUE_POLL_CACHE_MILLIS",
    "QUEUE_POLL_CACHE_CAPACITY",
    "HTTP_WORKERS",
    "RUST_LOG",
];

#[test]
fn defaults_then_env_then_flags() {
    for v in VARS {
        std::env::remove_var(v);
    }

    // The contract's defaults.
    let s = Settings::from_flags(Vec::<String>::new()).unwrap();
    assert_eq!(s.database.database_url, "postgres://postgres@127.0.0.1:5432/concert");
    assert_eq!(s.bind_addr, "127.0.0.1:8080");
    assert_eq!(
        (s.queue_admit_interval_secs, s.queue_admit_batch, s.queue_active_ttl_secs, s.seat_hold_secs),
        (60, 100, 600, 300)
    );
    assert!(s.scheduler_enabled);
    assert_eq!(
        (s.store, s.queue_store, s.queue_max_active, s.scheduler_check_millis),
        (StoreKind::Postgres, QueueStoreKind::Postgres, None, 1000)
    );
    assert_eq!(s.redis.redis_url, "redis://127.0.0.1:6379");
    assert_eq!((s.max_holds_per_user, s.issue_rate_per_min, s.idempotency_ttl_secs), (4, 0, 86_400));
    assert!(s.trusted_proxies.is_empty());
    assert_eq!(s.admin_token, None);
    assert_eq!(s.poll_cache_settings().map(|c| c.cursor_ttl), Some(std::time::Duration::from_millis(250)));
    assert_eq!((s.database.database_pool_size, s.database.store_slots()), (16, 4), "issues 16, other calls 4");

    // The environment is the fallback...
    std::env::set_var("DATABASE_URL", "postgres://env@db/concert");
    std::env::set_var("BIND_ADDR", "0.0.0.0:9000");
    std::env::set_var("QUEUE_ADMIT_INTERVAL_SECS", "5");
    std::env::set_var("QUEUE_ADMIT_BATCH", "7");
    std::env::set_var("QUEUE_ACTIVE_TTL_SECS", "30");
    std::env::set_var("QUEUE_MAX_ACTIVE", "40");
    std::env::set_var("SEAT_HOLD_SECS", "20");
    std::env::set_var("SCHEDULER_ENABLED", "false");
    std::env::set_var("SCHEDULER_CHECK_MILLIS", "250");
    std::env::set_var("QUEUE_STORE", "redis");
    std::env::set_var("REDIS_URL", "redis://cache:6380/2");
    std::env::set_var("MAX_HOLDS_PER_USER", "2");
    std::env::set_var("ISSUE_RATE_PER_MIN", "30");
    std::env::set_var("TRUSTED_PROXIES", "10.0.0.0/8,192.168.0.1");
    std::env::set_var("IDEMPOTENCY_TTL_SECS", "3600");
    std::env::set_var("ADMIN_TOKEN", "0123456789abcdef0123");
    std::env::set_var("STORE", "memory");
    std::env::set_var("DATABASE_POOL_SIZE", "3");
    std::env::set_var("DATABASE_CONNECT_TIMEOUT_MILLIS", "400");
    std::env::set_var("QUEUE_POLL_CACHE_MILLIS", "0");
    let s = Settings::from_flags(Vec::<String>::new()).unwrap();
    assert_eq!(s.poll_cache_settings(), None, "0 turns the poll cache off");
    assert_eq!(s.database.database_url, "postgres://env@db/concert");
    assert_eq!(s.bind_addr, "0.0.0.0:9000");
    assert_eq!(
        (s.queue_admit_interval_secs, s.queue_admit_batch, s.queue_active_ttl_secs, s.seat_hold_secs),
        (5, 7, 30, 20)
    );
    assert_eq!((s.queue_max_active, s.scheduler_check_millis), (Some(40), 250));
    assert!(!s.scheduler_enabled);
    assert_eq!((s.store, s.queue_store), (StoreKind::Memory, QueueStoreKind::Redis));
    assert_eq!(s.redis.redis_url, "redis://cache:6380/2");
    assert_eq!((s.max_holds_per_user, s.issue_rate_per_min, s.idempotency_ttl_secs), (2, 30, 3600));
    assert_eq!(s.trusted_proxies.iter().map(ToString::to_string).collect::<Vec<_>>(), ["10.0.0.0/8", "192.168.0.1/32"]);
    assert_eq!(s.admin_token.as_deref(), Some("0123456789abcdef0123"));
    assert_eq!((s.database.database_pool_size, s.database.database_connect_timeout_millis), (3, 400));
    assert_eq!(s.database.store_slots(), 3, "never more slots than connections");
    assert_eq!(s.starting_queue_settings().admission.batch, 7);
    assert_eq!(s.policy().max_holds_per_user, 2);

    // ...and a flag wins over it.
    let s = Settings::from_flags([
        "--database-url",
        "postgres://flag@db/concert",
        "--bind-addr",
        "127.0.0.1:0",
        "--queue-admit-interval-secs",
        "2",
        "--scheduler-enabled",
        "true",
        "--store",
        "postgres",
        "--queue-store",
        "postgres",
        "--max-holds-per-user",
        "9",
        "--queue-poll-cache-millis",
        "100",
    ])
    .unwrap();
    assert_eq!(s.database.database_url, "postgres://flag@db/concert");
    assert_eq!(s.bind_addr, "127.0.0.1:0");
    assert_eq!(s.queue_admit_interval_secs, 2);
    assert_eq!(s.queue_admit_batch, 7, "still from the environment");
    assert!(s.scheduler_enabled);
    assert_eq!((s.store, s.queue_store, s.max_holds_per_user), (StoreKind::Postgres, QueueStoreKind::Postgres, 9));
    assert_eq!(s.poll_cache_settings().map(|c| c.cursor_ttl), Some(std::time::Duration::from_millis(100)));

    // Tests parse flags alone: the environment set above does not leak in.
    let s = Settings::from_flags_only(["--store", "memory"]).unwrap();
    assert_eq!(s.database.database_url, "postgres://postgres@127.0.0.1:5432/concert");
    assert_eq!((s.queue_admit_batch, s.admin_token.as_deref()), (100, None));

    // A bad value names the variable to fix.
    std::env::set_var("QUEUE_ADMIT_BATCH", "0");
    let e = Settings::from_flags(Vec::<String>::new()).unwrap_err().to_string();
    assert!(e.contains("QUEUE_ADMIT_BATCH"), "{e}");

    // The one-shot commands read the database settings the same way.
    for v in VARS {
        std::env::remove_var(v);
    }
    std::env::set_var("DATABASE_URL", "postgres://env@db/seed");
    let cli = Cli::try_parse_from(["concert", "seed-demo"]).unwrap();
    match cli.command {
        Command::SeedDemo(db) => assert_eq!(db.database_url, "postgres://env@db/seed"),
        other => panic!("parsed {other:?}"),
    }
    std::env::remove_var("DATABASE_URL");
}
