//! `cargo xtask compose render [--check]`: compose/docker-compose.yml from the harness's service
//! definitions (harness::compose).

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;
use harness::compose;
use harness::config::Config;

#[derive(Subcommand)]
pub enum ComposeCommand {
    /// Write compose/docker-compose.yml (Postgres, the AWS emulator, the reference multi-tenant
    /// image) from the harness's own service definitions.
    Render {
        /// Write nothing; exit 1 when the committed file differs from the render.
        #[arg(long)]
        check: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(config: &Config, command: ComposeCommand) -> Result<ExitCode> {
    match command {
        ComposeCommand::Render { check, json } => {
            let path = compose::compose_path_for(config);
            if check {
                let rendered = compose::render(config)?;
                let current = std::fs::read_to_string(&path).unwrap_or_default();
                let stale = current != rendered;
                if json {
                    crate::print_json(&serde_json::json!({
                        "path": path, "up_to_date": !stale
                    }))?;
                } else if stale {
                    eprintln!(
                        "error: {} differs from the render; run `cargo xtask compose render` and commit it",
                        path.display()
                    );
                } else {
                    println!("{} is up to date", path.display());
                }
                return Ok(if stale {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                });
            }
            let outcome = compose::render_to(config, &path)?;
            if json {
                crate::print_json(&outcome)?;
            } else if outcome.changed {
                println!("wrote {}", outcome.path.display());
            } else {
                println!("{} is up to date", outcome.path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
