//! `cargo xtask e2e`: the tenant-isolation suite.
//!
//! Every check runs over real HTTP through the gateway (or a deployed ALB with `--target`); checks
//! that need the database, the secret keys or the emulator's bucket run only on a local stack and
//! are reported as skipped, with the reason, against a target. Each check that could pass by
//! accident carries a positive control (the same request made where it must succeed), so a check
//! that cannot tell is reported as failed, not passed.

pub mod browser;
pub mod client;
pub mod credentials;
pub mod junit;
pub mod jwt;
pub mod local;
pub mod replicas;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use futures::StreamExt;
use serde::{Deserialize, Serialize};

use crate::tenancy::Tenancy;
use client::{Answer, Auth, TenantClient};

/// Result of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The property holds.
    Pass,
    /// The property does not hold (evidence says why).
    Fail,
    /// Not run (the reason is in the evidence).
    Skip,
}

/// One row of the report.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// Check name (`login`, `forged-token`, ...).
    pub check: String,
    /// Tenants involved: `a→b` (a's credentials or data at b), `a`, or `-`.
    pub pair: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Duration in milliseconds.
    pub ms: f64,
    /// Why it failed or was skipped.
    pub evidence: Option<String>,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct E2eReport {
    /// Gateway / ALB base URL the suite ran against.
    pub target: String,
    /// Every check, in run order.
    pub results: Vec<CheckResult>,
    /// Seconds spent bringing the stack up (0 against a target).
    pub up_secs: f64,
    /// Seconds spent creating the suite's data (logins, flows, files...).
    pub setup_secs: f64,
    /// Seconds spent in checks.
    pub checks_secs: f64,
    /// Seconds spent tearing down.
    pub down_secs: f64,
    /// The local stack's emulator, probed: what it emulates and enforces (the premises of the
    /// skipped checks); `None` against a target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emulator: Option<crate::services::emulator_caps::Capabilities>,
}

impl E2eReport {
    /// Number of failed checks.
    pub fn failures(&self) -> usize {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .count()
    }

    /// `check pair` of every failed check (for assertions and summaries).
    pub fn failed_checks(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| r.outcome == Outcome::Fail)
            .map(|r| format!("{} {}", r.check, r.pair))
            .collect()
    }
}

/// Login credentials of one tenant, as the suite needs them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantCredentials {
    /// Tenant prefix (`/tenant/<prefix>/`).
    pub prefix: String,
    /// An active user of the tenant (superuser not required).
    pub username: String,
    /// Its password.
    pub password: String,
    /// A second user whose username also exists in the other tenant (for the `users` check).
    #[serde(default)]
    pub shared_username: Option<String>,
    /// Its password in this tenant.
    #[serde(default)]
    pub shared_password: Option<String>,
}

/// The credentials file `--target` takes: `{"tenants": [{prefix, username, password, ...}, ...]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetCredentials {
    /// At least two tenants.
    pub tenants: Vec<TenantCredentials>,
}

impl TargetCredentials {
    /// Reads and checks a credentials file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read credentials file {}", path.display()))?;
        let creds: Self = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a credentials file; expected {{\"tenants\": [{{\"prefix\", \"username\", \"password\"}}, ...]}}",
                path.display()
            )
        })?;
        if creds.tenants.len() < 2 {
            bail!(
                "{} lists {} tenant(s); the isolation suite needs at least two",
                path.display(),
                creds.tenants.len()
            );
        }
        Ok(creds)
    }
}

/// What a local run can see beyond HTTP.
pub struct LocalAccess {
    /// tenantmgr over the run's Postgres (superuser and tenant roles).
    pub tenancy: Tenancy,
    /// Schema id by prefix.
    pub schemas: BTreeMap<String, String>,
    /// `LANGFLOW_SECRET_KEY` by prefix.
    pub secret_keys: BTreeMap<String, String>,
    /// S3 client on the emulator.
    pub s3: aws_sdk_s3::Client,
    /// The tenant files bucket.
    pub bucket: String,
    /// Identity service and emulator for the `credentials` suite (when the run has them).
    pub credentials: Option<credentials::CredentialsAccess>,
    /// Image mode: each task's own base URL (`http://127.0.0.1:<port>`), as the ALB's targets;
    /// with two or more the `tasks/*` checks run.
    pub task_urls: Vec<String>,
}

/// Which suites a run includes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Suite {
    /// Isolation (+ credentials on a local stack) and, where Chromium is found, browser.
    #[default]
    All,
    /// The HTTP-level tenant-isolation checks (and the credentials suite on a local stack).
    Isolation,
    /// The browser suite only (headless Chromium; fails when Chromium is missing).
    Browser,
    /// The service as N tasks × W workers (image mode only): tokens, variables, builds and
    /// files across tasks, a cold start, the health check with the database down.
    Replicas,
}

impl Suite {
    /// The suite's name as `--suite` takes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Suite::All => "all",
            Suite::Isolation => "isolation",
            Suite::Browser => "browser",
            Suite::Replicas => "replicas",
        }
    }
}

impl std::str::FromStr for Suite {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "all" => Ok(Suite::All),
            "isolation" => Ok(Suite::Isolation),
            "browser" => Ok(Suite::Browser),
            "replicas" => Ok(Suite::Replicas),
            _ => bail!("unknown suite {name:?}; use all, isolation, browser or replicas"),
        }
    }
}

/// Browser-suite settings of a run.
#[derive(Debug, Clone)]
pub struct BrowserSettings {
    /// How the gateway tells tenants apart.
    pub routing: crate::gateway::Routing,
    /// Where screenshots of failed browser checks go.
    pub artifacts: std::path::PathBuf,
}

/// Everything the suite runs against.
pub struct SuiteInput {
    /// Base URL of the gateway / ALB (no trailing slash).
    pub gateway: String,
    /// Two or more tenants.
    pub tenants: Vec<TenantCredentials>,
    /// Database / key / bucket access (local runs only).
    pub local: Option<LocalAccess>,
    /// Requests in the concurrency check.
    pub concurrency: usize,
    /// Which suites run.
    pub suite: Suite,
    /// The browser suite's settings; `None` leaves it out (runs against a `--target`, whose
    /// names the suite's browser does not resolve).
    pub browser: Option<BrowserSettings>,
}

/// What the suite created in one tenant before the checks.
struct TenantData {
    creds: TenantCredentials,
    client: TenantClient,
    login: Answer,
    token: String,
    user_id: String,
    flow_id: String,
    variable: String,
    api_key: String,
    file_id: String,
    file_name: String,
}

const SKIP_LOCAL: &str = "needs database, key or emulator access (local runs only)";

/// A check's verdict: `Ok(None)` pass, `Ok(Some(reason))` skip, `Err(evidence)` fail.
pub(crate) type Verdict = std::result::Result<Option<String>, String>;

async fn timed<F: Future<Output = Verdict>>(
    results: &mut Vec<CheckResult>,
    check: &str,
    pair: &str,
    run: F,
) {
    let started = Instant::now();
    let verdict = run.await;
    let (outcome, evidence) = match verdict {
        Ok(None) => (Outcome::Pass, None),
        Ok(Some(reason)) => (Outcome::Skip, Some(reason)),
        Err(evidence) => (Outcome::Fail, Some(evidence)),
    };
    crate::progress::println(format!(
        "{:<5} {check} {pair}",
        match outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "skip",
        }
    ));
    let result = CheckResult {
        check: check.into(),
        pair: pair.into(),
        outcome,
        ms: started.elapsed().as_secs_f64() * 1000.0,
        evidence,
    };
    let _ = CHECK_PROGRESS.try_with(|progress| progress.send(result.clone()));
    results.push(result);
}

tokio::task_local! {
    /// Where a caller running the suite in-process (the dashboard's e2e action) receives each
    /// check's result as soon as it is judged; unset for the CLI.
    pub static CHECK_PROGRESS: tokio::sync::mpsc::UnboundedSender<CheckResult>;
}

fn refused(answer: &Answer) -> bool {
    answer.status == 401 || answer.status == 403
}

/// Pass when `answer` is a refusal (401/403); otherwise fail with `what` and the answer.
fn must_refuse(answer: &Answer, what: impl FnOnce() -> String) -> Verdict {
    if refused(answer) {
        Ok(None)
    } else {
        Err(format!("{}: {}", what(), answer.evidence()))
    }
}

fn err(e: anyhow::Error) -> String {
    format!("{e:#}")
}

async fn prepare(
    gateway: &str,
    routing: crate::gateway::Routing,
    creds: &TenantCredentials,
) -> Result<TenantData> {
    let client = TenantClient::new(&routing.tenant_url(gateway, &creds.prefix));
    let login = client.login(&creds.username, &creds.password).await?;
    let token = login.json()["access_token"]
        .as_str()
        .map(String::from)
        .with_context(|| {
            format!(
                "{} cannot log in at {}: {}",
                creds.username,
                creds.prefix,
                login.evidence()
            )
        })?;
    let user_id = client.user_id(&token).await?;
    let marker = crate::secret::hex(4);
    let flow_id = client
        .create_flow(&token, &format!("e2e-flow-{}-{marker}", creds.prefix))
        .await?;
    let variable = format!("E2E_SECRET_{}_{marker}", creds.prefix.to_uppercase());
    client
        .create_variable(&token, &variable, &format!("value-of-{}", creds.prefix))
        .await?;
    let api_key = client
        .create_api_key(&token, &format!("e2e-{marker}"))
        .await?;
    let file_name = format!("e2e-{}-{marker}.txt", creds.prefix);
    let file = client
        .upload_file(
            &token,
            &file_name,
            format!("file of {}", creds.prefix).as_bytes(),
        )
        .await?;
    Ok(TenantData {
        creds: creds.clone(),
        client,
        login,
        token,
        user_id,
        flow_id,
        variable,
        api_key,
        file_id: file["id"].as_str().unwrap_or_default().to_string(),
        file_name,
    })
}

/// Runs the selected suites; returns the results and the seconds spent in setup and in checks
/// (the browser suite's own time is its `browser/time` row and part of the checks).
pub async fn run_suite(input: &SuiteInput) -> (Vec<CheckResult>, f64, f64) {
    let (mut results, setup_secs, mut checks_secs) = if input.suite == Suite::Browser {
        (Vec::new(), 0.0, 0.0)
    } else {
        isolation_suite(input).await
    };
    if input.suite == Suite::Isolation {
        return (results, setup_secs, checks_secs);
    }
    let started = Instant::now();
    match &input.browser {
        None => results.push(CheckResult {
            check: "browser".into(),
            pair: "-".into(),
            outcome: Outcome::Skip,
            ms: 0.0,
            evidence: Some(
                "the browser suite needs a local stack: local runs only (its browser resolves only loopback names)"
                    .into(),
            ),
        }),
        Some(settings) => match browser::chromium() {
            Ok(None) if input.suite == Suite::All => {
                results.push(browser::skipped_without_chromium())
            }
            _ => {
                let suite = browser::BrowserSuite {
                    gateway: &input.gateway,
                    routing: settings.routing,
                    tenants: &input.tenants,
                    artifacts: &settings.artifacts,
                    chromium_required: input.suite == Suite::Browser,
                };
                results.extend(browser::run(&suite).await);
            }
        },
    }
    checks_secs += started.elapsed().as_secs_f64();
    (results, setup_secs, checks_secs)
}

/// The tenant-isolation suite (and the credentials suite when the run has its access).
async fn isolation_suite(input: &SuiteInput) -> (Vec<CheckResult>, f64, f64) {
    let routing = input
        .browser
        .as_ref()
        .map(|b| b.routing)
        .unwrap_or_default();
    let mut results = Vec::new();
    let setup_started = Instant::now();
    let mut tenants = Vec::new();
    for creds in &input.tenants {
        match prepare(&input.gateway, routing, creds).await {
            Ok(data) => tenants.push(data),
            Err(e) => {
                timed(&mut results, "setup", &creds.prefix, async { Err(err(e)) }).await;
            }
        }
    }
    let setup_secs = setup_started.elapsed().as_secs_f64();
    let checks_started = Instant::now();
    if tenants.len() < input.tenants.len() {
        return (results, setup_secs, 0.0);
    }
    let gateway = &input.gateway;
    let http = reqwest::Client::new();

    timed(&mut results, "routing/health", "-", async {
        let answer = http.get(format!("{gateway}/health")).send().await;
        match answer {
            Ok(a) if a.status() == 200 => Ok(None),
            Ok(a) => Err(format!("/health answered {}", a.status())),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    timed(&mut results, "routing/unknown-tenant", "-", async {
        let prefix = format!("no-such-tenant-{}", crate::secret::hex(3));
        let url = routing.tenant_url(gateway, &prefix);
        match TenantClient::new(&url).get("", &Auth::None).await {
            Ok(a) if a.status == 404 => Ok(None),
            Ok(a) => Err(format!("{url} answered {}", a.status)),
            Err(e) => Err(e.to_string()),
        }
    })
    .await;
    for a in &tenants {
        let prefix = &a.creds.prefix;
        let root = format!("{}/", routing.root_path(prefix));
        timed(&mut results, "routing", prefix, async {
            let answer = a.client.get("", &Auth::None).await.map_err(err)?;
            let base = format!("<base href=\"{root}\"");
            if answer.status == 200 && answer.body.contains(&base) {
                Ok(None)
            } else {
                Err(format!("expected 200 with {base}: {}", answer.evidence()))
            }
        })
        .await;
        timed(&mut results, "cookies", prefix, async {
            let cookies: Vec<&String> = a
                .login
                .set_cookies
                .iter()
                .filter(|c| c.starts_with("access_token_lf"))
                .collect();
            if cookies.is_empty() {
                return Err(format!(
                    "login set no access_token_lf cookie: {:?}",
                    a.login.set_cookies
                ));
            }
            // Path routing: scoped to the tenant's path. Host routing: a host-only cookie (no
            // Domain attribute) of the tenant's own origin.
            let scoped = format!("path={}", root.to_lowercase());
            match cookies.iter().find(|c| {
                let c = c.to_lowercase().replace(' ', "");
                !c.contains(&scoped) || c.contains("domain=")
            }) {
                None => Ok(None),
                Some(c) => Err(format!(
                    "session cookie not scoped to {root} of its own host: {c}"
                )),
            }
        })
        .await;
    }

    if let Some(local) = input.local.as_ref().filter(|l| l.task_urls.len() >= 2) {
        for tenant in &tenants {
            task_checks(&mut results, tenant, &local.task_urls).await;
        }
    }
    for a in &tenants {
        for b in &tenants {
            if a.creds.prefix == b.creds.prefix {
                continue;
            }
            let pair = format!("{}→{}", a.creds.prefix, b.creds.prefix);
            pair_checks(&mut results, &pair, a, b, input.local.as_ref()).await;
        }
    }
    timed(
        &mut results,
        "concurrency",
        &tenants
            .iter()
            .map(|t| t.creds.prefix.as_str())
            .collect::<Vec<_>>()
            .join("+"),
        concurrency(&tenants, input.concurrency),
    )
    .await;
    if input.local.is_none() {
        timed(&mut results, "credentials", "-", async {
            Ok(Some(format!("the credentials suite {SKIP_LOCAL}: it provisions identities in the emulator and mints tokens with the cluster's key")))
        })
        .await;
    }
    if let Some((local, access)) = input
        .local
        .as_ref()
        .and_then(|l| l.credentials.as_ref().map(|c| (l, c)))
    {
        let component_tenants: Vec<credentials::ComponentTenant> = tenants
            .iter()
            .map(|t| credentials::ComponentTenant {
                prefix: &t.creds.prefix,
                client: &t.client,
                token: &t.token,
                api_key: &t.api_key,
            })
            .collect();
        credentials::run(
            &mut results,
            access,
            &local.s3,
            &local.bucket,
            &component_tenants,
        )
        .await;
    }
    (results, setup_secs, checks_started.elapsed().as_secs_f64())
}

/// Image mode: the tasks of the service behave as one (a token issued by one task is accepted by
/// the others; data written through one task is read through the others), checked on each task
/// directly, as the ALB's targets, whatever the gateway's round-robin does.
async fn task_checks(results: &mut Vec<CheckResult>, tenant: &TenantData, task_urls: &[String]) {
    let prefix = &tenant.creds.prefix;
    let client_of =
        |url: &str| TenantClient::new(&crate::gateway::Routing::Path.tenant_url(url, prefix));
    let first = client_of(&task_urls[0]);
    timed(results, "tasks/token", prefix, async {
        let token = first
            .token(&tenant.creds.username, &tenant.creds.password)
            .await
            .map_err(|e| format!("control: cannot log in through task 1: {e:#}"))?;
        for (i, url) in task_urls.iter().enumerate().skip(1) {
            let answer = client_of(url)
                .get("api/v1/users/whoami", &Auth::Bearer(&token))
                .await
                .map_err(err)?;
            if answer.status != 200 {
                return Err(format!(
                    "a token issued by task 1 is refused by task {}: {}",
                    i + 1,
                    answer.evidence()
                ));
            }
        }
        Ok(None)
    })
    .await;
    timed(results, "tasks/data", prefix, async {
        let token = first
            .token(&tenant.creds.username, &tenant.creds.password)
            .await
            .map_err(|e| format!("control: cannot log in through task 1: {e:#}"))?;
        let flow = first
            .create_flow(&token, &format!("task-1-{}", crate::secret::hex(4)))
            .await
            .map_err(|e| format!("control: cannot create a flow through task 1: {e:#}"))?;
        for (i, url) in task_urls.iter().enumerate().skip(1) {
            let other = client_of(url);
            let token = other
                .token(&tenant.creds.username, &tenant.creds.password)
                .await
                .map_err(|e| format!("cannot log in through task {}: {e:#}", i + 1))?;
            let (answer, ids) = other.flow_ids(&Auth::Bearer(&token)).await.map_err(err)?;
            if !ids.contains(&flow) {
                return Err(format!(
                    "a flow written through task 1 is not read through task {}: {}",
                    i + 1,
                    answer.evidence()
                ));
            }
        }
        Ok(None)
    })
    .await;
}

/// Without the tenants' keys (image mode: the image derives them inside), a cross-tenant token is
/// made the other way round: `b` gets a twin of `a`'s user (same id) in its database, then `a`'s
/// own token is presented to `b`. A `b` that verifies it shares `a`'s signing key.
async fn twin_token_check(local: &LocalAccess, a: &TenantData, b: &TenantData) -> Verdict {
    let b_schema = local
        .schemas
        .get(&b.creds.prefix)
        .ok_or("no schema id for the pair")?;
    let admin = local.tenancy.admin_target().connect().await.map_err(err)?;
    let table = format!("{}.\"user\"", crate::sql::quote_ident(b_schema));
    let a_id = uuid::Uuid::parse_str(&a.user_id).map_err(|e| e.to_string())?;
    let b_id = uuid::Uuid::parse_str(&b.user_id).map_err(|e| e.to_string())?;
    let twin = format!("twin-{}", crate::secret::hex(4));
    let made = async {
        admin
            .execute(
                &format!("CREATE TEMP TABLE twin AS SELECT * FROM {table} WHERE id = '{b_id}'"),
                &[],
            )
            .await?;
        admin
            .execute("UPDATE twin SET id = $1, username = $2", &[&a_id, &twin])
            .await?;
        admin
            .execute(&format!("INSERT INTO {table} SELECT * FROM twin"), &[])
            .await
    }
    .await;
    let _ = admin.execute("DROP TABLE IF EXISTS twin", &[]).await;
    made.map_err(|e| {
        format!(
            "cannot make a twin of {}'s user in {b_schema}: {e}",
            a.creds.prefix
        )
    })?;
    let answer = b
        .client
        .get("api/v1/users/whoami", &Auth::Bearer(&a.token))
        .await
        .map_err(err);
    let _ = admin
        .execute(&format!("DELETE FROM {table} WHERE id = $1"), &[&a_id])
        .await;
    let answer = answer?;
    must_refuse(&answer, || {
        format!(
            "{}'s own token was accepted by {} for a user with the same id: the tenants share a signing key",
            a.creds.prefix, b.creds.prefix
        )
    })
}

async fn pair_checks(
    results: &mut Vec<CheckResult>,
    pair: &str,
    a: &TenantData,
    b: &TenantData,
    local: Option<&LocalAccess>,
) {
    timed(results, "login", pair, async {
        let answer = b
            .client
            .login(&a.creds.username, &a.creds.password)
            .await
            .map_err(err)?;
        must_refuse(&answer, || {
            format!(
                "{}'s credentials accepted at {}",
                a.creds.prefix, b.creds.prefix
            )
        })
    })
    .await;

    timed(results, "token-replay", pair, async {
        let bearer = b
            .client
            .get("api/v1/users/whoami", &Auth::Bearer(&a.token))
            .await
            .map_err(err)?;
        must_refuse(&bearer, || {
            format!("bearer token of {} accepted", a.creds.prefix)
        })?;
        let control = a
            .client
            .get("api/v1/flows/?get_all=true", &Auth::ApiKey(&a.api_key))
            .await
            .map_err(err)?;
        if control.status != 200 {
            return Err(format!(
                "control: the API key does not work at its own tenant: {}",
                control.evidence()
            ));
        }
        let key = b
            .client
            .get("api/v1/flows/?get_all=true", &Auth::ApiKey(&a.api_key))
            .await
            .map_err(err)?;
        must_refuse(&key, || format!("API key of {} accepted", a.creds.prefix))
    })
    .await;

    timed(results, "forged-token", pair, async {
        let Some(local) = local else {
            return Ok(Some(SKIP_LOCAL.into()));
        };
        if local.secret_keys.is_empty() {
            return twin_token_check(local, a, b).await;
        }
        let (Some(a_key), Some(b_key)) = (
            local.secret_keys.get(&a.creds.prefix),
            local.secret_keys.get(&b.creds.prefix),
        ) else {
            return Err("no secret keys for the pair".into());
        };
        let control = b
            .client
            .get(
                "api/v1/users/whoami",
                &Auth::Bearer(&jwt::forge_access_token(&b.user_id, b_key)),
            )
            .await
            .map_err(err)?;
        if control.status != 200 {
            return Err(format!("control: a token signed with {}'s own key was refused, so forging cannot be tested: {}", b.creds.prefix, control.evidence()));
        }
        let forged = jwt::forge_access_token(&b.user_id, a_key);
        let answer = b
            .client
            .get("api/v1/users/whoami", &Auth::Bearer(&forged))
            .await
            .map_err(err)?;
        must_refuse(&answer, || {
            format!(
                "a token for {}'s user signed with {}'s secret key was accepted",
                b.creds.prefix, a.creds.prefix
            )
        })
    })
    .await;

    timed(results, "data/flows", pair, async {
        let (own, own_ids) = a
            .client
            .flow_ids(&Auth::Bearer(&a.token))
            .await
            .map_err(err)?;
        if !own_ids.contains(&a.flow_id) {
            return Err(format!(
                "control: {}'s flow is not listed at its own tenant: {}",
                a.creds.prefix,
                own.evidence()
            ));
        }
        let (listed, ids) = b
            .client
            .flow_ids(&Auth::Bearer(&b.token))
            .await
            .map_err(err)?;
        if listed.status != 200 || ids.contains(&a.flow_id) {
            return Err(format!(
                "{}'s flow {} listed by {}: {}",
                a.creds.prefix,
                a.flow_id,
                b.creds.prefix,
                listed.evidence()
            ));
        }
        let direct = b
            .client
            .get(
                &format!("api/v1/flows/{}", a.flow_id),
                &Auth::Bearer(&b.token),
            )
            .await
            .map_err(err)?;
        if direct.status == 404 {
            Ok(None)
        } else {
            Err(format!(
                "GET {}/api/v1/flows/{}: {}",
                b.creds.prefix,
                a.flow_id,
                direct.evidence()
            ))
        }
    })
    .await;

    timed(results, "data/variables", pair, async {
        let (own, names) = a.client.variable_names(&a.token).await.map_err(err)?;
        if !names.contains(&a.variable) {
            return Err(format!(
                "control: {} is not listed at its own tenant: {}",
                a.variable,
                own.evidence()
            ));
        }
        let (listed, names) = b.client.variable_names(&b.token).await.map_err(err)?;
        if listed.status == 200 && !names.contains(&a.variable) {
            Ok(None)
        } else {
            Err(format!(
                "{}'s variable {} visible at {}: {}",
                a.creds.prefix,
                a.variable,
                b.creds.prefix,
                listed.evidence()
            ))
        }
    })
    .await;

    timed(results, "database", pair, async {
        let Some(local) = local else {
            return Ok(Some(SKIP_LOCAL.into()));
        };
        database_check(local, a, b).await
    })
    .await;

    timed(results, "files", pair, async {
        let (own, own_ids) = a.client.file_ids(&a.token).await.map_err(err)?;
        if !own_ids.contains(&a.file_id) {
            return Err(format!(
                "control: {}'s file is not listed at its own tenant: {}",
                a.creds.prefix,
                own.evidence()
            ));
        }
        let (listed, ids) = b.client.file_ids(&b.token).await.map_err(err)?;
        if listed.status != 200 || ids.contains(&a.file_id) {
            return Err(format!(
                "{}'s file listed at {}: {}",
                a.creds.prefix,
                b.creds.prefix,
                listed.evidence()
            ));
        }
        let fetched = b
            .client
            .get(
                &format!("api/v2/files/{}", a.file_id),
                &Auth::Bearer(&b.token),
            )
            .await
            .map_err(err)?;
        if fetched.status == 200 {
            return Err(format!(
                "{}'s file fetched at {}: {}",
                a.creds.prefix,
                b.creds.prefix,
                fetched.evidence()
            ));
        }
        let Some(local) = local else {
            return Ok(None);
        };
        s3_check(local, a, b).await
    })
    .await;

    timed(results, "users", pair, async {
        let (Some(name), Some(a_pw), Some(b_pw)) = (
            a.creds.shared_username.as_deref(),
            a.creds.shared_password.as_deref(),
            b.creds.shared_password.as_deref(),
        ) else {
            return Ok(Some("no shared username in the credentials".into()));
        };
        if b.creds.shared_username.as_deref() != Some(name) {
            return Ok(Some("the tenants' shared usernames differ".into()));
        }
        let own = a.client.login(name, a_pw).await.map_err(err)?;
        let other_own = b.client.login(name, b_pw).await.map_err(err)?;
        if own.status != 200 || other_own.status != 200 {
            return Err(format!(
                "control: {name} cannot log in at its own tenants: {} / {}",
                own.evidence(),
                other_own.evidence()
            ));
        }
        let crossed = b.client.login(name, a_pw).await.map_err(err)?;
        must_refuse(&crossed, || {
            format!(
                "{name} logged in at {} with {}'s password",
                b.creds.prefix, a.creds.prefix
            )
        })
    })
    .await;
}

async fn database_check(local: &LocalAccess, a: &TenantData, b: &TenantData) -> Verdict {
    let (Some(a_schema), Some(b_schema)) = (
        local.schemas.get(&a.creds.prefix),
        local.schemas.get(&b.creds.prefix),
    ) else {
        return Err("no schema ids for the pair".into());
    };
    let admin = local.tenancy.admin_target().connect().await.map_err(err)?;
    let flow_id = uuid::Uuid::parse_str(&a.flow_id).map_err(|e| e.to_string())?;
    let count_in = |schema: String| {
        let admin = &admin;
        async move {
            let exists = admin
                .query_opt(
                    "SELECT 1 FROM information_schema.tables WHERE table_schema = $1 AND table_name = 'flow'",
                    &[&schema],
                )
                .await
                .map_err(|e| e.to_string())?
                .is_some();
            if !exists {
                return Ok::<i64, String>(0);
            }
            admin
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.flow WHERE id = $1",
                        crate::sql::quote_ident(&schema)
                    ),
                    &[&flow_id],
                )
                .await
                .map(|row| row.get(0))
                .map_err(|e| e.to_string())
        }
    };
    let in_a = count_in(a_schema.clone()).await?;
    let in_b = count_in(b_schema.clone()).await?;
    let in_public = count_in("public".into()).await?;
    if (in_a, in_b, in_public) != (1, 0, 0) {
        return Err(format!(
            "{}'s flow rows: {in_a} in {a_schema}, {in_b} in {b_schema}, {in_public} in public (expected 1, 0, 0)",
            a.creds.prefix
        ));
    }
    // As the tenant's own role: its login when the harness made it, else (image mode: the image
    // made the role) the superuser acting as that role.
    let client = match local.tenancy.tenant_target(a_schema) {
        Ok(role) => role.connect().await.map_err(err)?,
        Err(_) => {
            let client = local.tenancy.admin_target().connect().await.map_err(err)?;
            client
                .batch_execute(&format!("SET ROLE {}", crate::sql::quote_ident(a_schema)))
                .await
                .map_err(|e| format!("cannot act as role {a_schema}: {e}"))?;
            client
        }
    };
    match client
        .query(
            &format!(
                "SELECT count(*) FROM {}.flow",
                crate::sql::quote_ident(b_schema)
            ),
            &[],
        )
        .await
    {
        Err(e)
            if e.as_db_error()
                .is_some_and(|d| d.message().contains("permission denied")) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!(
            "unexpected error reading {b_schema} as {a_schema}: {e}"
        )),
        Ok(_) => Err(format!("role {a_schema} can read {b_schema}.flow")),
    }
}

async fn s3_check(local: &LocalAccess, a: &TenantData, b: &TenantData) -> Verdict {
    let keys = |prefix: String| async move {
        local
            .s3
            .list_objects_v2()
            .bucket(&local.bucket)
            .prefix(prefix)
            .send()
            .await
            .map(|out| {
                out.contents()
                    .iter()
                    .filter_map(|o| o.key().map(String::from))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| format!("{e:?}"))
    };
    let a_schema = &local.schemas[&a.creds.prefix];
    let b_schema = &local.schemas[&b.creds.prefix];
    let in_a = keys(format!("tenants/{a_schema}/")).await?;
    if !in_a.iter().any(|k| k.ends_with(&a.file_name)) {
        return Err(format!(
            "{} not under s3://{}/tenants/{a_schema}/ (found {in_a:?})",
            a.file_name, local.bucket
        ));
    }
    let in_b = keys(format!("tenants/{b_schema}/")).await?;
    if in_b.iter().any(|k| k.ends_with(&a.file_name)) {
        return Err(format!("{} found under {b_schema}'s prefix", a.file_name));
    }
    let outside = keys(String::new()).await?;
    match outside
        .iter()
        .find(|k| k.ends_with(&a.file_name) && !k.starts_with(&format!("tenants/{a_schema}/")))
    {
        Some(k) => Err(format!(
            "{} also stored outside its tenant prefix: {k}",
            a.file_name
        )),
        None => Ok(None),
    }
}

async fn concurrency(tenants: &[TenantData], n: usize) -> Verdict {
    let requests = (0..n).map(|i| {
        let own = &tenants[i % tenants.len()];
        async move {
            let (answer, ids) = own
                .client
                .flow_ids(&Auth::Bearer(&own.token))
                .await
                .map_err(err)?;
            if answer.status != 200 || !ids.contains(&own.flow_id) {
                return Err(format!(
                    "request {i} at {}: {}",
                    own.creds.prefix,
                    answer.evidence()
                ));
            }
            if let Some(other) = tenants
                .iter()
                .find(|t| t.creds.prefix != own.creds.prefix && ids.contains(&t.flow_id))
            {
                return Err(format!(
                    "request {i} at {} saw {}'s flow {}",
                    own.creds.prefix, other.creds.prefix, other.flow_id
                ));
            }
            Ok(())
        }
    });
    let outcomes: Vec<std::result::Result<(), String>> = futures::stream::iter(requests)
        .buffer_unordered(32)
        .collect()
        .await;
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    match failures.first() {
        None => Ok(None),
        Some(first) => Err(format!(
            "{} of {n} requests failed; first: {first}",
            failures.len()
        )),
    }
}

/// Runs the HTTP-level checks against a deployed stack at `url` with a credentials file.
pub async fn run_against_target(
    url: &str,
    credentials: &std::path::Path,
    concurrency: usize,
) -> Result<E2eReport> {
    let url = url.trim_end_matches('/');
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--target {url:?} is not an http(s) URL; pass the ALB's base URL such as https://alb.example.com");
    }
    let creds = TargetCredentials::load(credentials)?;
    let input = SuiteInput {
        gateway: url.to_string(),
        tenants: creds.tenants,
        local: None,
        concurrency,
        // The browser suite needs a local run: its browser resolves only loopback names.
        suite: Suite::Isolation,
        browser: None,
    };
    Ok(run_on_running(&input).await)
}

/// Runs `input`'s suites on a stack that is up already (a deployed target, or the dashboard's
/// own run) and reports them: nothing is brought up or down.
pub async fn run_on_running(input: &SuiteInput) -> E2eReport {
    let (results, setup_secs, checks_secs) = run_suite(input).await;
    E2eReport {
        target: input.gateway.clone(),
        results,
        up_secs: 0.0,
        setup_secs,
        checks_secs,
        down_secs: 0.0,
        emulator: None,
    }
}

/// The `LANGFLOW_SECRET_KEY` tenant `prefix`'s instance really runs with, read from its process
/// environment (not the key the harness meant to give it), when the run has that instance.
pub fn instance_secret_key(
    stack: &crate::stack::Stack,
    state: &crate::state::RunState,
    prefix: &str,
) -> Option<String> {
    let instance = crate::services::langflow::service_name(prefix);
    let record = state.services.get(&instance)?;
    stack
        .runtime()
        .env_var(&record.process, "LANGFLOW_SECRET_KEY")
}
