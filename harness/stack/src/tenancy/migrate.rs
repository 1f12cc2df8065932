//! Brings a tenant schema to Langflow's Alembic head by running Langflow's own database
//! initialisation (create tables, upgrade, health check) as the tenant's role. Never copies
//! tables from `public`: Langflow's `alembic check` rejects such copies at start.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::services::langflow;
use crate::services::postgres::PgTarget;
use harness_core::config::Config;
use harness_core::progress::Step;
use harness_runtime::runtime::Runtime;

/// Advisory lock serialising tenant migrations within one database ("lfi_migr").
const MIGRATION_LOCK: i64 = 0x6c66_695f_6d69_6772;
/// How long one tenant migration may take (a first run compiles Langflow's bytecode).
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// How long a migration waits for another tenant's to finish.
const MIGRATION_LOCK_WAIT: Duration = Duration::from_secs(20 * 60);

/// The Python entry point, run with the Langflow venv's interpreter.
const MIGRATE_SCRIPT: &str = include_str!("../../../python/migrate_tenant.py");

/// Where migrations run: the runtime of the run (natively the venv's Python; in containers the
/// Langflow image, so a tenant is migrated by the Langflow version that will serve it).
#[derive(Clone)]
pub struct Migrator {
    /// The run's runtime.
    pub runtime: Arc<dyn Runtime>,
    /// The run's marker.
    pub run_marker: String,
}

/// Migrates the schema `target.user` can reach (its pinned search_path) to Alembic head.
pub async fn upgrade_to_head(
    config: &Config,
    migrator: &Migrator,
    target: &PgTarget,
) -> Result<()> {
    let launcher = langflow::Launcher::prepare(config, migrator.runtime.placement()).await?;
    let step = Step::start(format!("migrating schema {}", target.user));
    let scratch = config
        .state_dir
        .join("tenants")
        .join(&target.user)
        .join("config");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let env = BTreeMap::from([
        (
            "LANGFLOW_DATABASE_URL",
            target.url_with_password_via(&launcher.placement),
        ),
        ("LANGFLOW_CONFIG_DIR", scratch.display().to_string()),
        ("LANGFLOW_AUTO_LOGIN", "false".to_string()),
        ("LANGFLOW_DO_NOT_TRACK", "true".to_string()),
        ("LANGFLOW_MODELS_DEV_REFRESH", "false".to_string()),
        ("LANGFLOW_LOG_LEVEL", "error".to_string()),
        ("HOME", scratch.display().to_string()),
    ]);
    // Langflow 1.13 takes one database-wide advisory lock for its migrations and, while
    // holding it, keeps a transaction (and its snapshot) open on the lock connection. When two
    // tenants migrate at once, the second one's snapshot predates the first one's work, and a
    // `CREATE INDEX CONCURRENTLY` (revision a1b2c9d3e4f5) then waits for that transaction
    // forever: a self-deadlock seen here in parallel first-time migrations. So tenants of one
    // database migrate one at a time. The harness's own lock is polled on an autocommit
    // connection, which holds no snapshot while it waits.
    let lock = target.connect().await?;
    let waited = Instant::now();
    loop {
        let row = lock
            .query_one(
                &format!("SELECT pg_try_advisory_lock({MIGRATION_LOCK})"),
                &[],
            )
            .await
            .context("cannot take the tenant migration lock")?;
        if row.get::<_, bool>(0) {
            break;
        }
        if waited.elapsed() > MIGRATION_LOCK_WAIT {
            step.fail();
            bail!(
                "schema {} waited {} s for another tenant's migration to finish; look for a stuck \
                 `migrate_tenant` process (cargo xtask logs) or run `cargo xtask down` and retry",
                target.user,
                MIGRATION_LOCK_WAIT.as_secs()
            );
        }
        step.set_message(format!(
            "migrating schema {}: waiting for another tenant's migration",
            target.user
        ));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    step.set_message(format!("migrating schema {}", target.user));
    let env: BTreeMap<String, String> = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let spec = launcher.python_spec(
        &format!("migrate-{}", target.user),
        vec!["-c".into(), MIGRATE_SCRIPT.into()],
        env,
        scratch.clone(),
        vec![(scratch.clone(), false)],
    );
    let runtime = migrator.runtime.clone();
    let marker = migrator.run_marker.clone();
    let output = tokio::task::spawn_blocking(move || {
        runtime.run_to_completion(&spec, &marker, MIGRATION_TIMEOUT)
    })
    .await?;
    // Dropping the connection releases the session lock, whatever happened.
    drop(lock);
    let output = match output {
        Ok(output) => output,
        Err(e) => {
            step.fail();
            bail!(
                "Langflow's migration of schema {} did not complete: {e:#}; check \
                 pg_stat_activity for a lock wait",
                target.user,
            );
        }
    };
    if !output.success {
        step.fail();
        let stderr = &output.stderr;
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("(no output)");
        // The URL (with the role password) is never echoed: only Langflow's last line is.
        bail!(
            "Langflow's migration of schema {} failed ({}): {last}",
            target.user,
            output.status
        );
    }
    step.finish("at head");
    Ok(())
}
