//! `concert`: parse the command line, set up logging once, run the command.

use std::process::ExitCode;

use app::{commands, telemetry, Cli};
use clap::Parser as _;

/// jemalloc rather than glibc's malloc: a token issue boxes futures of more than a kilobyte,
/// and each such allocation made glibc merge its free lists of small chunks
/// (`malloc_consolidate`); malloc took about a fifth of the server's time under load. An A/B
/// on one Redis cut the server's CPU per issue by a fifth at 64 connections with the same
/// tails (docs/benchmarks.md, "Allocator"). mimalloc cut it too but doubled issue's p99.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Kept to the end: dropping it flushes the log lines still queued.
    let _log = match telemetry::init(&cli.log) {
        Ok(guard) => guard,
        Err(e) => {
            // stderr may be gone; there is nowhere else to say it.
            let _ = std::io::Write::write_all(&mut std::io::stderr(), format!("error: {e:#}\n").as_bytes());
            return ExitCode::FAILURE;
        }
    };
    match commands::run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            // One line, read by a person: libpq's multi-line messages are joined, and the text is
            // logged as it reads (not as an escaped string).
            let message = format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ");
            tracing::error!(error = %message, "concert failed");
            ExitCode::FAILURE
        }
    }
}
