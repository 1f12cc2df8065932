//! `cargo xtask up|status|logs|down`: the stack's lifecycle.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use harness::report;
use harness::stack::{Stack, UpOutcome};

use crate::{exit_code, print_json};

/// Arguments of `up`.
#[derive(clap::Args)]
pub struct UpArgs {
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Start only Postgres and the AWS emulator.
    #[arg(long)]
    infra_only: bool,
    /// Stay in the foreground; Ctrl-C then stops everything.
    #[arg(long)]
    foreground: bool,
    /// Run this image as the Fargate service runs it (image mode; containers): the templates
    /// (`--deploy --dir`, default the project's aws/ at stage dev) are deployed into the
    /// emulator, the tasks get exactly the deployed task definition's environment, tenants are
    /// managed by the image's tenantmgr.
    #[arg(long, value_name = "IMAGE")]
    pub image: Option<String>,
    /// Tasks to run in image mode (default: the service's DesiredCount).
    #[arg(long)]
    tasks: Option<usize>,
    /// Workers per task in image mode: LANGFLOW_WORKERS given to every task over the task
    /// definition's (as an ECS container override would).
    #[arg(long)]
    workers: Option<usize>,
    /// Deploy every template under --dir into the emulator with this stage's parameters, then
    /// run what the stacks describe: the load-balanced ECS service's tasks (image: --image, or
    /// the task definition's own when it is here), its databases as the local Postgres, its
    /// target group's health check and stickiness at the gateway.
    #[arg(long, value_name = "STAGE", num_args = 0..=1, default_missing_value = "dev")]
    pub deploy: Option<String>,
    /// The templates to deploy (with params/<key>-<stage>.json beside them).
    #[arg(long, default_value = "aws", requires = "deploy")]
    dir: PathBuf,
    /// A parameter: `Key=Value` (every stack with it) or `stack.Key=Value`, over the params
    /// files; `@postgres.host|port|database|user|password` and `@image` stand for the local
    /// stack's values. Repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE", requires = "deploy")]
    params: Vec<harness::deploy::ParamArg>,
}

/// Arguments of `status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `logs`.
#[derive(clap::Args)]
pub struct LogsArgs {
    /// Service name (postgres, aws, ...).
    service: Option<String>,
    /// Keep printing new lines as they are written.
    #[arg(short, long)]
    follow: bool,
}

/// Arguments of `down`.
#[derive(clap::Args)]
pub struct DownArgs {
    /// Also drop data: the Postgres cluster and generated secrets.
    #[arg(long)]
    volumes: bool,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
}

/// `up`: starts the stack and prints what runs where; with `--foreground`, stops it on Ctrl-C.
pub async fn up(mut stack: Stack, args: UpArgs) -> Result<ExitCode> {
    let UpArgs {
        json,
        infra_only,
        foreground,
        image,
        tasks,
        workers,
        deploy,
        dir,
        params,
    } = args;
    if infra_only {
        stack = stack.infra_only();
    }
    if tasks == Some(0) {
        anyhow::bail!("--tasks 0 runs nothing; give 1 or more");
    }
    if (tasks.is_some() || workers.is_some()) && image.is_none() && deploy.is_none() {
        anyhow::bail!("--tasks and --workers are for image mode: add --image IMAGE or --deploy");
    }
    // The plan before anything starts: an unresolved parameter is one line, nothing runs.
    let plan = crate::deploy_plan(stack.config(), deploy.as_deref(), dir, &params)?;
    if image.is_some() || plan.is_some() {
        stack = stack.with_image(harness::stack::image::ImageRequest {
            image: image.unwrap_or_default(),
            tasks,
            min_tasks: 1,
            workers,
            fault_env: Default::default(),
            deploy: plan,
        });
    }
    let report = stack.up().await?;
    if json {
        print_json(&report)?;
    } else {
        for name in &report.cleaned_stale {
            println!("cleaned up stale state: {name} had exited");
        }
        for schema in &report.provisioned.removed_unfinished {
            println!(
                "removed schema {schema}: its schema-add had been cut off (it was never served)"
            );
        }
        if report.outcome == UpOutcome::AlreadyRunning {
            println!(
                "already running (state in {}):",
                stack.config().state_dir.display()
            );
        } else {
            println!("stack is up in {:.1}s:", report.elapsed_secs);
        }
        println!("{}", report::status_table(&report.status));
        if let Some(deployment) =
            harness::stack::deploy::Deployment::read(&stack.config().state_dir)?
        {
            println!(
                "deployed {} ({}): {} × {} on port {}, health GET {} (matcher {}), {}",
                deployment.stacks.join(", "),
                deployment.stage,
                deployment.service,
                deployment.container,
                deployment.container_port,
                deployment.health.path,
                deployment.health.matcher,
                if deployment.sticky {
                    "sticky"
                } else {
                    "not sticky"
                }
            );
            for note in &deployment.notes {
                println!("note: {note}");
            }
            for line in &deployment.not_run {
                println!("not run locally: {line}");
            }
        }
        if !report.tenants.is_empty() {
            println!(
                "{}",
                report::tenants_table(&report.tenants, &report.provisioned.credentials)
            );
            if report.provisioned.credentials.iter().any(|c| c.generated) {
                println!(
                    "Generated passwords are shown only now; they are stored only as bcrypt hashes."
                );
            }
        }
        println!(
            "Postgres superuser and tenant role passwords: {}",
            stack.files().secrets_path().display()
        );
        if let Some(url) = &report.dashboard {
            println!("dashboard: {url}");
        }
    }
    if foreground {
        eprintln!("running in the foreground; Ctrl-C (or SIGTERM) stops everything");
        harness::stack::interrupted().await;
        let report = stack.down(false)?;
        eprintln!("{}", report::down_summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// `status`: health of each service; failure when any is not healthy or nothing runs.
pub async fn status(stack: &Stack, args: StatusArgs) -> Result<ExitCode> {
    let StatusArgs { json } = args;
    match stack.status().await? {
        None => {
            if json {
                print_json(&serde_json::json!({"running": false, "services": []}))?;
            } else {
                println!("nothing is running; start the stack with `cargo xtask up`");
            }
            Ok(ExitCode::FAILURE)
        }
        Some(status) => {
            if json {
                print_json(&status)?;
            } else {
                println!("{}", report::status_table(&status));
                if let Some(url) = stack.running_state().ok().and_then(|state| {
                    harness::stack::dashboard::dashboard_url(&stack.config().state_dir, &state)
                }) {
                    println!("dashboard: {url}");
                }
            }
            Ok(exit_code(status.healthy()))
        }
    }
}

/// `logs`: prints one service's log, or all of them.
pub async fn logs(stack: &Stack, args: LogsArgs) -> Result<ExitCode> {
    let LogsArgs { service, follow } = args;
    let logs = match service {
        Some(name) => vec![(name.clone(), stack.log_path(&name)?)],
        None => stack.log_paths()?,
    };
    print_logs(stack, &logs, follow).await?;
    Ok(ExitCode::SUCCESS)
}

/// `down`: stops everything and removes the run's temporary state (and data with `--volumes`).
pub fn down(stack: &Stack, args: DownArgs) -> Result<ExitCode> {
    let DownArgs { volumes, json } = args;
    let report = stack.down(volumes)?;
    if json {
        print_json(&report)?;
    } else {
        println!("{}", report::down_summary(&report));
    }
    Ok(ExitCode::SUCCESS)
}

/// Prints the logs of services `logs` (log files natively, the engine's logs for containers),
/// prefixed by service name when several; with `follow`, keeps printing what is appended.
async fn print_logs(stack: &Stack, logs: &[(String, PathBuf)], follow: bool) -> Result<()> {
    let prefixed = logs.len() > 1;
    let mut offsets = vec![0u64; logs.len()];
    let mut stdout = std::io::stdout();
    loop {
        for ((name, _), offset) in logs.iter().zip(offsets.iter_mut()) {
            let Ok(text) = stack.log_text(name) else {
                continue;
            };
            let bytes = text.into_bytes();
            if (bytes.len() as u64) < *offset {
                *offset = 0; // truncated or recreated
            }
            let new = &bytes[*offset as usize..];
            // Only complete lines, so a line being written is not split.
            let end = new.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
            for line in String::from_utf8_lossy(&new[..end]).lines() {
                if prefixed {
                    writeln!(stdout, "{name:>10} | {line}")?;
                } else {
                    writeln!(stdout, "{line}")?;
                }
            }
            *offset += end as u64;
        }
        stdout.flush()?;
        if !follow {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
    }
}
