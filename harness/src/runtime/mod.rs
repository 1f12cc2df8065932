//! WHERE services run. A [`Runtime`] starts a [`ProcessSpec`], tells whether what it started is
//! still alive, and stops it. The native runtime (child processes on 127.0.0.1) is the default and
//! what CI exercises; a container runtime plugs in behind the same trait.

pub mod native;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Environment variable set on every process a run starts; its value is the run's state
/// directory. It lets `down` find processes of a run whose state file was lost or corrupted.
pub const RUN_MARKER_ENV: &str = "LANGFLOW_INFRA_RUN";

/// Signal used to ask a service to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopSignal {
    /// SIGTERM (most servers).
    Term,
    /// SIGINT (Postgres "fast" shutdown; SIGTERM would wait for clients to disconnect).
    Int,
}

/// Everything needed to start one service process.
#[derive(Debug, Clone)]
pub struct ProcessSpec {
    /// Service name (used in messages and as the log file name).
    pub name: String,
    /// Program to execute.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment added on top of a scrubbed copy of the caller's (AWS_*, LANGFLOW_*, PG* removed).
    pub env: BTreeMap<String, String>,
    /// Working directory.
    pub cwd: PathBuf,
    /// File receiving stdout and stderr (appended).
    pub log: PathBuf,
    /// Run as this OS user (uid, gid) instead of the caller.
    pub run_as: Option<(u32, u32)>,
    /// How to ask it to stop.
    pub stop_signal: StopSignal,
}

/// A started process, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningProcess {
    /// Runtime that started it.
    pub runtime: String,
    /// Process id (also its process-group id: each service leads its own group).
    pub pid: i32,
    /// Start time in clock ticks since boot (from /proc), to tell a reused pid from ours.
    pub start_ticks: u64,
    /// How to ask it to stop.
    pub stop_signal: StopSignal,
}

/// Liveness of a recorded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Liveness {
    /// Still running.
    Running,
    /// Gone (exited, killed, or its pid now belongs to another process).
    Exited,
}

/// What a stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopOutcome {
    /// It was already gone.
    AlreadyExited,
    /// It stopped within the grace period after the stop signal.
    Stopped,
    /// It had to be killed (SIGKILL) after the grace period.
    Killed,
}

/// Where services run.
pub trait Runtime: Send + Sync {
    /// Short name recorded in the state file (`native`).
    fn name(&self) -> &'static str;
    /// Starts the process described by `spec`.
    fn start(&self, spec: &ProcessSpec, run_marker: &str) -> Result<RunningProcess>;
    /// Whether the recorded process is still alive.
    fn liveness(&self, process: &RunningProcess) -> Liveness;
    /// Stops the process (and its process group): stop signal, then SIGKILL after `grace`.
    fn stop(&self, process: &RunningProcess, grace: Duration) -> Result<StopOutcome>;
    /// Resident memory of the process and its group, in bytes, when known.
    fn rss_bytes(&self, process: &RunningProcess) -> Option<u64>;
}
