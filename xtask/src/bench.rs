//! `cargo xtask bench`: the tenancy targets, native vs docker with `--runtime docker`, spawn vs
//! fork with `--starts`, the gateway's added latency with `--gateway`, or the dashboard's page
//! load and effect on tenant latency with `--dashboard`.

use std::process::ExitCode;

use anyhow::Result;
use harness::report;
use harness::stack::Stack;

use crate::{exit_code, gateway_command, print_json};

/// Arguments of `bench`.
#[derive(clap::Args)]
pub struct BenchArgs {
    /// Warm starts per configuration (the fastest is kept).
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Compare tenants forked from one fork server with one process per tenant, for these tenant
    /// counts (e.g. 1,2,4,8): warm up, memory per tenant (RSS/PSS/USS), recovery of a killed one.
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    starts: Option<Vec<usize>>,
    /// With --starts: which start modes to measure (spawn, fork).
    #[arg(long, value_delimiter = ',', default_value = "spawn,fork")]
    modes: Vec<String>,
    /// What the gateway adds to a keep-alive request: the same backend direct, through the
    /// gateway and through nginx (when installed), p50/p99 and requests/s.
    #[arg(long)]
    gateway: bool,
    /// With --gateway: concurrent keep-alive clients per configuration.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1,16",
        requires = "gateway"
    )]
    clients: Vec<usize>,
    /// With --gateway: requests per configuration (after a warm-up of 50 per client).
    #[arg(long, default_value_t = 20_000, requires = "gateway")]
    requests: usize,
    /// With --gateway: cold loads of a tenant's UI in headless Chromium per path (direct and
    /// through the gateway) on a one-tenant stack; 0 leaves it out.
    #[arg(long, default_value_t = 5, requires = "gateway")]
    ui_loads: usize,
    /// The dashboard's targets on a stack of --tenants tenants: page load in headless Chromium
    /// and a tenant's latency through the gateway with the dashboard open against closed.
    #[arg(long, conflicts_with_all = ["gateway", "starts"])]
    dashboard: bool,
    /// With --dashboard: tenants of the measured stack.
    #[arg(long, default_value_t = 8, requires = "dashboard")]
    tenants: usize,
}

/// Runs the benchmark on isolated stacks (`stack` only supplies the configuration; `runtime` is
/// the global `--runtime`); failure when a target is missed.
pub async fn run(stack: &Stack, args: BenchArgs, runtime: Option<&str>) -> Result<ExitCode> {
    let BenchArgs {
        runs,
        json,
        starts,
        modes,
        gateway,
        clients,
        requests,
        ui_loads,
        dashboard,
        tenants,
    } = args;
    let (root, servers) = (&stack.config().root, gateway_command()?);
    let state_dir = &stack.config().state_dir;
    if dashboard {
        let report = harness::dashboard_bench::run(root, &servers, tenants).await?;
        return finish(
            state_dir,
            "bench-dashboard",
            report.pass(),
            &report,
            json,
            || report::bench_table(&report),
        );
    }
    if gateway {
        let options = harness::gateway_bench::GatewayBenchOptions {
            clients,
            requests,
            nginx: None,
            ui_loads,
            root: root.clone(),
        };
        let report = harness::gateway_bench::run(&servers, &options).await?;
        return finish(
            state_dir,
            "bench-gateway",
            report.pass(),
            &report,
            json,
            || report::gateway_bench_table(&report),
        );
    }
    // `--runtime docker` compares the runtimes; otherwise the tenancy targets (native).
    let report = if let Some(counts) = starts {
        let modes = modes
            .iter()
            .map(|m| m.parse::<harness::config::StartMode>())
            .collect::<Result<Vec<_>>>()?;
        let (report, figures) =
            harness::bench::starts(root, &servers, &counts, runs, &modes).await?;
        let kept = serde_json::json!({"measurements": report.measurements, "figures": figures});
        return finish(
            state_dir,
            "bench-starts",
            report.pass(),
            &kept,
            json,
            || {
                format!(
                    "{}\n{}",
                    report::start_figures_table(&figures),
                    report::bench_table(&report)
                )
            },
        );
    } else if runtime == Some("docker") {
        harness::bench::runtimes(root, &servers, runs).await?
    } else {
        harness::bench::tenancy(root, &servers, runs).await?
    };
    finish(state_dir, "bench", report.pass(), &report, json, || {
        report::bench_table(&report)
    })
}

/// Keeps a benchmark's result for the dashboard, prints it (JSON or `table`), and gives the
/// exit code of its targets.
fn finish(
    state_dir: &std::path::Path,
    kind: &str,
    pass: bool,
    report: &impl serde::Serialize,
    json: bool,
    table: impl FnOnce() -> String,
) -> Result<ExitCode> {
    harness::run_reports::record_or_warn(state_dir, kind, pass, report);
    if json {
        print_json(report)?;
    } else {
        println!("{}", table());
    }
    Ok(exit_code(pass))
}
