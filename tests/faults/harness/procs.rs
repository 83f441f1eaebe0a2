//! A `concert serve` a fault test can `kill -9` and start again on the same settings: stopped
//! when dropped, also when the test panics, and a failing test prints the tail of its log. The
//! binary, ports, temp dirs, signals and the private servers are `tests/support`'s.

use std::fs;
use std::io::Read as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{concert_bin, free_port, signal, TempDir};

/// A running `concert serve`, its settings kept so that it can be killed and started again.
pub struct Concert {
    child: Option<Child>,
    env: Vec<(String, String)>,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Concert {
    /// Starts `concert serve` with `env` (nothing is inherited from the developer's
    /// environment but `PATH` and `HOME`) and waits until `/health/ready` answers 200.
    pub fn start(env: &[(&str, &str)]) -> Self {
        let dir = TempDir::new("concert-faults-log");
        let mut c = Self {
            child: None,
            env: env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            port: 0,
            log: dir.path().join("server.log"),
            _dir: dir,
        };
        c.spawn();
        c
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        self.port = free_port();
        let log = fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("open server log");
        let mut cmd = Command::new(concert_bin());
        cmd.arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", std::env::var("HOME").unwrap_or_else(|_| "/tmp".into()))
            .env("BIND_ADDR", format!("127.0.0.1:{}", self.port))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        self.child = Some(cmd.spawn().expect("spawn concert serve"));
        // Ready, not only live: the schema is migrated and every store answers.
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) {
                use std::io::Write as _;
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = s.write_all(b"GET /health/ready HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
                let mut buf = String::new();
                let _ = s.read_to_string(&mut buf);
                if buf.starts_with("HTTP/1.1 200") {
                    return;
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("concert serve exited at start-up ({status}):\n{}", self.log_tail(40));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("concert serve was not ready within 60 s:\n{}", self.log_tail(40));
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `kill -9`: no graceful stop, no flushing, connections cut mid-request.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL");
            let _ = child.wait();
        }
    }

    /// Starts it again with the same settings, on a new port.
    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    /// The last `n` lines of the server's log.
    pub fn log_tail(&self, n: usize) -> String {
        let text = fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }
}

impl Drop for Concert {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "TERM");
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline && matches!(child.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- last lines of the concert log ----\n{}", self.log_tail(60));
        }
    }
}
