//! WHERE services run. A [`Runtime`] starts a [`ProcessSpec`] (a host program, or an image and
//! command for a container), tells whether what it started is still alive, and stops it. The
//! native runtime runs child processes on 127.0.0.1; the docker runtime runs containers on a
//! network of the run with ports published on 127.0.0.1. Services describe both shapes and ask
//! the runtime's [`Placement`] how peers reach each other; stack, tenancy, e2e and credentials
//! code never branch on the runtime.

pub mod docker;
pub mod fork_client;
pub mod native;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Environment variable set on every process a run starts; its value is the run's state
/// directory. It lets `down` find processes of a run whose state file was lost or corrupted.
pub const RUN_MARKER_ENV: &str = "LANGFLOW_INFRA_RUN";

/// The marker every process / container of the run configured by `config` carries: its
/// canonical state directory.
pub fn run_marker(config: &harness_core::config::Config) -> String {
    std::fs::canonicalize(&config.state_dir)
        .unwrap_or_else(|_| config.state_dir.clone())
        .display()
        .to_string()
}

/// The runtime named `kind` (`native` or `docker`, as recorded in a state file) for the run of
/// `config`.
pub fn for_run(
    kind: &str,
    config: &harness_core::config::Config,
) -> Result<std::sync::Arc<dyn Runtime>> {
    match kind {
        "native" => Ok(std::sync::Arc::new(native::NativeRuntime)),
        "docker" => Ok(std::sync::Arc::new(docker::DockerRuntime::connect(
            config,
            &run_marker(config),
        )?)),
        other => anyhow::bail!(
            "unknown runtime {other:?}; use \"native\" or \"docker\" (or \"auto\" in harness.toml)"
        ),
    }
}

/// How a service runs in a container (the docker runtime); the native runtime ignores it.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    /// Which configured image runs it: `postgres`, `aws` or `langflow` (resolved by the runtime).
    pub image: String,
    /// Command; empty = the image's default.
    pub command: Vec<String>,
    /// The complete environment of the container (the native `env` is not used).
    pub env: BTreeMap<String, String>,
    /// Port the service listens on inside the container (published on 127.0.0.1).
    pub container_port: u16,
    /// Host paths bind-mounted at the same path (`true` = read-only).
    pub binds: Vec<(PathBuf, bool)>,
    /// Named volumes of the run: (volume suffix, mount point). They survive `down` and go with
    /// `down --volumes`.
    pub volumes: Vec<(String, String)>,
    /// `uid:gid` to run as; `None` = the image's user.
    pub user: Option<String>,
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
    /// Port on 127.0.0.1 clients on the host use; 0 = the runtime picks one (docker only: the
    /// native runtime needs it chosen beforehand, since it is in the arguments).
    pub port: u16,
    /// How it runs in a container; `None` = host process only (the harness's own servers).
    pub container: Option<ContainerSpec>,
    /// Natively: fork it from the Langflow fork server listening on this socket instead of
    /// executing `program` (the arguments are then not used: the server runs Langflow's app on
    /// `port`). Ignored in containers.
    pub fork_server: Option<PathBuf>,
}

pub use harness_core::process::{short_id, ContainerRef, RunningProcess, StopSignal};

/// How services of a runtime reach each other and the harness's own host servers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Services run in containers on the run's network (docker) rather than on the host.
    pub containers: bool,
    /// Host name under which services reach the harness's host servers (identity / STS).
    pub host_alias: String,
    /// Extra address the harness's host servers must listen on so containers reach them (the
    /// run network's gateway address; never 0.0.0.0). `None` for the native runtime.
    pub host_bind: Option<std::net::IpAddr>,
}

impl Placement {
    /// Placement of the native runtime: everything on 127.0.0.1.
    pub fn native() -> Self {
        Self {
            containers: false,
            host_alias: harness_core::net::LOOPBACK.to_string(),
            host_bind: None,
        }
    }

    /// (host, port) under which a service reaches the managed service `name`, which the host
    /// reaches on 127.0.0.1:`host_port` and which listens on `container_port` in a container.
    pub fn peer(&self, name: &str, host_port: u16, container_port: u16) -> (String, u16) {
        if self.containers {
            (name.to_string(), container_port)
        } else {
            (harness_core::net::LOOPBACK.to_string(), host_port)
        }
    }

    /// URL under which a service reaches a harness host server on `port`.
    pub fn host_server_url(&self, port: u16) -> String {
        format!("http://{}:{port}", self.host_alias)
    }

    /// Address a service listens on inside its runtime.
    pub fn listen_host(&self) -> &'static str {
        if self.containers {
            "0.0.0.0"
        } else {
            "127.0.0.1"
        }
    }

    /// Port a service listens on: the host port natively, its fixed container port in a
    /// container.
    pub fn listen_port(&self, host_port: u16, container_port: u16) -> u16 {
        if self.containers {
            container_port
        } else {
            host_port
        }
    }

    /// The host port to give a service spec: natively a concrete free port (or the fixed one);
    /// in containers the fixed one or 0 (the engine picks, read back after start).
    pub fn host_port(&self, service: &str, fixed: u16) -> Result<u16> {
        if self.containers {
            if fixed != 0 {
                harness_core::net::resolve_port(service, fixed)?;
            }
            Ok(fixed)
        } else {
            harness_core::net::resolve_port(service, fixed)
        }
    }
}

/// Memory of a process group, with shared pages accounted fairly.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryUsage {
    /// Resident set: counts every page mapped, shared or not (double-counts shared pages).
    pub rss: u64,
    /// Proportional set: each shared page divided among the processes sharing it.
    pub pss: u64,
    /// Unique set: pages only this group has (what stopping it frees).
    pub uss: u64,
}

/// Output of a program run to completion ([`Runtime::run_to_completion`]).
#[derive(Debug, Clone)]
pub struct CompletedRun {
    /// Whether it exited with status 0.
    pub success: bool,
    /// Exit status, human-readable.
    pub status: String,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
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
    /// Short name recorded in the state file (`native`, `docker`).
    fn name(&self) -> &'static str;
    /// How services of this runtime reach each other and the host servers.
    fn placement(&self) -> Placement;
    /// Starts the service described by `spec`; returns it and the host port it is reached on.
    fn start(&self, spec: &ProcessSpec, run_marker: &str) -> Result<(RunningProcess, u16)>;
    /// Runs a program to completion (e.g. a tenant migration) and returns its output; killed
    /// after `timeout`.
    fn run_to_completion(
        &self,
        spec: &ProcessSpec,
        run_marker: &str,
        timeout: Duration,
    ) -> Result<CompletedRun>;
    /// Whether the recorded process is still alive.
    fn liveness(&self, process: &RunningProcess) -> Liveness;
    /// Stops the process (and its process group): stop signal, then SIGKILL after `grace`.
    fn stop(&self, process: &RunningProcess, grace: Duration) -> Result<StopOutcome>;
    /// Resident memory of the process and its group (a container: its memory usage), in bytes.
    fn rss_bytes(&self, process: &RunningProcess) -> Option<u64>;
    /// Memory of the process and its group as the kernel accounts shared pages (natively, from
    /// `/proc/<pid>/smaps_rollup`); `None` where the runtime cannot tell (containers).
    fn memory(&self, _process: &RunningProcess) -> Option<MemoryUsage> {
        None
    }
    /// One environment variable the running service really has (not what the harness meant to
    /// give it).
    fn env_var(&self, process: &RunningProcess, name: &str) -> Option<String>;
    /// Why a gone service stopped (exit code, signal, OOM), when the runtime can tell.
    fn exit_reason(&self, process: &RunningProcess) -> Option<String>;
    /// The service's log so far (stdout + stderr); `log` is its log file on the host.
    fn read_log(&self, process: &RunningProcess, log: &std::path::Path) -> Result<String>;
    /// The service's log so far as the streams the runtime keeps apart — (stdout, stderr) of a
    /// container; a log file is one stream (stderr empty) — so a follower can keep one offset
    /// per stream.
    fn read_log_streams(
        &self,
        process: &RunningProcess,
        log: &std::path::Path,
    ) -> Result<(String, String)> {
        Ok((self.read_log(process, log)?, String::new()))
    }
    /// Stops everything of the run `run_marker` that is still around, recorded or not (orphans of
    /// a killed `up`, a lost state file), and removes the run's network; returns how many
    /// processes/containers it found.
    fn sweep(&self, run_marker: &str, grace: Duration) -> usize;
    /// Removes the run's data volumes (`down --volumes`).
    fn remove_volumes(&self, run_marker: &str) -> Result<()>;
    /// Kills the service at once (SIGKILL to its process group, or to its container), as a crash
    /// would; nothing is cleaned up, so recovery can be observed (chaos scenarios).
    fn kill(&self, process: &RunningProcess) -> Result<()>;
    /// What of the run `run_marker` is still around (processes, containers), described; empty
    /// when the run left nothing behind.
    fn leftovers(&self, run_marker: &str) -> Vec<String>;
}
