//! The dashboard's process in a run: a harness host server (like the gateway) started last by
//! every full `up`, restarted by the supervisor like any other service, stopped first by `down`.
//! What it serves lives in the suites crate (`harness::dashboard`); this module only starts it,
//! keeps its per-run token and says where it is.
//!
//! The token is made (CSPRNG) when a run starts and kept in `<state>/dashboard/token` (0600) for
//! the run's life, so a restarted dashboard accepts the page a person already has open; it is
//! never in `state.json` or a log line.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use super::{finish_step, GatewayCommand, Stack};
use harness_core::config::Config;
use harness_core::net;
use harness_core::progress::Step;
use harness_core::state::{Probe, RunState, ServiceRecord};

/// Name of the dashboard in the run state.
pub const DASHBOARD_SERVICE: &str = "dashboard";
/// Stop tier of the dashboard: it stops first, with the supervisor (it only reads the others).
pub const DASHBOARD_TIER: u8 = 3;
/// How long the dashboard may take to answer `/health`.
const DASHBOARD_READY_TIMEOUT: Duration = Duration::from_secs(15);

/// What the dashboard process needs to open the run it shows (written 0600 by `up`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DashboardInput {
    /// The run's configuration.
    pub config: Config,
    /// Its repository root (`Config::root` is not serialised).
    pub root: PathBuf,
    /// How the harness's servers are started (the e2e action re-runs this program).
    pub servers: GatewayCommand,
    /// Port on 127.0.0.1.
    pub port: u16,
}

/// The dashboard's folder in a state dir (input, token, exports, e2e runs).
pub fn dashboard_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("dashboard")
}

/// The run's dashboard token file.
pub fn token_path(state_dir: &Path) -> PathBuf {
    dashboard_dir(state_dir).join("token")
}

/// The run's dashboard token, if the run has one.
pub fn read_token(state_dir: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(token_path(state_dir)) {
        Ok(text) => Ok(Some(text.trim().to_string()).filter(|t| !t.is_empty())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| {
            format!(
                "cannot read the dashboard token {}",
                token_path(state_dir).display()
            )
        }),
    }
}

/// The URL that opens the run's dashboard: its port and the token in the fragment (which no
/// server, proxy or log ever sees; the page keeps it for its own origin). `None` when the run
/// has no dashboard.
pub fn dashboard_url(state_dir: &Path, state: &RunState) -> Option<String> {
    let record = state.services.get(DASHBOARD_SERVICE)?;
    let token = read_token(state_dir).ok().flatten()?;
    Some(format!("http://127.0.0.1:{}/#token={token}", record.port))
}

impl Stack {
    /// Starts the dashboard process of this run on `port` (a free one when `None`). A new run
    /// (`port` is `None`) gets a new token; a restart keeps the run's token.
    pub(super) async fn start_dashboard(
        &self,
        state: &Arc<Mutex<RunState>>,
        port: Option<u16>,
    ) -> Result<(String, f64)> {
        let step = Step::start(DASHBOARD_SERVICE);
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let command = self.servers()?;
            let dir = dashboard_dir(&self.config.state_dir);
            harness_core::state::create_private_dir(&dir)?;
            if port.is_none() || read_token(&self.config.state_dir)?.is_none() {
                harness_core::secret::write_secret_file(
                    &token_path(&self.config.state_dir),
                    harness_core::secret::hex(32).as_bytes(),
                )?;
            }
            let port = match port {
                Some(port) => port,
                None => net::resolve_port(DASHBOARD_SERVICE, self.config.ports.dashboard)?,
            };
            let input_path = dir.join("input.json");
            harness_core::state::write_json_0600(
                &input_path,
                &DashboardInput {
                    config: self.config.clone(),
                    root: self.config.root.clone(),
                    servers: command.clone(),
                    port,
                },
            )?;
            let mut args = command.dashboard_args.clone();
            args.extend(["--input".to_string(), input_path.display().to_string()]);
            let (process, log) = self.start_host_server(DASHBOARD_SERVICE, args, port)?;
            let url = format!("http://127.0.0.1:{port}");
            let record = ServiceRecord {
                process: process.clone(),
                port,
                url: url.clone(),
                log: log.clone(),
                probe: Probe::Http {
                    url: format!("{url}/health"),
                    ca_file: None,
                },
                tier: DASHBOARD_TIER,
                restarts: 0,
                last_exit: None,
            };
            step.set_message(format!("waiting for {url}/health"));
            self.record_and_await(state, DASHBOARD_SERVICE, record, DASHBOARD_READY_TIMEOUT)
                .await?;
            Ok((DASHBOARD_SERVICE.to_string(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }
}
