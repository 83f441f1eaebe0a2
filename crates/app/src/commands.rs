//! The one-shot commands and the dispatch of every command.

use std::process::ExitCode;

use anyhow::Context as _;
use domain::clock::{Clock as _, SystemClock};
use domain::demo;

use crate::settings::{Command, DatabaseSettings};
use crate::startup::{prepare_database, Application};

/// Runs one command of the binary. Needs a Tokio runtime (for `serve`).
///
/// # Errors
/// Whatever stopped the command; `check-invariants` reports violations through its exit code
/// instead.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(settings) => {
            Application::build(settings).await?.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(db) => blocking(move || migrate(&db)).await,
        Command::SeedDemo(db) => blocking(move || seed_demo(&db)).await,
        Command::CheckInvariants(db) => blocking(move || check_invariants(&db)).await,
    }
}

/// Diesel is synchronous: one-shot commands run on the blocking pool like every store call.
async fn blocking<F>(f: F) -> anyhow::Result<ExitCode>
where
    F: FnOnce() -> anyhow::Result<ExitCode> + Send + 'static,
{
    tokio::task::spawn_blocking(f).await.context("the command's task failed")?
}

/// `concert migrate`.
///
/// # Errors
/// When the database cannot be created, reached or migrated.
pub fn migrate(db: &DatabaseSettings) -> anyhow::Result<ExitCode> {
    prepare_database(db)?;
    Ok(ExitCode::SUCCESS)
}

/// `concert seed-demo`: idempotent.
///
/// # Errors
/// When the database cannot be prepared or written.
pub fn seed_demo(db: &DatabaseSettings) -> anyhow::Result<ExitCode> {
    let store = prepare_database(db)?;
    let inserted = store.seed(&demo::catalogue(SystemClock.now()))?;
    if inserted {
        tracing::info!("demo catalogue inserted");
    } else {
        tracing::info!("demo catalogue already present; nothing to do");
    }
    Ok(ExitCode::SUCCESS)
}

/// `concert check-invariants`: prints one violation per line on stdout; exit code 1 if any.
///
/// # Errors
/// When the database cannot be reached or read.
pub fn check_invariants(db: &DatabaseSettings) -> anyhow::Result<ExitCode> {
    let store = adapters_postgres::PgStore::connect(&db.pg_config()).context("connecting to the database")?;
    let violations = adapters_postgres::invariants::check(&store).context("checking invariants")?;
    if violations.is_empty() {
        println!("ok: every invariant holds");
        return Ok(ExitCode::SUCCESS);
    }
    for v in &violations {
        println!("violation: {v}");
    }
    println!("{} invariant violation(s)", violations.len());
    Ok(ExitCode::FAILURE)
}
