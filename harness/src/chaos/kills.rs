//! `kill-*` scenarios: SIGKILL to one service under load, then watch the supervisor bring it
//! back. Pass: it is restarted (a new process or container, its restart count up) and serves
//! again within the recovery timeout; tenants that do not depend on it see no failed request;
//! Langflow instances survive the loss of Postgres, the emulator, the gateway or the identity
//! server without being restarted; nothing written before is lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::load::{self, Load};
use super::{ChaosContext, ScenarioResult};
use crate::runtime::{Liveness, RunningProcess};
use crate::services::langflow;

/// What a scenario kills.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    /// The Langflow instance of the tenant with this index.
    Tenant(usize),
    /// A service of the run by name (`postgres`, `aws`, `gateway`, `identity`).
    Service(&'static str),
}

/// Successful requests in a row each tenant needs after the restart to count as recovered.
const RECOVERED_AFTER: usize = 3;

/// Runs one kill scenario.
pub async fn run(
    context: &ChaosContext<'_>,
    scenario: &str,
    target: Target,
) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(scenario);
    let tenants = context.tenants.len();
    let (service, must_not_fail, instances_survive): (String, Vec<usize>, bool) = match target {
        Target::Tenant(i) => (
            langflow::service_name(&context.tenants[i].prefix),
            (0..tenants).filter(|t| *t != i).collect(),
            false,
        ),
        // Every request goes through the gateway, and every answer needs the database.
        Target::Service(name @ ("postgres" | "gateway")) => (name.to_string(), Vec::new(), true),
        // Nothing in the load's path: no tenant may see a failure.
        Target::Service(name) => (name.to_string(), (0..tenants).collect(), true),
    };
    let runtime = super::runtime(context);
    let files = context.stack.files();
    let load = Load::start(context.load_targets(), context.options.rps_per_tenant);
    let baseline = Instant::now() + Duration::from_secs(60);
    while !load.all_healthy_after(Duration::ZERO, RECOVERED_AFTER) {
        if Instant::now() > baseline {
            load.stop().await;
            result.fail("the load was failing before the fault (no baseline)");
            return Ok(result);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let state = files.read_state()?.context("the stack is down")?;
    let record = state
        .services
        .get(&service)
        .with_context(|| format!("{service} is not part of the run"))?
        .clone();
    let instances: BTreeMap<String, RunningProcess> = state
        .services
        .iter()
        .filter(|(name, _)| name.starts_with("langflow-") && **name != service)
        .map(|(name, r)| (name.clone(), r.process.clone()))
        .collect();
    let fault = load.now();
    runtime.kill(&record.process)?;
    result.note(format!("killed {service} ({})", record.process.describe()));

    let deadline = Instant::now() + context.options.recovery_timeout;
    let mut restarted_at: Option<Duration> = None;
    let mut restarts_after = record.restarts;
    loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if restarted_at.is_none() {
            if let Some(now) = files
                .read_state()?
                .and_then(|s| s.services.get(&service).cloned())
            {
                if now.restarts > record.restarts
                    && now.process != record.process
                    && runtime.liveness(&now.process) == Liveness::Running
                {
                    restarted_at = Some(load.now());
                    restarts_after = now.restarts;
                }
            }
        }
        if let Some(at) = restarted_at {
            if load.all_healthy_after(at, RECOVERED_AFTER) {
                break;
            }
        }
        if Instant::now() > deadline {
            result.fail(format!(
                "not serving again within {} s (restarted by the supervisor: {})",
                context.options.recovery_timeout.as_secs(),
                if restarted_at.is_some() { "yes" } else { "no" }
            ));
            break;
        }
    }
    // A little more load after recovery: a relapse shows up too.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let samples = load.samples_since(fault);
    load.stop().await;

    for (index, tenant) in context.tenants.iter().enumerate() {
        let figures = load::figures(&samples, index, fault);
        result.requests_sent += figures.sent;
        result.requests_failed += figures.failed;
        result.max_outage_ms = result.max_outage_ms.max(figures.max_outage_ms);
        if let Some(first) = figures.ms_to_first_failure {
            result.ms_to_first_failure = Some(
                result
                    .ms_to_first_failure
                    .map_or(first, |f: f64| f.min(first)),
            );
        }
        if must_not_fail.contains(&index) && figures.failed > 0 {
            result.fail(format!(
                "{} does not depend on {service} but {} of its {} requests failed ({})",
                tenant.prefix,
                figures.failed,
                figures.sent,
                figures.failures.join(", ")
            ));
        }
        result.tenants.insert(tenant.prefix.clone(), figures);
    }
    if let Some(at) = restarted_at {
        let service_back = (at - fault).as_secs_f64() * 1000.0;
        let tenants_back = result
            .tenants
            .values()
            .map(|f| f.recovery_ms)
            .fold(0.0, f64::max);
        result.recovery_ms = Some(service_back.max(tenants_back));
        result.note(format!(
            "{service} restarted after {:.1} s (restarts {}→{restarts_after}); everything served again after {:.1} s",
            service_back / 1000.0,
            record.restarts,
            service_back.max(tenants_back) / 1000.0
        ));
    }
    if instances_survive {
        let now = files.read_state()?.context("the stack is down")?;
        let replaced: Vec<&String> = instances
            .iter()
            .filter(|(name, process)| now.services.get(*name).map(|r| &r.process) != Some(*process))
            .map(|(name, _)| name)
            .collect();
        if replaced.is_empty() {
            result.note("instances kept running (not restarted)");
        } else {
            result.fail(format!("instances were restarted: {replaced:?}"));
        }
    }
    context.check_data(&mut result).await;
    Ok(result)
}
