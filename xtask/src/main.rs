//! `cargo xtask`: the langflow-infra command line. Parses arguments and calls into the harness
//! library; every behaviour lives there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use harness::config::{find_root, Config};
use harness::report;
use harness::stack::{GatewayCommand, Stack, UpOutcome};
use harness::tenancy::{naming, Tenancy};

mod images;

/// Local dev and test harness for a multi-tenant Langflow stack on AWS.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    /// Where services run: auto (docker when an engine answers and the images can be had, else
    /// native), native (host processes) or docker (containers). Default: [runtime] kind in
    /// harness.toml (LANGFLOW_INFRA_RUNTIME overrides). A running stack keeps its own.
    #[arg(long, global = true, value_parser = ["auto", "native", "docker"])]
    runtime: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the stack (idempotent): Postgres, the AWS emulator, the tenants of the tenants file,
    /// the gateway and one Langflow instance per tenant; prints what runs where.
    Up {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Start only Postgres and the AWS emulator.
        #[arg(long)]
        infra_only: bool,
        /// Stay in the foreground; Ctrl-C then stops everything.
        #[arg(long)]
        foreground: bool,
    },
    /// Health of each service (exit 1 when any is not healthy or nothing runs).
    Status {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a service's log (all services when none is named).
    Logs {
        /// Service name (postgres, aws, ...).
        service: Option<String>,
        /// Keep printing new lines as they are written.
        #[arg(short, long)]
        follow: bool,
    },
    /// Stop everything and remove the run's temporary state (idempotent).
    Down {
        /// Also drop data: the Postgres cluster and generated secrets.
        #[arg(long)]
        volumes: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// tenantmgr: tenant schemas and their Langflow users (the stack must be up).
    Tenant {
        #[command(subcommand)]
        command: TenantCommand,
    },
    /// Measure the tenancy targets: warm `up` with 2 tenants vs 1 (ratio <= 1.3) and RSS per
    /// instance (<= 650 MB), on isolated stacks. Exit 1 when a target is missed.
    Bench {
        /// Warm starts per configuration (the fastest is kept).
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The tenant-isolation suite: brings up an isolated stack with two tenants (beside any
    /// `up`), runs every check, prints a table, tears down. Exit 1 when a check fails.
    E2e {
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
    },
    /// Check the CloudFormation templates: parsing, cfn-lint, cross-stack wiring, parameter files
    /// (exit 1 on any error-level finding).
    Validate {
        /// Folder holding the templates (*.cfn.yaml, or any *.yaml/*.yml/*.json with a top-level
        /// Resources key) and params/*.json.
        #[arg(long, default_value = "aws")]
        dir: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = ValidateFormat::Human)]
        format: ValidateFormat,
        /// Skip cfn-lint (parsing, wiring and parameter checks only).
        #[arg(long)]
        no_lint: bool,
        /// Also evaluate this cfn-guard rule pack (a folder searched for *.guard / *.ruleset, or
        /// one file), like the project's rules/; repeatable.
        #[arg(long = "rules", value_name = "DIR")]
        extra_rules: Vec<PathBuf>,
        /// Also deploy vpc → rds → ecr → fargate into the emulator's CloudFormation with this
        /// stage's parameter files, report status and outputs, then delete them.
        #[arg(long, value_name = "STAGE", num_args = 0..=1, default_missing_value = "dev")]
        rehearse: Option<String>,
    },
    /// The AWS credential chain: IRSA, CLI profile, assume-role, precedence — each scenario
    /// resolved by aws-config (Rust) and boto3 (Python) against the emulator.
    Creds {
        #[command(subcommand)]
        command: CredsCommand,
    },
    /// The Docker images of the services: build the local ones (compose/images/), list, remove.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
    /// Serve the identity server: OIDC issuer + STS gate (started by `up`; not for direct use).
    #[command(hide = true)]
    IdentityServe {
        /// Port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Identity directory (signing key, projected token).
        #[arg(long)]
        dir: PathBuf,
        /// Port of the AWS emulator.
        #[arg(long)]
        aws_port: u16,
        /// Region.
        #[arg(long)]
        region: String,
        /// Also listen on this address (the docker runtime's network gateway), same port.
        #[arg(long)]
        also_bind: Option<std::net::IpAddr>,
    },
    /// Restart what stops in a run (started by `up`; not for direct use).
    #[command(hide = true)]
    Supervise {
        /// The supervisor's input file (written by `up`).
        #[arg(long)]
        input: PathBuf,
    },
    /// Resolve the default credential chain from the environment and print JSON (used by
    /// `creds check`; not for direct use).
    #[command(hide = true)]
    CredsProbe,
    /// Serve the gateway (started by `up`; not for direct use).
    #[command(hide = true)]
    GatewayServe {
        /// Port on 127.0.0.1.
        #[arg(long)]
        port: u16,
        /// Routes file.
        #[arg(long)]
        routes: PathBuf,
        /// Serve HTTPS with the certificate in (or generated into) this directory.
        #[arg(long, requires = "redirect_port")]
        tls_dir: Option<PathBuf>,
        /// With --tls-dir: plain-HTTP port redirecting to HTTPS.
        #[arg(long, requires = "tls_dir")]
        redirect_port: Option<u16>,
    },
}

#[derive(Subcommand)]
enum CredsCommand {
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

/// Which user of which tenant, and optionally the password to set.
#[derive(clap::Args)]
struct UserArgs {
    /// Schema id (see schema-list).
    #[arg(long)]
    schema: String,
    /// Login name (unique per tenant, case-insensitive).
    #[arg(long)]
    username: String,
    /// Password to set; generated (16 characters) and shown once when absent.
    #[arg(long)]
    password: Option<String>,
}

/// Output formats of `validate`.
#[derive(Clone, Copy, clap::ValueEnum)]
enum ValidateFormat {
    /// A table and a summary line.
    Human,
    /// The report as JSON.
    Json,
    /// SARIF 2.1.0 (code-scanning UIs).
    Sarif,
    /// JUnit XML (CI systems).
    Junit,
}

#[derive(Subcommand)]
enum TenantCommand {
    /// Create a tenant: schema `<prefix>-<6 hex>`, its role, Langflow's tables; starts its
    /// instance when the stack runs.
    SchemaAdd {
        /// Tenant prefix: 1-50 letters, digits, '_' or '-' (served at /tenant/<prefix>/).
        #[arg(long)]
        prefix: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tenant schemas.
    SchemaList {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a tenant: its instance, schema, role, users and data.
    SchemaRm {
        /// Schema id (see schema-list).
        #[arg(long)]
        schema: String,
        /// Confirm the removal (it cannot be undone).
        #[arg(long)]
        yes: bool,
    },
    /// Add a Langflow user to a tenant; without --password one is generated and shown once.
    UserAdd {
        #[command(flatten)]
        user: UserArgs,
        /// Make the user a Langflow superuser.
        #[arg(long)]
        superuser: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set a new password for a user; without --password one is generated and shown once.
    UserReset {
        #[command(flatten)]
        user: UserArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's users.
    UserList {
        /// Schema id (see schema-list).
        #[arg(long)]
        schema: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

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

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// The gateway and identity server run as this same executable's hidden `gateway-serve` and
/// `identity-serve` commands.
fn gateway_command() -> Result<GatewayCommand> {
    Ok(GatewayCommand {
        program: std::env::current_exe()?,
        args: vec!["gateway-serve".into()],
        identity_args: vec!["identity-serve".into()],
        supervisor_args: vec!["supervise".into()],
    })
}

/// The Rust credential probe is this executable's hidden `creds-probe` command.
fn probe_command() -> Result<harness::credentials::scenarios::ProbeCommand> {
    Ok(harness::credentials::scenarios::ProbeCommand {
        program: std::env::current_exe()?,
        args: vec!["creds-probe".into()],
    })
}

fn load_stack(runtime: Option<&str>, starting: bool) -> Result<Stack> {
    let root = find_root(&workspace_root());
    let (stack, notice) = Stack::open(Config::load(&root)?, runtime, starting)?;
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }
    Ok(stack.with_gateway_command(gateway_command()?))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::GatewayServe {
            port,
            routes,
            tls_dir,
            redirect_port,
        } => {
            let tls = tls_dir
                .zip(redirect_port)
                .map(|(dir, redirect_port)| harness::gateway::TlsOptions { dir, redirect_port });
            harness::gateway::serve_with(port, routes, tls).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::IdentityServe {
            port,
            dir,
            aws_port,
            region,
            also_bind,
        } => {
            harness::credentials::identity_server::serve(port, &dir, aws_port, &region, also_bind)
                .await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Supervise { input } => {
            harness::stack::supervisor::run(&input).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Images { command } => {
            let config = Config::load(&find_root(&workspace_root()))?;
            return images::run(&config, command).await;
        }
        Command::CredsProbe => {
            println!(
                "{}",
                serde_json::to_string(&harness::credentials::probe::run().await)?
            );
            return Ok(ExitCode::SUCCESS);
        }
        _ => {}
    }
    // Commands that start services resolve `auto` fully (engine and images); e2e and validate
    // run their own isolated stacks and only need the configuration here.
    let starting = matches!(cli.command, Command::Up { .. } | Command::Creds { .. });
    let isolated = matches!(
        cli.command,
        Command::E2e { .. } | Command::Validate { .. } | Command::Bench { .. }
    );
    let mut stack = if isolated {
        Stack::new(Config::load(&find_root(&workspace_root()))?)
            .with_gateway_command(gateway_command()?)
    } else {
        load_stack(cli.runtime.as_deref(), starting)?
    };
    match cli.command {
        Command::GatewayServe { .. }
        | Command::IdentityServe { .. }
        | Command::Supervise { .. }
        | Command::CredsProbe => {
            unreachable!("handled above")
        }
        Command::Creds {
            command: CredsCommand::Check { json, no_python },
        } => {
            let (report, place) = harness::credentials::check::run_on_stack_or_isolated(
                &stack,
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
        Command::Tenant { command } => tenant(&stack, command).await,
        Command::Images { .. } => unreachable!("handled above"),
        Command::E2e {
            keep,
            junit,
            json,
            target,
            credentials,
            concurrency,
            inject_fault,
        } => {
            let report = match (target, credentials) {
                (Some(url), Some(file)) => {
                    harness::e2e::run_against_target(&url, &file, concurrency).await?
                }
                _ => {
                    let options = harness::e2e::local::LocalOptions {
                        keep,
                        concurrency,
                        fault: inject_fault,
                        probe: Some(probe_command()?),
                        runtime: cli.runtime.clone(),
                    };
                    let run = harness::e2e::local::run(
                        &stack.config().root,
                        &gateway_command()?,
                        &options,
                    )
                    .await?;
                    if let (Some(dir), Some(creds)) = (&run.kept_state_dir, &run.kept_credentials) {
                        eprintln!(
                            "kept the e2e stack: LANGFLOW_INFRA_STATE_DIR={dir} cargo xtask status (or logs, tenant ...); \
                             credentials in {creds} (usable with --target {url} --credentials {creds}); \
                             stop it with LANGFLOW_INFRA_STATE_DIR={dir} cargo xtask down --volumes",
                            dir = dir.display(),
                            creds = creds.display(),
                            url = run.report.target,
                        );
                    }
                    run.report
                }
            };
            println!("{}", report::e2e_table(&report));
            if let Some(path) = junit {
                write_report(&path, &harness::e2e::junit::render(&report))?;
            }
            if let Some(path) = json {
                write_report(&path, &serde_json::to_string_pretty(&report)?)?;
            }
            Ok(exit_code(report.failures() == 0))
        }
        Command::Validate {
            dir,
            format,
            no_lint,
            extra_rules,
            rehearse,
        } => {
            let dir = if dir.is_relative() {
                stack.config().root.join(dir)
            } else {
                dir
            };
            let options = harness::validate::ValidateOptions {
                dir,
                lint: !no_lint,
                rules: stack.config().root.join("rules"),
                extra_rules: extra_rules
                    .into_iter()
                    .map(|r| stack.config().root.join(r))
                    .collect(),
            };
            let report = harness::validate::run(stack.config(), &options).await?;
            let rehearsal = match &rehearse {
                Some(stage) if report.errors() == 0 => {
                    let (templates, params) =
                        harness::validate::rehearse::load_inputs(&options.dir)?;
                    Some(
                        harness::validate::rehearse::run(
                            stack.config(),
                            &templates,
                            &params,
                            stage,
                        )
                        .await?,
                    )
                }
                Some(_) => {
                    eprintln!("not rehearsing: fix the error-level findings first");
                    None
                }
                None => None,
            };
            if let Some(rehearsal) = &rehearsal {
                eprintln!("{}", report::rehearsal_table(rehearsal));
            }
            let rehearsal_ok = rehearsal.as_ref().is_none_or(|r| r.ok());
            match format {
                ValidateFormat::Human => println!("{}", report::validate_table(&report)),
                ValidateFormat::Json => print_json(&report)?,
                ValidateFormat::Sarif => println!("{}", harness::validate::formats::sarif(&report)),
                ValidateFormat::Junit => println!("{}", harness::validate::formats::junit(&report)),
            }
            Ok(exit_code(report.errors() == 0 && rehearsal_ok))
        }
        Command::Bench { runs, json } => {
            let (root, servers) = (&stack.config().root, gateway_command()?);
            // `--runtime docker` compares the runtimes; otherwise the tenancy targets (native).
            let report = if cli.runtime.as_deref() == Some("docker") {
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
        Command::Up {
            json,
            infra_only,
            foreground,
        } => {
            if infra_only {
                stack = stack.infra_only();
            }
            let report = stack.up().await?;
            if json {
                print_json(&report)?;
            } else {
                for name in &report.cleaned_stale {
                    println!("cleaned up stale state: {name} had exited");
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
                if !report.tenants.is_empty() {
                    println!(
                        "{}",
                        report::tenants_table(&report.tenants, &report.provisioned.credentials)
                    );
                    if report.provisioned.credentials.iter().any(|c| c.generated) {
                        println!("Generated passwords are shown only now; they are stored only as bcrypt hashes.");
                    }
                }
                println!(
                    "Postgres superuser and tenant role passwords: {}",
                    stack.files().secrets_path().display()
                );
            }
            if foreground {
                eprintln!("running in the foreground; Ctrl-C (or SIGTERM) stops everything");
                harness::stack::interrupted().await;
                let report = stack.down(false)?;
                eprintln!("{}", report::down_summary(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { json } => {
            let status = stack.status().await?;
            match status {
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
                    }
                    Ok(exit_code(status.healthy()))
                }
            }
        }
        Command::Logs { service, follow } => {
            let logs = match service {
                Some(name) => vec![(name.clone(), stack.log_path(&name)?)],
                None => stack.log_paths()?,
            };
            print_logs(&stack, &logs, follow).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Down { volumes, json } => {
            let report = stack.down(volumes)?;
            if json {
                print_json(&report)?;
            } else {
                println!("{}", report::down_summary(&report));
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn tenant(stack: &Stack, command: TenantCommand) -> Result<ExitCode> {
    let tenancy = || Tenancy::for_running_stack(stack.config(), stack.files());
    match command {
        TenantCommand::SchemaAdd { prefix, json } => {
            // Validate before touching anything, so bad input fails fast and alone.
            naming::validate_prefix(&prefix)?;
            let schema = tenancy()?.schema_add(&prefix).await?;
            let endpoint = stack.attach_tenant(&schema).await?;
            if json {
                print_json(&serde_json::json!({"schema": schema, "endpoint": endpoint}))?;
            } else {
                println!("{}", report::schemas_table(std::slice::from_ref(&schema)));
                match endpoint {
                    Some(endpoint) => println!("serving at {}", endpoint.url),
                    None => println!("the stack's gateway is not running; `cargo xtask up` starts this tenant's instance"),
                }
                println!(
                    "add a user: cargo xtask tenant user-add --schema {} --username NAME",
                    schema.schema
                );
            }
        }
        TenantCommand::SchemaList { json } => {
            let schemas = tenancy()?.schema_list().await?;
            if json {
                print_json(&schemas)?;
            } else {
                println!("{}", report::schemas_table(&schemas));
            }
        }
        TenantCommand::SchemaRm { schema, yes } => {
            naming::parse_schema_id(&schema)?;
            if !yes {
                anyhow::bail!(
                    "schema-rm deletes schema {schema} with all its users and flows; add --yes to confirm"
                );
            }
            let tenancy = tenancy()?;
            let prefix = tenancy.require_tenant(&schema).await?;
            stack.detach_tenant(&prefix)?;
            tenancy.schema_rm(&schema).await?;
            println!("removed tenant {prefix} (schema {schema}, its role, users and data)");
        }
        TenantCommand::UserAdd {
            user,
            superuser,
            json,
        } => {
            let UserArgs {
                schema,
                username,
                password,
            } = user;
            naming::check_user_input(&schema, &username, password.as_deref())?;
            let issued = tenancy()?
                .user_add(&schema, &username, password.as_deref(), superuser)
                .await?;
            print_credentials(&issued, json)?;
        }
        TenantCommand::UserReset { user, json } => {
            let UserArgs {
                schema,
                username,
                password,
            } = user;
            naming::check_user_input(&schema, &username, password.as_deref())?;
            let issued = tenancy()?
                .user_reset(&schema, &username, password.as_deref())
                .await?;
            print_credentials(&issued, json)?;
        }
        TenantCommand::UserList { schema, json } => {
            naming::parse_schema_id(&schema)?;
            let users = tenancy()?.user_list(&schema).await?;
            if json {
                print_json(&users)?;
            } else {
                println!("{}", report::users_table(&users));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Success when `ok`, else exit code 1.
fn exit_code(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Writes a report file, creating its directory.
fn write_report(path: &Path, contents: &str) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, contents).with_context(|| format!("cannot write {}", path.display()))
}

fn print_credentials(issued: &harness::tenancy::IssuedCredentials, json: bool) -> Result<()> {
    if json {
        print_json(issued)
    } else {
        println!("{}", report::credentials_table(issued));
        Ok(())
    }
}

/// Prints log files (prefixed by service name when several), then follows them if asked.
/// Prints the logs of services `logs` (log files natively, the engine's logs for containers);
/// with `follow`, keeps printing what is appended.
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
