//! A local e2e run: an isolated stack (own temp state dir, free ports, so it runs beside a
//! developer's `up`) with two tenants, each with an admin and a user whose username exists in
//! both tenants; the suite; then teardown unless kept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};

use super::credentials::CredentialsAccess;
use super::{run_suite, E2eReport, LocalAccess, SuiteInput, TenantCredentials};
use crate::config::Config;
use crate::services::aws;
use crate::stack::image::{ImageMode, ImageRequest};
use crate::stack::{Fault, GatewayCommand, Stack, GATEWAY_SERVICE};
use crate::tenancy::Tenancy;

/// The two tenants of a local run.
pub const TENANTS: [&str; 2] = ["acme", "widgetco"];
/// A username created in both tenants, with different passwords.
pub const SHARED_USERNAME: &str = "shared-user@example.com";

/// Image mode: how long a task may take to serve a tenant just added with its tenant manager.
const TENANT_SERVED_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(180);

/// Login attempts per minute the suite's own stack allows (it logs in ~10 times per tenant).
pub const E2E_LOGIN_RATE_LIMIT: u32 = 600;

/// Options of a local run.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    /// Leave the stack up afterwards (for debugging); its state dir is reported.
    pub keep: bool,
    /// Requests in the concurrency check.
    pub concurrency: usize,
    /// A deliberately broken setup, to prove the suite can fail (self-test).
    pub fault: Option<Fault>,
    /// The Rust credential probe; `None` skips the credential-chain scenarios (the component
    /// checks still run).
    pub probe: Option<crate::credentials::scenarios::ProbeCommand>,
    /// Runtime of the stack: `native`, `docker` or `auto`; `None` = the configured one.
    pub runtime: Option<String>,
    /// Which suites run.
    pub suite: super::Suite,
    /// Gateway routing of the stack; `None` = the configured one (`[gateway] routing`).
    pub routing: Option<crate::gateway::Routing>,
    /// Where the browser suite keeps screenshots of failed checks; `None` =
    /// `<repository>/target/e2e-browser`.
    pub artifacts: Option<PathBuf>,
    /// Image mode: run this image as the Fargate service (at least two tasks) instead of the
    /// harness's per-tenant instances; tenants are made with the image's tenant manager.
    pub image: Option<String>,
    /// Tasks in image mode (default: the service's DesiredCount, at least 2).
    pub tasks: Option<usize>,
    /// Workers per task in image mode (`LANGFLOW_WORKERS`; default: the task definition's).
    pub workers: Option<usize>,
    /// `--deploy`: the template set's plan, deployed into the run's emulator and its service
    /// run (image mode through the user's own templates; `image` may then be empty).
    pub deploy: Option<harness_cfn::deploy::Plan>,
}

/// A finished local run.
pub struct LocalRun {
    /// The report.
    pub report: E2eReport,
    /// State dir of the stack when kept (`--keep`).
    pub kept_state_dir: Option<PathBuf>,
    /// Credentials file (0600, usable as `--credentials` with `--target`) when kept.
    pub kept_credentials: Option<PathBuf>,
}

fn tenants_yaml() -> String {
    let mut yaml = String::from("tenants:\n");
    for prefix in TENANTS {
        yaml.push_str(&format!(
            "  - prefix: {prefix}\n    users:\n      - username: admin@{prefix}.com\n        superuser: true\n      - username: {SHARED_USERNAME}\n"
        ));
    }
    yaml
}

/// Image mode: makes tenant `prefix` with the image's own tenant manager, as an operator would
/// (`schema-add`, then `user-add` of an admin and of the shared username, generated passwords),
/// parsing what it prints.
async fn image_tenant(stack: &Stack, prefix: &str) -> Result<(TenantCredentials, String)> {
    let schema = image_schema_add(stack, prefix)?;
    let user = |username: String| {
        let schema = schema.clone();
        async move {
            let out = run_tenantmgr(
                stack,
                vec![
                    "user-add".into(),
                    "--schema".into(),
                    schema,
                    "--username".into(),
                    username.clone(),
                ],
            )?;
            printed(&out, "Password").with_context(|| {
                format!("tenantmgr user-add {username} printed no 'Password:' line")
            })
        }
    };
    let admin = format!("admin@{prefix}.com");
    let password = user(admin.clone()).await?;
    let shared_password = user(SHARED_USERNAME.to_string()).await?;
    Ok((
        TenantCredentials {
            prefix: prefix.to_string(),
            username: admin,
            password,
            shared_username: Some(SHARED_USERNAME.into()),
            shared_password: Some(shared_password),
        },
        schema,
    ))
}

/// Image mode: each task's own base URL (`http://127.0.0.1:<port>`), as the target group's
/// targets (a replaced task listens on a new port: read again after a restart).
pub(super) fn task_urls(stack: &Stack, mode: &ImageMode) -> Result<Vec<String>> {
    let state = stack
        .files()
        .read_state()?
        .context("the stack is not running")?;
    mode.task_names()
        .iter()
        .map(|name| {
            Ok(format!(
                "http://127.0.0.1:{}",
                Stack::service_port(&state, name)?
            ))
        })
        .collect()
}

/// Waits until every task serves the app at `path` (its `health_check`): each task serves a new
/// tenant on its own (the image polls its registry, then starts the tenant's workers). A task
/// that does not is named with its last log lines.
pub(super) async fn served_everywhere(stack: &Stack, tasks: &[String], path: &str) -> Result<()> {
    for (i, url) in tasks.iter().enumerate() {
        let target = format!("{url}{path}health_check");
        let waited = crate::net::wait_until(
            &format!("task {} serving {path}", i + 1),
            TENANT_SERVED_TIMEOUT,
            std::time::Duration::from_millis(250),
            || true,
            || {
                let target = target.clone();
                async move {
                    Ok(reqwest::get(&target)
                        .await
                        .is_ok_and(|r| r.status().is_success()))
                }
            },
        )
        .await;
        if let Err(e) = waited {
            let name = crate::stack::image::task_service(i + 1);
            let log = stack.log_text(&name).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(12).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            anyhow::bail!("{e:#}\n{name}'s last log lines:\n  {}", tail.join("\n  "));
        }
    }
    Ok(())
}

/// Runs the image's tenant manager with `args` in a task; its standard output, or an error with
/// what it printed.
pub(super) fn run_tenantmgr(stack: &Stack, args: Vec<String>) -> Result<String> {
    let what = args.join(" ");
    let done = stack.tenantmgr(&args)?;
    if !done.success {
        anyhow::bail!(
            "tenantmgr {what} failed ({}): {}{}",
            done.status,
            done.stderr.trim(),
            done.stdout.trim()
        );
    }
    Ok(done.stdout)
}

/// `tenantmgr schema-add --prefix <prefix>` in a task; the new schema's id.
pub(super) fn image_schema_add(stack: &Stack, prefix: &str) -> Result<String> {
    let added = run_tenantmgr(
        stack,
        vec!["schema-add".into(), "--prefix".into(), prefix.into()],
    )?;
    printed(&added, "Schema ID")
        .with_context(|| format!("tenantmgr schema-add printed no 'Schema ID:' line: {added}"))
}

/// The value of a `Label: value` line of a tool's output.
pub(super) fn printed(output: &str, label: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let (key, value) = line.trim().split_once(':')?;
        (key.trim() == label).then(|| value.trim().to_string())
    })
}

/// The isolated stack of a local run in `dir`: the tenants file (empty in image mode, where the
/// image's tenant manager makes tenants), the suite's settings, image mode when asked for.
/// Returns it with its routing.
pub(super) fn open_stack(
    root: &Path,
    gateway: &GatewayCommand,
    options: &LocalOptions,
    dir: &Path,
    tenants_file: &str,
) -> Result<(Stack, crate::gateway::Routing)> {
    let image_mode = options.image.is_some() || options.deploy.is_some();
    let tenants_file = if image_mode {
        "tenants: []\n"
    } else {
        tenants_file
    };
    let mut config = Config::isolated_with_tenants(root, dir, tenants_file)?;
    // Every request of the suite comes from 127.0.0.1: Langflow's default of 5 logins per
    // minute per client would turn later login checks into 429s.
    config.langflow.login_rate_limit_per_minute = E2E_LOGIN_RATE_LIMIT;
    // The suite's HTTP client trusts the system roots only; the gateway's TLS (self-signed) is
    // covered by the gateway tests.
    config.gateway.tls = false;
    if let Some(routing) = options.routing {
        config.gateway.routing = routing;
    }
    let routing = config.gateway.routing;
    let runtime = match (image_mode, options.runtime.as_deref()) {
        (true, None | Some("auto")) => Some("docker"),
        (_, runtime) => runtime,
    };
    let (stack, notice) = Stack::open(config, runtime, true)?;
    if let Some(notice) = notice {
        eprintln!("{notice}");
    }
    let mut stack = stack.with_gateway_command(gateway.clone());
    match (image_mode, options.fault) {
        (true, fault) => {
            stack = stack.with_image(ImageRequest {
                image: options.image.clone().unwrap_or_default(),
                tasks: options.tasks,
                min_tasks: 2,
                workers: options.workers,
                // The reference image breaks isolation on purpose with LFMT_FAULT (tests only).
                fault_env: fault
                    .map(|f| [("LFMT_FAULT".to_string(), f.as_str().to_string())].into())
                    .unwrap_or_default(),
                deploy: options.deploy.clone(),
            });
        }
        (false, Some(fault)) => stack = stack.with_fault(fault),
        (false, None) => {}
    }
    Ok((stack, routing))
}

/// Brings up an isolated stack, runs the suite on it and tears it down (unless `keep`).
pub async fn run(
    root: &Path,
    gateway: &GatewayCommand,
    options: &LocalOptions,
) -> Result<LocalRun> {
    if options.suite == super::Suite::Replicas {
        return super::replicas::run(root, gateway, options).await;
    }
    let dir = tempfile::Builder::new()
        .prefix("lfi-e2e-")
        .tempdir()
        .context("cannot create a temp dir for the e2e stack")?;
    let (stack, routing) = open_stack(root, gateway, options, dir.path(), &tenants_yaml())?;
    let up_started = Instant::now();
    let outcome = async {
        let up = stack.up().await?;
        let up_secs = up_started.elapsed().as_secs_f64();
        let gateway_port = up
            .status
            .service(GATEWAY_SERVICE)
            .map(|s| s.port)
            .context("the gateway is not running")?;
        let password = |schema: &str, username: &str| {
            up.provisioned
                .credentials
                .iter()
                .find(|c| c.schema == schema && c.username == username)
                .map(|c| c.password.clone())
                .with_context(|| format!("no generated password for {username} in {schema}"))
        };
        let mut tenants = Vec::new();
        let mut schemas = BTreeMap::new();
        let mut secret_keys = BTreeMap::new();
        let mut task_urls = Vec::new();
        if let Some(mode) = ImageMode::read(&stack.config().state_dir)? {
            task_urls = self::task_urls(&stack, &mode)?;
            for prefix in TENANTS {
                let (creds, schema) = image_tenant(&stack, prefix).await?;
                tenants.push(creds);
                schemas.insert(prefix.to_string(), schema);
            }
            // Every task serves a new tenant on its own (the image polls its registry, then
            // starts the tenant's worker): wait until each task answers for each tenant.
            for prefix in TENANTS {
                served_everywhere(&stack, &task_urls, &format!("/tenant/{prefix}/")).await?;
            }
        }
        for endpoint in &up.tenants {
            tenants.push(TenantCredentials {
                prefix: endpoint.prefix.clone(),
                username: format!("admin@{}.com", endpoint.prefix),
                password: password(&endpoint.schema, &format!("admin@{}.com", endpoint.prefix))?,
                shared_username: Some(SHARED_USERNAME.into()),
                shared_password: Some(password(&endpoint.schema, SHARED_USERNAME)?),
            });
            schemas.insert(endpoint.prefix.clone(), endpoint.schema.clone());
            let state = stack.files().read_state()?.context("no state after up")?;
            let key = super::instance_secret_key(&stack, &state, &endpoint.prefix).with_context(
                || {
                    format!(
                        "cannot read the secret key of {}",
                        crate::services::langflow::service_name(&endpoint.prefix)
                    )
                },
            )?;
            secret_keys.insert(endpoint.prefix.clone(), key);
        }
        let aws_port = up
            .status
            .service("aws")
            .map(|s| s.port)
            .context("the AWS emulator is not running")?;
        let image_mode = !task_urls.is_empty();
        // What this emulator emulates and enforces decides which credential checks it can judge
        // (probed only when they run: not in image mode, not for the browser suite alone).
        let credentials_run = !image_mode
            && options.suite != super::Suite::Browser
            && up
                .status
                .service(crate::credentials::IDENTITY_SERVICE)
                .is_some();
        let capabilities = if credentials_run {
            let caps = crate::services::emulator_caps::probe(stack.config(), aws_port, dir.path())
                .await
                .context("cannot probe the emulator's capabilities")?;
            crate::progress::println(format!(
                "emulator {}: {} of {} capabilities (checks that need a missing one are skipped)",
                caps.emulator,
                caps.capabilities.iter().filter(|c| c.supported).count(),
                caps.capabilities.len()
            ));
            Some(caps)
        } else {
            None
        };
        let local = LocalAccess {
            tenancy: Tenancy::for_running_stack(stack.config(), stack.files())?,
            schemas,
            secret_keys,
            s3: aws::s3_client(aws_port, &stack.config().aws.region).await,
            // A deployed task stores files where its own settings say (Langflow's
            // LANGFLOW_OBJECT_STORAGE_BUCKET_NAME, the bucket the deploy made).
            bucket: crate::stack::deploy::Deployment::read(&stack.config().state_dir)?
                .and_then(|d| d.env.get("LANGFLOW_OBJECT_STORAGE_BUCKET_NAME").cloned())
                .unwrap_or_else(|| stack.config().aws.tenant_bucket.clone()),
            task_urls,
            // The credentials suite drives the harness's own instances (their IRSA settings).
            credentials: up
                .status
                .service(crate::credentials::IDENTITY_SERVICE)
                .filter(|_| !image_mode)
                .map(|identity| CredentialsAccess {
                    config: stack.config().clone(),
                    aws_port,
                    identity_port: identity.port,
                    probe: options.probe.clone(),
                    capabilities: capabilities.clone(),
                }),
        };
        let input = SuiteInput {
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            tenants,
            local: Some(local),
            concurrency: options.concurrency,
            suite: options.suite,
            browser: Some(super::BrowserSettings {
                routing,
                artifacts: options
                    .artifacts
                    .clone()
                    .unwrap_or_else(|| root.join("target").join("e2e-browser")),
            }),
        };
        let (results, setup_secs, checks_secs) = run_suite(&input).await;
        let report = E2eReport {
            target: input.gateway.clone(),
            results,
            up_secs,
            setup_secs,
            checks_secs,
            down_secs: 0.0,
            emulator: capabilities,
        };
        Ok::<_, anyhow::Error>((report, serde_json::json!({ "tenants": input.tenants })))
    }
    .await;
    finish(&stack, dir, options.keep, outcome)
}

/// Ends a local run: a failed one is taken down (kept with `--keep`, its state dir printed) and
/// its error returned; a finished one is taken down, or with `--keep` left running with its
/// `credentials` in a 0600 file beside the state dir.
pub(super) fn finish(
    stack: &Stack,
    dir: tempfile::TempDir,
    keep: bool,
    outcome: Result<(E2eReport, serde_json::Value)>,
) -> Result<LocalRun> {
    let down_started = Instant::now();
    let (mut report, credentials) = match outcome {
        Ok(done) => done,
        Err(e) => {
            if keep {
                let kept = dir.keep();
                eprintln!(
                    "kept the failed e2e stack: LANGFLOW_INFRA_STATE_DIR={} cargo xtask logs",
                    kept.join("state").display()
                );
            } else {
                stack.down(true)?;
            }
            return Err(e);
        }
    };
    let (kept_state_dir, kept_credentials) = if keep {
        let kept = dir.keep();
        let file = kept.join("e2e-credentials.json");
        crate::state::write_json_0600(&file, &credentials)?;
        (Some(kept.join("state")), Some(file))
    } else {
        stack.down(true)?;
        (None, None)
    };
    report.down_secs = down_started.elapsed().as_secs_f64();
    Ok(LocalRun {
        report,
        kept_state_dir,
        kept_credentials,
    })
}
