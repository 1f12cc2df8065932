//! Up / status / down orchestration over the state file.
//!
//! Invariants:
//! - every process is recorded in `state.json` in the same step that starts it, and carries the
//!   run marker in its environment, so `down` (or a failed / interrupted `up`) can always stop it;
//! - a second `up` while everything is alive changes nothing and reports what runs;
//! - state whose processes are gone (stale) is detected, what is left of it stopped, and replaced;
//! - a failed or interrupted `up` leaves nothing running and no state file behind.

pub mod dashboard;
pub mod deploy;
mod forking;
mod identity;
pub mod image;
mod repair;
pub mod supervisor;
pub mod tenants;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, Context, Result};
use serde::Serialize;

use crate::services::{aws, postgres};
use harness_core::config::Config;
use harness_core::net;
use harness_core::progress::Step;
use harness_core::state::{Probe, RunState, ServiceRecord, StateFiles, STATE_VERSION};
use harness_runtime::runtime::native::NativeRuntime;
use harness_runtime::runtime::{
    run_marker, Liveness, ProcessSpec, RunningProcess, Runtime, StopOutcome,
};
pub use tenants::{GatewayCommand, Provisioned, TenantEndpoint, GATEWAY_SERVICE};

/// How long a service gets to stop after its stop signal before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long Postgres may take to accept connections.
const POSTGRES_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the emulator may take to answer its health endpoint.
const AWS_READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Health of one service as `status` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Process alive and its probe answers.
    Healthy,
    /// Process alive but its probe fails.
    Unhealthy,
    /// Process gone.
    Crashed,
}

/// One row of `status`.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Runtime it runs in.
    pub runtime: String,
    /// Process id (0 for a container).
    pub pid: i32,
    /// Container id (short) and image, for the docker runtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<harness_runtime::runtime::ContainerRef>,
    /// Port on 127.0.0.1.
    pub port: u16,
    /// URL for clients.
    pub url: String,
    /// Health.
    pub state: ServiceState,
    /// Why it is not healthy (probe error, last log line).
    pub detail: Option<String>,
    /// Resident memory of the service's process group (a container: its memory usage), bytes.
    pub rss_bytes: Option<u64>,
    /// RSS, PSS and USS of its process group, where the kernel accounts them (native processes);
    /// a forked tenant's USS is what it adds beyond the pages it shares with the fork server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<harness_runtime::runtime::MemoryUsage>,
    /// How often the harness restarted it.
    pub restarts: u32,
    /// Why it stopped the last time it was restarted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
    /// Log file.
    pub log: PathBuf,
}

/// Health of the whole run.
#[derive(Debug, Clone, Serialize)]
pub struct StackStatus {
    /// State directory of the run.
    pub state_dir: PathBuf,
    /// Runtime the services run in (`native`, `docker`).
    pub runtime: String,
    /// The AWS emulator of the run.
    pub emulator: harness_core::config::Emulator,
    /// Services in start order.
    pub services: Vec<ServiceStatus>,
}

impl StackStatus {
    /// The status of service `name`, if it is part of the run.
    pub fn service(&self, name: &str) -> Option<&ServiceStatus> {
        self.services.iter().find(|s| s.name == name)
    }

    /// True when every service is healthy.
    pub fn healthy(&self) -> bool {
        self.services
            .iter()
            .all(|s| s.state == ServiceState::Healthy)
    }
}

/// What `up` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpOutcome {
    /// Services were started.
    Started,
    /// Everything was already running; nothing was started.
    AlreadyRunning,
    /// Some services were down: only those were started again.
    Repaired,
}

/// Result of `up`.
#[derive(Debug, Clone, Serialize)]
pub struct UpReport {
    /// Started or already running.
    pub outcome: UpOutcome,
    /// Services of a previous run found dead and cleaned up before starting.
    pub cleaned_stale: Vec<String>,
    /// Services that were down and were started again (the others were left running).
    pub repaired: Vec<String>,
    /// Seconds until each started service was ready.
    pub ready_secs: Vec<(String, f64)>,
    /// Wall time of the whole `up`.
    pub elapsed_secs: f64,
    /// Status after `up`.
    pub status: StackStatus,
    /// Tenants and users this `up` created (generated passwords appear here once).
    pub provisioned: Provisioned,
    /// Where each tenant is reached.
    pub tenants: Vec<TenantEndpoint>,
    /// The dashboard's URL with the run's token (opens it; see `dashboard::dashboard_url`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
}

/// Result of `down`.
#[derive(Debug, Clone, Serialize)]
pub struct DownReport {
    /// Services stopped, with how.
    pub stopped: Vec<(String, StopOutcome)>,
    /// Processes of the run found by their marker but missing from the state file.
    pub orphans_stopped: usize,
    /// Whether the state file was corrupt (processes were then found by marker).
    pub state_was_corrupt: bool,
    /// Whether data (Postgres cluster, secrets) was removed too.
    pub volumes_removed: bool,
}

/// A deliberately broken tenant setup. Used only to prove that the e2e suite detects what it
/// claims to detect (`cargo xtask e2e --inject-fault ...`); never in a normal `up`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// Every instance gets the first tenant's `LANGFLOW_SECRET_KEY`.
    SharedSecretKey,
    /// Every instance connects as the first tenant's database role (one shared schema).
    SharedDatabaseRole,
}

impl Fault {
    /// The fault's name (`shared-secret-key`, ...), as the CLI and the reference image's
    /// `LFMT_FAULT` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::SharedSecretKey => "shared-secret-key",
            Self::SharedDatabaseRole => "shared-database-role",
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "shared-secret-key" => Ok(Self::SharedSecretKey),
            "shared-database-role" => Ok(Self::SharedDatabaseRole),
            _ => Err(anyhow!(
                "unknown fault {name:?}; use shared-secret-key or shared-database-role"
            )),
        }
    }
}

/// A run of the stack described by one configuration.
pub struct Stack {
    config: Config,
    files: StateFiles,
    runtime: Arc<dyn Runtime>,
    gateway_command: Option<GatewayCommand>,
    infra_only: bool,
    fault: Option<Fault>,
    image: Option<image::ImageRequest>,
}

impl Stack {
    /// A stack for `config` on the runtime `kind` (`auto`, `native` or `docker`; `None` = the
    /// configured `[runtime] kind`). A run already recorded in the state directory keeps the
    /// runtime it was started with (`status`/`down` must find its services); asking for another
    /// one is an error. `auto` picks docker when an engine answers and the images can be had,
    /// else native with a one-line notice (returned); when not `starting` (status, down with no
    /// state file) `auto` only needs an engine, so `down` still finds a lost run's containers.
    pub fn open(
        config: Config,
        kind: Option<&str>,
        starting: bool,
    ) -> Result<(Self, Option<String>)> {
        let mut config = config;
        let files = StateFiles::new(&config.state_dir);
        let requested = kind.unwrap_or(&config.runtime.kind).to_string();
        let recorded_state = files.read_state().ok().flatten();
        // A running stack keeps the emulator it was started with (repairs, the supervisor,
        // `status` and tenant commands must talk to that one).
        // (A state file from before emulators were recorded is a ministack run.)
        if let Some(emulator) = recorded_state
            .as_ref()
            .map(|s| s.emulator.unwrap_or_default())
        {
            let asked = std::env::var("LANGFLOW_INFRA_AWS_EMULATOR").ok();
            if let Some(asked) =
                asked.filter(|a| starting && !a.is_empty() && *a != emulator.name())
            {
                anyhow::bail!(
                    "a stack with the {emulator} emulator is up in {}; stop it with `cargo xtask down` before using --emulator {asked}",
                    config.state_dir.display()
                );
            }
            config.aws.emulator = emulator;
        }
        let recorded = recorded_state.map(|s| s.runtime);
        let mut notice = None;
        let chosen = match (recorded, requested.as_str()) {
            (Some(recorded), "auto") => recorded,
            (Some(recorded), wanted) if recorded == wanted => recorded,
            (Some(recorded), wanted) => anyhow::bail!(
                "a {recorded} run is up in {}; stop it with `cargo xtask down` before using --runtime {wanted}",
                config.state_dir.display()
            ),
            (None, "auto") => {
                match harness_runtime::runtime::docker::DockerRuntime::connect(&config, &run_marker(&config))
                    .and_then(|docker| {
                        if starting {
                            docker.check_images()?;
                        }
                        Ok(docker)
                    })
                {
                    Ok(docker) => {
                        let mut stack = Self::new(config);
                        stack.runtime = Arc::new(docker);
                        return Ok((stack, None));
                    }
                    Err(why) => {
                        notice = starting
                            .then(|| format!("runtime auto: using native ({why:#})"));
                        "native".to_string()
                    }
                }
            }
            (None, wanted) => wanted.to_string(),
        };
        let runtime = harness_runtime::runtime::for_run(&chosen, &config)?;
        let mut stack = Self::new(config);
        stack.runtime = runtime;
        Ok((stack, notice))
    }

    /// The run recorded in `config`'s state dir, in the runtime it was started with, with the
    /// harness's servers started by `servers`: how the run's own server processes (supervisor,
    /// dashboard) open the run they serve.
    pub fn of_recorded_run(config: Config, servers: GatewayCommand) -> Result<Self> {
        let runtime_name = StateFiles::new(&config.state_dir)
            .read_state()?
            .map(|s| s.runtime)
            .ok_or_else(|| anyhow!("no run is recorded in {}", config.state_dir.display()))?;
        let runtime = harness_runtime::runtime::for_run(&runtime_name, &config)?;
        Ok(Self::new(config)
            .with_runtime(runtime)
            .with_gateway_command(servers))
    }

    /// Runs the stack's services in `runtime` instead.
    pub fn with_runtime(mut self, runtime: Arc<dyn Runtime>) -> Self {
        self.runtime = runtime;
        self
    }

    /// A stack for `config` on the native runtime.
    pub fn new(config: Config) -> Self {
        let files = StateFiles::new(&config.state_dir);
        Self {
            config,
            files,
            runtime: Arc::new(NativeRuntime),
            gateway_command: None,
            infra_only: false,
            fault: None,
            image: None,
        }
    }

    /// Breaks tenant isolation on purpose (e2e self-test only).
    pub fn with_fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// Sets how the gateway process is started (the CLI re-executes itself; tests use the
    /// harness's `langflow-infra-gateway` binary).
    pub fn with_gateway_command(mut self, command: GatewayCommand) -> Self {
        self.gateway_command = Some(command);
        self
    }

    /// Makes `up` run the deployed image as the Fargate service would (image mode) instead of
    /// the harness's per-tenant instances.
    pub fn with_image(mut self, request: image::ImageRequest) -> Self {
        self.image = Some(request);
        self
    }

    /// Makes `up` start only Postgres and the AWS emulator (no tenants, gateway or Langflow).
    pub fn infra_only(mut self) -> Self {
        self.infra_only = true;
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The state files.
    pub fn files(&self) -> &StateFiles {
        &self.files
    }

    /// The runtime services run in.
    pub fn runtime(&self) -> &Arc<dyn Runtime> {
        &self.runtime
    }

    /// The marker value every process of this run carries (its state directory).
    pub fn run_marker(&self) -> String {
        harness_runtime::runtime::run_marker(&self.config)
    }

    /// Starts Postgres and the AWS emulator (in parallel), creates the Langflow database and the
    /// tenant bucket. Idempotent; Ctrl-C or any failure tears down what was started.
    pub async fn up(&self) -> Result<UpReport> {
        let started = Instant::now();
        // Nothing is made (not even the state dir) for an emulator this runtime cannot run.
        aws::check_runtime(&self.config, self.runtime.name() != "native")?;
        let _lock = self.files.lock()?;
        let mut cleaned_stale = Vec::new();
        if let Some(previous) = self.files.read_state()? {
            let status = self.status_of(&previous).await;
            if status
                .services
                .iter()
                .all(|s| s.state != ServiceState::Crashed)
            {
                return Ok(UpReport {
                    outcome: UpOutcome::AlreadyRunning,
                    cleaned_stale,
                    repaired: Vec::new(),
                    ready_secs: Vec::new(),
                    elapsed_secs: started.elapsed().as_secs_f64(),
                    status,
                    provisioned: Provisioned::default(),
                    tenants: self.tenant_endpoints().await?,
                    dashboard: dashboard::dashboard_url(&self.config.state_dir, &previous),
                });
            }
            let crashed: Vec<String> = status
                .services
                .iter()
                .filter(|s| s.state == ServiceState::Crashed)
                .map(|s| s.name.clone())
                .collect();
            if previous.runtime == self.runtime.name() {
                let repaired = tokio::select! {
                    result = self.repair(previous.clone(), &crashed) => result,
                    signal = interrupted() => Err(anyhow!("interrupted ({signal}) while repairing")),
                };
                let state = self.files.read_state()?.unwrap_or(previous);
                let ready_secs = repaired?;
                return Ok(UpReport {
                    outcome: UpOutcome::Repaired,
                    cleaned_stale,
                    repaired: crashed,
                    ready_secs,
                    elapsed_secs: started.elapsed().as_secs_f64(),
                    status: self.status_of(&state).await,
                    provisioned: Provisioned::default(),
                    tenants: self.tenant_endpoints().await?,
                    dashboard: dashboard::dashboard_url(&self.config.state_dir, &state),
                });
            }
            // Recorded by another runtime: start afresh.
            cleaned_stale = crashed;
            self.stop_recorded(&previous);
            self.files.remove_state()?;
        }
        // Processes / containers of an `up` that was killed before it could record or clean up.
        self.runtime.sweep(&self.run_marker(), STOP_GRACE);
        // A first `up` in this state dir (no secrets yet) makes the data volumes; if it fails,
        // they go too, so a refused start leaves nothing behind. Data of an earlier run stays.
        let first_up = !self.files.secrets_path().exists();

        let state = Arc::new(Mutex::new(RunState {
            version: STATE_VERSION,
            runtime: self.runtime.name().into(),
            emulator: Some(self.config.aws.emulator),
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs(),
            services: Default::default(),
        }));
        let outcome = tokio::select! {
            result = self.start_all(&state) => result,
            signal = interrupted() => Err(anyhow!("interrupted ({signal}); stopped everything this `up` started")),
        };
        match outcome {
            Ok((ready_secs, provisioned)) => {
                let state = state.lock().expect("state lock").clone();
                let status = self.status_of(&state).await;
                Ok(UpReport {
                    outcome: UpOutcome::Started,
                    cleaned_stale,
                    repaired: Vec::new(),
                    ready_secs,
                    elapsed_secs: started.elapsed().as_secs_f64(),
                    status,
                    provisioned,
                    tenants: self.tenant_endpoints().await?,
                    dashboard: dashboard::dashboard_url(&self.config.state_dir, &state),
                })
            }
            Err(error) => {
                let state = state.lock().expect("state lock").clone();
                self.stop_recorded(&state);
                self.runtime.sweep(&self.run_marker(), STOP_GRACE);
                self.files.remove_state()?;
                if first_up {
                    if let Err(e) = self.runtime.remove_volumes(&self.run_marker()) {
                        harness_core::progress::println(format!(
                            "could not remove the volumes of the failed start: {e:#}"
                        ));
                    }
                }
                Err(error)
            }
        }
    }

    /// Infrastructure, then (unless infra-only) tenants, gateway and instances.
    async fn start_all(
        &self,
        state: &Arc<Mutex<RunState>>,
    ) -> Result<(Vec<(String, f64)>, Provisioned)> {
        let mut ready = self.start_infra(state).await?;
        if self.infra_only {
            return Ok((ready, Provisioned::default()));
        }
        if let Some(request) = &self.image {
            ready.extend(self.start_image_tasks(state, request).await?);
            ready.push(self.start_supervisor(state).await?);
            ready.push(self.start_dashboard(state, None).await?);
            return Ok((ready, Provisioned::default()));
        }
        image::ImageMode::remove(&self.config.state_dir)?;
        deploy::Deployment::remove(&self.config.state_dir)?;
        let mut provisioned = self.provision_tenants(state).await?;
        ready.extend(self.start_tenant_tiers(state).await?);
        provisioned.credentials = self.provision_users(state).await?;
        ready.push(self.start_supervisor(state).await?);
        ready.push(self.start_dashboard(state, None).await?);
        Ok((ready, provisioned))
    }

    async fn start_infra(&self, state: &Arc<Mutex<RunState>>) -> Result<Vec<(String, f64)>> {
        self.files.ensure_dir()?;
        let (pg, aws) = tokio::try_join!(
            self.start_postgres(state, None),
            self.start_aws(state, None)
        )?;
        let mut ready = vec![pg, aws];
        // The identity server is a harness server process: it runs whenever the stack knows how
        // to start those (the CLI always does).
        if self.gateway_command.is_some() {
            ready.push(self.start_identity(state, aws_port(state)?, None).await?);
        }
        Ok(ready)
    }

    /// Records a started service in the shared state and writes the state file. A service started
    /// again (repair) keeps the restart count and reason its previous record carries.
    fn record(
        &self,
        state: &Arc<Mutex<RunState>>,
        name: &str,
        mut record: ServiceRecord,
    ) -> Result<()> {
        let mut state = state.lock().expect("state lock");
        if let Some(previous) = state.services.get(name) {
            record.restarts = previous.restarts;
            record.last_exit = previous.last_exit.clone();
        }
        state.services.insert(name.to_string(), record);
        self.files.write_state(&state)
    }

    /// The harness's own server program (gateway, identity, supervisor), as configured.
    fn servers(&self) -> Result<&GatewayCommand> {
        self.gateway_command.as_ref().ok_or_else(|| {
            anyhow!("no harness server program configured (Stack::with_gateway_command)")
        })
    }

    /// Starts one of the harness's own servers: always a host process (whatever runs the
    /// services), logging to `logs/<name>.log`. Returns the process and its log file.
    fn start_host_server(
        &self,
        name: &str,
        args: Vec<String>,
        port: u16,
    ) -> Result<(RunningProcess, PathBuf)> {
        let spec = ProcessSpec {
            name: name.into(),
            program: self.servers()?.program.clone(),
            args,
            env: Default::default(),
            cwd: self.config.state_dir.clone(),
            log: self.config.log_dir().join(format!("{name}.log")),
            run_as: None,
            stop_signal: harness_runtime::runtime::StopSignal::Term,
            port,
            container: None,
            fork_server: None,
        };
        let (process, _) = NativeRuntime.start(&spec, &self.run_marker())?;
        Ok((process, spec.log))
    }

    /// Records a started host server and waits up to `timeout` until its probe answers; the error
    /// of one that exits or never answers carries its last log line.
    async fn record_and_await(
        &self,
        state: &Arc<Mutex<RunState>>,
        name: &str,
        record: ServiceRecord,
        timeout: Duration,
    ) -> Result<()> {
        self.record(state, name, record.clone())?;
        net::wait_until(
            name,
            timeout,
            Duration::from_millis(100),
            self.alive_fn(&record.process),
            || {
                let record = record.clone();
                async move { Ok(probe(&record, None, "").await.is_ok()) }
            },
        )
        .await
        .map_err(|e| self.with_log_tail(e, &record.process, &record.log))
    }

    /// Starts `spec` in the run's runtime (off the async threads: engine calls block).
    async fn start_spec(&self, spec: &ProcessSpec) -> Result<(RunningProcess, u16)> {
        let (runtime, spec, marker) = (self.runtime.clone(), spec.clone(), self.run_marker());
        tokio::task::spawn_blocking(move || runtime.start(&spec, &marker)).await?
    }

    /// `error` with the service's last log line (from its log file or the engine).
    fn with_log_tail(
        &self,
        error: anyhow::Error,
        process: &RunningProcess,
        log: &Path,
    ) -> anyhow::Error {
        let text = self.runtime.read_log(process, log).unwrap_or_default();
        let reason = self
            .runtime
            .exit_reason(process)
            .map(|r| format!(" ({r})"))
            .unwrap_or_default();
        match last_line(&text) {
            Some(line) => {
                anyhow!("{error:#}{reason}; last log line: {line} (`cargo xtask logs` shows all)")
            }
            None => anyhow!("{error:#}{reason}"),
        }
    }

    /// A liveness closure for readiness polling.
    fn alive_fn(&self, process: &RunningProcess) -> impl FnMut() -> bool {
        let runtime = self.runtime.clone();
        let process = process.clone();
        move || runtime.liveness(&process) == Liveness::Running
    }

    /// Starts Postgres on `port` (a repair reuses the recorded one) or the configured port.
    async fn start_postgres(
        &self,
        state: &Arc<Mutex<RunState>>,
        port: Option<u16>,
    ) -> Result<(String, f64)> {
        let step = Step::start("postgres");
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let config = &self.config;
            let placement = self.runtime.placement();
            let port = placement.host_port("postgres", port.unwrap_or(config.ports.postgres))?;
            let mut secrets = self.files.read_secrets()?;
            step.set_message("preparing the cluster");
            let (password, spec) =
                postgres::server_spec(config, &placement, secrets.postgres_password.clone(), port)
                    .await?;
            if secrets.postgres_password.as_deref() != Some(password.as_str()) {
                secrets.postgres_password = Some(password.clone());
                self.files.write_secrets(&secrets)?;
            }
            let (process, port) = self.start_spec(&spec).await?;
            self.record(
                state,
                "postgres",
                ServiceRecord {
                    process: process.clone(),
                    port,
                    url: format!(
                        "postgres://{}@127.0.0.1:{port}/{}",
                        postgres::SUPERUSER,
                        config.postgres.database
                    ),
                    log: spec.log.clone(),
                    probe: Probe::Postgres,
                    tier: 0,
                    restarts: 0,
                    last_exit: None,
                },
            )?;
            step.set_message(format!("waiting for 127.0.0.1:{port}"));
            postgres::wait_ready(
                port,
                &password,
                POSTGRES_READY_TIMEOUT,
                self.alive_fn(&process),
            )
            .await
            .map_err(|e| self.with_log_tail(e, &process, &spec.log))?;
            postgres::ensure_database(port, &password, &config.postgres.database).await?;
            Ok(("postgres".to_string(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }

    /// Starts the emulator on `port` (a repair reuses the recorded one) or the configured port.
    async fn start_aws(
        &self,
        state: &Arc<Mutex<RunState>>,
        port: Option<u16>,
    ) -> Result<(String, f64)> {
        let config = &self.config;
        let placement = self.runtime.placement();
        let port = placement.host_port("aws", port.unwrap_or(config.ports.aws))?;
        let spec = aws::server_spec(config, &placement, port).await?;
        let step = Step::start("aws emulator");
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let (process, port) = self.start_spec(&spec).await?;
            let url = aws::endpoint(port);
            self.record(
                state,
                "aws",
                ServiceRecord {
                    process: process.clone(),
                    port,
                    url: url.clone(),
                    log: spec.log.clone(),
                    probe: Probe::Http {
                        url: format!("{url}{}", aws::health_path(config.aws.emulator)),
                        ca_file: None,
                    },
                    tier: 0,
                    restarts: 0,
                    last_exit: None,
                },
            )?;
            step.set_message(format!("waiting for {url}"));
            aws::wait_ready(
                port,
                config.aws.emulator,
                AWS_READY_TIMEOUT,
                self.alive_fn(&process),
            )
            .await
            .map_err(|e| self.with_log_tail(e, &process, &spec.log))?;
            aws::ensure_bucket(port, &config.aws.region, &config.aws.tenant_bucket).await?;
            Ok(("aws".to_string(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }

    /// Status of the current run, or `None` when nothing is running.
    pub async fn status(&self) -> Result<Option<StackStatus>> {
        match self.files.read_state()? {
            Some(state) => Ok(Some(self.status_of(&state).await)),
            None => Ok(None),
        }
    }

    async fn status_of(&self, state: &RunState) -> StackStatus {
        let password = self
            .files
            .read_secrets()
            .ok()
            .and_then(|s| s.postgres_password);
        let mut records: Vec<(&String, &ServiceRecord)> = state.services.iter().collect();
        records.sort_by_key(|(name, record)| (record.tier, service_order(name)));
        let checks = records.into_iter().map(|(name, record)| {
            let password = password.clone();
            async move {
                let liveness = self.runtime.liveness(&record.process);
                let memory = self.runtime.memory(&record.process);
                let (state, detail) = if liveness == Liveness::Exited {
                    let log = self
                        .runtime
                        .read_log(&record.process, &record.log)
                        .unwrap_or_default();
                    let detail = format!(
                        "{} {}; last log line: {}",
                        record.process.describe(),
                        self.runtime
                            .exit_reason(&record.process)
                            .unwrap_or_else(|| "exited".into()),
                        last_line(&log).unwrap_or_else(|| "(empty)".into())
                    );
                    (ServiceState::Crashed, Some(detail))
                } else {
                    match probe(record, password.as_deref(), &self.config.postgres.database).await {
                        Ok(()) if record.restarts > 0 => (
                            ServiceState::Healthy,
                            Some(format!(
                                "restarted {}× (last stop: {})",
                                record.restarts,
                                record.last_exit.as_deref().unwrap_or("unknown")
                            )),
                        ),
                        Ok(()) => (ServiceState::Healthy, None),
                        Err(e) => (ServiceState::Unhealthy, Some(format!("{e:#}"))),
                    }
                };
                ServiceStatus {
                    name: name.clone(),
                    runtime: record.process.runtime.clone(),
                    pid: record.process.pid,
                    container: record.process.container.clone(),
                    port: record.port,
                    url: record.url.clone(),
                    state,
                    detail,
                    // One walk of the process group gives both where the kernel accounts PSS/USS.
                    rss_bytes: memory
                        .map(|m| m.rss)
                        .or_else(|| self.runtime.rss_bytes(&record.process)),
                    memory,
                    restarts: record.restarts,
                    last_exit: record.last_exit.clone(),
                    log: record.log.clone(),
                }
            }
        });
        StackStatus {
            state_dir: self.config.state_dir.clone(),
            runtime: state.runtime.clone(),
            emulator: state.emulator.unwrap_or_default(),
            services: futures::future::join_all(checks).await,
        }
    }

    /// Stops every recorded service, highest tier first (tenants, gateway, then infrastructure).
    fn stop_recorded(&self, state: &RunState) -> Vec<(String, StopOutcome)> {
        let mut records: Vec<(&String, &ServiceRecord)> = state.services.iter().collect();
        records.sort_by_key(|(name, record)| {
            (
                std::cmp::Reverse(record.tier),
                std::cmp::Reverse(service_order(name)),
            )
        });
        records
            .into_iter()
            .map(|(name, record)| {
                let outcome = self
                    .runtime
                    .stop(&record.process, STOP_GRACE)
                    .unwrap_or(StopOutcome::AlreadyExited);
                (name.clone(), outcome)
            })
            .collect()
    }

    /// Stops the run and removes its temporary state (state file, logs, emulator scratch files);
    /// with `volumes`, also the data: the Postgres cluster, the emulator's S3 objects and the
    /// generated secrets. Idempotent.
    pub fn down(&self, volumes: bool) -> Result<DownReport> {
        if !self.config.state_dir.exists() {
            return Ok(DownReport {
                stopped: Vec::new(),
                orphans_stopped: 0,
                state_was_corrupt: false,
                volumes_removed: volumes,
            });
        }
        let _lock = self.files.lock()?;
        let (state, state_was_corrupt) = match self.files.read_state() {
            Ok(state) => (state, false),
            Err(_) => (None, true),
        };
        let stopped = state
            .as_ref()
            .map(|s| self.stop_recorded(s))
            .unwrap_or_default();
        let orphans_stopped = self.runtime.sweep(&self.run_marker(), STOP_GRACE);
        self.files.remove_state()?;
        image::ImageMode::remove(&self.config.state_dir)?;
        deploy::Deployment::remove(&self.config.state_dir)?;
        for temp in [
            self.config.log_dir(),
            self.config.state_dir.join("aws"),
            self.config.state_dir.join("gateway"),
            self.config.state_dir.join("tasks"),
            dashboard::dashboard_dir(&self.config.state_dir),
        ] {
            remove_dir_if_exists(&temp)?;
        }
        if volumes {
            remove_dir_if_exists(&self.config.state_dir.join("postgres"))?;
            remove_dir_if_exists(&self.config.state_dir.join("tenants"))?;
            remove_dir_if_exists(&aws::data_dir(&self.config))?;
            self.runtime.remove_volumes(&self.run_marker())?;
            harness_core::state::remove_if_exists(&self.files.secrets_path())?;
        }
        Ok(DownReport {
            stopped,
            orphans_stopped,
            state_was_corrupt,
            volumes_removed: volumes,
        })
    }

    /// The state of the running stack; an error telling to start it when nothing runs.
    pub fn running_state(&self) -> Result<harness_core::state::RunState> {
        self.files
            .read_state()?
            .ok_or_else(|| anyhow!("the stack is not running; start it with `cargo xtask up`"))
    }

    /// Host port of service `name` of the running stack.
    pub fn service_port(state: &harness_core::state::RunState, name: &str) -> Result<u16> {
        state.services.get(name).map(|s| s.port).ok_or_else(|| {
            anyhow!("{name} is not part of the running stack; restart it with `cargo xtask down && cargo xtask up`")
        })
    }

    /// Log file of service `name` in the current run (the name must be one of the run's services).
    pub fn log_path(&self, name: &str) -> Result<PathBuf> {
        let state = self
            .files
            .read_state()?
            .ok_or_else(|| anyhow!("nothing is running; start the stack with `cargo xtask up`"))?;
        crate::services::check_service_name(name, state.services.keys().map(String::as_str))?;
        Ok(state.services[name].log.clone())
    }

    /// The log of service `name` so far: its log file, or the engine's log of its container.
    pub fn log_text(&self, name: &str) -> Result<String> {
        let state = self
            .files
            .read_state()?
            .ok_or_else(|| anyhow!("nothing is running; start the stack with `cargo xtask up`"))?;
        crate::services::check_service_name(name, state.services.keys().map(String::as_str))?;
        let record = &state.services[name];
        self.runtime.read_log(&record.process, &record.log)
    }

    /// Log files of every service of the current run, in start order.
    pub fn log_paths(&self) -> Result<Vec<(String, PathBuf)>> {
        let state = self
            .files
            .read_state()?
            .ok_or_else(|| anyhow!("nothing is running; start the stack with `cargo xtask up`"))?;
        let mut logs: Vec<(u8, usize, String, PathBuf)> = state
            .services
            .iter()
            .map(|(name, r)| (r.tier, service_order(name), name.clone(), r.log.clone()))
            .collect();
        logs.sort();
        Ok(logs
            .into_iter()
            .map(|(_, _, name, log)| (name, log))
            .collect())
    }
}

/// Resolves when the process is asked to stop: Ctrl-C (SIGINT) or SIGTERM (a CI runner or
/// `kill`); names which one. `up` then stops everything it started, so neither leaves orphans.
pub async fn interrupted() -> &'static str {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return "Ctrl-C";
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}

/// Port of a service recorded in the run's state, if it is part of the run.
fn recorded_port(state: &Mutex<RunState>, name: &str) -> Option<u16> {
    state
        .lock()
        .expect("state lock")
        .services
        .get(name)
        .map(|r| r.port)
}

/// Port of the run's AWS emulator.
fn aws_port(state: &Mutex<RunState>) -> Result<u16> {
    recorded_port(state, "aws").context("the AWS emulator is not part of the run")
}

/// Start order of known infrastructure services (others sort after them, by name).
fn service_order(name: &str) -> usize {
    crate::services::INFRA_SERVICES
        .iter()
        .position(|s| *s == name)
        .unwrap_or(usize::MAX)
}

async fn probe(record: &ServiceRecord, password: Option<&str>, database: &str) -> Result<()> {
    match &record.probe {
        Probe::Postgres => {
            let password = password.context("no Postgres password in secrets.json")?;
            postgres::probe(record.port, password, database).await
        }
        Probe::Alive => Ok(()),
        Probe::Http { url, ca_file } => {
            let mut client = reqwest::Client::builder();
            if let Some(ca_file) = ca_file {
                let pem = std::fs::read(ca_file)
                    .with_context(|| format!("cannot read {}", ca_file.display()))?;
                client = client.add_root_certificate(reqwest::Certificate::from_pem(&pem)?);
            }
            let response = client
                .build()?
                .get(url)
                .timeout(Duration::from_secs(3))
                .send()
                .await?;
            if !response.status().is_success() {
                anyhow::bail!("{url} answered {}", response.status());
            }
            Ok(())
        }
    }
}

fn finish_step<T>(step: Step, result: &Result<T>) {
    match result {
        Ok(_) => step.finish("ready"),
        Err(_) => step.fail(),
    }
}

/// The last non-empty line of a text, at most 300 characters.
fn last_line(text: &str) -> Option<String> {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map(|l| l.chars().take(300).collect())
}

fn remove_dir_if_exists(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}
