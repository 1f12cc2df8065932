//! `cargo xtask e2e`: the tenant-isolation suite, on an isolated local stack or a deployed one.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use harness::report;
use harness::stack::Stack;

use crate::{exit_code, gateway_command, probe_command};

/// Arguments of `e2e`.
#[derive(clap::Args)]
pub struct E2eArgs {
    /// Leave the isolated stack running afterwards (its state dir is printed).
    #[arg(long)]
    keep: bool,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// Write a JSON report.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Run the HTTP-level checks against a deployed stack (its ALB base URL) instead.
    #[arg(long, value_name = "URL", requires = "credentials")]
    target: Option<String>,
    /// Tenant credentials for --target: {"tenants": [{"prefix", "username", "password"}, ...]}.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Requests in the concurrency check.
    #[arg(long, default_value_t = 200)]
    concurrency: usize,
    /// Break isolation on purpose to see the suite fail: shared-secret-key or shared-database-role.
    #[arg(long, value_name = "FAULT", conflicts_with = "target")]
    inject_fault: Option<harness::stack::Fault>,
    /// Suites to run: all (isolation, credentials, and browser where Chromium is found),
    /// isolation, browser (headless Chromium; an error when it is missing), or replicas (image
    /// mode: the service as N tasks × W workers — tokens, variables, builds, files, cold start
    /// and health check across tasks).
    #[arg(long, value_name = "SUITE", default_value = "all")]
    suite: harness::e2e::Suite,
    /// Gateway routing of the isolated stack: path (/tenant/<prefix>/, one shared origin) or
    /// host (<prefix>.localhost:<port>, one origin per tenant); default: [gateway] routing.
    #[arg(long, value_name = "ROUTING", conflicts_with = "target")]
    routing: Option<harness::gateway::Routing>,
    /// Where the browser suite keeps screenshots of failed checks (default target/e2e-browser).
    #[arg(long, value_name = "DIR")]
    artifacts: Option<PathBuf>,
    /// Image mode: run this image as the Fargate service does (containers, at least 2 tasks,
    /// the TaskDefinition's environment) and make the tenants with its own tenant manager.
    #[arg(long, value_name = "IMAGE", conflicts_with = "target")]
    image: Option<String>,
    /// Tasks in image mode (default: the service's DesiredCount, at least 2).
    #[arg(long)]
    tasks: Option<usize>,
    /// Workers per task in image mode (LANGFLOW_WORKERS over the task definition's).
    #[arg(long)]
    workers: Option<usize>,
    /// Deploy the templates under --dir with this stage's parameters into the run's emulator
    /// and run the suite on the service they describe (like `up --deploy`).
    #[arg(long, value_name = "STAGE", num_args = 0..=1, default_missing_value = "dev", conflicts_with = "target")]
    deploy: Option<String>,
    /// The templates to deploy.
    #[arg(long, default_value = "aws", requires = "deploy")]
    dir: PathBuf,
    /// A parameter for --deploy: `Key=Value` or `stack.Key=Value` (see `up --help`).
    #[arg(long = "param", value_name = "KEY=VALUE", requires = "deploy")]
    params: Vec<harness::deploy::ParamArg>,
}

/// Runs the suite (`stack` only supplies the configuration; `runtime` is the global
/// `--runtime`), prints the table, writes the asked-for reports; failure when a check fails.
pub async fn run(stack: &Stack, args: E2eArgs, runtime: Option<String>) -> Result<ExitCode> {
    let E2eArgs {
        keep,
        junit,
        json,
        target,
        credentials,
        concurrency,
        inject_fault,
        suite,
        routing,
        artifacts,
        image,
        tasks,
        workers,
        deploy,
        dir,
        params,
    } = args;
    if (tasks.is_some() || workers.is_some()) && image.is_none() && deploy.is_none() {
        anyhow::bail!("--tasks and --workers are for image mode: add --image IMAGE or --deploy");
    }
    if suite == harness::e2e::Suite::Replicas && image.is_none() && deploy.is_none() {
        anyhow::bail!(
            "--suite replicas runs the deployed service's tasks: add --deploy [STAGE] (or --image IMAGE)"
        );
    }
    // The plan before anything starts.
    let deploy = crate::deploy_plan(stack.config(), deploy.as_deref(), dir, &params)?;
    let report = match (target, credentials) {
        (Some(_), Some(_)) if suite == harness::e2e::Suite::Browser => {
            anyhow::bail!(
                "--suite browser needs a local stack (its browser resolves only loopback names); drop --target or use --suite isolation"
            )
        }
        (Some(url), Some(file)) => {
            harness::e2e::run_against_target(&url, &file, concurrency).await?
        }
        _ => {
            let options = harness::e2e::local::LocalOptions {
                keep,
                concurrency,
                fault: inject_fault,
                probe: Some(probe_command()?),
                runtime,
                suite,
                routing,
                artifacts,
                image,
                tasks,
                workers,
                deploy,
            };
            let run = harness::e2e::local::run(&stack.config().root, &gateway_command()?, &options)
                .await?;
            if let (Some(dir), Some(creds)) = (&run.kept_state_dir, &run.kept_credentials) {
                // The isolation suite's file lists its two tenants (`--target` takes it); the
                // replicas suite's names its one app and user.
                let usable = if suite == harness::e2e::Suite::Replicas {
                    String::new()
                } else {
                    format!(
                        " (usable with --target {} --credentials {})",
                        run.report.target,
                        creds.display()
                    )
                };
                eprintln!(
                    "kept the e2e stack: LANGFLOW_INFRA_STATE_DIR={dir} cargo xtask status (or logs, tenant ...); \
                     credentials in {creds}{usable}; \
                     stop it with LANGFLOW_INFRA_STATE_DIR={dir} cargo xtask down --volumes",
                    dir = dir.display(),
                    creds = creds.display(),
                );
            }
            run.report
        }
    };
    println!("{}", report::e2e_table(&report));
    if let Some(caps) = &report.emulator {
        let missing = caps.capabilities.iter().filter(|c| !c.supported).count();
        if missing == 0 {
            println!(
                "emulator {}: every probed capability present ({})",
                caps.emulator,
                caps.capabilities.len()
            );
        } else {
            println!(
                "emulator {}: {missing} of {} probed capabilities missing; checks that rely on them are skipped, never passed:\n{}",
                caps.emulator,
                caps.capabilities.len(),
                harness::services::emulator_caps::render_table(caps)
            );
        }
    }
    harness::run_reports::record_or_warn(
        &stack.config().state_dir,
        &format!("e2e-{}", suite.as_str()),
        report.failures() == 0,
        &report,
    );
    if let Some(path) = junit {
        write_report(&path, &harness::e2e::junit::render(&report))?;
    }
    if let Some(path) = json {
        write_report(&path, &serde_json::to_string_pretty(&report)?)?;
    }
    Ok(exit_code(report.failures() == 0))
}

/// Writes a report file, creating its directory.
pub(crate) fn write_report(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}
