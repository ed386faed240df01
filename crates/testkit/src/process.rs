//! The workspace's binaries as child processes that tests can kill -9 and
//! restart, and the readiness wait that goes with them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A binary of the workspace, built by `cargo test` next to the running test.
pub fn bin(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent().and_then(Path::parent).expect("target dir").join(name)
}

/// A loopback address no one listens on right now.
pub fn free_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port")
}

/// Where test services write their logs: `$BANDVOTE_STATE/logs` or the temp dir.
pub fn log_dir() -> PathBuf {
    let dir = std::env::var_os("BANDVOTE_STATE").map(|s| PathBuf::from(s).join("logs")).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&dir).expect("log dir");
    dir
}

/// A child process started from a fixed command line, restartable after kill -9.
pub struct Service {
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    child: Option<Child>,
}

impl Service {
    pub fn new(name: &str, program: PathBuf, args: Vec<String>, envs: Vec<(String, String)>) -> Self {
        Self { name: name.to_owned(), program, args, envs, cwd: None, child: None }
    }

    /// Start it; stderr and stdout go to `<log_dir>/<name>.log` (appended).
    /// Its log filter: its own `RUST_LOG` if set, else `BANDVOTE_TEST_RUST_LOG`
    /// from the test's environment (to trace one run), else `warn`.
    pub fn start(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_dir().join(format!("{}.log", self.name))).expect("log file");
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).envs(self.envs.iter().cloned()).stdout(log.try_clone().expect("log fd")).stderr(log).stdin(Stdio::null());
        if !self.envs.iter().any(|(k, _)| k == "RUST_LOG") {
            cmd.env("RUST_LOG", std::env::var("BANDVOTE_TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()));
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        self.child = Some(cmd.spawn().unwrap_or_else(|e| panic!("spawn {}: {e}", self.program.display())));
    }

    /// Set environment variable `key` for the next start (replacing it if set).
    pub fn set_env(&mut self, key: &str, value: impl Into<String>) {
        self.envs.retain(|(k, _)| k != key);
        self.envs.push((key.to_owned(), value.into()));
    }

    /// Started and not exited since.
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// SIGKILL, and reap.
    pub fn kill_9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill_9();
    }
}

/// One HTTP/1.0 GET; the status code, if the server answered.
pub async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(addr)).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes()).await.ok()?;
    let mut head = [0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut head)).await.ok()?.ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// Wait until `GET http://addr/readyz` answers 200; panics after `within`.
pub async fn wait_ready(addr: SocketAddr, within: Duration) {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if http_status(addr, "/readyz").await == Some(200) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("not ready within {within:?}: http://{addr}/readyz");
}
