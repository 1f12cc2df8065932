//! `cargo xtask creds check`: every scenario under both SDKs against a running stack's emulator
//! and identity server, as a table or JSON.

use std::time::Instant;

use anyhow::{Context, Result};
use comfy_table::{presets::UTF8_FULL_CONDENSED, Table};
use serde::Serialize;

use super::identity_server::KEY_FILE;
use super::oidc::SigningKey;
use super::scenarios::{self, ProbeCommand, ScenarioEnv, ScenarioResult};
use crate::services::emulator_caps::{self, Capabilities};
use harness_core::config::Config;

/// The outcome of a credentials check.
#[derive(Debug, Clone, Serialize)]
pub struct CredsReport {
    /// Every scenario × SDK.
    pub results: Vec<ScenarioResult>,
    /// Number that failed (skipped ones excluded).
    pub failed: usize,
    /// Number not run because the emulator lacks their premise.
    pub skipped: usize,
    /// What the emulator emulates and enforces (probed), which decided the skips; `None` without
    /// Python (`--no-python`: the probe is a boto3 script), when every scenario is judged.
    pub capabilities: Option<Capabilities>,
    /// Wall time in seconds.
    pub elapsed_secs: f64,
}

impl CredsReport {
    /// Whether every scenario behaved as expected.
    pub fn passed(&self) -> bool {
        self.failed == 0
    }
}

/// Runs the scenarios against the emulator on `aws_port` and the identity server on
/// `identity_port` of the run described by `config`. `with_python` adds the boto3 runs (boto3 from
/// the emulator's small managed venv, installed when missing, so no runtime needs a host Langflow).
/// `capabilities` (probed when `None`) decides which scenarios the emulator can judge; the others
/// are reported as skipped with the reason.
pub async fn run(
    config: &Config,
    aws_port: u16,
    identity_port: u16,
    rust_probe: ProbeCommand,
    with_python: bool,
    capabilities: Option<Capabilities>,
) -> Result<CredsReport> {
    let started = Instant::now();
    let dir = super::identity_dir(config);
    let capabilities = match capabilities {
        Some(caps) => Some(caps),
        None if with_python => Some(emulator_caps::probe(config, aws_port, &dir).await?),
        None => None,
    };
    let identities = super::read_identities(config)?;
    let identities_for_skip = identities.clone();
    let key = SigningKey::load_or_create(&dir.join(KEY_FILE))?;
    let python = if with_python {
        let venv = crate::services::aws::venv(config)?;
        {
            let (venv, python) = (venv.clone(), config.tools.python.clone());
            tokio::task::spawn_blocking(move || venv.ensure(&python))
                .await?
                .context("the Python scenarios need boto3 (the emulator's venv)")?;
        }
        Some(venv.bin("python"))
    } else {
        None
    };
    let work = tempfile::Builder::new()
        .prefix("scenarios-")
        .tempdir_in(&dir)
        .context("cannot create a scratch directory for the scenarios")?;
    let env = ScenarioEnv {
        identities,
        key,
        identity_port,
        aws_port,
        region: config.aws.region.clone(),
        rust_probe,
        python,
        work_dir: work.path().to_path_buf(),
        skip: scenarios::scenarios(&identities_for_skip)
            .iter()
            .filter_map(|s| {
                capabilities
                    .as_ref()?
                    .skip_reason(&format!("credentials/{}", s.name))
                    .map(|reason| (s.name.to_string(), reason))
            })
            .collect(),
    };
    let results = scenarios::run_all(&env).await?;
    let failed = results
        .iter()
        .filter(|r| !r.passed && r.skipped.is_none())
        .count();
    let skipped = results.iter().filter(|r| r.skipped.is_some()).count();
    Ok(CredsReport {
        results,
        failed,
        skipped,
        capabilities,
        elapsed_secs: started.elapsed().as_secs_f64(),
    })
}

/// The report as a table: scenario, SDK, expected, provider that won, caller (or error), result,
/// and why (the first explanation; every explanation of a failure is listed under the table).
pub fn render_table(report: &CredsReport) -> String {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_header(vec![
        "scenario",
        "sdk",
        "expected",
        "provider",
        "caller / error",
        "result",
        "why",
        "ms",
    ]);
    let mut details = Vec::new();
    for r in &report.results {
        let observed = r.observed.clone().unwrap_or_default();
        let caller = match (&observed.arn, &observed.error_code, &observed.error) {
            (Some(arn), _, _) => short_arn(arn),
            (None, Some(code), _) => code.clone(),
            (None, None, Some(error)) => truncate(error, 40),
            _ => "-".into(),
        };
        let expected = match &r.expected {
            scenarios::Expectation::Identity {
                provider,
                arn_prefix,
            } => format!("{provider} → {}", short_arn(arn_prefix)),
            other => other.to_string(),
        };
        table.add_row(vec![
            r.scenario.clone(),
            format!("{:?}", r.sdk).to_lowercase(),
            expected,
            observed.provider.unwrap_or_else(|| "-".into()),
            caller,
            match (&r.skipped, r.passed) {
                (Some(_), _) => "skip",
                (None, true) => "pass",
                (None, false) => "FAIL",
            }
            .to_string(),
            r.explanation
                .first()
                .map(|l| truncate(l, 70))
                .unwrap_or_default(),
            r.ms.to_string(),
        ]);
        if (!r.passed && r.skipped.is_none()) || r.explanation.len() > 1 {
            details.push(format!(
                "{} ({:?}):\n{}",
                r.scenario,
                r.sdk,
                r.explanation
                    .iter()
                    .map(|l| format!("  - {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
    }
    let mut out = table.to_string();
    if !details.is_empty() {
        out.push_str("\n\nwhy, in full:\n");
        out.push_str(&details.join("\n"));
    }
    out.push_str(&format!(
        "\n{} of {} passed, {} skipped, {} failed in {:.1} s (rust = aws-config default chain, python = boto3)",
        report.results.len() - report.failed - report.skipped,
        report.results.len(),
        report.skipped,
        report.failed,
        report.elapsed_secs,
    ));
    match &report.capabilities {
        Some(caps) if report.skipped > 0 => out.push_str(&format!(
            "\nskipped, never passed: {} lacks their premise (probed):\n{}",
            caps.emulator,
            crate::services::emulator_caps::render_table(caps)
        )),
        Some(_) => {}
        None => out.push_str(
            "\nthe emulator's capabilities were not probed (no Python): every scenario was judged",
        ),
    }
    out
}

/// `arn:aws:sts::000000000000:assumed-role/R/s` → `assumed-role/R/s`.
fn short_arn(arn: &str) -> String {
    arn.splitn(6, ':').nth(5).unwrap_or(arn).to_string()
}

use harness_core::tables::truncate;

/// Runs the check against `stack` when it is up with an identity service, otherwise on an
/// isolated infrastructure-only stack (own state dir and ports) that is torn down afterwards.
/// Returns the report and where it ran.
pub async fn run_on_stack_or_isolated(
    stack: &crate::stack::Stack,
    server: &crate::stack::GatewayCommand,
    rust_probe: ProbeCommand,
    with_python: bool,
) -> Result<(CredsReport, String)> {
    if let Some(status) = stack.status().await? {
        if let (Some(aws), Some(identity)) = (
            status.service("aws"),
            status.service(super::IDENTITY_SERVICE),
        ) {
            let (aws_port, identity_port) = (aws.port, identity.port);
            let report = run(
                stack.config(),
                aws_port,
                identity_port,
                rust_probe,
                with_python,
                None,
            )
            .await?;
            return Ok((
                report,
                format!("the running stack ({})", stack.config().state_dir.display()),
            ));
        }
    }
    let dir = tempfile::Builder::new()
        .prefix("langflow-infra-creds-")
        .tempdir()
        .context("cannot create a temporary state directory")?;
    let config = Config::isolated(&stack.config().root, &dir.path().join("state"))?;
    let runtime = harness_runtime::runtime::for_run(stack.runtime().name(), &config)?;
    let isolated = crate::stack::Stack::new(config)
        .with_runtime(runtime)
        .infra_only()
        .with_gateway_command(server.clone());
    let up = isolated.up().await?;
    let ports = (
        up.status.service("aws").map(|s| s.port),
        up.status.service(super::IDENTITY_SERVICE).map(|s| s.port),
    );
    let outcome = match ports {
        (Some(aws_port), Some(identity_port)) => {
            run(
                isolated.config(),
                aws_port,
                identity_port,
                rust_probe,
                with_python,
                None,
            )
            .await
        }
        _ => Err(anyhow::anyhow!(
            "the isolated stack has no emulator or identity service"
        )),
    };
    let down = isolated.down(true);
    let report = outcome?;
    down?;
    Ok((report, "an isolated stack (torn down)".into()))
}
