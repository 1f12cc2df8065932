//! `cargo xtask validate`: checks (and optionally rehearses) the CloudFormation templates.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use harness_core::config::Config;

use crate::{exit_code, print_json};

/// Arguments of `validate`.
#[derive(clap::Args)]
pub struct ValidateArgs {
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
    /// Also deploy every template under --dir into the emulator's CloudFormation (in the order
    /// their imports need) with this stage's parameter files and --param values, report status
    /// and outputs, then delete them.
    #[arg(long, value_name = "STAGE", num_args = 0..=1, default_missing_value = "dev")]
    rehearse: Option<String>,
    /// A parameter for the rehearsal: `Key=Value` (every stack with that parameter) or
    /// `stack.Key=Value` (stack = the template's file name without extension and -stack);
    /// over the params files; repeatable.
    #[arg(long = "param", value_name = "KEY=VALUE")]
    params: Vec<harness_cfn::deploy::ParamArg>,
    /// Judge the task definitions against this built image's contract (its requires-env label,
    /// read from the Docker engine; an image without one is judged as a stock Langflow).
    #[arg(long, value_name = "IMAGE")]
    image: Option<String>,
    /// List info-level findings one by one (by default they are counted per rule).
    #[arg(long)]
    verbose: bool,
}

/// Output formats of `validate`.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ValidateFormat {
    /// A table and a summary line.
    Human,
    /// The report as JSON.
    Json,
    /// SARIF 2.1.0 (code-scanning UIs).
    Sarif,
    /// JUnit XML (CI systems).
    Junit,
}

/// Runs every check, then the rehearsal when asked (findings do not block it); prints the
/// report; failure on an error-level finding or a failed rehearsal.
pub async fn run(config: &Config, args: ValidateArgs) -> Result<ExitCode> {
    let ValidateArgs {
        dir,
        format,
        no_lint,
        extra_rules,
        rehearse,
        params,
        image,
        verbose,
    } = args;
    let dir = if dir.is_relative() {
        config.root.join(dir)
    } else {
        dir
    };
    let options = harness_cfn::validate::ValidateOptions {
        dir,
        lint: !no_lint,
        rules: config.root.join("rules"),
        extra_rules: extra_rules
            .into_iter()
            .map(|r| config.root.join(r))
            .collect(),
        image: match image {
            Some(name) => Some(built_image(config, name).await?),
            None => None,
        },
    };
    // The rehearsal's plan first: an unresolved parameter is one line before anything runs.
    let plan = match rehearse.as_deref() {
        Some(stage) => Some(harness_cfn::deploy::plan(
            &options.dir,
            stage,
            &params,
            &config.aws.region,
        )?),
        None => None,
    };
    let report = harness_cfn::validate::run(config, &options).await?;
    let rehearsal_ok = rehearse_if_asked(config, plan.as_ref()).await?;
    harness_core::run_reports::record_or_warn(
        &config.state_dir,
        "validate",
        report.errors() == 0 && rehearsal_ok,
        &report,
    );
    match format {
        ValidateFormat::Human => println!(
            "{}",
            harness_cfn::validate::formats::human(&report, verbose)
        ),
        ValidateFormat::Json => print_json(&report)?,
        ValidateFormat::Sarif => println!("{}", harness_cfn::validate::formats::sarif(&report)),
        ValidateFormat::Junit => println!("{}", harness_cfn::validate::formats::junit(&report)),
    }
    Ok(exit_code(report.errors() == 0 && rehearsal_ok))
}

/// `--image IMAGE`: the image's contract label, from the engine (pulled when it can be).
#[cfg(feature = "full")]
async fn built_image(
    config: &Config,
    name: String,
) -> Result<harness_cfn::validate::contract::BuiltImage> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || {
        let docker = harness::runtime::docker::DockerRuntime::connect(&config, "validate")?;
        docker.image_for(&name)?;
        let (labels, _) = docker.image_labels(&name)?;
        Ok(harness_cfn::validate::contract::BuiltImage {
            requires_env: labels
                .get(harness_cfn::taskdef::REQUIRES_ENV_LABEL)
                .cloned(),
            name,
        })
    })
    .await?
}

/// Without the `full` feature there is no Docker client to read an image with.
#[cfg(not(feature = "full"))]
async fn built_image(
    _config: &Config,
    _name: String,
) -> Result<harness_cfn::validate::contract::BuiltImage> {
    anyhow::bail!(
        "--image reads the image from the Docker engine, which this validate-only build leaves out: run `cargo xtask validate --image` (the full CLI)"
    )
}

/// `--rehearse STAGE`: deploys the templates into the emulator, whatever the policy findings, and
/// prints the rehearsal on stderr; whether it went well (true when not asked).
#[cfg(feature = "full")]
async fn rehearse_if_asked(
    config: &Config,
    plan: Option<&harness_cfn::deploy::Plan>,
) -> Result<bool> {
    // Policy findings do not stop the rehearsal (AWS would deploy such a template): they are in
    // the report; only what the emulator refuses makes the rehearsal fail.
    let rehearsal = match plan {
        Some(plan) => Some(harness::rehearse::run(config, plan).await?),
        None => None,
    };
    if let Some(rehearsal) = &rehearsal {
        eprintln!("{}", harness::report::rehearsal_table(rehearsal));
    }
    Ok(rehearsal.as_ref().is_none_or(|r| r.ok()))
}

/// Without the `full` feature there is no emulator to rehearse in.
#[cfg(not(feature = "full"))]
async fn rehearse_if_asked(
    _config: &Config,
    plan: Option<&harness_cfn::deploy::Plan>,
) -> Result<bool> {
    match plan {
        Some(_) => anyhow::bail!(
            "--rehearse needs the emulator, which this validate-only build leaves out: run `cargo xtask validate --rehearse` (the full CLI)"
        ),
        None => Ok(true),
    }
}
