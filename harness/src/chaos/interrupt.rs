//! `interrupt-up`: `cargo xtask up` run as a user runs it and interrupted at random points with
//! SIGINT (Ctrl-C) or SIGTERM, N rounds. Every fourth round also adds a tenant, so the
//! interruption can land in a `schema-add` (role, schema, migration, operator user). After every
//! round: the command exited, no process or container of the run is left, no state file. After
//! the last: a plain `up` brings every tenant back, no tenant is half-made (listed but without
//! its tables, secrets or operator; a role without its schema; an unfinished schema still there)
//! and nothing written before is lost.

use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use rand::{Rng, SeedableRng};

use super::{ChaosContext, ScenarioResult};

/// How long an interrupted `up` may take to stop what it started.
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long leftovers get to disappear after the command exited.
const LEFTOVER_GRACE: Duration = Duration::from_secs(10);

/// The `cargo xtask` command line of the run, pointed at the chaos stack.
fn cli(context: &ChaosContext<'_>, tenants_file: &Path, args: &[&str]) -> Command {
    let config = context.stack.config();
    let mut command = Command::new(&context.options.cli);
    command
        .args(["--runtime", context.stack.runtime().name()])
        .args(args)
        .env("LANGFLOW_INFRA_ROOT", &config.root)
        .env("LANGFLOW_INFRA_STATE_DIR", &config.state_dir)
        .env("LANGFLOW_INFRA_TENANTS_FILE", tenants_file)
        .stdin(Stdio::null());
    // Free ports, whatever harness.toml fixes.
    for service in ["POSTGRES", "AWS", "GATEWAY", "IDENTITY", "GATEWAY_REDIRECT"] {
        command.env(format!("LANGFLOW_INFRA_PORT_{service}"), "0");
    }
    command
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run_to_end(mut command: Command, log: &Path, what: &str) -> Result<Duration> {
    let started = Instant::now();
    let out = std::fs::File::create(log)?;
    let status = command
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        anyhow::bail!(
            "{what} failed ({status}): {}",
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        );
    }
    Ok(started.elapsed())
}

/// Runs the scenario; leaves the stack up (started by a plain `up` at the end).
pub async fn run(
    context: &ChaosContext<'_>,
    scenario: &str,
    scratch: &Path,
) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(scenario);
    let stack = context.stack;
    let config = stack.config();
    let runtime = stack.runtime().clone();
    let marker = stack.run_marker();
    let rounds = context.options.rounds;
    let logs = scratch.join("interrupt-up");
    std::fs::create_dir_all(&logs)?;
    stack.down(false)?;

    // How long an uninterrupted `up` takes: the interrupt points are drawn from that span.
    let base_tenants = config.tenants_file.clone();
    let full = tokio::task::block_in_place(|| {
        let up = run_to_end(
            cli(context, &base_tenants, &["up"]),
            &logs.join("up-0.log"),
            "cargo xtask up",
        )?;
        run_to_end(
            cli(context, &base_tenants, &["down"]),
            &logs.join("down-0.log"),
            "cargo xtask down",
        )?;
        Ok::<_, anyhow::Error>(up)
    })?;
    result.note(format!(
        "an uninterrupted `up` took {:.1} s; {rounds} rounds, seed {}",
        full.as_secs_f64(),
        context.options.seed
    ));

    let mut rng = rand::rngs::StdRng::seed_from_u64(context.options.seed);
    let base_yaml = std::fs::read_to_string(&config.tenants_file)?;
    let (mut completed, mut hung, mut dirty_rounds) = (0, 0, Vec::new());
    let mut leftover_total = 0;
    for round in 1..=rounds {
        // Every fourth round adds a tenant, so the signal can land in its schema-add.
        let tenants_file = if round % 4 == 1 {
            let file = logs.join(format!("tenants-{round}.yaml"));
            std::fs::write(
                &file,
                format!("{base_yaml}  - prefix: extra{round}\n    users: []\n"),
            )?;
            file
        } else {
            base_tenants.clone()
        };
        let signal = if round % 2 == 0 {
            Signal::SIGTERM
        } else {
            Signal::SIGINT
        };
        // Uniform over the span of an uninterrupted up (a tenant round takes longer: its
        // schema-add is then always in reach).
        let delay = Duration::from_secs_f64(rng.random_range(0.0..full.as_secs_f64()));
        let log = logs.join(format!("up-{round}.log"));
        let out = std::fs::File::create(&log)?;
        let mut child = cli(context, &tenants_file, &["up"])
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .context("cannot start cargo xtask up")?;
        tokio::time::sleep(delay).await;
        let _ = kill(Pid::from_raw(child.id() as i32), signal);
        let status = tokio::task::block_in_place(|| wait_with_timeout(&mut child, EXIT_TIMEOUT))?;
        let mut problems = Vec::new();
        match status {
            None => {
                hung += 1;
                problems.push(format!(
                    "still running {} s after {signal}",
                    EXIT_TIMEOUT.as_secs()
                ));
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(status) if status.success() => {
                // It finished before the signal: stop it as a user would.
                completed += 1;
                tokio::task::block_in_place(|| {
                    run_to_end(
                        cli(context, &tenants_file, &["down"]),
                        &logs.join(format!("down-{round}.log")),
                        "cargo xtask down",
                    )
                })?;
            }
            Some(_) => {}
        }
        let deadline = Instant::now() + LEFTOVER_GRACE;
        let mut left = runtime.leftovers(&marker);
        while !left.is_empty() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            left = runtime.leftovers(&marker);
        }
        if !left.is_empty() {
            leftover_total += left.len();
            problems.push(format!("left behind: {}", left.join(", ")));
            runtime.sweep(&marker, Duration::from_secs(5));
        }
        if stack.files().read_state()?.is_some() {
            problems.push("state file left behind".to_string());
            stack.down(false)?;
        }
        if !problems.is_empty() {
            dirty_rounds.push(format!(
                "round {round} ({signal} after {:.1} s): {}",
                delay.as_secs_f64(),
                problems.join(", ")
            ));
        }
    }
    result.note(format!(
        "{rounds} interrupted: {completed} had finished before the signal, {hung} hung, {leftover_total} processes/containers left behind"
    ));
    if !dirty_rounds.is_empty() {
        result.fail(dirty_rounds.join("; "));
    }

    // A plain `up` afterwards: every tenant back, none half-made, nothing lost.
    let up = stack
        .up()
        .await
        .context("`up` after the interrupted rounds failed")?;
    if !up.provisioned.removed_unfinished.is_empty() {
        result.note(format!(
            "`up` removed {} schema-add(s) cut off by a signal (never listed or served): {}",
            up.provisioned.removed_unfinished.len(),
            up.provisioned.removed_unfinished.join(", ")
        ));
    }
    let half_made = half_made_tenants(context).await?;
    if half_made.is_empty() {
        result.note("0 half-made tenants");
    } else {
        result.fail(format!("half-made tenants: {}", half_made.join("; ")));
    }
    if !context
        .wait_all_healthy(context.options.recovery_timeout)
        .await
    {
        result.fail("the stack was not healthy after the final up");
    }
    context.check_data(&mut result).await;
    Ok(result)
}

/// Tenants that are not whole: a listed schema without its Langflow tables, secrets or operator
/// user; a tenant-shaped role without its schema; a schema still marked unfinished.
pub async fn half_made_tenants(context: &ChaosContext<'_>) -> Result<Vec<String>> {
    let tenancy = super::tenancy(context)?;
    let secrets = context.stack.files().read_secrets()?;
    let mut found = Vec::new();
    let schemas = tenancy.schema_list().await?;
    for schema in &schemas {
        if schema.revision.is_none() {
            found.push(format!("{} has no Alembic revision", schema.schema));
        }
        if !secrets.tenants.contains_key(&schema.schema) {
            found.push(format!("{} has no secrets", schema.schema));
        }
        match tenancy
            .user_exists(&schema.schema, crate::tenancy::OPERATOR_USERNAME)
            .await
        {
            Ok(true) => {}
            Ok(false) => found.push(format!("{} has no operator user", schema.schema)),
            Err(e) => found.push(format!("{}: {e:#}", schema.schema)),
        }
    }
    let client = tenancy.admin_target().connect().await?;
    let rows = client
        .query(
            "SELECT r.rolname FROM pg_roles r \
             WHERE r.rolname ~ '^[A-Za-z0-9_-]{1,50}-[0-9a-f]{6}$' \
             AND NOT EXISTS (SELECT 1 FROM pg_namespace n WHERE n.nspname = r.rolname)",
            &[],
        )
        .await?;
    for row in rows {
        found.push(format!("role {} has no schema", row.get::<_, String>(0)));
    }
    for schema in tenancy.unfinished_schemas().await? {
        found.push(format!("unfinished schema {schema} still there"));
    }
    for schema in secrets.tenants.keys() {
        if !schemas.iter().any(|s| &s.schema == schema) {
            found.push(format!("secrets of {schema}, which is no tenant"));
        }
    }
    Ok(found)
}
