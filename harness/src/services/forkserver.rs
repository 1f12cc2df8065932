//! The Langflow fork server (`[langflow] start = "fork"`): one Python process of the run imports
//! Langflow once and forks a worker per tenant, so N tenants cost one import (~20 s, ~450 MB)
//! instead of N. Workers apply their own environment and build their app after the fork
//! (`harness/python/langflow_forkserver.py` documents what it resets and what it refuses).
//!
//! Invariants:
//! - a worker is a process like any other of the run: it leads its own process group, carries the
//!   run marker (inherited from the server's environment), and is stopped, killed and probed by
//!   pid; it dies with the server (`PR_SET_PDEATHSIG`);
//! - the server refuses to fork when the import left threads, a running loop, open sockets or an
//!   unknown environment scan behind, or when a worker's environment differs from the server's in
//!   a variable the import read: the harness then starts tenants as their own processes and says
//!   why, once;
//! - a tenant's settings never pass through the server (it reads only `fork <name>`; the forked
//!   child reads its JSON request itself), so no worker inherits another tenant's secrets.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::runtime::{ProcessSpec, StopSignal};
use crate::venv::Venv;

/// Service name of the fork server in the state file.
pub const SERVICE: &str = "forkserver";

/// The server, run with the Langflow venv's interpreter as `python -c SCRIPT SOCKET`.
pub const SCRIPT: &str = include_str!("../../python/langflow_forkserver.py");

/// Longest Unix socket path the kernel accepts (108 bytes with the terminating NUL), with margin.
const MAX_SOCKET_PATH: usize = 100;

/// How long the import may take (a fresh venv compiles ~1 GB of Python first).
pub const READY_TIMEOUT: Duration = Duration::from_secs(300);

/// Variables given to the server and every worker: BLAS / OpenMP thread pools started at import
/// would be threads the fork cannot carry, so they stay single-threaded.
pub const THREAD_POOL_ENV: [(&str, &str); 2] =
    [("OPENBLAS_NUM_THREADS", "1"), ("OMP_NUM_THREADS", "1")];

/// Where the run's fork server listens, or why it cannot (the path is too long for a Unix socket).
pub fn socket_for(config: &Config) -> Result<PathBuf> {
    let state_dir = PathBuf::from(crate::runtime::run_marker(config));
    let socket = state_dir.join("forkserver").join("fork.sock");
    let length = socket.as_os_str().len();
    if length > MAX_SOCKET_PATH {
        bail!(
            "the fork server's socket path {} is {length} bytes, longer than a Unix socket allows \
             ({MAX_SOCKET_PATH}); use a shorter state_dir",
            socket.display()
        );
    }
    Ok(socket)
}

/// The fork server's process: the venv's Python running [`SCRIPT`] on `socket`.
pub fn spec(config: &Config, venv: &Venv, socket: &Path) -> Result<ProcessSpec> {
    let dir = socket.parent().context("socket path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // The socket lets anyone who can open it fork workers: only the caller may.
    std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .with_context(|| format!("cannot restrict {}", dir.display()))?;
    let mut env: BTreeMap<String, String> = THREAD_POOL_ENV
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("PYTHONUNBUFFERED".into(), "1".into());
    // The import's own cache dirs stay in the run's state directory; workers recompute theirs.
    env.insert("HOME".into(), dir.display().to_string());
    env.insert("TMPDIR".into(), dir.display().to_string());
    Ok(ProcessSpec {
        name: SERVICE.into(),
        program: venv.bin("python"),
        args: vec!["-c".into(), SCRIPT.into(), socket.display().to_string()],
        env,
        cwd: dir.to_path_buf(),
        log: config.log_dir().join(format!("{SERVICE}.log")),
        run_as: None,
        stop_signal: StopSignal::Term,
        port: 0,
        container: None,
        fork_server: None,
    })
}

/// What the server says about itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Ping {
    /// Its pid.
    pub pid: i32,
    /// Seconds the import took.
    pub import_seconds: f64,
    /// Why forking is unsafe; empty = safe.
    pub hazards: Vec<String>,
    /// The variables the import read (and the worker environment must match, except those the
    /// worker recomputes).
    #[serde(default)]
    pub import_env: Vec<String>,
}

/// One worker to fork.
#[derive(Debug, Clone, Serialize)]
pub struct ForkRequest<'a> {
    /// Service name (for the server's log; one word).
    #[serde(skip)]
    pub name: &'a str,
    /// The worker's complete environment.
    pub env: &'a BTreeMap<String, String>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Log file (stdout + stderr, appended, 0600).
    pub log: &'a Path,
    /// Address uvicorn listens on.
    pub host: &'a str,
    /// Port uvicorn listens on.
    pub port: u16,
}

/// The server answered, and refused (a hazard after its import, or a worker environment that
/// differs from its own in a variable the import read): the caller should spawn instead.
#[derive(Debug, Clone)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the fork server refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// Sends `lines` (each followed by a newline) and reads one reply line.
fn call(socket: &Path, lines: &[&[u8]]) -> Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the fork server at {}", socket.display()))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = Vec::new();
    for line in lines {
        request.extend_from_slice(line);
        request.push(b'\n');
    }
    stream.write_all(&request)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("the fork server did not answer")?;
    let value: serde_json::Value =
        serde_json::from_str(&reply).context("the fork server's answer is not JSON")?;
    if value["ok"] != true {
        let reason = value["error"].as_str().unwrap_or("no reason given");
        return Err(Refused(reason.to_string()).into());
    }
    Ok(value)
}

/// Asks the server how it is.
pub fn ping(socket: &Path) -> Result<Ping> {
    let value = call(socket, &[b"ping"])?;
    serde_json::from_value(value).context("unexpected ping answer")
}

/// Forks a worker; returns its pid. The request goes to the forked child itself (the server
/// reads only the header line), so the tenant's settings never enter the server's memory.
pub fn fork(socket: &Path, request: &ForkRequest) -> Result<i32> {
    if request.name.is_empty() || request.name.contains(char::is_whitespace) {
        bail!("a worker's name must be one word: {:?}", request.name);
    }
    let header = format!("fork {}", request.name);
    let mut body = serde_json::to_value(request)?;
    body["record_env"] = true.into();
    let body = serde_json::to_vec(&body)?;
    let reply = call(socket, &[header.as_bytes(), &body])?;
    reply["pid"]
        .as_i64()
        .map(|pid| pid as i32)
        .ok_or_else(|| anyhow!("the fork server answered no pid"))
}

/// The environment worker `pid` applied before it built its app, as it recorded it (0600, beside
/// the server's socket).
pub fn environ(socket: &Path, pid: i32) -> Result<BTreeMap<String, String>> {
    let path = socket
        .parent()
        .context("socket path has no parent")?
        .join("environ")
        .join(format!("{pid}.json"));
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).context("unexpected environment record")
}

/// Waits until the server answers (its import done); returns what it says.
pub async fn wait_ready(
    socket: &Path,
    timeout: Duration,
    alive: impl FnMut() -> bool,
) -> Result<Ping> {
    let socket = socket.to_path_buf();
    crate::net::wait_until(SERVICE, timeout, Duration::from_millis(250), alive, || {
        let socket = socket.clone();
        async move { Ok(socket.exists() && ping(&socket).is_ok()) }
    })
    .await?;
    ping(&socket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_path_too_long_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::isolated(Path::new("/"), dir.path()).unwrap();
        assert!(socket_for(&config).is_ok());
        config.state_dir = dir.path().join("x".repeat(120));
        let error = socket_for(&config).unwrap_err().to_string();
        assert!(error.contains("shorter state_dir"), "{error}");
    }
}
