//! `cargo xtask env`: prints what to `eval` so psql, the AWS CLI, boto3 and curl talk to the
//! running stack (`harness::devenv`).

use std::process::ExitCode;

use anyhow::Result;
use harness::devenv::{self, Shell};
use harness::stack::Stack;

/// Arguments of `env`.
#[derive(clap::Args)]
pub struct EnvArgs {
    /// Tenant prefix (or schema id): PG* for its own role, LANGFLOW_URL and an API key. Without
    /// it, PG* are the superuser's and no Langflow variables are set.
    #[arg(long)]
    tenant: Option<String>,
    /// Output syntax: bash (also zsh/sh), fish or json.
    #[arg(long, default_value = "bash", value_parser = ["bash", "sh", "zsh", "fish", "json"])]
    shell: String,
}

/// Prints the environment for the running stack.
pub async fn run(stack: &Stack, args: EnvArgs) -> Result<ExitCode> {
    let shell: Shell = args.shell.parse()?;
    let env = devenv::prepare(stack, args.tenant.as_deref()).await?;
    print!("{}", devenv::render(&env, shell));
    if shell == Shell::Json {
        println!();
    }
    Ok(ExitCode::SUCCESS)
}
