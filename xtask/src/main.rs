//! `cargo xtask`: the langflow-infra command line. Parses arguments and calls into the harness
//! library; every behaviour lives there.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use harness::config::{find_root, Config};
use harness::report;
use harness::stack::{Stack, UpOutcome};

/// Local dev and test harness for a multi-tenant Langflow stack on AWS.
#[derive(Parser)]
#[command(name = "cargo xtask", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start Postgres and the AWS emulator (idempotent); prints what runs where.
    Up {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
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

fn load_stack() -> Result<Stack> {
    let root = find_root(&workspace_root());
    Ok(Stack::new(Config::load(&root)?))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    let stack = load_stack()?;
    match cli.command {
        Command::Up { json, foreground } => {
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
                println!(
                    "Postgres superuser password: {}",
                    stack.files().secrets_path().display()
                );
            }
            if foreground {
                eprintln!("running in the foreground; Ctrl-C stops everything");
                tokio::signal::ctrl_c().await?;
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
                    Ok(if status.healthy() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::FAILURE
                    })
                }
            }
        }
        Command::Logs { service, follow } => {
            let logs = match service {
                Some(name) => vec![(name.clone(), stack.log_path(&name)?)],
                None => stack.log_paths()?,
            };
            print_logs(&logs, follow).await?;
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

/// Prints log files (prefixed by service name when several), then follows them if asked.
async fn print_logs(logs: &[(String, PathBuf)], follow: bool) -> Result<()> {
    let prefixed = logs.len() > 1;
    let mut offsets = vec![0u64; logs.len()];
    let mut stdout = std::io::stdout();
    loop {
        for ((name, path), offset) in logs.iter().zip(offsets.iter_mut()) {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
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
