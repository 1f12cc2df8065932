//! `cargo xtask chaos`: the resilience suite on an isolated stack.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use harness::report;
use harness::stack::Stack;

use crate::{exit_code, gateway_command};

/// Arguments of `chaos`.
#[derive(clap::Args)]
pub struct ChaosArgs {
    /// Scenarios to run, comma-separated (default: all): kill-tenant, kill-postgres,
    /// kill-emulator, kill-gateway, kill-identity, state-dir-read-only, state-dir-full,
    /// interrupt-up.
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    scenario: Vec<String>,
    /// Load during the scenarios: requests per second per tenant.
    #[arg(long, default_value_t = 10.0)]
    rps: f64,
    /// Rounds of interrupt-up (SIGINT and SIGTERM to `up` at random points).
    #[arg(long, default_value_t = 20)]
    rounds: usize,
    /// Seed of the random interrupt points (default: random, printed).
    #[arg(long)]
    seed: Option<u64>,
    /// How long a killed service may take to serve again, in seconds.
    #[arg(long, default_value_t = 180)]
    recovery_timeout: u64,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a JSON report.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// Runs the suite, prints the table, writes the asked-for reports; failure when a scenario fails.
pub async fn run(stack: &Stack, args: ChaosArgs, runtime: Option<String>) -> Result<ExitCode> {
    let seed = args.seed.unwrap_or_else(harness::chaos::random_seed);
    let options = harness::chaos::ChaosOptions {
        runtime,
        scenarios: args.scenario,
        rps_per_tenant: args.rps,
        rounds: args.rounds,
        seed,
        servers: gateway_command()?,
        cli: std::env::current_exe()?,
        recovery_timeout: Duration::from_secs(args.recovery_timeout),
    };
    options.check()?;
    eprintln!(
        "chaos: load {} req/s per tenant, interrupt-up seed {seed} (repeat with --seed {seed})",
        options.rps_per_tenant
    );
    let report = harness::chaos::run(&stack.config().root, &options).await?;
    println!("{}", report::chaos_table(&report));
    harness::run_reports::record_or_warn(
        &stack.config().state_dir,
        "chaos",
        report.failures() == 0,
        &report,
    );
    if let Some(path) = args.junit {
        crate::e2e::write_report(&path, &harness::chaos::junit(&report))?;
    }
    if let Some(path) = args.json {
        crate::e2e::write_report(&path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(exit_code(report.failures() == 0))
}
