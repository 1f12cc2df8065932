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
    fn new(metric: impl Into<String>, value: f64, unit: &str, target: Option<f64>) -> Self {
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

fn tenants_yaml(prefixes: &[&str]) -> String {
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
