//! `cargo xtask`: the langflow-infra command line. Parses arguments and calls into the harness
//! library; every behaviour lives there. One module per command group; this file holds the
//! command enum, the dispatch and the helpers they share.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};
#[cfg(feature = "full")]
use harness::stack::{GatewayCommand, Stack};
use harness_core::config::{find_root, Config};

#[cfg(feature = "full")]
mod bench;
#[cfg(feature = "full")]
mod chaos;
#[cfg(feature = "full")]
mod compose;
#[cfg(feature = "full")]
mod creds;
#[cfg(feature = "full")]
mod e2e;
#[cfg(feature = "full")]
mod env;
#[cfg(feature = "full")]
mod images;
#[cfg(feature = "full")]
mod serve;
#[cfg(feature = "full")]
mod stack_cmds;
#[cfg(feature = "full")]
mod tenant;
mod validate;

/// Local dev and test harness for a multi-tenant Langflow stack on AWS.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    /// Where services run: auto (docker when an engine answers and the images can be had, else
    /// native), native (host processes) or docker (containers). Default: [runtime] kind in
    /// harness.toml (LANGFLOW_INFRA_RUNTIME overrides). A running stack keeps its own.
    #[arg(long, global = true, value_parser = ["auto", "native", "docker"])]
    runtime: Option<String>,
    /// The AWS emulator: ministack (any runtime) or localstack (docker runtime; images newer
    /// than 4.14.0 need LOCALSTACK_AUTH_TOKEN in the environment). Default: [aws] emulator in
    /// harness.toml (LANGFLOW_INFRA_AWS_EMULATOR overrides). A running stack keeps its own.
    #[arg(long, global = true, value_parser = ["ministack", "localstack"])]
    emulator: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    #[cfg(feature = "full")]
    /// Start the stack (idempotent): Postgres, the AWS emulator, the tenants of the tenants file,
    /// the gateway and one Langflow instance per tenant; prints what runs where.
    Up(stack_cmds::UpArgs),
    #[cfg(feature = "full")]
    /// Health of each service (exit 1 when any is not healthy or nothing runs).
    Status(stack_cmds::StatusArgs),
    #[cfg(feature = "full")]
    /// Print a service's log (all services when none is named).
    Logs(stack_cmds::LogsArgs),
    #[cfg(feature = "full")]
    /// Stop everything and remove the run's temporary state (idempotent).
    Down(stack_cmds::DownArgs),
    #[cfg(feature = "full")]
    /// tenantmgr: tenant schemas and their Langflow users (the stack must be up).
    Tenant {
        #[command(subcommand)]
        command: tenant::TenantCommand,
    },
    #[cfg(feature = "full")]
    /// Measure the tenancy targets: warm `up` with 2 tenants vs 1 (ratio <= 1.3) and RSS per
    /// instance (<= 650 MB), on isolated stacks. Exit 1 when a target is missed.
    Bench(bench::BenchArgs),
    #[cfg(feature = "full")]
    /// Print what to `eval` so psql, the AWS CLI, boto3 and curl talk to the running stack
    /// (PG* + a 0600 passfile, AWS profiles dev/local on the emulator, LANGFLOW_URL + API key).
    Env(env::EnvArgs),
    #[cfg(feature = "full")]
    /// The tenant-isolation suite: brings up an isolated stack with two tenants (beside any
    /// `up`), runs every check, prints a table, tears down. Exit 1 when a check fails.
    E2e(e2e::E2eArgs),
    #[cfg(feature = "full")]
    /// The resilience suite: kill -9 of each service under a bounded load, SIGINT/SIGTERM to
    /// `up` at random points, a read-only or full state dir on schema-add — on an isolated stack,
    /// with figures (requests failed, outage, recovery, data lost). Exit 1 when a scenario fails.
    Chaos(chaos::ChaosArgs),
    /// Check the CloudFormation templates: parsing, cfn-lint, cross-stack wiring, parameter files
    /// (exit 1 on any error-level finding).
    Validate(validate::ValidateArgs),
    #[cfg(feature = "full")]
    /// The AWS credential chain: IRSA, CLI profile, assume-role, precedence — each scenario
    /// resolved by aws-config (Rust) and boto3 (Python) against the emulator.
    Creds {
        #[command(subcommand)]
        command: creds::CredsCommand,
    },
    #[cfg(feature = "full")]
    /// The Docker images of the services: build the local ones (compose/images/), list, remove.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
    #[cfg(feature = "full")]
    /// compose/docker-compose.yml for docker-compose users, rendered from the harness's service
    /// definitions (`render`, or `render --check` to compare).
    Compose {
        #[command(subcommand)]
        command: compose::ComposeCommand,
    },
    #[cfg(feature = "full")]
    /// Serve the identity server: OIDC issuer + STS gate (started by `up`; not for direct use).
    #[command(hide = true)]
    IdentityServe(serve::IdentityArgs),
    #[cfg(feature = "full")]
    /// Restart what stops in a run (started by `up`; not for direct use).
    #[command(hide = true)]
    Supervise(serve::SuperviseArgs),
    #[cfg(feature = "full")]
    /// Serve the run's dashboard (started by `up`; not for direct use).
    #[command(hide = true)]
    DashboardServe(serve::SuperviseArgs),
    #[cfg(feature = "full")]
    /// Resolve the default credential chain from the environment and print JSON (used by
    /// `creds check`; not for direct use).
    #[command(hide = true)]
    CredsProbe,
    #[cfg(feature = "full")]
    /// Serve the gateway (started by `up`; not for direct use).
    #[command(hide = true)]
    GatewayServe(serve::GatewayArgs),
}

/// The configuration override `--emulator` sets.
const EMULATOR_ENV: &str = "LANGFLOW_INFRA_AWS_EMULATOR";

fn main() -> ExitCode {
    // Behave like other Unix tools when output is piped into `head`: exit quietly on a closed pipe.
    // SAFETY: setting a signal disposition to its default before any thread is started.
    unsafe {
        let _ = nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGPIPE,
            nix::sys::signal::SigHandler::SigDfl,
        );
    }
    let cli = Cli::parse();
    if let Some(emulator) = &cli.emulator {
        // Read by every configuration this process loads (isolated e2e, validate and creds
        // stacks included). SAFETY: no other thread runs yet.
        std::env::set_var(EMULATOR_ENV, emulator);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The CLI built without `full`: `validate` only.
#[cfg(not(feature = "full"))]
async fn run(cli: Cli) -> Result<ExitCode> {
    let Command::Validate(args) = cli.command;
    let config = Config::load(&find_root(&workspace_root()))?;
    validate::run(&config, args).await
}

#[cfg(feature = "full")]
async fn run(cli: Cli) -> Result<ExitCode> {
    // Commands that need no stack.
    let command = match cli.command {
        Command::GatewayServe(args) => return serve::gateway(args).await,
        Command::IdentityServe(args) => return serve::identity(args).await,
        Command::Supervise(args) => return serve::supervise(args).await,
        Command::DashboardServe(args) => return serve::dashboard(args).await,
        Command::Images { command } => {
            let config = Config::load(&find_root(&workspace_root()))?;
            return images::run(&config, command).await;
        }
        Command::Compose { command } => {
            let config = Config::load(&find_root(&workspace_root()))?;
            return compose::run(&config, command);
        }
        Command::CredsProbe => return creds::probe().await,
        command => command,
    };
    // Commands that start services resolve `auto` fully (engine and images); e2e and validate
    // run their own isolated stacks and only need the configuration here.
    let starting = matches!(command, Command::Up(_) | Command::Creds { .. });
    let isolated = matches!(
        command,
        Command::E2e(_) | Command::Validate(_) | Command::Bench(_) | Command::Chaos(_)
    );
    let stack = if isolated {
        Stack::new(Config::load(&find_root(&workspace_root()))?)
            .with_gateway_command(gateway_command()?)
    } else {
        // Image mode runs the image in containers.
        let image_mode =
            matches!(&command, Command::Up(up) if up.image.is_some() || up.deploy.is_some());
        let runtime = cli.runtime.as_deref().or(image_mode.then_some("docker"));
        load_stack(runtime, starting)?
    };
    match command {
        Command::GatewayServe(_)
        | Command::IdentityServe(_)
        | Command::Supervise(_)
        | Command::DashboardServe(_)
        | Command::CredsProbe
        | Command::Images { .. }
        | Command::Compose { .. } => unreachable!("handled above"),
        Command::Up(args) => stack_cmds::up(stack, args).await,
        Command::Status(args) => stack_cmds::status(&stack, args).await,
        Command::Logs(args) => stack_cmds::logs(&stack, args).await,
        Command::Down(args) => stack_cmds::down(&stack, args),
        Command::Tenant { command } => tenant::run(&stack, command).await,
        Command::Env(args) => env::run(&stack, args).await,
        Command::Creds { command } => creds::run(&stack, command).await,
        Command::E2e(args) => e2e::run(&stack, args, cli.runtime).await,
        Command::Chaos(args) => chaos::run(&stack, args, cli.runtime).await,
        Command::Validate(args) => validate::run(stack.config(), args).await,
        Command::Bench(args) => bench::run(&stack, args, cli.runtime.as_deref()).await,
    }
}

/// `--deploy STAGE --dir DIR --param …` of `up` and `e2e`: the plan, made before anything starts
/// (an unresolved parameter is one line and nothing runs); `None` without `--deploy`.
#[cfg(feature = "full")]
fn deploy_plan(
    config: &Config,
    stage: Option<&str>,
    dir: PathBuf,
    params: &[harness::deploy::ParamArg],
) -> Result<Option<harness::deploy::Plan>> {
    let Some(stage) = stage else {
        return Ok(None);
    };
    let dir = if dir.is_relative() {
        config.root.join(dir)
    } else {
        dir
    };
    Ok(Some(harness::deploy::plan(
        &dir,
        stage,
        params,
        &config.aws.region,
    )?))
}

/// The workspace root (the parent of this crate's directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

#[cfg(feature = "full")]
/// The gateway and identity server run as this same executable's hidden `gateway-serve` and
/// `identity-serve` commands.
fn gateway_command() -> Result<GatewayCommand> {
    Ok(GatewayCommand::cli(std::env::current_exe()?))
}

#[cfg(feature = "full")]
/// The Rust credential probe is this executable's hidden `creds-probe` command.
fn probe_command() -> Result<harness::credentials::scenarios::ProbeCommand> {
    Ok(harness::credentials::scenarios::ProbeCommand {
        program: std::env::current_exe()?,
        args: vec!["creds-probe".into()],
    })
}

#[cfg(feature = "full")]
/// The configured stack with the runtime asked for (`starting`: resolve `auto` fully); prints
/// the runtime's notice, if any, on stderr.
fn load_stack(runtime: Option<&str>, starting: bool) -> Result<Stack> {
    let root = find_root(&workspace_root());
    let (stack, notice) = Stack::open(Config::load(&root)?, runtime, starting)?;
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }
    Ok(stack.with_gateway_command(gateway_command()?))
}

/// Prints `value` as pretty JSON on stdout.
fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Success when `ok`, else exit code 1.
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
