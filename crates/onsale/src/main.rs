//! `onsale`: see the library's documentation. Exits 0 when every target was met, 1 when one
//! was missed, 2 when the run could not be played.

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let args = onsale::args::Args::parse();
    // Two workers: the client should leave the machine's cores to the service it measures.
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("onsale: cannot start the runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(onsale::run(args)) {
        Ok(report) => {
            print!("{}", report.text());
            if report.all_met() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("onsale: {e:#}");
            ExitCode::from(2)
        }
    }
}
