//! The native runtime: services are child processes on 127.0.0.1, each leading its own process
//! group (so a terminal's Ctrl-C reaches only the harness, which then stops them in order, and a
//! stop reaches the service's own children too). Liveness comes from /proc, with the process start
//! time guarding against pid reuse.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag};
use nix::unistd::Pid;

use super::{
    CompletedRun, Liveness, MemoryUsage, Placement, ProcessSpec, RunningProcess, Runtime,
    StopOutcome, StopSignal, RUN_MARKER_ENV,
};

/// Environment variable prefixes not passed from the caller to services: each service gets exactly
/// the AWS / Langflow / Postgres settings its spec names, never the developer's own.
const SCRUBBED_ENV_PREFIXES: &[&str] = &["AWS_", "LANGFLOW_", "PG", "BOTO_"];

/// Child processes on this machine.
#[derive(Debug, Default, Clone, Copy)]
pub struct NativeRuntime;

/// Fields of /proc/<pid>/stat the runtime uses.
#[derive(Debug, Clone, Copy)]
struct ProcStat {
    state: char,
    pgrp: i32,
    start_ticks: u64,
}

fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and parentheses: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state); pgrp is field 5, starttime field 22.
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

fn rss_of(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// RSS, PSS and USS of one process from `/proc/<pid>/smaps_rollup` (kB fields).
fn memory_of(pid: i32) -> Option<MemoryUsage> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            * 1024
    };
    Some(MemoryUsage {
        rss: field("Rss:"),
        pss: field("Pss:"),
        uss: field("Private_Clean:") + field("Private_Dirty:"),
    })
}

/// The processes of process group `pgrp` (a service and its children).
fn group_pids(pgrp: i32) -> impl Iterator<Item = i32> {
    all_pids()
        .into_iter()
        .filter(move |pid| proc_stat(*pid).is_some_and(|s| s.pgrp == pgrp))
}

fn all_pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect()
}

impl NativeRuntime {
    /// Pids of live processes carrying `LANGFLOW_INFRA_RUN=<marker>` in their environment: every
    /// process a run started, whether or not its state file still knows about it.
    pub fn processes_of_run(marker: &str) -> Vec<i32> {
        let needle = format!("{RUN_MARKER_ENV}={marker}");
        all_pids()
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/environ"))
                    .map(|env| env.split(|b| *b == 0).any(|var| var == needle.as_bytes()))
                    .unwrap_or(false)
            })
            .filter(|pid| proc_stat(*pid).is_some_and(|s| s.state != 'Z'))
            .collect()
    }

    /// One environment variable of a live process (from /proc/<pid>/environ), e.g. to check the
    /// key an instance really runs with rather than the one the harness meant to give it.
    pub fn env_var_of(pid: i32, name: &str) -> Option<String> {
        let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
        let prefix = format!("{name}=");
        environ.split(|b| *b == 0).find_map(|var| {
            var.strip_prefix(prefix.as_bytes())
                .map(|value| String::from_utf8_lossy(value).into_owned())
        })
    }

    /// Stops every process of a run found by its marker (TERM, then KILL after `grace`), returning
    /// how many there were.
    pub fn stop_run_by_marker(marker: &str, grace: Duration) -> usize {
        let pids = Self::processes_of_run(marker);
        for pid in &pids {
            let _ = nix::sys::signal::kill(Pid::from_raw(*pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline && !Self::processes_of_run(marker).is_empty() {
            reap_children();
            std::thread::sleep(Duration::from_millis(50));
        }
        for pid in Self::processes_of_run(marker) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        reap_children();
        pids.len()
    }
}

/// Collects exit statuses of any of our own exited children, so they do not linger as zombies.
fn reap_children() {
    while let Ok(status) = waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
        if matches!(status, nix::sys::wait::WaitStatus::StillAlive) {
            break;
        }
    }
}

impl Runtime for NativeRuntime {
    fn name(&self) -> &'static str {
        "native"
    }

    fn placement(&self) -> Placement {
        Placement::native()
    }

    fn start(&self, spec: &ProcessSpec, run_marker: &str) -> Result<(RunningProcess, u16)> {
        if let Some(parent) = spec.log.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create log directory {}", parent.display()))?;
        }
        if let Some(socket) = &spec.fork_server {
            match self.start_forked(spec, socket, run_marker) {
                Err(error)
                    if error
                        .downcast_ref::<crate::runtime::fork_client::Refused>()
                        .is_some() =>
                {
                    // Forking this one is not proven safe: it starts as its own process, and its
                    // log says why.
                    use std::io::Write;
                    if let Ok(mut log) = OpenOptions::new()
                        .create(true)
                        .append(true)
                        .mode(0o600)
                        .open(&spec.log)
                    {
                        let _ =
                            writeln!(log, "langflow-infra: {error:#}; started as its own process");
                    }
                }
                started => return started,
            }
        }
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(&spec.log)
            .with_context(|| format!("cannot open log file {}", spec.log.display()))?;
        let mut command = host_command(spec, run_marker);
        command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0);
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {} ({})", spec.name, spec.program.display()))?;
        let pid = child.id() as i32;
        // The child is tracked through /proc from here on; dropping the handle does not stop it.
        drop(child);
        Ok((self.tracked(pid, spec, None), spec.port))
    }

    fn run_to_completion(
        &self,
        spec: &ProcessSpec,
        run_marker: &str,
        timeout: Duration,
    ) -> Result<CompletedRun> {
        let mut command = host_command(spec, run_marker);
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run {} ({})", spec.name, spec.program.display()))?;
        // Drain the pipes on threads so a chatty program cannot block on a full pipe.
        let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut text = Vec::new();
                if let Some(mut pipe) = pipe {
                    let _ = pipe.read_to_end(&mut text);
                }
                String::from_utf8_lossy(&text).into_owned()
            })
        };
        use std::io::Read;
        let stdout = drain(child.stdout.take().map(|p| Box::new(p) as _));
        let stderr = drain(child.stderr.take().map(|p| Box::new(p) as _));
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let stdout = stdout.join().unwrap_or_default();
        let stderr = stderr.join().unwrap_or_default();
        match status {
            Some(status) => Ok(CompletedRun {
                success: status.success(),
                status: status.to_string(),
                stdout,
                stderr,
            }),
            None => anyhow::bail!(
                "{} did not finish within {} s (killed)",
                spec.name,
                timeout.as_secs()
            ),
        }
    }

    fn liveness(&self, process: &RunningProcess) -> Liveness {
        match proc_stat(process.pid) {
            Some(stat) if stat.start_ticks == process.start_ticks => {
                if stat.state == 'Z' {
                    // Our own exited child: collect it so the pid is released.
                    let _ = waitpid(Pid::from_raw(process.pid), Some(WaitPidFlag::WNOHANG));
                    Liveness::Exited
                } else {
                    Liveness::Running
                }
            }
            _ => Liveness::Exited,
        }
    }

    fn stop(&self, process: &RunningProcess, grace: Duration) -> Result<StopOutcome> {
        if self.liveness(process) == Liveness::Exited {
            // The leader is gone; make sure nothing of its group survived it.
            let _ = killpg(Pid::from_raw(process.pid), Signal::SIGKILL);
            return Ok(StopOutcome::AlreadyExited);
        }
        let group = Pid::from_raw(process.pid);
        let signal = match process.stop_signal {
            StopSignal::Term => Signal::SIGTERM,
            StopSignal::Int => Signal::SIGINT,
        };
        match killpg(group, signal) {
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(e) => {
                return Err(e).context(format!("cannot signal process group {}", process.pid))
            }
        }
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.liveness(process) == Liveness::Exited {
                let _ = killpg(group, Signal::SIGKILL);
                return Ok(StopOutcome::Stopped);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = killpg(group, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.liveness(process) == Liveness::Running && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(StopOutcome::Killed)
    }

    fn rss_bytes(&self, process: &RunningProcess) -> Option<u64> {
        if self.liveness(process) == Liveness::Exited {
            return None;
        }
        let total = group_pids(process.pid).filter_map(rss_of).sum();
        Some(total)
    }

    fn env_var(&self, process: &RunningProcess, name: &str) -> Option<String> {
        match &process.fork_server {
            // A forked worker's /proc environ is the fork server's; the server knows what it
            // applied in the worker before the worker built its app.
            Some(socket) => crate::runtime::fork_client::environ(socket, process.pid)
                .ok()?
                .remove(name),
            None => Self::env_var_of(process.pid, name),
        }
    }

    fn memory(&self, process: &RunningProcess) -> Option<MemoryUsage> {
        if self.liveness(process) == Liveness::Exited {
            return None;
        }
        let mut total = MemoryUsage::default();
        for pid in group_pids(process.pid) {
            let usage = memory_of(pid)?;
            total.rss += usage.rss;
            total.pss += usage.pss;
            total.uss += usage.uss;
        }
        Some(total)
    }

    fn exit_reason(&self, _process: &RunningProcess) -> Option<String> {
        // Only the parent learns a process's exit status, and the `up` that started it is gone.
        None
    }

    fn read_log(&self, _process: &RunningProcess, log: &std::path::Path) -> Result<String> {
        match std::fs::read(log) {
            Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", log.display())),
        }
    }

    fn sweep(&self, run_marker: &str, grace: Duration) -> usize {
        Self::stop_run_by_marker(run_marker, grace)
    }

    fn remove_volumes(&self, _run_marker: &str) -> Result<()> {
        // Native data lives in the state directory; `down --volumes` removes it there.
        Ok(())
    }

    fn kill(&self, process: &RunningProcess) -> Result<()> {
        if self.liveness(process) == Liveness::Exited {
            bail!("{} is not running", process.describe());
        }
        killpg(Pid::from_raw(process.pid), Signal::SIGKILL)
            .with_context(|| format!("cannot kill process group {}", process.pid))
    }

    fn leftovers(&self, run_marker: &str) -> Vec<String> {
        reap_children();
        Self::processes_of_run(run_marker)
            .into_iter()
            .map(|pid| {
                let command = std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
                    .unwrap_or_default();
                format!("pid {pid} ({})", command.trim())
            })
            .collect()
    }
}

impl NativeRuntime {
    /// Starts `spec` as a worker forked by the fork server on `socket`, with exactly the
    /// environment a spawned process would get.
    fn start_forked(
        &self,
        spec: &ProcessSpec,
        socket: &std::path::Path,
        run_marker: &str,
    ) -> Result<(RunningProcess, u16)> {
        let env = host_env(spec, run_marker);
        let host = spec
            .env
            .get("LANGFLOW_HOST")
            .map(String::as_str)
            .unwrap_or("127.0.0.1");
        let pid = crate::runtime::fork_client::fork(
            socket,
            &crate::runtime::fork_client::ForkRequest {
                name: &spec.name,
                env: &env,
                cwd: &spec.cwd,
                log: &spec.log,
                host,
                port: spec.port,
            },
        )?;
        Ok((
            self.tracked(pid, spec, Some(socket.to_path_buf())),
            spec.port,
        ))
    }

    /// The record of host process `pid` started for `spec` (forked by the server on
    /// `fork_server`, or spawned), with its /proc start time so a reused pid is never ours.
    fn tracked(
        &self,
        pid: i32,
        spec: &ProcessSpec,
        fork_server: Option<std::path::PathBuf>,
    ) -> RunningProcess {
        RunningProcess {
            runtime: self.name().into(),
            pid,
            start_ticks: proc_stat(pid).map(|s| s.start_ticks).unwrap_or_default(),
            stop_signal: spec.stop_signal,
            container: None,
            fork_server,
        }
    }
}

/// The environment a service of `spec` runs with: the caller's, scrubbed of AWS / Langflow /
/// Postgres settings, plus the spec's own and the run marker.
fn host_env(spec: &ProcessSpec, run_marker: &str) -> std::collections::BTreeMap<String, String> {
    let mut env: std::collections::BTreeMap<String, String> = std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| !SCRUBBED_ENV_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    env.extend(spec.env.clone());
    env.insert(RUN_MARKER_ENV.into(), run_marker.into());
    env
}

/// The host command of `spec`: program, arguments, working directory, a scrubbed environment
/// plus the spec's own and the run marker, and the OS user.
fn host_command(spec: &ProcessSpec, run_marker: &str) -> Command {
    let mut command = Command::new(&spec.program);
    command.args(&spec.args).current_dir(&spec.cwd);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy();
        if SCRUBBED_ENV_PREFIXES.iter().any(|p| key.starts_with(p)) {
            command.env_remove(&*key);
        }
    }
    command.envs(&spec.env).env(RUN_MARKER_ENV, run_marker);
    if let Some((uid, gid)) = spec.run_as {
        command.uid(uid).gid(gid);
    }
    command
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn sleeper(dir: &std::path::Path) -> ProcessSpec {
        ProcessSpec {
            name: "sleeper".into(),
            program: "/bin/sh".into(),
            // A child of the service too: stop must take the whole group down.
            args: vec!["-c".into(), "sleep 300 & wait".into()],
            env: BTreeMap::new(),
            cwd: dir.to_path_buf(),
            log: dir.join("sleeper.log"),
            run_as: None,
            stop_signal: StopSignal::Term,
            port: 0,
            container: None,
            fork_server: None,
        }
    }

    #[test]
    fn start_track_and_stop_a_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().display().to_string();
        let rt = NativeRuntime;
        let (p, _) = rt.start(&sleeper(dir.path()), &marker).unwrap();
        assert_eq!(rt.liveness(&p), Liveness::Running);
        // The shell forks its background sleep asynchronously; on a loaded machine
        // that can take well over 200 ms, so wait for it with a generous bound.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut seen = NativeRuntime::processes_of_run(&marker).len();
        while seen < 2 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            seen = NativeRuntime::processes_of_run(&marker).len();
        }
        assert_eq!(seen, 2, "shell + background sleep");
        assert!(rt.rss_bytes(&p).unwrap() > 0);
        assert_eq!(
            rt.stop(&p, Duration::from_secs(5)).unwrap(),
            StopOutcome::Stopped
        );
        assert_eq!(rt.liveness(&p), Liveness::Exited);
        assert!(NativeRuntime::processes_of_run(&marker).is_empty());
        assert_eq!(
            rt.stop(&p, Duration::from_secs(1)).unwrap(),
            StopOutcome::AlreadyExited
        );
    }

    #[test]
    fn a_reused_pid_is_not_ours() {
        let me = RunningProcess {
            runtime: "native".into(),
            pid: std::process::id() as i32,
            start_ticks: 1,
            stop_signal: StopSignal::Term,
            container: None,
            fork_server: None,
        };
        assert_eq!(NativeRuntime.liveness(&me), Liveness::Exited);
    }
}
