//! What a run records of each process it started (the state file's entries): pid and start time,
//! or the container, and how to stop it. The runtimes make these; the state file and `down` read
//! them.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Signal used to ask a service to stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StopSignal {
    /// SIGTERM (most servers).
    Term,
    /// SIGINT (Postgres "fast" shutdown; SIGTERM would wait for clients to disconnect).
    Int,
}

/// A container the docker runtime started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRef {
    /// Container id.
    pub id: String,
    /// Container name.
    pub name: String,
    /// Image it runs.
    pub image: String,
}

/// A started process, as recorded in the state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunningProcess {
    /// Runtime that started it.
    pub runtime: String,
    /// Process id (also its process-group id: each service leads its own group); 0 for a
    /// container.
    #[serde(default)]
    pub pid: i32,
    /// Start time in clock ticks since boot (from /proc), to tell a reused pid from ours.
    #[serde(default)]
    pub start_ticks: u64,
    /// How to ask it to stop.
    pub stop_signal: StopSignal,
    /// The container, when the docker runtime started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
    /// The fork server's socket, when the process is a worker forked by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fork_server: Option<PathBuf>,
}

impl RunningProcess {
    /// Short human identity: `pid 1234` or `container 0123456789ab (image)`.
    pub fn describe(&self) -> String {
        match &self.container {
            Some(c) => format!("container {} ({})", short_id(&c.id), c.image),
            None => format!("pid {}", self.pid),
        }
    }
}

/// The first 12 characters of a container id, as `docker ps` shows it.
pub fn short_id(id: &str) -> &str {
    &id[..id.len().min(12)]
}
