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
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

use harness_core::config::Config;
use harness_core::venv::Venv;
use harness_runtime::runtime::{ProcessSpec, StopSignal};

/// Service name of the fork server in the state file.
pub const SERVICE: &str = "forkserver";

/// The server, run with the Langflow venv's interpreter as `python -c SCRIPT SOCKET`.
pub const SCRIPT: &str = harness_core::assets::FORKSERVER_SCRIPT;

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
    let state_dir = PathBuf::from(harness_runtime::runtime::run_marker(config));
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

pub use harness_runtime::runtime::fork_client::{environ, fork, ping, ForkRequest, Ping, Refused};

/// Waits until the server answers (its import done); returns what it says.
pub async fn wait_ready(
    socket: &Path,
    timeout: Duration,
    alive: impl FnMut() -> bool,
) -> Result<Ping> {
    let socket = socket.to_path_buf();
    harness_core::net::wait_until(SERVICE, timeout, Duration::from_millis(250), alive, || {
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
