//! The built binary: it stops cleanly (exit 0) on SIGTERM and on SIGINT, and logs JSON lines
//! when asked to.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "test code: a failed expectation must fail the test"
)]

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Starts `concert serve --store memory` on a free port; returns it and its port, read from the
/// `listening on` log line.
fn start() -> (Child, u16) {
    let (child, lines) = spawn_serve("text");
    let port = lines
        .iter()
        .find_map(|line| {
            let rest = line.split("listening on http://").nth(1)?;
            rest.split_whitespace().next()?.rsplit(':').next()?.parse::<u16>().ok()
        })
        .expect("a port in the log");
    (child, port)
}

/// Spawns `concert serve --store memory` on port 0 with `LOG_FORMAT=format`; returns it and its
/// log lines up to and including the `listening on` one.
fn spawn_serve(format: &str) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_concert"))
        .args(["serve", "--store", "memory", "--bind-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", format)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn concert");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    // Keeps draining stderr so the child never blocks on a full pipe.
    std::thread::spawn(move || {
        let mut seen = Vec::new();
        let mut sent = false;
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if !sent {
                seen.push(line.clone());
                if line.contains("listening on http://") {
                    let _ = tx.send(std::mem::take(&mut seen));
                    sent = true;
                }
            }
        }
    });
    let lines = rx.recv_timeout(Duration::from_secs(30)).expect("server logs its address");
    (child, lines)
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

#[test]
fn log_format_json_writes_one_json_object_per_line() {
    let (mut child, lines) = spawn_serve("json");
    let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
    let status = wait_exit(&mut child);
    assert!(status.success(), "{status:?}");
    for line in &lines {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["timestamp"].is_string(), "{line}");
    }
    let listening = lines.last().unwrap();
    let v: serde_json::Value = serde_json::from_str(listening).unwrap();
    assert!(v["fields"]["addr"].as_str().unwrap().starts_with("127.0.0.1:"), "{listening}");
}

/// Spawns `concert serve --store memory` on port 0 logging every request, reads its stderr up to
/// the `listening on` line and returns the child, its port and the stderr reader (not read any
/// further).
fn spawn_logging() -> (Child, u16, BufReader<std::process::ChildStderr>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_concert"))
        .args(["serve", "--store", "memory", "--bind-addr", "127.0.0.1:0"])
        .env("RUST_LOG", "info")
        .env("LOG_FORMAT", "text")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn concert");
    let mut reader = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    let port = loop {
        line.clear();
        assert!(reader.read_line(&mut line).unwrap() > 0, "the server exited before listening");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().unwrap().rsplit(':').next().unwrap().parse::<u16>().unwrap();
        }
    };
    (child, port, reader)
}

/// Requests that each write an access-log line: all must be answered.
fn hammer(port: u16, n: usize) {
    let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    for i in 0..n {
        let res = http.get(format!("http://127.0.0.1:{port}/health/live")).send().unwrap();
        assert_eq!(res.status(), 200, "request {i}");
        if i % 10 == 0 {
            let res = http
                .post(format!("http://127.0.0.1:{port}/queue/tokens"))
                .json(&serde_json::json!({ "userId": uuid::Uuid::new_v4() }))
                .send()
                .unwrap();
            assert_eq!(res.status(), 201, "issue {i}");
        }
    }
}

/// A log reader that goes away (`concert serve 2>&1 | head -1`, or a `| grep` that exits) never
/// takes the server down: requests are answered and SIGINT / SIGTERM still stop it cleanly.
#[test]
fn a_closed_log_pipe_never_stops_requests_or_shutdown() {
    for signal in ["-INT", "-TERM"] {
        let (mut child, port, reader) = spawn_logging();
        drop(reader);
        hammer(port, 300);
        let sent = Command::new("kill").args([signal, &child.id().to_string()]).status().unwrap();
        assert!(sent.success());
        let status = wait_exit(&mut child);
        assert!(status.success(), "exit status after {signal} with a closed log pipe: {status:?}");
    }
}

/// A log reader that stops reading (the pipe fills up) never blocks requests or shutdown: lines
/// that cannot be written are dropped.
#[test]
fn a_full_log_pipe_never_blocks_requests_or_shutdown() {
    let (mut child, port, reader) = spawn_logging();
    // About 2,200 access lines of ~200 bytes: several times a pipe's 64 KiB buffer.
    hammer(port, 2_000);
    let sent = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let status = wait_exit(&mut child);
    assert!(status.success(), "exit status with a full log pipe: {status:?}");
    drop(reader);
}
