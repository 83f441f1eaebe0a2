//! Settings parsing: flags, their environment fallbacks (a flag wins), and the contract's
//! defaults. One test function, because the environment is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use app::{Cli, Command, Settings, StoreKind};
use clap::Parser as _;

const VARS: [&str; 14] = [
    "DATABASE_URL",
    "BIND_ADDR",
    "QUEUE_ADMIT_INTERVAL_SECS",
    "QUEUE_ADMIT_BATCH",
    "QUEUE_ACTIVE_TTL_SECS",
    "QUEUE_MAX_ACTIVE",
    "SEAT_HOLD_SECS",
    "SCHEDULER_ENABLED",
    "SCHEDULER_CHECK_MILLIS",
    "STORE",
    "DATABASE_POOL_SIZE",
    "DATABASE_CONNECT_TIMEOUT_SECS",
    "LOG_FORMAT",
    "QUEUE_POLL_CACHE_MILLIS",
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
    assert_eq!((s.store, s.queue_max_active, s.scheduler_check_millis), (StoreKind::Postgres, None, 1000));
    assert_eq!(s.queue_cache_settings().map(|c| c.cursor_ttl), Some(time::Duration::milliseconds(250)));

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
    std::env::set_var("STORE", "memory");
    std::env::set_var("DATABASE_POOL_SIZE", "3");
    std::env::set_var("DATABASE_CONNECT_TIMEOUT_SECS", "4");
    std::env::set_var("QUEUE_POLL_CACHE_MILLIS", "0");
    let s = Settings::from_flags(Vec::<String>::new()).unwrap();
    assert_eq!(s.queue_cache_settings(), None, "0 turns the poll cache off");
    assert_eq!(s.database.database_url, "postgres://env@db/concert");
    assert_eq!(s.bind_addr, "0.0.0.0:9000");
    assert_eq!(
        (s.queue_admit_interval_secs, s.queue_admit_batch, s.queue_active_ttl_secs, s.seat_hold_secs),
        (5, 7, 30, 20)
    );
    assert_eq!((s.queue_max_active, s.scheduler_check_millis), (Some(40), 250));
    assert!(!s.scheduler_enabled);
    assert_eq!(s.store, StoreKind::Memory);
    assert_eq!((s.database.database_pool_size, s.database.database_connect_timeout_secs), (3, 4));
    assert_eq!(s.policy().admission.batch, 7);
    assert_eq!(s.database.pg_config().pool_size, 3);

    // ...and a flag wins over it.
    let s = Settings::from_flags([
        "--database-url",
        "postgres://flag@db/concert",
        "--bind-addr",
        "127.0.0.1:0",
        "--queue-admit-interval-secs",
        "2",
        "--queue-admit-batch",
        "9",
        "--queue-active-ttl-secs",
        "60",
        "--queue-max-active",
        "10",
        "--seat-hold-secs",
        "15",
        "--scheduler-enabled",
        "true",
        "--scheduler-check-millis",
        "100",
        "--store",
        "postgres",
        "--database-pool-size",
        "5",
        "--database-connect-timeout-secs",
        "1",
        "--queue-poll-cache-millis",
        "100",
    ])
    .unwrap();
    assert_eq!(s.database.database_url, "postgres://flag@db/concert");
    assert_eq!(s.bind_addr, "127.0.0.1:0");
    assert_eq!(
        (s.queue_admit_interval_secs, s.queue_admit_batch, s.queue_active_ttl_secs, s.seat_hold_secs),
        (2, 9, 60, 15)
    );
    assert_eq!((s.queue_max_active, s.scheduler_check_millis), (Some(10), 100));
    assert!(s.scheduler_enabled);
    assert_eq!(s.store, StoreKind::Postgres);
    assert_eq!((s.database.database_pool_size, s.database.database_connect_timeout_secs), (5, 1));
    assert_eq!(s.queue_cache_settings().map(|c| c.cursor_ttl), Some(time::Duration::milliseconds(100)));

    // The full command line: subcommands and the database flags of the one-shot commands.
    let cli = Cli::try_parse_from(["concert", "serve", "--queue-admit-batch", "3"]).unwrap();
    let Command::Serve(s) = cli.command else { panic!("serve expected") };
    assert_eq!(s.queue_admit_batch, 3);
    for cmd in ["migrate", "seed-demo", "check-invariants"] {
        let cli = Cli::try_parse_from(["concert", cmd, "--database-url", "postgres://x@y/z"]).unwrap();
        let db = match cli.command {
            Command::Migrate(db) | Command::SeedDemo(db) | Command::CheckInvariants(db) => db,
            Command::Serve(_) => panic!("{cmd} parsed as serve"),
        };
        assert_eq!(db.database_url, "postgres://x@y/z");
    }
    assert!(Cli::try_parse_from(["concert", "serve", "--queue-admit-batch", "0"]).is_err());
    assert!(Cli::try_parse_from(["concert", "frobnicate"]).is_err());

    for v in VARS {
        std::env::remove_var(v);
    }
}
