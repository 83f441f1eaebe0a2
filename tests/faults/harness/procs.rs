//! The processes a fault test starts and breaks: the `concert` binary, a private PostgreSQL
//! cluster, a private Redis. Each one is stopped and its files removed when dropped, also when
//! the test panics; a failing test prints the tail of the server's log.

use std::fs;
use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use super::rand_hex;

/// The `concert` binary: `CONCERT_BIN`, else the one cargo builds next to this test (built
/// first, once per run: `cargo test -p concert-e2e` does not build another package's binary).
pub fn concert_bin() -> PathBuf {
    if let Ok(p) = std::env::var("CONCERT_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("test exe path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    static BUILD: Once = Once::new();
    BUILD.call_once(|| {
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "app", "--bin", "concert"]);
        if profile_dir.file_name().is_some_and(|p| p == "release") {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the concert binary failed");
    });
    profile_dir.join("concert")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind :0").local_addr().expect("local addr").port()
}

/// A fresh directory under the system's temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", rand_hex(8)));
        fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Sends `signal` (`-STOP`, `-CONT`, `-KILL`, `-TERM`) to one process id.
pub fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill").args([signal, &pid.to_string()]).stderr(Stdio::null()).status();
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// Runs `cmd` as the `postgres` OS user when this process is root (initdb and the server
/// refuse to run as root), else as ourselves.
fn as_postgres(program: &Path, args: &[&str]) -> Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    };
    cmd.args(args).stdin(Stdio::null()).output().unwrap_or_else(|e| panic!("run {}: {e}", program.display()))
}

// ---- the concert binary ---------------------------------------------------------------------

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
            log: dir.0.join("server.log"),
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
            signal(child.id(), "-KILL");
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
            signal(child.id(), "-TERM");
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

/// Runs a one-shot `concert` command (`seed-demo`, `check-invariants`) on `db_url`.
pub fn concert_command(command: &str, db_url: &str) -> Output {
    Command::new(concert_bin())
        .arg(command)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("run concert {command}: {e}"))
}

// ---- a private PostgreSQL cluster -----------------------------------------------------------

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// A PostgreSQL 15 cluster of our own in a temp dir, on a free port: it can be stopped,
/// crashed and frozen without touching the machine's server.
pub struct PgCluster {
    pub port: u16,
    data: PathBuf,
    _dir: TempDir,
}

impl PgCluster {
    pub fn start() -> Self {
        let dir = TempDir::new("concert-faults-pg");
        let data = dir.0.join("data");
        if is_root() {
            let st = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&dir.0).status().expect("chown");
            assert!(st.success(), "chown the cluster dir to postgres");
        }
        let pg = Path::new(PG_BIN);
        let data_s = data.to_string_lossy().into_owned();
        let out = as_postgres(
            &pg.join("initdb"),
            &["-D", &data_s, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"],
        );
        assert!(out.status.success(), "initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        let cluster = Self { port: free_port(), data, _dir: dir };
        cluster.pg_ctl_start();
        cluster
    }

    fn pg_ctl_start(&self) {
        let data_s = self.data.to_string_lossy().into_owned();
        // No fsync: a crash here is a process crash, not a power cut (the page cache survives).
        let opts = format!(
            "-p {} -k {data_s} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=60 \
             -c shared_buffers=16MB -c autovacuum=off",
            self.port
        );
        let log = self.data.join("server.log").to_string_lossy().into_owned();
        let out =
            as_postgres(&Path::new(PG_BIN).join("pg_ctl"), &["-D", &data_s, "-l", &log, "-o", &opts, "-w", "start"]);
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            self.log_tail()
        );
    }

    fn log_tail(&self) -> String {
        fs::read_to_string(self.data.join("server.log")).unwrap_or_default()
    }

    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// `pg_ctl stop -m immediate`: every backend killed at once, no checkpoint (the next
    /// start runs crash recovery).
    pub fn crash(&self) {
        let data_s = self.data.to_string_lossy().into_owned();
        let out = as_postgres(&Path::new(PG_BIN).join("pg_ctl"), &["-D", &data_s, "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Starts it again after [`PgCluster::crash`].
    pub fn restart(&self) {
        self.pg_ctl_start();
    }

    /// The postmaster and every process it started (backends, background workers).
    fn processes(&self) -> Vec<u32> {
        let pidfile = fs::read_to_string(self.data.join("postmaster.pid")).unwrap_or_default();
        let Some(master) = pidfile.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else {
            return Vec::new();
        };
        let mut pids = vec![master];
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let stat = fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }

    /// SIGSTOP to the whole cluster: connections stay open, the kernel still acknowledges
    /// every packet, and nothing answers (a hung server, not a dead one).
    pub fn freeze(&self) -> Vec<u32> {
        let pids = self.processes();
        for &pid in &pids {
            signal(pid, "-STOP");
        }
        pids
    }

    /// SIGCONT to the processes [`PgCluster::freeze`] stopped.
    pub fn thaw(&self, pids: &[u32]) {
        for &pid in pids {
            signal(pid, "-CONT");
        }
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        // A frozen cluster cannot stop: wake it first (harmless when it is running).
        let pids = self.processes();
        self.thaw(&pids);
        let data_s = self.data.to_string_lossy().into_owned();
        let _ = as_postgres(&Path::new(PG_BIN).join("pg_ctl"), &["-D", &data_s, "-m", "immediate", "-w", "stop"]);
    }
}

// ---- a private Redis --------------------------------------------------------------------------

/// A `redis-server` of our own on a free port, with an fsync-always append-only file in a temp
/// dir, so that a crash and restart lose nothing.
pub struct RedisProc {
    child: Option<Child>,
    pub port: u16,
    dir: TempDir,
}

impl RedisProc {
    pub fn start() -> Self {
        let mut r = Self { child: None, port: free_port(), dir: TempDir::new("concert-faults-redis") };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let port = self.port.to_string();
        let dir = self.dir.0.to_string_lossy().into_owned();
        let child = Command::new("redis-server")
            .args(["--port", &port, "--bind", "127.0.0.1", "--dir", &dir, "--save", ""])
            .args(["--appendonly", "yes", "--appendfsync", "always", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("private redis-server did not answer PING");
    }

    /// Whether it answers PING within a second.
    pub fn ping(&self) -> bool {
        use std::io::Write as _;
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.port)) else { return false };
        let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
        if s.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0_u8; 7];
        s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// `kill -9` only.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-KILL");
            let _ = child.wait();
        }
    }

    /// Starts it after [`RedisProc::crash`].
    pub fn start_again(&mut self) {
        self.spawn();
    }
}

impl Drop for RedisProc {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "-CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
