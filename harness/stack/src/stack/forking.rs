//! Tenants forked from one warm Langflow (`[langflow] start = "fork"`, native runtime): the run's
//! fork server (tier 1, started before the instances and restarted before them), and the choice,
//! per instance start, between forking from it and spawning a fresh process.
//!
//! The fork path is taken only when it is safe: the runtime runs host processes, the server's
//! socket path fits, and the server reported no hazard after its import. Otherwise tenants are
//! spawned, and `up` says why in one line.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::Result;

use super::tenants::GATEWAY_TIER;
use super::{finish_step, Stack};
use crate::services::{forkserver, langflow};
use harness_core::config::StartMode;
use harness_core::progress::Step;
use harness_core::state::{Probe, RunState, ServiceRecord};
use harness_runtime::runtime::Liveness;

impl Stack {
    /// Whether this run should try to fork its tenants: why not, when it should not.
    fn fork_wanted(&self) -> std::result::Result<(), String> {
        if self.config.langflow.start == StartMode::Spawn {
            return Err("[langflow] start = \"spawn\"".into());
        }
        if self.runtime.placement().containers {
            return Err("the docker runtime runs each tenant in its own container".into());
        }
        if !cfg!(target_os = "linux") {
            return Err("fork is only proven on Linux".into());
        }
        Ok(())
    }

    /// Starts the run's fork server when tenants are to be forked; `None` when they are spawned
    /// (with a one-line notice when fork was asked for but cannot be used).
    pub(super) async fn start_forkserver_if_wanted(
        &self,
        state: &Arc<Mutex<RunState>>,
        launcher: &langflow::Launcher,
    ) -> Result<Option<(String, f64)>> {
        if let Err(reason) = self.fork_wanted() {
            if self.config.langflow.start == StartMode::Fork && !self.runtime.placement().containers
            {
                harness_core::progress::println(format!(
                    "tenants start as their own processes: {reason}"
                ));
            }
            return Ok(None);
        }
        match self.start_forkserver(state, launcher).await {
            Ok(started) => Ok(Some(started)),
            Err(error) => {
                harness_core::progress::println(format!(
                    "tenants start as their own processes: the fork server is not usable: {error:#}"
                ));
                let mut current = state.lock().expect("state lock");
                if let Some(record) = current.services.remove(forkserver::SERVICE) {
                    let _ = self.runtime.stop(&record.process, super::STOP_GRACE);
                }
                self.files.write_state(&current)?;
                Ok(None)
            }
        }
    }

    /// Starts the fork server, waits for its import, and fails when it reports a hazard.
    pub(super) async fn start_forkserver(
        &self,
        state: &Arc<Mutex<RunState>>,
        launcher: &langflow::Launcher,
    ) -> Result<(String, f64)> {
        let step = Step::start(forkserver::SERVICE);
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let venv = launcher
                .venv
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("the fork server needs the native Langflow venv"))?;
            let socket = forkserver::socket_for(&self.config)?;
            let spec = forkserver::spec(&self.config, venv, &socket)?;
            let (process, _) = self.start_spec(&spec).await?;
            self.record(
                state,
                forkserver::SERVICE,
                ServiceRecord {
                    process: process.clone(),
                    port: 0,
                    url: format!("unix:{}", socket.display()),
                    log: spec.log.clone(),
                    probe: Probe::Alive,
                    tier: GATEWAY_TIER,
                    restarts: 0,
                    last_exit: None,
                },
            )?;
            step.set_message("importing Langflow once");
            let ping =
                forkserver::wait_ready(&socket, forkserver::READY_TIMEOUT, self.alive_fn(&process))
                    .await
                    .map_err(|e| self.with_log_tail(e, &process, &spec.log))?;
            if !ping.hazards.is_empty() {
                anyhow::bail!("fork is unsafe here: {}", ping.hazards.join("; "));
            }
            Ok((forkserver::SERVICE.to_string(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }

    /// `launcher`, set to fork instances from the run's fork server when one runs and is safe.
    pub(super) fn instance_launcher(
        &self,
        state: &Arc<Mutex<RunState>>,
        mut launcher: langflow::Launcher,
    ) -> langflow::Launcher {
        let record = state
            .lock()
            .expect("state lock")
            .services
            .get(forkserver::SERVICE)
            .cloned();
        launcher.fork_server = record
            .filter(|r| self.runtime.liveness(&r.process) == Liveness::Running)
            .and_then(|_| forkserver::socket_for(&self.config).ok())
            .filter(|socket| forkserver::ping(socket).is_ok_and(|p| p.hazards.is_empty()));
        launcher
    }
}
