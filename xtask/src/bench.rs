//! `cargo xtask bench`: the tenancy targets, or native vs docker with `--runtime docker`.

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
}

/// Runs the benchmark on isolated stacks (`stack` only supplies the configuration; `runtime` is
/// the global `--runtime`); failure when a target is missed.
pub async fn run(stack: &Stack, args: BenchArgs, runtime: Option<&str>) -> Result<ExitCode> {
    let BenchArgs { runs, json } = args;
    let (root, servers) = (&stack.config().root, gateway_command()?);
    // `--runtime docker` compares the runtimes; otherwise the tenancy targets (native).
    let report = if runtime == Some("docker") {
        harness::bench::runtimes(root, &servers, runs).await?
    } else {
        harness::bench::tenancy(root, &servers, runs).await?
    };
    if json {
        print_json(&report)?;
    } else {
        println!("{}", report::bench_table(&report));
    }
    Ok(exit_code(report.pass()))
}
