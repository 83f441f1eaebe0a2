//! The generator itself: a small on-sale (200 buyers, 40 seats on two dates) played against a
//! `concert serve --store memory` of the test's own on a free port, and its report read back.
//! It must say every target met, and its figures must agree with each other; a chaos hook runs.

#![allow(clippy::unwrap_used, reason = "test: a failed expectation should panic")]

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

const ADMIN: &str = "onsale-test-operator-secret";

/// The `concert` binary beside this test's, or `CONCERT_BIN`. `cargo test -p onsale` does not
/// rebuild another package's binary, so it is built here (a no-op when current), as the
/// black-box tests do.
fn concert_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CONCERT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap();
    let profile = exe.parent().and_then(|deps| deps.parent()).unwrap().to_path_buf();
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--quiet", "-p", "app", "--bin", "concert"]);
    if profile.file_name().is_some_and(|p| p == "release") {
        cmd.arg("--release");
    }
    assert!(cmd.status().unwrap().success(), "building concert failed");
    profile.join("concert")
}

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn ready(base: &str) -> bool {
    let Ok(mut s) = std::net::TcpStream::connect(base.trim_start_matches("http://")) else { return false };
    use std::io::{Read as _, Write as _};
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /health/ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.starts_with("HTTP/1.1 200")
}

#[test]
fn a_small_on_sale_meets_every_target() {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let dir = std::env::temp_dir().join(format!("onsale-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = std::fs::File::create(dir.join("serve.log")).unwrap();
    let _server = Server(
        Command::new(concert_bin())
            .args(["serve", "--store", "memory"])
            .env_remove("DATABASE_URL")
            .env_remove("QUEUE_STORE")
            .env("ADMIN_TOKEN", ADMIN)
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            .env("SCHEDULER_CHECK_MILLIS", "200")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let began = Instant::now();
    while !ready(&base) {
        assert!(began.elapsed() < Duration::from_secs(20), "the server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }

    let (json, png) = (dir.join("report.json"), dir.join("timeline.png"));
    let marker = dir.join("chaos-ran");
    let out = Command::new(env!("CARGO_BIN_EXE_onsale"))
        .args(["--base-url", &base, "--buyers", "200", "--join-rate", "200", "--seats", "40"])
        .args(["--seats-per-schedule", "20", "--admit-batch", "40", "--abandon-after-secs", "0"])
        .args(["--max-secs", "60", "--seed", "7"])
        // A harmless hook, one second after the opening: it runs, through `sh -c`.
        .arg("--chaos")
        .arg(format!("1:touch '{}'", marker.display()))
        .arg("--json")
        .arg(&json)
        .arg("--png")
        .arg(&png)
        .env("ADMIN_TOKEN", ADMIN)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "onsale failed: {}\n{text}", String::from_utf8_lossy(&out.stderr));
    assert!(began.elapsed() < Duration::from_secs(60));

    let report: Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let targets = report["targets"].as_array().unwrap();
    assert_eq!(targets.len(), 5, "{text}");
    for t in targets {
        assert_eq!(t["met"], true, "{t}\n{text}");
    }
    // The figures agree with what was asked and with each other.
    assert_eq!(report["buyers"], 200);
    assert_eq!(report["late_buyers"].as_u64(), Some(20), "{text}");
    assert_eq!(report["money"]["payments"], 40);
    assert_eq!(report["money"]["sold"], 40);
    assert_eq!(report["order"]["drawn_entrants"], 180, "{text}");
    // With `abandonAfterSecs` 0 no place is skipped: every token, the abandoning buyers' too
    // (seen by their last look), is admitted by the end, the rest of the line after the sell-out.
    let order = &report["order"];
    assert_eq!(order["entrants_admitted"].as_u64().unwrap() + order["late_admitted"].as_u64().unwrap(), 200, "{text}");
    assert!(text.contains("met    sold out"), "{text}");
    assert!(marker.exists(), "the chaos command did not run\n{text}");
    assert_eq!(report["chaos"][0]["exit"], 0, "{text}");
    // The chart is a PNG.
    let head = std::fs::read(&png).unwrap();
    assert_eq!(&head[..8], b"\x89PNG\r\n\x1a\n");
    let _ = std::fs::remove_dir_all(&dir);
}
