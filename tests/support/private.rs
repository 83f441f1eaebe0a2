//! Servers of a test's own, on free loopback ports, for the outage and fault tests: a PostgreSQL
//! cluster (`initdb` + `pg_ctl` into a temp directory, run as the `postgres` OS user when the
//! tests run as root) and a `redis-server`. Each is created stopped, so a test can start
//! `concert` first and the store late; each can be crashed and started again, or frozen
//! (SIGSTOP: a hung server, not a dead one) and thawed; each is stopped and removed when dropped.
//! The machine's own servers are never touched: every command names this cluster's data
//! directory or this child's pid.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, signal, TempDir};

/// Where Debian puts PostgreSQL 15's server binaries (`PG_BIN` overrides it).
fn pg_bin(name: &str) -> PathBuf {
    let dir = std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".to_owned());
    PathBuf::from(dir).join(name)
}

fn running_as_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A PostgreSQL cluster in a temp directory, listening on 127.0.0.1 at a free port once
/// started; `trust` authentication for user `postgres`.
#[derive(Debug)]
pub struct PrivatePostgres {
    pub port: u16,
    dir: TempDir,
    as_postgres: bool,
    started: bool,
}

impl PrivatePostgres {
    /// Creates the cluster (`initdb`) without starting it.
    pub fn init() -> Self {
        let dir = TempDir::new("concert-e2e-pg");
        let as_postgres = running_as_root();
        if as_postgres {
            // initdb refuses to run as root; the cluster belongs to the `postgres` user.
            let status = Command::new("chown").arg("postgres:postgres").arg(dir.path()).status().expect("chown");
            assert!(status.success(), "chown of the cluster directory failed");
        }
        let cluster = Self { port: free_port(), dir, as_postgres, started: false };
        let out = cluster
            .command(&pg_bin("initdb"))
            .arg("-D")
            .arg(cluster.data())
            .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"])
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        cluster
    }

    /// Creates the cluster and starts it.
    pub fn running() -> Self {
        let mut cluster = Self::init();
        cluster.start();
        cluster
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    fn command(&self, program: &Path) -> Command {
        let mut cmd = if self.as_postgres {
            let mut cmd = Command::new("runuser");
            cmd.args(["-u", "postgres", "--"]).arg(program);
            cmd
        } else {
            Command::new(program)
        };
        cmd.stdin(Stdio::null());
        cmd
    }

    /// The server's URL, without a database (`postgres://postgres@127.0.0.1:<port>`).
    pub fn server_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// The URL of database `db` on this cluster.
    pub fn url(&self, db: &str) -> String {
        format!("{}/{db}", self.server_url())
    }

    /// Starts the cluster (also again after [`PrivatePostgres::crash`]) and waits until it
    /// accepts connections. No fsync: a crash here is a process crash, not a power cut (the
    /// page cache survives).
    pub fn start(&mut self) {
        let options = format!(
            "-p {} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c fsync=off \
             -c shared_buffers=16MB -c max_connections=60 -c autovacuum=off",
            self.port,
            self.dir.path().display()
        );
        let out = self
            .command(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .arg("-l")
            .arg(self.log())
            .args(["-o", &options, "-w", "-t", "60", "start"])
            .output()
            .expect("run pg_ctl start");
        self.started = true;
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(self.log()).unwrap_or_default()
        );
    }

    /// `pg_ctl stop -m immediate`: every backend killed at once, no checkpoint (the next
    /// start runs crash recovery).
    pub fn crash(&self) {
        let out = self.stop_immediately().expect("run pg_ctl stop");
        assert!(out.status.success(), "pg_ctl stop failed: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn stop_immediately(&self) -> std::io::Result<std::process::Output> {
        self.command(&pg_bin("pg_ctl"))
            .arg("-D")
            .arg(self.data())
            .args(["-m", "immediate", "-w", "-t", "30", "stop"])
            .output()
    }

    /// The postmaster and every process it started (backends, background workers).
    pub fn processes(&self) -> Vec<u32> {
        let pidfile = std::fs::read_to_string(self.data().join("postmaster.pid")).unwrap_or_default();
        let Some(master) = pidfile.lines().next().and_then(|l| l.trim().parse::<u32>().ok()) else {
            return Vec::new();
        };
        let mut pids = vec![master];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // `pid (comm) state ppid ...`; comm may hold spaces, so split after the last ')'.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(master) {
                pids.push(pid);
            }
        }
        pids
    }

    /// SIGSTOP to the whole cluster: connections stay open, the kernel still acknowledges
    /// every packet, and nothing answers (a hung server, not a dead one). Returns the
    /// processes stopped, for [`PrivatePostgres::thaw`].
    pub fn freeze(&self) -> Vec<u32> {
        let pids = self.processes();
        for &pid in &pids {
            signal(pid, "STOP");
        }
        pids
    }

    /// SIGCONT to the processes [`PrivatePostgres::freeze`] stopped.
    pub fn thaw(&self, pids: &[u32]) {
        for &pid in pids {
            signal(pid, "CONT");
        }
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if self.started {
            // A frozen cluster cannot stop: wake it first (harmless when it is running).
            self.thaw(&self.processes());
            let _ = self.stop_immediately();
        }
    }
}

/// A `redis-server` on a free port, started on demand, killed (by its pid) when dropped.
/// Without persistence unless asked ([`PrivateRedis::with_append_only_file`]).
#[derive(Debug)]
pub struct PrivateRedis {
    pub port: u16,
    dir: TempDir,
    child: Option<Child>,
    append_only: bool,
}

impl PrivateRedis {
    /// Picks the port; nothing listens there until [`PrivateRedis::start`].
    pub fn reserve() -> Self {
        Self { port: free_port(), dir: TempDir::new("concert-e2e-redis"), child: None, append_only: false }
    }

    /// With an append-only file fsynced on every write (`appendfsync always`) in its temp
    /// directory, so that a crash and a start again lose nothing.
    pub fn with_append_only_file(mut self) -> Self {
        self.append_only = true;
        self
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Starts the server (also again after [`PrivateRedis::crash`]) and waits until it answers
    /// `PING`.
    pub fn start(&mut self) {
        assert!(self.child.is_none(), "the private redis-server is already running");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--daemonize", "no"])
            .arg("--dir")
            .arg(self.dir.path());
        if self.append_only {
            cmd.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            cmd.args(["--appendonly", "no"]);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server must be installed");
        self.child = Some(child);
        let client = redis::Client::open(self.url()).expect("redis url");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let pong = client
                .get_connection_with_timeout(Duration::from_millis(200))
                .and_then(|mut c| redis::cmd("PING").query::<String>(&mut c));
            if pong.is_ok() {
                return;
            }
            assert!(Instant::now() < deadline, "the private redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The server's process id (it must be running).
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the private redis-server is running").id()
    }

    /// `kill -9` only: no shutdown, nothing written but what is already on disk.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(child.id(), "KILL");
            let _ = child.wait();
        }
    }

    /// SIGSTOP: connections stay open and nothing answers (a hung server, not a dead one).
    pub fn freeze(&self) {
        signal(self.pid(), "STOP");
    }

    /// SIGCONT after [`PrivateRedis::freeze`].
    pub fn thaw(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A frozen server dies of SIGKILL too; woken first all the same.
            signal(child.id(), "CONT");
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
