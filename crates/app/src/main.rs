//! `concert`: parse the command line, set up logging once, run the command.

use std::process::ExitCode;

use app::{commands, telemetry, Cli};
use clap::Parser as _;

#[actix_web::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = telemetry::init(&cli.log) {
        eprintln!("error: {e:#}");
        return ExitCode::FAILURE;
    }
    match commands::run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "concert failed");
            ExitCode::FAILURE
        }
    }
}
