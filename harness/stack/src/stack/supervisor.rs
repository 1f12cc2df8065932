//! The supervisor: a harness host process of every full run that restarts what stops, as ECS
//! replaces a stopped task. It polls liveness every second; a service found down is started again
//! by [`Stack::repair`] (same port, nothing else touched) with exponential back-off while it keeps
//! stopping (1 s, 2 s, 4 s, … up to 60 s; reset once it has run for a minute). It repairs only
//! while it holds the state lock, so it never races `up`, `down` or tenant changes, and it exits
//! when the run's state file is gone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{finish_step, GatewayCommand, Stack};
use harness_core::config::Config;
use harness_core::progress::Step;
use harness_core::state::{Probe, RunState, ServiceRecord};
use harness_runtime::runtime::Liveness;

/// Name of the supervisor in the run state.
pub const SUPERVISOR_SERVICE: &str = "supervisor";
/// Stop tier of the supervisor: it stops first, before anything it would restart.
pub const SUPERVISOR_TIER: u8 = 3;
/// How often liveness is checked.
const POLL: Duration = Duration::from_millis(250);
/// Longest back-off between restarts of a service that keeps stopping.
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// A service that ran this long since its last restart starts over at the shortest back-off.
const STABLE_AFTER: Duration = Duration::from_secs(60);

/// What the supervisor process needs to rebuild the stack it watches (written 0600 by `up`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SupervisorInput {
    /// The run's configuration.
    pub config: Config,
    /// Its repository root (`Config::root` is not serialised).
    pub root: PathBuf,
    /// How the harness's servers are started (for restarting the gateway or identity server).
    pub servers: GatewayCommand,
}

/// Restart bookkeeping of one service.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    consecutive: u32,
    last_restart: Instant,
}

impl Backoff {
    /// How long to wait after the last restart before the next one.
    fn delay(&self) -> Duration {
        if self.last_restart.elapsed() >= STABLE_AFTER {
            return Duration::ZERO;
        }
        Duration::from_secs(1u64 << self.consecutive.min(6)).min(MAX_BACKOFF)
    }
}

impl Stack {
    /// File the supervisor reads its input from.
    fn supervisor_input_path(&self) -> PathBuf {
        self.config.state_dir.join("supervisor").join("input.json")
    }

    /// Starts the supervisor process of this run (a host process, like the gateway).
    pub(super) async fn start_supervisor(
        &self,
        state: &Arc<Mutex<RunState>>,
    ) -> Result<(String, f64)> {
        let step = Step::start(SUPERVISOR_SERVICE);
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let command = self.servers()?;
            let input_path = self.supervisor_input_path();
            std::fs::create_dir_all(input_path.parent().expect("has a parent"))?;
            harness_core::state::write_json_0600(
                &input_path,
                &SupervisorInput {
                    config: self.config.clone(),
                    root: self.config.root.clone(),
                    servers: command.clone(),
                },
            )?;
            let mut args = command.supervisor_args.clone();
            args.extend(["--input".to_string(), input_path.display().to_string()]);
            let (process, log) = self.start_host_server(SUPERVISOR_SERVICE, args, 0)?;
            self.record(
                state,
                SUPERVISOR_SERVICE,
                ServiceRecord {
                    process,
                    port: 0,
                    url: String::new(),
                    log,
                    probe: Probe::Alive,
                    tier: SUPERVISOR_TIER,
                    restarts: 0,
                    last_exit: None,
                },
            )?;
            Ok((SUPERVISOR_SERVICE.to_string(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }
}

/// Runs the supervisor described by the input file at `input` until the run's state is gone.
pub async fn run(input: &Path) -> Result<()> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read supervisor input {}", input.display()))?;
    let SupervisorInput {
        mut config,
        root,
        servers,
    } = serde_json::from_str(&text).context("supervisor input is not valid")?;
    config.root = root;
    let stack = Stack::of_recorded_run(config, servers)?;
    println!(
        "supervisor watching {} ({} runtime)",
        stack.config.state_dir.display(),
        stack.runtime.name()
    );
    let mut backoff: BTreeMap<String, Backoff> = BTreeMap::new();
    loop {
        tokio::time::sleep(POLL).await;
        // A passing error (a full or read-only disk) must not end the supervision.
        let state = match stack.files.read_state() {
            Ok(Some(state)) => state,
            Ok(None) => {
                println!("supervisor: the run's state is gone; exiting");
                return Ok(());
            }
            Err(e) => {
                println!("supervisor: cannot read the run's state ({e:#}); retrying");
                continue;
            }
        };
        let down = down_services(&stack, &state);
        let due: Vec<String> = down
            .into_iter()
            .filter(|name| {
                backoff
                    .get(name)
                    .is_none_or(|b| b.last_restart.elapsed() >= b.delay())
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        // Only while nobody else changes the run; look again under the lock.
        let _lock = match stack.files.try_lock() {
            Ok(Some(lock)) => lock,
            Ok(None) => continue,
            Err(e) => {
                println!("supervisor: cannot take the state lock ({e:#}); retrying");
                continue;
            }
        };
        let state = match stack.files.read_state() {
            Ok(Some(state)) => state,
            Ok(None) => return Ok(()),
            Err(e) => {
                println!("supervisor: cannot read the run's state ({e:#}); retrying");
                continue;
            }
        };
        let due: Vec<String> = down_services(&stack, &state)
            .into_iter()
            .filter(|name| due.contains(name))
            .collect();
        if due.is_empty() {
            continue;
        }
        for name in &due {
            let reason = stack
                .runtime
                .exit_reason(&state.services[name].process)
                .unwrap_or_else(|| "exited".into());
            println!("supervisor: {name} is down ({reason}); restarting");
        }
        let started = Instant::now();
        let outcome = stack.repair(state, &due).await;
        for name in &due {
            let entry = backoff.entry(name.clone()).or_insert(Backoff {
                consecutive: 0,
                last_restart: Instant::now(),
            });
            entry.consecutive = if entry.last_restart.elapsed() < STABLE_AFTER {
                entry.consecutive + 1
            } else {
                0
            };
            entry.last_restart = Instant::now();
        }
        match outcome {
            Ok(ready) => println!(
                "supervisor: restarted {} in {:.1} s",
                ready
                    .iter()
                    .map(|(name, secs)| format!("{name} ({secs:.1} s)"))
                    .collect::<Vec<_>>()
                    .join(", "),
                started.elapsed().as_secs_f64()
            ),
            Err(e) => println!("supervisor: restart failed: {e:#}; will retry with back-off"),
        }
    }
}

/// Services of the run that are down (the supervisor itself excepted).
fn down_services(stack: &Stack, state: &RunState) -> Vec<String> {
    state
        .services
        .iter()
        .filter(|(name, _)| name.as_str() != SUPERVISOR_SERVICE)
        .filter(|(_, record)| stack.runtime.liveness(&record.process) == Liveness::Exited)
        .map(|(name, _)| name.clone())
        .collect()
}
