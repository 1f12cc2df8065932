//! `cargo xtask chaos`: faults injected into an isolated stack (two tenants, own state dir, free
//! ports) under a bounded loopback load, each scenario with a pass condition and its figures —
//! requests sent and failed, time to the first failure, longest outage, time to recovery, data
//! lost. Scenarios:
//! - `kill-<service>` (tenant, postgres, emulator, gateway, identity): SIGKILL to the service's
//!   process group or container, as a crash; the supervisor must bring it back on its port while
//!   only what depends on it fails ([`kills`]);
//! - `interrupt-up`: SIGINT / SIGTERM to `cargo xtask up` at random points, N rounds: no process
//!   or container left behind, no state file, and no half-made tenant ([`interrupt`]);
//! - `state-dir-read-only`, `state-dir-full`: `tenant schema-add` on a read-only state dir or a
//!   full disk under the tenants' directory: a clear error and nothing half-made ([`disk`]).
//!
//! Data written before the scenarios (a flow per tenant, an object in the tenant bucket) is read
//! back after every scenario: a missing or changed item counts as data lost.

pub mod disk;
pub mod interrupt;
pub mod kills;
pub mod load;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::e2e::client::{Auth, TenantClient};
use crate::e2e::Outcome;
use crate::services::aws;
use crate::stack::{GatewayCommand, Stack, GATEWAY_SERVICE};
use crate::tenancy::Tenancy;

/// The two tenants of a chaos run.
pub const TENANTS: [&str; 2] = ["acme", "widgetco"];

/// Every scenario, in run order.
pub const SCENARIOS: [&str; 8] = [
    "kill-tenant",
    "kill-postgres",
    "kill-emulator",
    "kill-gateway",
    "kill-identity",
    "state-dir-read-only",
    "state-dir-full",
    "interrupt-up",
];

/// A seed for the interrupt points when none is given.
pub fn random_seed() -> u64 {
    rand::random()
}

/// Options of a chaos run.
#[derive(Debug, Clone)]
pub struct ChaosOptions {
    /// Runtime of the stack (`native`, `docker`, `auto`); `None` = the configured one.
    pub runtime: Option<String>,
    /// Scenarios to run (names from [`SCENARIOS`]); empty = all.
    pub scenarios: Vec<String>,
    /// Load: requests per second per tenant.
    pub rps_per_tenant: f64,
    /// Rounds of `interrupt-up`.
    pub rounds: usize,
    /// Seed of the random interrupt points (printed, so a run can be repeated).
    pub seed: u64,
    /// How the harness's servers start (gateway, identity, supervisor).
    pub servers: GatewayCommand,
    /// The `cargo xtask` executable, run as a user would for `up` and `tenant schema-add`.
    pub cli: PathBuf,
    /// How long a killed service may take to serve again.
    pub recovery_timeout: Duration,
}

impl ChaosOptions {
    /// Checks the scenario names (a clear error naming the bad one).
    pub fn check(&self) -> Result<()> {
        for name in &self.scenarios {
            if !SCENARIOS.contains(&name.as_str()) {
                bail!(
                    "unknown chaos scenario {name:?}; pick from {}",
                    SCENARIOS.join(", ")
                );
            }
        }
        if !(self.rps_per_tenant > 0.0 && self.rps_per_tenant <= 200.0) {
            bail!(
                "--rps {} is out of range; use a rate between 0.1 and 200 requests per second per tenant",
                self.rps_per_tenant
            );
        }
        Ok(())
    }

    fn wants(&self, scenario: &str) -> bool {
        self.scenarios.is_empty() || self.scenarios.iter().any(|s| s == scenario)
    }
}

/// The result of one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    /// Scenario name.
    pub scenario: String,
    /// Pass, fail, or skip (with the reason in `evidence`).
    pub outcome: Outcome,
    /// Load requests sent during the scenario (all tenants).
    pub requests_sent: usize,
    /// Load requests that failed (all tenants).
    pub requests_failed: usize,
    /// Longest outage any tenant saw, ms.
    pub max_outage_ms: f64,
    /// From the fault to the first failed request of the most affected tenant, ms.
    pub ms_to_first_failure: Option<f64>,
    /// From the fault until everything served again, ms.
    pub recovery_ms: Option<f64>,
    /// Items written before the fault that were missing or changed afterwards (must be 0).
    pub data_lost: usize,
    /// Per-tenant load figures.
    pub tenants: BTreeMap<String, load::TenantFigures>,
    /// Wall time of the scenario, s.
    pub secs: f64,
    /// What was checked and seen (why it failed, when it did).
    pub evidence: String,
}

impl ScenarioResult {
    fn new(scenario: &str) -> Self {
        Self {
            scenario: scenario.to_string(),
            outcome: Outcome::Pass,
            requests_sent: 0,
            requests_failed: 0,
            max_outage_ms: 0.0,
            ms_to_first_failure: None,
            recovery_ms: None,
            data_lost: 0,
            tenants: BTreeMap::new(),
            secs: 0.0,
            evidence: String::new(),
        }
    }

    fn skipped(scenario: &str, why: impl Into<String>) -> Self {
        let mut result = Self::new(scenario);
        result.outcome = Outcome::Skip;
        result.evidence = why.into();
        result
    }

    /// Marks the scenario failed, adding `why` to the evidence.
    fn fail(&mut self, why: impl AsRef<str>) {
        self.outcome = Outcome::Fail;
        self.note(why);
    }

    /// Adds a note to the evidence.
    fn note(&mut self, what: impl AsRef<str>) {
        if !self.evidence.is_empty() {
            self.evidence.push_str("; ");
        }
        self.evidence.push_str(what.as_ref());
    }
}

/// A whole chaos run.
#[derive(Debug, Clone, Serialize)]
pub struct ChaosReport {
    /// Runtime the stack ran in.
    pub runtime: String,
    /// Load: requests per second per tenant, and the tenants.
    pub rps_per_tenant: f64,
    /// Tenants under load.
    pub tenants: Vec<String>,
    /// Seed of the random interrupt points.
    pub seed: u64,
    /// Every scenario, in run order.
    pub results: Vec<ScenarioResult>,
    /// Seconds to bring the stack up.
    pub up_secs: f64,
    /// Seconds of the whole run.
    pub total_secs: f64,
}

impl ChaosReport {
    /// Number of failed scenarios.
    pub fn failures(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .count()
    }
}

/// What the scenarios share: the stack, its tenants, the data to check, the load's targets.
pub struct ChaosContext<'a> {
    /// The isolated stack.
    pub stack: &'a Stack,
    /// Per tenant: a client, a user's token, the flow written before the faults and its name.
    pub tenants: Vec<TenantData>,
    /// The object written to the tenant bucket before the faults: key and content.
    pub object: (String, Vec<u8>),
    /// The run's options.
    pub options: ChaosOptions,
}

/// One tenant's data written before the faults.
pub struct TenantData {
    /// Prefix.
    pub prefix: String,
    /// Client of the tenant's URL at the gateway.
    pub client: TenantClient,
    /// Bearer token of the tenant's admin.
    pub token: String,
    /// Id of the flow written before the faults.
    pub flow_id: String,
    /// Its name.
    pub flow_name: String,
}

impl ChaosContext<'_> {
    /// The load targets: every tenant's flow, with its token.
    pub fn load_targets(&self) -> Vec<load::LoadTarget> {
        self.tenants
            .iter()
            .map(|t| load::LoadTarget {
                tenant: t.prefix.clone(),
                url: format!("{}api/v1/flows/{}", t.client.base(), t.flow_id),
                token: t.token.clone(),
            })
            .collect()
    }

    /// Reads back what was written before the faults; returns how many items are missing or
    /// changed, with a description of each.
    pub async fn data_lost(&self) -> (usize, Vec<String>) {
        let mut lost = Vec::new();
        // Where the tenants are served now: a new `up` may have picked a new gateway port.
        let endpoints = self.stack.tenant_endpoints().await.unwrap_or_default();
        for t in &self.tenants {
            let path = format!("api/v1/flows/{}", t.flow_id);
            let client = endpoints
                .iter()
                .find(|e| e.prefix == t.prefix)
                .map(|e| TenantClient::new(&e.url))
                .unwrap_or_else(|| t.client.clone());
            match client.get(&path, &Auth::Bearer(&t.token)).await {
                Ok(answer) if answer.status == 200 => {
                    if answer.json()["name"].as_str() != Some(t.flow_name.as_str()) {
                        lost.push(format!(
                            "{}'s flow changed: {}",
                            t.prefix,
                            answer.evidence()
                        ));
                    }
                }
                Ok(answer) => lost.push(format!(
                    "{}'s flow {} unreadable: {}",
                    t.prefix,
                    t.flow_id,
                    answer.evidence()
                )),
                Err(e) => lost.push(format!("{}'s flow unreadable: {e:#}", t.prefix)),
            }
        }
        match self.read_object().await {
            Ok(bytes) if bytes == self.object.1 => {}
            Ok(_) => lost.push(format!("object {} changed", self.object.0)),
            Err(e) => lost.push(format!("object {} unreadable: {e:#}", self.object.0)),
        }
        (lost.len(), lost)
    }

    /// Reads back what was written before the faults into `result`: the count as `data_lost`,
    /// and a failure naming what is missing or changed.
    pub async fn check_data(&self, result: &mut ScenarioResult) {
        let (lost, what) = self.data_lost().await;
        result.data_lost = lost;
        if lost > 0 {
            result.fail(format!("data lost: {}", what.join("; ")));
        }
    }

    async fn read_object(&self) -> Result<Vec<u8>> {
        // The port from the state file: no need to probe every service for it.
        let state = self
            .stack
            .files()
            .read_state()?
            .context("the stack is down")?;
        let port = state.services.get("aws").context("no emulator")?.port;
        let s3 = aws::s3_client(port, &self.stack.config().aws.region).await;
        let object = s3
            .get_object()
            .bucket(&self.stack.config().aws.tenant_bucket)
            .key(&self.object.0)
            .send()
            .await
            .map_err(aws_sdk_s3::Error::from)?;
        Ok(object.body.collect().await?.into_bytes().to_vec())
    }

    /// Waits until every service is healthy and each tenant's load succeeds again (after a
    /// scenario, before the next); false after `timeout`.
    pub async fn wait_all_healthy(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.stack.status().await {
                if status.healthy() {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        false
    }
}

fn tenants_yaml() -> String {
    let mut yaml = String::from("tenants:\n");
    for prefix in TENANTS {
        yaml.push_str(&format!(
            "  - prefix: {prefix}\n    users:\n      - username: admin@{prefix}.com\n        superuser: true\n"
        ));
    }
    yaml
}

/// Brings up an isolated stack, writes the data to check, runs the chosen scenarios, tears the
/// stack down and returns the report.
pub async fn run(root: &Path, options: &ChaosOptions) -> Result<ChaosReport> {
    options.check()?;
    let started = Instant::now();
    let dir = tempfile::Builder::new()
        .prefix("lfi-chaos-")
        .tempdir()
        .context("cannot create a temp dir for the chaos stack")?;
    let mut config = Config::isolated_with_tenants(root, dir.path(), &tenants_yaml())?;
    // All load comes from 127.0.0.1, and every interrupt-up round logs in again.
    config.langflow.login_rate_limit_per_minute = crate::e2e::local::E2E_LOGIN_RATE_LIMIT;
    config.gateway.tls = false;
    // The disk scenarios need the tenants' directory on a filesystem of its own (a small tmpfs
    // they can fill), mounted before anything is written there.
    let tenants_mount = if options.wants("state-dir-full") || options.wants("state-dir-read-only") {
        disk::TenantsMount::prepare(&config.state_dir)
    } else {
        Err("not asked for".to_string())
    };
    let (stack, notice) = Stack::open(config, options.runtime.as_deref(), true)?;
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }
    let stack = stack.with_gateway_command(options.servers.clone());
    let runtime = stack.runtime().name().to_string();
    let up_started = Instant::now();
    let outcome = async {
        let up = stack.up().await?;
        let up_secs = up_started.elapsed().as_secs_f64();
        let context = prepare(&stack, &up, options).await?;
        let results = run_scenarios(&context, options, tenants_mount.as_ref(), dir.path()).await;
        Ok::<_, anyhow::Error>((results, up_secs))
    }
    .await;
    // The tmpfs goes first: `down --volumes` removes the tenants' directory it is mounted on.
    drop(tenants_mount);
    let down = stack.down(true);
    let (results, up_secs) = outcome?;
    down?;
    Ok(ChaosReport {
        runtime,
        rps_per_tenant: options.rps_per_tenant,
        tenants: TENANTS.iter().map(|t| t.to_string()).collect(),
        seed: options.seed,
        results,
        up_secs,
        total_secs: started.elapsed().as_secs_f64(),
    })
}

/// Logs in to each tenant and writes the data the scenarios read back.
async fn prepare<'a>(
    stack: &'a Stack,
    up: &crate::stack::UpReport,
    options: &ChaosOptions,
) -> Result<ChaosContext<'a>> {
    up.status
        .service(GATEWAY_SERVICE)
        .context("the gateway is not running")?;
    let mut tenants = Vec::new();
    for endpoint in &up.tenants {
        let username = format!("admin@{}.com", endpoint.prefix);
        let password = up
            .provisioned
            .credentials
            .iter()
            .find(|c| c.schema == endpoint.schema && c.username == username)
            .map(|c| c.password.clone())
            .with_context(|| format!("no generated password for {username}"))?;
        let client = TenantClient::new(&endpoint.url);
        let token = client.token(&username, &password).await?;
        let flow_name = format!("chaos-probe-{}", endpoint.prefix);
        let flow_id = client.create_flow(&token, &flow_name).await?;
        tenants.push(TenantData {
            prefix: endpoint.prefix.clone(),
            client,
            token,
            flow_id,
            flow_name,
        });
    }
    let aws_port = up
        .status
        .service("aws")
        .map(|s| s.port)
        .context("no emulator")?;
    let first_schema = up
        .tenants
        .iter()
        .map(|e| &e.schema)
        .min()
        .context("no tenants")?;
    let key = format!("tenants/{first_schema}/chaos/probe.bin");
    let content: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    aws::s3_client(aws_port, &stack.config().aws.region)
        .await
        .put_object()
        .bucket(&stack.config().aws.tenant_bucket)
        .key(&key)
        .body(content.clone().into())
        .send()
        .await
        .map_err(aws_sdk_s3::Error::from)
        .context("cannot write the probe object")?;
    Ok(ChaosContext {
        stack,
        tenants,
        object: (key, content),
        options: options.clone(),
    })
}

async fn run_scenarios(
    context: &ChaosContext<'_>,
    options: &ChaosOptions,
    tenants_mount: std::result::Result<&disk::TenantsMount, &String>,
    scratch: &Path,
) -> Vec<ScenarioResult> {
    let mut results = Vec::new();
    for scenario in SCENARIOS {
        if !options.wants(scenario) {
            continue;
        }
        let step = crate::progress::Step::start(format!("chaos: {scenario}"));
        let started = Instant::now();
        let outcome = match scenario {
            "kill-tenant" => kills::run(context, scenario, kills::Target::Tenant(0)).await,
            "kill-postgres" => {
                kills::run(context, scenario, kills::Target::Service("postgres")).await
            }
            "kill-emulator" => kills::run(context, scenario, kills::Target::Service("aws")).await,
            "kill-gateway" => {
                kills::run(context, scenario, kills::Target::Service(GATEWAY_SERVICE)).await
            }
            "kill-identity" => {
                kills::run(
                    context,
                    scenario,
                    kills::Target::Service(crate::credentials::IDENTITY_SERVICE),
                )
                .await
            }
            "state-dir-read-only" | "state-dir-full" => match tenants_mount {
                Ok(mount) => disk::run(context, scenario, mount).await,
                Err(why) => Ok(ScenarioResult::skipped(scenario, why.clone())),
            },
            "interrupt-up" => interrupt::run(context, scenario, scratch).await,
            _ => unreachable!("scenario names are checked"),
        };
        let mut result = outcome.unwrap_or_else(|e| {
            let mut r = ScenarioResult::new(scenario);
            r.fail(format!("{e:#}"));
            r
        });
        result.secs = started.elapsed().as_secs_f64();
        if result.outcome == Outcome::Fail {
            step.fail();
        } else {
            step.finish(format!("{scenario}: {:?}", result.outcome).to_lowercase());
        }
        // The next scenario starts from a healthy stack.
        if scenario != "interrupt-up" && !context.wait_all_healthy(options.recovery_timeout).await {
            result.fail("the stack was not healthy again afterwards");
        }
        results.push(result);
    }
    results
}

/// A tenantmgr over the run's Postgres.
pub fn tenancy(context: &ChaosContext<'_>) -> Result<Tenancy> {
    Tenancy::for_running_stack(context.stack.config(), context.stack.files())
}

/// The runtime of the run.
pub fn runtime(context: &ChaosContext<'_>) -> Arc<dyn crate::runtime::Runtime> {
    context.stack.runtime().clone()
}

/// The report as JUnit XML: one `<testcase>` per scenario, its figures in `system-out`.
pub fn junit(report: &ChaosReport) -> String {
    use crate::e2e::junit::escape;
    let count = |o: Outcome| report.results.iter().filter(|r| r.outcome == o).count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"chaos-{}\" tests=\"{}\" failures=\"{}\" skipped=\"{}\" time=\"{:.3}\">\n",
        escape(&report.runtime),
        report.results.len(),
        count(Outcome::Fail),
        count(Outcome::Skip),
        report.total_secs
    );
    for r in &report.results {
        xml.push_str(&format!(
            "    <testcase classname=\"chaos.{}\" name=\"{}\" time=\"{:.3}\">\n",
            escape(&report.runtime),
            escape(&r.scenario),
            r.secs
        ));
        let evidence = escape(&r.evidence);
        match r.outcome {
            Outcome::Pass => {}
            Outcome::Fail => xml.push_str(&format!("      <failure message=\"{evidence}\"/>\n")),
            Outcome::Skip => xml.push_str(&format!("      <skipped message=\"{evidence}\"/>\n")),
        }
        xml.push_str(&format!(
            "      <system-out>sent={} failed={} max_outage_ms={:.0} recovery_ms={} data_lost={} {}</system-out>\n    </testcase>\n",
            r.requests_sent,
            r.requests_failed,
            r.max_outage_ms,
            r.recovery_ms.map(|v| format!("{v:.0}")).unwrap_or_else(|| "-".into()),
            r.data_lost,
            evidence
        ));
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}
