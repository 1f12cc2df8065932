//! `cargo xtask bench --dashboard`: the dashboard's targets on a real stack of N tenants (native,
//! forked): the page's load — navigation to the first snapshot drawn, in headless Chromium — at
//! most [`MAX_PAGE_LOAD_MS`], and a tenant's request latency through the gateway unchanged with
//! the dashboard open — on its Services page, and on its Logs page following the merged log, which
//! every measured request adds a line to — against closed, measured side by side in interleaved
//! rounds.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::bench::{BenchReport, Measurement};
use crate::browser::Chromium;
use crate::config::Config;
use crate::stack::{GatewayCommand, Stack};

/// Target for one page load (navigation start → first snapshot drawn).
pub const MAX_PAGE_LOAD_MS: f64 = 200.0;
/// Target for p50 latency open / closed (what a 2-core machine's noise allows).
pub const MAX_OPEN_CLOSED_RATIO: f64 = 1.10;
/// Target for p99 latency open / closed: the browser drawing the page shares the cores with the
/// gateway, the tenant and the load generator, which the tail shows first.
pub const MAX_OPEN_CLOSED_P99_RATIO: f64 = 1.5;
/// Page loads measured (after the first, which trades the token for the cookie).
const PAGE_LOADS: usize = 10;
/// Requests per latency round.
const REQUESTS_PER_ROUND: usize = 400;
/// Rounds (each: closed, open on Services, open on Logs).
const ROUNDS: usize = 4;

/// Runs the dashboard benchmark with `tenants` tenants.
pub async fn run(root: &Path, servers: &GatewayCommand, tenants: usize) -> Result<BenchReport> {
    let chromium = crate::browser::find_chromium()?
        .context("the dashboard benchmark needs Chromium: apt-get install chromium")?;
    let dir = tempfile::Builder::new()
        .prefix("lfi-bench-dashboard-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let prefixes: Vec<String> = (1..=tenants.max(1)).map(|i| format!("t{i}")).collect();
    let names: Vec<&str> = prefixes.iter().map(String::as_str).collect();
    let config =
        Config::isolated_with_tenants(root, dir.path(), &crate::bench::tenants_yaml(&names))?;
    let stack = Stack::new(config).with_gateway_command(servers.clone());
    crate::progress::println(format!("bench: dashboard: up with {} tenants", names.len()));
    let result = measure(&stack, &chromium, names.len()).await;
    stack.down(true)?;
    result
}

async fn measure(stack: &Stack, chromium: &Path, tenants: usize) -> Result<BenchReport> {
    let report = stack.up().await?;
    let url = report
        .dashboard
        .clone()
        .context("the stack has no dashboard")?;
    // Reloads go to the page without the fragment (the tab keeps the token in its
    // sessionStorage), a new tab to the printed URL.
    let page = url.split('#').next().unwrap_or(&url).to_string();
    let tenant = report.tenants.first().context("no tenant")?.url.clone();
    let browser = Chromium::launch(chromium).await?;
    let result = async {
        // Page loads: the first trades the token for the cookie; the others are what a person's
        // reload costs.
        let tab = browser.tab().await?;
        tab.goto(&url).await?;
        wait_ready(&tab).await?;
        let mut loads = Vec::new();
        for _ in 0..PAGE_LOADS {
            tab.goto(&page).await?;
            wait_ready(&tab).await?;
            loads.push(tab.eval::<f64>("window.dashboardReadyMs").await?);
        }
        tab.close().await;
        loads.sort_by(f64::total_cmp);
        // Latency, closed and open in turns.
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let probe = format!("{tenant}health");
        for _ in 0..50 {
            http.get(&probe).send().await?.error_for_status()?;
        }
        // Closed, open on the Services page (where it opens), open on the Logs page following
        // every request (each one adds a line): in turns, so drift hits all three alike.
        let (mut closed, mut services, mut logs) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            crate::progress::println(format!(
                "bench: dashboard: latency round {}/{ROUNDS}",
                round + 1
            ));
            closed.extend(latencies(&http, &probe).await?);
            let watching = browser.tab().await?;
            watching.goto(&url).await?;
            wait_ready(&watching).await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            services.extend(latencies(&http, &probe).await?);
            watching
                .eval::<bool>("(location.hash = '#logs', true)")
                .await?;
            tokio::time::sleep(Duration::from_secs(2)).await;
            logs.extend(latencies(&http, &probe).await?);
            let followed: bool = watching
                .eval("document.getElementById('log-view').textContent.includes('/health')")
                .await?;
            anyhow::ensure!(
                followed,
                "the open page did not follow the gateway's requests"
            );
            watching.close().await;
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        for series in [&mut closed, &mut services, &mut logs] {
            series.sort_by(f64::total_cmp);
        }
        let closed50 = percentile(&closed, 0.5);
        let mut measurements = vec![
            Measurement::new("tenants", tenants as f64, "", None),
            Measurement::new(
                "page load, median of reloads",
                percentile(&loads, 0.5),
                "ms",
                None,
            ),
            Measurement::new(
                "page load, slowest reload",
                *loads.last().unwrap_or(&f64::NAN),
                "ms",
                Some(MAX_PAGE_LOAD_MS),
            ),
        ];
        for (label, series) in [
            ("dashboard closed", &closed),
            ("open on Services", &services),
            ("open on Logs, following", &logs),
        ] {
            measurements.push(Measurement::new(
                format!("tenant request p50, {label}"),
                percentile(series, 0.5),
                "ms",
                None,
            ));
            measurements.push(Measurement::new(
                format!("tenant request p99, {label}"),
                percentile(series, 0.99),
                "ms",
                None,
            ));
        }
        let closed99 = percentile(&closed, 0.99);
        for (label, series) in [("Services", &services), ("Logs", &logs)] {
            measurements.push(Measurement::new(
                format!("p50 open on {label} / closed"),
                percentile(series, 0.5) / closed50,
                "x",
                Some(MAX_OPEN_CLOSED_RATIO),
            ));
            measurements.push(Measurement::new(
                format!("p99 open on {label} / closed"),
                percentile(series, 0.99) / closed99,
                "x",
                Some(MAX_OPEN_CLOSED_P99_RATIO),
            ));
        }
        Ok::<_, anyhow::Error>(BenchReport { measurements })
    }
    .await;
    browser.close().await;
    result
}

async fn wait_ready(tab: &crate::browser::Tab) -> Result<()> {
    tab.wait_for(
        "the dashboard's first snapshot",
        "document.body && document.body.dataset.ready === '1'",
        Duration::from_secs(20),
    )
    .await
}

/// Milliseconds of each of [`REQUESTS_PER_ROUND`] sequential keep-alive GETs of `url`.
async fn latencies(http: &reqwest::Client, url: &str) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(REQUESTS_PER_ROUND);
    for _ in 0..REQUESTS_PER_ROUND {
        let started = Instant::now();
        let answer = http.get(url).send().await?;
        let status = answer.status();
        answer.bytes().await?;
        anyhow::ensure!(status.is_success(), "{url} answered {status}");
        out.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(out)
}

/// The `q` quantile of sorted `values`.
fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values[((values.len() - 1) as f64 * q).round() as usize]
}
