//! The one-shot commands and the dispatch of every command.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use adapters_local::{OsRandom, SystemClock};
use anyhow::Context as _;
use domain::clock::Clock as _;

use crate::demo;
use crate::settings::{Command, DatabaseSettings, DrawOrderArgs};
use crate::startup::{pg_config, prepare_database, Application};

/// Runs one command of the binary. Needs a Tokio runtime (for `serve`).
///
/// # Errors
/// Whatever stopped the command; `check-invariants` reports violations through its exit code
/// instead.
pub async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(settings) => {
            Application::build(*settings).await?.run_until_stopped().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Migrate(db) => blocking(move || migrate(&db)).await,
        Command::SeedDemo(db) => blocking(move || seed_demo(&db)).await,
        Command::CheckInvariants(db) => blocking(move || check_invariants(&db)).await,
        Command::DrawOrder(args) => draw_order(&args, &mut std::io::stdout().lock()),
    }
}

/// `concert draw-order`: one line per entrant, `<index> <position>`, index 0 the entrant with
/// the byte-wise smallest token value.
///
/// # Errors
/// When the output cannot be written.
pub fn draw_order(args: &DrawOrderArgs, out: &mut impl std::io::Write) -> anyhow::Result<ExitCode> {
    for (i, position) in domain::room::drawn_positions(args.seed, args.entrants).into_iter().enumerate() {
        writeln!(out, "{i} {position}").context("writing the order")?;
    }
    Ok(ExitCode::SUCCESS)
}

/// diesel is synchronous: one-shot commands run on the blocking pool like every store call.
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
    let store = prepare_database(db)?;
    close(store);
    Ok(ExitCode::SUCCESS)
}

/// `concert seed-demo`: idempotent; keeps at least three future schedules per demo concert.
///
/// # Errors
/// When the database cannot be prepared or written.
pub fn seed_demo(db: &DatabaseSettings) -> anyhow::Result<ExitCode> {
    let store = prepare_database(db)?;
    let ports = store.ports(Arc::new(SystemClock), Arc::new(OsRandom));
    let seeded = demo::ensure(ports.catalogue.as_ref(), SystemClock.now()).context("seeding the demo catalogue")?;
    drop(ports);
    if seeded == demo::Seeded::default() {
        tracing::info!("demo catalogue present with enough future schedules; nothing to do");
    } else {
        tracing::info!(concerts = seeded.concerts, schedules = seeded.schedules, "demo catalogue seeded");
    }
    close(store);
    Ok(ExitCode::SUCCESS)
}

/// `concert check-invariants`: prints one violation per line on stdout; exit code 1 if any.
/// A closed stdout (`| head -1`) ends the report early but never panics.
///
/// # Errors
/// When the database cannot be reached or read.
pub fn check_invariants(db: &DatabaseSettings) -> anyhow::Result<ExitCode> {
    let store = adapters_postgres::PgStore::new(&pg_config(db))
        .context("DATABASE_URL (--database-url) is not a usable PostgreSQL URL")?;
    let violations = adapters_postgres::invariants::check(&store).context("checking invariants")?;
    close(store);
    let mut out = std::io::stdout().lock();
    if violations.is_empty() {
        let _ = writeln!(out, "ok: every invariant holds");
        return Ok(ExitCode::SUCCESS);
    }
    for v in &violations {
        if writeln!(out, "violation: {v}").is_err() {
            break;
        }
    }
    let _ = writeln!(out, "{} invariant violation(s)", violations.len());
    Ok(ExitCode::FAILURE)
}

/// Closes the pool on this thread before the process exits (see `PgStore::close`).
fn close(store: adapters_postgres::PgStore) {
    if !store.close(std::time::Duration::from_secs(5)) {
        tracing::warn!("database connections still in use at exit");
    }
}
