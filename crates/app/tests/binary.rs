//! The built binary stops cleanly (exit 0) on SIGTERM and on SIGINT.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Starts `concert serve --store memory` on a free port; returns it and its port, read from the
/// `listening on` log line.
fn start() -> (Child, u16) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_concert"))
        .args(["serve", "--store", "memory", "--bind-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn concert");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keeps draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                let port = rest.split_whitespace().next().and_then(|a| a.rsplit(':').next()?.parse::<u16>().ok());
                let _ = tx.send(port);
            }
        }
    });
    let port = rx.recv_timeout(Duration::from_secs(30)).expect("server logs its address").expect("a port");
    (child, port)
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    panic!("the server did not stop in time");
}

fn stops_cleanly_on(signal: &str) {
    let (mut child, port) = start();
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let live = http.get(format!("http://127.0.0.1:{port}/health/live")).send().unwrap();
    assert_eq!(live.status(), 200);
    let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = wait_exit(&mut child);
    assert!(status.success(), "exit status after {signal}: {status:?}");
}

#[test]
fn sigterm_stops_gracefully_with_exit_code_zero() {
    stops_cleanly_on("-TERM");
}

#[test]
fn sigint_stops_gracefully_with_exit_code_zero() {
    stops_cleanly_on("-INT");
}
