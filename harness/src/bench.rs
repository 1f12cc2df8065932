//! `cargo xtask bench`: the tenancy performance targets, measured on real processes.
//!
//! - warm `up` with two tenants against warm `up` with one (same machine, same caches, tenants
//!   already provisioned): instances start in parallel, so the ratio should stay ≤ 1.3;
//! - resident memory of each tenant instance once ready: ≤ 650 MB.
//!
//! Each measured stack lives in its own temp state dir with free ports, and is removed afterwards.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use crate::config::Config;
use crate::runtime::MemoryUsage;
use crate::stack::{GatewayCommand, Stack};

/// Target for warm-up(2 tenants) / warm-up(1 tenant).
pub const MAX_TWO_TENANT_RATIO: f64 = 1.3;
/// Target for one instance's resident memory.
pub const MAX_INSTANCE_RSS_MB: f64 = 650.0;

/// One measured quantity.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    /// What was measured.
    pub metric: String,
    /// The value.
    pub value: f64,
    /// Unit of the value.
    pub unit: String,
    /// The target, if there is one (`value <= target` passes).
    pub target: Option<f64>,
    /// Whether the target is met (true when there is none).
    pub pass: bool,
}

impl Measurement {
    /// A measurement of `metric`; passes when there is no target or `value <= target`.
    pub fn new(metric: impl Into<String>, value: f64, unit: &str, target: Option<f64>) -> Self {
        Self {
            metric: metric.into(),
            value,
            unit: unit.into(),
            pass: target.is_none_or(|t| value <= t),
            target,
        }
    }
}

/// Results of the tenancy benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// Every measurement, targets included.
    pub measurements: Vec<Measurement>,
}

impl BenchReport {
    /// True when every target is met.
    pub fn pass(&self) -> bool {
        self.measurements.iter().all(|m| m.pass)
    }
}

/// Target for warm-up(4 tenants) / warm-up(1 tenant) with tenants forked from one fork server.
pub const MAX_FORK_FOUR_TENANT_RATIO: f64 = 1.3;
/// Target for what a forked tenant adds beyond the pages it shares (USS) after a workload.
pub const MAX_FORKED_TENANT_USS_MB: f64 = 200.0;
/// Target for a crashed forked tenant serving again (kill → `/health_check` ok, through the
/// supervisor).
pub const MAX_REFORK_SECS: f64 = 5.0;

/// A tenants file with `prefixes`, one superuser each.
pub(crate) fn tenants_yaml(prefixes: &[&str]) -> String {
    let mut yaml = String::from("tenants:\n");
    for prefix in prefixes {
        yaml.push_str(&format!(
            "  - prefix: {prefix}\n    users:\n      - username: admin@{prefix}.com\n        superuser: true\n"
        ));
    }
    yaml
}

/// Provisions a stack with `prefixes` (cold), stops it, then times `runs` warm `up`s; returns the
/// fastest wall time and the RSS of each instance from the last run.
/// Docker `up` with 2 tenants at most this many times the native one (warm).
pub const MAX_DOCKER_UP_RATIO: f64 = 1.15;
/// Per-tenant memory in a container (engine stats) at most this many times the native RSS.
pub const MAX_DOCKER_MEMORY_RATIO: f64 = 1.1;

async fn warm_up(
    root: &Path,
    gateway: &GatewayCommand,
    prefixes: &[&str],
    runs: usize,
) -> Result<(f64, Vec<(String, u64)>)> {
    let (_, warm, memory) = warm_up_on("native", root, gateway, prefixes, runs).await?;
    Ok((warm, memory))
}

/// Times a cold `up` of `prefixes` on the runtime `runtime` (a fresh state dir: schemas created
/// and migrated; images and venvs already there), then `runs` warm `up`s (the fastest is kept),
/// and reads each instance's memory (native RSS / container usage) after the last.
/// Returns (cold seconds, warm seconds, memory per instance).
async fn warm_up_on(
    runtime: &str,
    root: &Path,
    gateway: &GatewayCommand,
    prefixes: &[&str],
    runs: usize,
) -> Result<(f64, f64, Vec<(String, u64)>)> {
    let dir = tempfile::Builder::new()
        .prefix("lfi-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let config = Config::isolated_with_tenants(root, dir.path(), &tenants_yaml(prefixes))?;
    let kind = runtime;
    let stack = Stack::new(config.clone())
        .with_runtime(crate::runtime::for_run(kind, &config)?)
        .with_gateway_command(gateway.clone());
    let result = async {
        crate::progress::println(format!("bench: {kind}: cold up, {}", prefixes.join(", ")));
        let cold_started = Instant::now();
        stack.up().await?;
        let cold = cold_started.elapsed().as_secs_f64();
        stack.down(false)?;
        let mut best = f64::INFINITY;
        let mut rss = Vec::new();
        for run in 1..=runs {
            crate::progress::println(format!(
                "bench: {kind}: warm up with {} tenant(s), run {run}/{runs}",
                prefixes.len()
            ));
            let started = Instant::now();
            let report = stack.up().await?;
            best = best.min(started.elapsed().as_secs_f64());
            rss = report
                .status
                .services
                .iter()
                .filter(|s| s.name.starts_with("langflow-"))
                .map(|s| (s.name.clone(), s.rss_bytes.unwrap_or(0)))
                .collect();
            stack.down(false)?;
        }
        Ok::<_, anyhow::Error>((cold, best, rss))
    }
    .await;
    stack.down(true)?;
    result
}

/// Runs the tenancy benchmark (`runs` warm starts per configuration, fastest kept).
pub async fn tenancy(root: &Path, gateway: &GatewayCommand, runs: usize) -> Result<BenchReport> {
    let runs = runs.max(1);
    let (one, _) = warm_up(root, gateway, &["solo"], runs).await?;
    let (two, rss) = warm_up(root, gateway, &["acme", "widgetco"], runs).await?;
    let mut measurements = vec![
        Measurement::new("warm up, 1 tenant", one, "s", None),
        Measurement::new("warm up, 2 tenants", two, "s", None),
        Measurement::new(
            "ratio 2 tenants / 1 tenant",
            two / one,
            "x",
            Some(MAX_TWO_TENANT_RATIO),
        ),
    ];
    for (name, bytes) in rss {
        measurements.push(Measurement::new(
            format!("RSS {name}"),
            bytes as f64 / 1_048_576.0,
            "MB",
            Some(MAX_INSTANCE_RSS_MB),
        ));
    }
    Ok(BenchReport { measurements })
}

/// Docker against native in one run: warm `up` of 2 tenants on each (ratio ≤
/// [`MAX_DOCKER_UP_RATIO`]) and each instance's memory, engine stats against native RSS (ratio ≤
/// [`MAX_DOCKER_MEMORY_RATIO`]).
pub async fn runtimes(root: &Path, gateway: &GatewayCommand, runs: usize) -> Result<BenchReport> {
    let runs = runs.max(1);
    let tenants = ["acme", "widgetco"];
    let (native_cold, native, native_memory) =
        warm_up_on("native", root, gateway, &tenants, runs).await?;
    let (docker_cold, docker, docker_memory) =
        warm_up_on("docker", root, gateway, &tenants, runs).await?;
    let mut measurements = vec![
        Measurement::new("cold up, 2 tenants, native", native_cold, "s", None),
        Measurement::new("cold up, 2 tenants, docker", docker_cold, "s", None),
        Measurement::new(
            "ratio docker / native (cold up)",
            docker_cold / native_cold,
            "x",
            Some(MAX_DOCKER_UP_RATIO),
        ),
        Measurement::new("warm up, 2 tenants, native", native, "s", None),
        Measurement::new("warm up, 2 tenants, docker", docker, "s", None),
        Measurement::new(
            "ratio docker / native (warm up)",
            docker / native,
            "x",
            Some(MAX_DOCKER_UP_RATIO),
        ),
    ];
    for (name, native_bytes) in &native_memory {
        let docker_bytes = docker_memory
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, b)| *b)
            .unwrap_or(0);
        let mb = |b: u64| b as f64 / 1_048_576.0;
        measurements.push(Measurement::new(
            format!("memory {name}, native RSS"),
            mb(*native_bytes),
            "MB",
            None,
        ));
        measurements.push(Measurement::new(
            format!("memory {name}, docker (engine stats)"),
            mb(docker_bytes),
            "MB",
            None,
        ));
        measurements.push(Measurement::new(
            format!("ratio docker / native memory {name}"),
            docker_bytes as f64 / (*native_bytes).max(1) as f64,
            "x",
            Some(MAX_DOCKER_MEMORY_RATIO),
        ));
    }
    Ok(BenchReport { measurements })
}

/// One measured configuration of the fork benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct StartFigures {
    /// `fork` or `spawn`.
    pub start: String,
    /// Tenants in the stack.
    pub tenants: usize,
    /// Fastest warm `up`, seconds.
    pub warm_up_secs: f64,
    /// Per tenant instance after the workload: its service name and memory.
    pub instances: Vec<(String, MemoryUsage)>,
    /// The fork server's memory, when tenants were forked.
    pub fork_server: Option<MemoryUsage>,
    /// Seconds from SIGKILL of the first tenant's instance to its `/health_check` answering ok
    /// again (the supervisor restarts it: re-forked, or spawned).
    pub recovery_secs: f64,
    /// Whether the recovered instance was forked by the same fork server (no re-import).
    pub reforked_without_import: Option<bool>,
}

/// What a tenant does before memory is read: log in, create and list flows, a variable, a file
/// (the objects the e2e suite makes), so the figures are those of a used instance.
async fn workload(url: &str, username: &str, password: &str) -> Result<()> {
    let client = crate::e2e::client::TenantClient::new(url);
    let token = client.token(username, password).await?;
    for n in 0..3 {
        client
            .create_flow(&token, &format!("bench-flow-{n}"))
            .await?;
    }
    client
        .flow_ids(&crate::e2e::client::Auth::Bearer(&token))
        .await?;
    let variable = format!("BENCH_VAR_{}", crate::secret::hex(6));
    client.create_variable(&token, &variable, "value").await?;
    client.variable_names(&token).await?;
    client
        .upload_file(&token, "bench.txt", b"bench file contents")
        .await?;
    client.file_ids(&token).await?;
    Ok(())
}

/// Brings up `tenants` tenants cold once, then for each start mode: warm `up`s (fastest kept),
/// the workload on every tenant, memory of every instance, then SIGKILL of the first instance and
/// the time until it serves again.
async fn measure_starts(
    root: &Path,
    gateway: &GatewayCommand,
    tenants: usize,
    runs: usize,
    modes: &[crate::config::StartMode],
) -> Result<Vec<StartFigures>> {
    let dir = tempfile::Builder::new()
        .prefix("lfi-bench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let prefixes: Vec<String> = (1..=tenants).map(|n| format!("t{n}")).collect();
    let password = crate::secret::password(16);
    let mut yaml = String::from("tenants:\n");
    for prefix in &prefixes {
        yaml.push_str(&format!(
            "  - prefix: {prefix}\n    users:\n      - username: admin@{prefix}.com\n        password: \"{password}\"\n        superuser: true\n"
        ));
    }
    let base = Config::isolated_with_tenants(root, dir.path(), &yaml)?;
    let stack_for = |start: crate::config::StartMode| -> Result<Stack> {
        let mut config = base.clone();
        config.langflow.start = start;
        Ok(Stack::new(config.clone())
            .with_runtime(crate::runtime::for_run("native", &config)?)
            .with_gateway_command(gateway.clone()))
    };
    let result = async {
        crate::progress::println(format!("bench: cold up, {tenants} tenant(s)"));
        let cold = stack_for(crate::config::StartMode::Spawn)?;
        cold.up().await?;
        cold.down(false)?;
        let mut figures = Vec::new();
        for &start in modes {
            let name = format!("{start:?}").to_lowercase();
            let stack = stack_for(start)?;
            let mut best = f64::INFINITY;
            for run in 1..=runs {
                crate::progress::println(format!(
                    "bench: {name}: warm up with {tenants} tenant(s), run {run}/{runs}"
                ));
                let started = Instant::now();
                let report = stack.up().await?;
                best = best.min(started.elapsed().as_secs_f64());
                if run < runs {
                    stack.down(false)?;
                    continue;
                }
                futures::future::try_join_all(report.tenants.iter().map(|t| {
                    let username = format!("admin@{}.com", t.prefix);
                    let password = password.clone();
                    let url = t.url.clone();
                    async move { workload(&url, &username, &password).await }
                }))
                .await?;
                let status = stack.status().await?.context("stack vanished")?;
                let usage = |name: &str| status.service(name).and_then(|s| s.memory);
                let instances = prefixes
                    .iter()
                    .map(|p| {
                        let service = crate::services::langflow::service_name(p);
                        let memory = usage(&service).unwrap_or_default();
                        (service, memory)
                    })
                    .collect();
                let fork_server = usage(crate::services::forkserver::SERVICE);
                let (recovery_secs, reforked) =
                    kill_and_time_recovery(&stack, &prefixes[0]).await?;
                figures.push(StartFigures {
                    start: name.clone(),
                    tenants,
                    warm_up_secs: best,
                    instances,
                    fork_server,
                    recovery_secs,
                    reforked_without_import: fork_server.map(|_| reforked),
                });
                stack.down(false)?;
            }
        }
        Ok::<_, anyhow::Error>(figures)
    }
    .await;
    stack_for(crate::config::StartMode::Spawn)?.down(true)?;
    result
}

/// SIGKILLs `prefix`'s instance and times until its `/health_check` is ok again; also tells
/// whether the new instance is a child of the same fork server as before.
async fn kill_and_time_recovery(stack: &Stack, prefix: &str) -> Result<(f64, bool)> {
    let name = crate::services::langflow::service_name(prefix);
    let state = stack.files().read_state()?.context("no state")?;
    let record = state.services.get(&name).context("no instance")?.clone();
    let server_pid = state
        .services
        .get(crate::services::forkserver::SERVICE)
        .map(|r| r.process.pid);
    let killed = Instant::now();
    stack.runtime().kill(&record.process)?;
    loop {
        if killed.elapsed() > std::time::Duration::from_secs(300) {
            anyhow::bail!("{name} did not serve again within 300 s of being killed");
        }
        let current = stack.files().read_state()?.context("no state")?;
        if let Some(now) = current.services.get(&name) {
            if now.process.pid != record.process.pid
                && crate::services::langflow::probe(now.port).await.is_ok()
            {
                let secs = killed.elapsed().as_secs_f64();
                let parent = std::fs::read_to_string(format!("/proc/{}/stat", now.process.pid))
                    .ok()
                    .and_then(|stat| {
                        let rest = &stat[stat.rfind(')')? + 2..];
                        rest.split_whitespace().nth(1)?.parse::<i32>().ok()
                    });
                let same_server = server_pid.is_some()
                    && parent == server_pid
                    && current
                        .services
                        .get(crate::services::forkserver::SERVICE)
                        .map(|r| r.process.pid)
                        == server_pid;
                return Ok((secs, same_server));
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Tenants forked from one fork server against one process per tenant, for each count in
/// `tenant_counts` (e.g. 1, 2, 4, 8), in one run: warm `up`, memory per tenant after a workload
/// (RSS / PSS / USS), recovery of a killed tenant. Targets: warm up(4) / warm up(1) ≤
/// [`MAX_FORK_FOUR_TENANT_RATIO`] forked, forked tenants' USS ≤ [`MAX_FORKED_TENANT_USS_MB`],
/// a killed forked tenant serving again in ≤ [`MAX_REFORK_SECS`].
pub async fn starts(
    root: &Path,
    gateway: &GatewayCommand,
    tenant_counts: &[usize],
    runs: usize,
    modes: &[crate::config::StartMode],
) -> Result<(BenchReport, Vec<StartFigures>)> {
    let runs = runs.max(1);
    let mut all = Vec::new();
    for &tenants in tenant_counts {
        all.extend(measure_starts(root, gateway, tenants.max(1), runs, modes).await?);
    }
    let mb = |b: u64| b as f64 / 1_048_576.0;
    let mut measurements = Vec::new();
    for figures in &all {
        let label = format!("{}, {} tenant(s)", figures.start, figures.tenants);
        let forked = figures.start == "fork";
        measurements.push(Measurement::new(
            format!("warm up, {label}"),
            figures.warm_up_secs,
            "s",
            None,
        ));
        let uss_max = figures
            .instances
            .iter()
            .map(|(_, m)| m.uss)
            .max()
            .unwrap_or(0);
        let pss_sum: u64 = figures.instances.iter().map(|(_, m)| m.pss).sum::<u64>()
            + figures.fork_server.map_or(0, |f| f.pss);
        measurements.push(Measurement::new(
            format!("largest tenant USS after workload, {label}"),
            mb(uss_max),
            "MB",
            forked.then_some(MAX_FORKED_TENANT_USS_MB),
        ));
        measurements.push(Measurement::new(
            format!("total PSS of tenants + fork server, {label}"),
            mb(pss_sum),
            "MB",
            None,
        ));
        measurements.push(Measurement::new(
            format!("killed tenant serving again, {label}"),
            figures.recovery_secs,
            "s",
            forked.then_some(MAX_REFORK_SECS),
        ));
        if let Some(same) = figures.reforked_without_import {
            measurements.push(Measurement::new(
                format!("re-forked by the same fork server (1 = yes), {label}"),
                if same { 1.0 } else { 0.0 },
                "",
                None,
            ));
            if !same {
                measurements.last_mut().expect("just pushed").pass = false;
            }
        }
    }
    for start in ["spawn", "fork"] {
        let warm = |n: usize| {
            all.iter()
                .find(|f| f.start == start && f.tenants == n)
                .map(|f| f.warm_up_secs)
        };
        if let (Some(one), Some(four)) = (warm(1), warm(4)) {
            measurements.push(Measurement::new(
                format!("ratio warm up 4 tenants / 1 tenant, {start}"),
                four / one,
                "x",
                (start == "fork").then_some(MAX_FORK_FOUR_TENANT_RATIO),
            ));
        }
    }
    Ok((BenchReport { measurements }, all))
}
