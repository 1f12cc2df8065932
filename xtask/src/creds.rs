//! `cargo xtask creds check` (and the hidden `creds-probe`): the AWS credential chain scenarios.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use harness::stack::Stack;

use crate::{exit_code, gateway_command, print_json, probe_command};

/// The `creds` subcommands.
#[derive(Subcommand)]
pub enum CredsCommand {
    /// Run every credential scenario (against the running stack, or an isolated one when none
    /// is up); exit 1 when any scenario does not behave as expected.
    Check {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Only the Rust (aws-config) runs; skip boto3.
        #[arg(long)]
        no_python: bool,
    },
}

/// Runs a `creds` subcommand: the scenarios on `stack` when it runs, else on an isolated one.
pub async fn run(stack: &Stack, command: CredsCommand) -> Result<ExitCode> {
    let CredsCommand::Check { json, no_python } = command;
    let (report, place) = harness::credentials::check::run_on_stack_or_isolated(
        stack,
        &gateway_command()?,
        probe_command()?,
        !no_python,
    )
    .await?;
    if json {
        print_json(&report)?;
    } else {
        println!("credential scenarios on {place}");
        println!("{}", harness::credentials::check::render_table(&report));
    }
    Ok(exit_code(report.passed()))
}

/// `creds-probe`: resolves the default credential chain from the environment, prints it as JSON.
pub async fn probe() -> Result<ExitCode> {
    println!(
        "{}",
        serde_json::to_string(&harness::credentials::probe::run().await)?
    );
    Ok(ExitCode::SUCCESS)
}
