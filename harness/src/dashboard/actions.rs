//! The dashboard's actions: restart a service, reset a tenant user's password, export a tenant
//! bundle, run the e2e isolation suite on the running stack (its rows live). Each is the same
//! harness call the CLI makes; inputs are checked by the same rules before anything happens.

use std::sync::Arc;

use anyhow::{anyhow, bail, Result};
use serde::Deserialize;
use serde_json::{json, Value};

use super::collect::now_ms;
use super::Hub;
use crate::stack::image::ImageMode;
use crate::tenancy::{naming, Tenancy, OPERATOR_USERNAME};

/// `restart` input.
#[derive(Deserialize)]
pub struct RestartInput {
    /// Service name as `status` lists it.
    pub service: String,
}

/// `reset-password` input.
#[derive(Deserialize)]
pub struct ResetInput {
    /// Tenant schema id.
    pub schema: String,
    /// Login name.
    pub username: String,
}

/// `export` input.
#[derive(Deserialize)]
pub struct ExportInput {
    /// Tenant schema id.
    pub schema: String,
}

/// Restarts a service; how long until it was ready.
pub async fn restart(hub: &Arc<Hub>, input: RestartInput) -> Result<Value> {
    // Stopping waits for the process and the engine: off the threads that serve pages.
    let secs = {
        let (hub, service) = (hub.clone(), input.service.clone());
        tokio::task::spawn_blocking(move || {
            tokio::runtime::Handle::current().block_on(hub.stack.restart_service(&service))
        })
        .await??
    };
    Ok(json!({"service": input.service, "ready_secs": secs}))
}

/// Resets a user's password to a generated one, returned once (never logged or kept).
pub async fn reset_password(hub: &Arc<Hub>, input: ResetInput) -> Result<Value> {
    let ResetInput { schema, username } = input;
    naming::check_user_input(&schema, &username, None)?;
    let config = hub.stack.config();
    if ImageMode::read(&config.state_dir)?.is_some() {
        let args = vec![
            "user-reset".into(),
            "--schema".into(),
            schema.clone(),
            "--username".into(),
            username.clone(),
            "--json".into(),
        ];
        let run = {
            let hub = hub.clone();
            tokio::task::spawn_blocking(move || hub.stack.tenantmgr(&args)).await??
        };
        if !run.success {
            bail!(
                "the image's tenantmgr refused: {}",
                run.stderr.lines().last().unwrap_or("no output")
            );
        }
        let issued: Value = serde_json::from_str(run.stdout.trim())
            .map_err(|e| anyhow!("the image's tenantmgr printed no JSON: {e}"))?;
        return Ok(json!({
            "schema": schema,
            "username": username,
            "password": issued.get("password").cloned().unwrap_or(Value::Null),
        }));
    }
    let issued = Tenancy::for_running_stack(config, hub.stack.files())?
        .user_reset(&schema, &username, None)
        .await?;
    Ok(json!({
        "schema": issued.schema,
        "username": issued.username,
        "password": issued.password,
    }))
}

/// Exports a tenant to `<state dir>/exports/<prefix>-<time>.tar.zst`.
pub async fn export(hub: &Hub, input: ExportInput) -> Result<Value> {
    let prefix = naming::parse_schema_id(&input.schema)?.to_string();
    let dir = hub.stack.config().state_dir.join("exports");
    crate::state::create_private_dir(&dir)?;
    let out = dir.join(format!(
        "{prefix}-{}.tar.zst",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let report = crate::bundle::export(&hub.stack, &input.schema, &out, None).await?;
    Ok(json!({
        "bundle": out,
        "bytes": std::fs::metadata(&out).map(|m| m.len()).ok(),
        "report": report,
    }))
}

/// Starts the e2e isolation suite against the running stack's gateway, logged in as each
/// tenant's operator; its rows arrive as `job` events. One run at a time. (Per-tenant stacks:
/// the image's tenants have no operator the harness knows.)
pub fn start_e2e(hub: &Arc<Hub>) -> Result<Value> {
    let config = hub.stack.config();
    if ImageMode::read(&config.state_dir)?.is_some() {
        bail!("the e2e action runs on per-tenant stacks; for the deployed image run `cargo xtask e2e --deploy`");
    }
    let started = {
        let mut job = hub.job.lock().expect("job");
        if job
            .as_ref()
            .is_some_and(|j| j.get("finished").is_none_or(Value::is_null))
        {
            bail!("an e2e run is under way; wait for it to finish");
        }
        let started = json!({
            "kind": "e2e",
            "started": now_ms(),
            "rows": [],
            "finished": null,
        });
        // Published under the lock, so no later state of the job can go out before it.
        hub.publish("job", &started);
        *job = Some(started.clone());
        started
    };
    let running = hub.clone();
    let suite = tokio::spawn(async move { run_e2e(&running).await });
    let watcher = hub.clone();
    tokio::spawn(async move {
        // A panicking run still ends the job (else every later run would be refused).
        let outcome = match suite.await {
            Ok(outcome) => outcome,
            Err(e) => Err(anyhow!("the e2e run ended abnormally: {e}")),
        };
        let mut job = watcher.job.lock().expect("job");
        if let Some(job) = job.as_mut() {
            job["finished"] = json!(now_ms());
            match outcome {
                Ok(report) => {
                    job["passed"] = json!(report.failures() == 0);
                    job["failures"] = json!(report.failed_checks());
                }
                Err(e) => {
                    job["passed"] = json!(false);
                    job["error"] = json!(format!("{e:#}"));
                }
            }
            watcher.publish("job", job);
        }
    });
    Ok(started)
}

/// The suite with each row published as it is judged, with the database, key and emulator
/// access a local run has (so forged-token and database are judged, not skipped); the report is
/// kept for the Reports page.
async fn run_e2e(hub: &Arc<Hub>) -> Result<crate::e2e::E2eReport> {
    use crate::e2e::{LocalAccess, Suite, SuiteInput, TenantCredentials};
    let config = hub.stack.config();
    let state = hub.stack.running_state()?;
    let gateway = state
        .services
        .get(crate::stack::GATEWAY_SERVICE)
        .ok_or_else(|| anyhow!("the stack has no gateway"))?
        .url
        .clone();
    let tenancy = Tenancy::for_running_stack(config, hub.stack.files())?;
    let schemas = tenancy.schema_list().await?;
    if schemas.len() < 2 {
        bail!(
            "the isolation suite needs two tenants; add one with `cargo xtask tenant schema-add --prefix NAME`"
        );
    }
    let secrets = hub.stack.files().read_secrets()?;
    let mut tenants = Vec::new();
    let mut schema_of = std::collections::BTreeMap::new();
    let mut secret_keys = std::collections::BTreeMap::new();
    for schema in &schemas {
        let Some(own) = secrets.tenants.get(&schema.schema) else {
            continue;
        };
        tenants.push(TenantCredentials {
            prefix: schema.prefix.clone(),
            username: OPERATOR_USERNAME.into(),
            password: own.operator_password.clone(),
            shared_username: None,
            shared_password: None,
        });
        schema_of.insert(schema.prefix.clone(), schema.schema.clone());
        if let Some(key) = crate::e2e::instance_secret_key(&hub.stack, &state, &schema.prefix) {
            secret_keys.insert(schema.prefix.clone(), key);
        }
    }
    let aws_port = crate::stack::Stack::service_port(&state, "aws")?;
    let input = SuiteInput {
        gateway,
        tenants,
        local: Some(LocalAccess {
            tenancy,
            schemas: schema_of,
            secret_keys,
            s3: crate::services::aws::s3_client(aws_port, &config.aws.region).await,
            bucket: config.aws.tenant_bucket.clone(),
            credentials: None,
            task_urls: Vec::new(),
        }),
        concurrency: 50,
        suite: Suite::Isolation,
        browser: None,
    };
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let forward = {
        let hub = hub.clone();
        tokio::spawn(async move {
            while let Some(row) = rx.recv().await {
                let mut job = hub.job.lock().expect("job");
                if let Some(job) = job.as_mut() {
                    if let Some(rows) = job["rows"].as_array_mut() {
                        rows.push(serde_json::to_value(&row).unwrap_or(Value::Null));
                    }
                    hub.publish("job", job);
                }
            }
        })
    };
    let report = crate::e2e::CHECK_PROGRESS
        .scope(tx, crate::e2e::run_on_running(&input))
        .await;
    let _ = forward.await;
    crate::run_reports::record_or_warn(
        &config.state_dir,
        "e2e-isolation",
        report.failures() == 0,
        &report,
    );
    Ok(report)
}
