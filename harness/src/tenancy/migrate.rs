//! Brings a tenant schema to Langflow's Alembic head by running Langflow's own database
//! initialisation (create tables, upgrade, health check) as the tenant's role. Never copies
//! tables from `public`: Langflow's `alembic check` rejects such copies at start.

use std::collections::BTreeMap;
use std::process::Stdio;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::progress::Step;
use crate::services::langflow;
use crate::services::postgres::PgTarget;

/// The Python entry point, run with the Langflow venv's interpreter.
const MIGRATE_SCRIPT: &str = include_str!("../../python/migrate_tenant.py");

/// Installs the Langflow venv if needed (progress shown) and returns it.
pub async fn ensure_langflow_venv(config: &Config) -> Result<crate::venv::Venv> {
    let venv = langflow::venv(config);
    let (venv2, python) = (venv.clone(), config.tools.python.clone());
    tokio::task::spawn_blocking(move || venv2.ensure(&python)).await??;
    Ok(venv)
}

/// Migrates the schema `target.user` can reach (its pinned search_path) to Alembic head.
pub async fn upgrade_to_head(config: &Config, target: &PgTarget) -> Result<()> {
    let venv = ensure_langflow_venv(config).await?;
    let step = Step::start(format!("migrating schema {}", target.user));
    let scratch = config
        .state_dir
        .join("tenants")
        .join(&target.user)
        .join("config");
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let env = BTreeMap::from([
        ("LANGFLOW_DATABASE_URL", target.url_with_password()),
        ("LANGFLOW_CONFIG_DIR", scratch.display().to_string()),
        ("LANGFLOW_AUTO_LOGIN", "false".to_string()),
        ("LANGFLOW_DO_NOT_TRACK", "true".to_string()),
        ("LANGFLOW_MODELS_DEV_REFRESH", "false".to_string()),
        ("LANGFLOW_LOG_LEVEL", "error".to_string()),
        ("HOME", scratch.display().to_string()),
    ]);
    let mut command = tokio::process::Command::new(venv.bin("python"));
    command
        .arg("-c")
        .arg(MIGRATE_SCRIPT)
        .env_clear()
        .envs(env)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .context("cannot run the Langflow migration")?;
    if !output.status.success() {
        step.fail();
        let stderr = String::from_utf8_lossy(&output.stderr);
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
