//! `cargo xtask images build|list|rm`: the harness's Docker images (harness::docker::images).

use std::process::ExitCode;

use anyhow::{bail, Result};
use clap::Subcommand;
use harness::config::Config;
use harness::docker::images;
use harness::report;

#[derive(Subcommand)]
pub enum ImagesCommand {
    /// Build the local images (langflow-infra/<name>:<version>) from compose/images/: base, then
    /// postgres, aws (ministack), langflow, langflow-multi-tenant (the reference multi-tenant
    /// image, FROM langflow). A build whose inputs are unchanged is skipped.
    Build {
        /// Bootstrap the base from Debian packages (debootstrap) without trying to pull
        /// debian:bookworm-slim.
        #[arg(long)]
        offline_base: bool,
        /// Only these images (base, postgres, aws, langflow, langflow-multi-tenant); the base (and
        /// for langflow-multi-tenant the langflow image) is built too when missing.
        #[arg(long, value_name = "SERVICE", num_args = 1..)]
        only: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The configured public image and the local build of each service: present, size, created,
    /// inputs digest, and which one runs.
    List {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove the local builds (langflow-infra/* only; public images are never touched).
    Rm {
        /// Only these images (base, postgres, aws, langflow, langflow-multi-tenant).
        #[arg(long, value_name = "SERVICE", num_args = 1..)]
        only: Vec<String>,
        /// Confirm the removal.
        #[arg(long)]
        yes: bool,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(config: &Config, command: ImagesCommand) -> Result<ExitCode> {
    let docker = harness::docker::connect().await?;
    match command {
        ImagesCommand::Build {
            offline_base,
            only,
            json,
        } => {
            let only: Vec<&str> = only.iter().map(String::as_str).collect();
            let reports = images::build(&docker, config, &only, offline_base, true).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else {
                let mut table = report::table(&["service", "image", "result", "s", "size"]);
                for r in &reports {
                    table.add_row(vec![
                        r.service.clone(),
                        r.tag.clone(),
                        if r.skipped {
                            "unchanged (skipped)".to_string()
                        } else {
                            format!("built ({})", r.source)
                        },
                        format!("{:.1}", r.secs),
                        report::megabytes(Some(r.size_bytes)),
                    ]);
                }
                println!("{table}");
            }
            Ok(ExitCode::SUCCESS)
        }
        ImagesCommand::List { json } => {
            let rows = images::list(&docker, config).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                let mut table = report::table(&[
                    "service",
                    "image",
                    "kind",
                    "present",
                    "size",
                    "created",
                    "inputs digest",
                    "runs",
                ]);
                for r in &rows {
                    table.add_row(vec![
                        r.service.clone(),
                        r.reference.clone(),
                        r.kind.clone(),
                        if r.present { "yes" } else { "no" }.to_string(),
                        report::megabytes(r.size_bytes),
                        r.created.clone().unwrap_or_else(|| "-".into()),
                        r.inputs_digest
                            .as_deref()
                            .map_or("-".into(), |d| d.chars().take(12).collect()),
                        if r.selected { "*" } else { "" }.to_string(),
                    ]);
                }
                println!("{table}");
                let services: Vec<&str> = images::SERVICES
                    .iter()
                    .copied()
                    .filter(|s| *s != "base" && !rows.iter().any(|r| r.service == *s && r.present))
                    .collect();
                if !services.is_empty() {
                    println!(
                        "no image yet for {}: `cargo xtask images build` builds the local ones",
                        services.join(", ")
                    );
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        ImagesCommand::Rm { only, yes, json } => {
            let only: Vec<&str> = only.iter().map(String::as_str).collect();
            if !yes {
                let tags: Vec<String> = if only.is_empty() {
                    images::image_specs(config)
                        .into_iter()
                        .map(|s| s.local)
                        .collect()
                } else {
                    only.iter()
                        .map(|name| images::image_spec(config, name).map(|s| s.local))
                        .collect::<Result<_>>()?
                };
                bail!(
                    "images rm removes {}; add --yes to confirm",
                    tags.join(", ")
                );
            }
            let results = images::remove(&docker, config, &only).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&results)?);
            } else {
                let mut table = report::table(&["service", "image", "result"]);
                for r in &results {
                    table.add_row(vec![r.service.clone(), r.tag.clone(), r.detail.clone()]);
                }
                println!("{table}");
            }
            Ok(if results.iter().all(|r| r.ok()) {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}
