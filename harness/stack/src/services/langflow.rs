//! A tenant's Langflow instance: `langflow-base` (pinned) from a managed venv, one single-process
//! uvicorn per tenant on a 127.0.0.1 port, served under `/tenant/<prefix>`, connected to Postgres
//! as the tenant's own role (so its `search_path` pins it to the tenant schema), with its own
//! secret key, config dir and S3 prefix. Ready when `/health_check` reports `ok`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::services::aws;
use crate::services::postgres::PgTarget;
use harness_core::config::Config;
use harness_core::net;
use harness_core::venv::Venv;
use harness_runtime::runtime::{ContainerSpec, Placement, ProcessSpec, StopSignal};

/// The superuser every tenant instance is started with (`LANGFLOW_SUPERUSER`): Langflow 1.13
/// refuses to start with auto-login off unless one is configured. Created by `schema-add` with a
/// generated password kept in `secrets.json`; the harness uses it for operator tasks.
pub const OPERATOR_USERNAME: &str = "langflow-infra-operator";

/// Installs the Langflow venv if needed (progress shown) and returns it.
pub async fn ensure_venv(config: &Config) -> Result<Venv> {
    let venv = venv(config);
    let (venv2, python) = (venv.clone(), config.tools.python.clone());
    tokio::task::spawn_blocking(move || venv2.ensure(&python)).await??;
    Ok(venv)
}

/// Pinned dependency set for the Langflow venv, resolved once and committed, so an install never
/// backtracks through the resolver and every machine gets the same packages.
pub const CONSTRAINTS: &str = include_str!("../../../constraints/langflow-1.13.0.txt");

/// The managed venv holding the pinned `langflow-base[postgresql]`.
pub fn venv(config: &Config) -> Venv {
    let version = &config.langflow.version;
    let mut venv = Venv::new(
        &config.venv_dir(),
        &format!("langflow-{version}"),
        &[&format!("langflow-base[postgresql]=={version}")],
    );
    if version == "1.13.0" {
        venv = venv.with_constraints(CONSTRAINTS);
    }
    venv
}

/// Port an instance listens on inside its container.
pub const CONTAINER_PORT: u16 = 7860;

/// How Langflow programs are run: from the managed venv (native) or from the Langflow image
/// (containers; the image's own Langflow version then migrates and serves the tenant).
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The venv (native runtime only).
    pub venv: Option<Venv>,
    /// Where services run.
    pub placement: Placement,
    /// Natively: the socket of the run's fork server, when instances are forked from it.
    pub fork_server: Option<PathBuf>,
}

impl Launcher {
    /// A launcher for `placement`: natively the managed venv is installed first (minutes on a
    /// fresh machine); in containers nothing is installed on the host.
    pub async fn prepare(config: &Config, placement: Placement) -> Result<Self> {
        let venv = if placement.containers {
            None
        } else {
            Some(ensure_venv(config).await?)
        };
        Ok(Self {
            venv,
            placement,
            fork_server: None,
        })
    }

    /// A spec running `python <args>` with Langflow importable: the venv's interpreter, or the
    /// Langflow image's, with `binds` mounted at the same paths and `user` the caller's.
    pub fn python_spec(
        &self,
        name: &str,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: PathBuf,
        binds: Vec<(PathBuf, bool)>,
    ) -> ProcessSpec {
        let container = self.placement.containers.then(|| ContainerSpec {
            image: "langflow".into(),
            command: std::iter::once("python".to_string())
                .chain(args.iter().cloned())
                .collect(),
            env: env.clone(),
            container_port: CONTAINER_PORT,
            binds,
            volumes: Vec::new(),
            user: Some(caller_user()),
        });
        ProcessSpec {
            name: name.to_string(),
            program: self
                .venv
                .as_ref()
                .map(|v| v.bin("python"))
                .unwrap_or_else(|| "python".into()),
            args,
            env,
            cwd,
            log: PathBuf::new(),
            run_as: None,
            stop_signal: StopSignal::Term,
            port: 0,
            container,
            fork_server: self.fork_server.clone(),
        }
    }
}

/// `uid:gid` of the caller: containers run as the user who owns the bind-mounted state (the
/// instance directory, the 0600 projected token), as the pod's user owns its volumes on EKS.
pub fn caller_user() -> String {
    format!(
        "{}:{}",
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw()
    )
}

/// Service name of a tenant's instance in the state file.
pub fn service_name(prefix: &str) -> String {
    format!("{INSTANCE_PREFIX}{prefix}")
}

/// The tenant prefix of an instance's service name ([`service_name`]'s inverse), if it is one.
pub fn prefix_of_service(name: &str) -> Option<&str> {
    name.strip_prefix(INSTANCE_PREFIX)
}

/// What every tenant instance's service name starts with.
const INSTANCE_PREFIX: &str = "langflow-";

/// Per-instance directories (config, knowledge bases, telemetry outbox) under the state dir.
pub fn instance_dir(config: &Config, schema: &str) -> PathBuf {
    config.state_dir.join("tenants").join(schema)
}

/// Everything that describes one tenant instance.
pub struct InstanceSpec<'a> {
    /// Tenant prefix (URL path segment).
    pub prefix: &'a str,
    /// Schema id.
    pub schema: &'a str,
    /// The tenant role's connection target.
    pub database: &'a PgTarget,
    /// `LANGFLOW_SECRET_KEY` of this tenant.
    pub secret_key: &'a str,
    /// Password of the operator superuser (`LANGFLOW_SUPERUSER_PASSWORD`).
    pub operator_password: &'a str,
    /// Port clients on the host reach it on (0 = the runtime picks: containers only).
    pub port: u16,
    /// Port of the AWS emulator on 127.0.0.1 (S3 storage, Bedrock).
    pub aws_port: u16,
    /// IRSA credentials, as an EKS pod gets them; `None` falls back to the emulator's root keys.
    pub identity: Option<InstanceIdentity>,
}

/// What EKS injects into a pod whose service account is annotated with a role (IRSA).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceIdentity {
    /// `AWS_ROLE_ARN`.
    pub role_arn: String,
    /// `AWS_WEB_IDENTITY_TOKEN_FILE` (its directory is mounted read-only into containers).
    pub token_file: std::path::PathBuf,
    /// The STS endpoint (the harness's identity server).
    pub sts_url: String,
}

/// The uvicorn process of one tenant.
pub fn process_spec(
    config: &Config,
    launcher: &Launcher,
    instance: &InstanceSpec,
) -> Result<ProcessSpec> {
    let placement = &launcher.placement;
    let listen_port = placement.listen_port(instance.port, CONTAINER_PORT);
    let (aws_host, aws_port) = placement.peer("aws", instance.aws_port, aws::CONTAINER_PORT);
    let dir = instance_dir(config, instance.schema);
    for sub in ["config", "knowledge_bases", "telemetry", "tmp"] {
        std::fs::create_dir_all(dir.join(sub))
            .with_context(|| format!("cannot create {}", dir.join(sub).display()))?;
    }
    let path = |sub: &str| dir.join(sub).display().to_string();
    let mut env = BTreeMap::from([
        (
            "LANGFLOW_DATABASE_URL",
            instance.database.url_with_password_via(placement),
        ),
        ("LANGFLOW_CONFIG_DIR", path("config")),
        ("LANGFLOW_KNOWLEDGE_BASES_DIR", path("knowledge_bases")),
        ("LANGFLOW_TELEMETRY_WRITER_OUTBOX_DIR", path("telemetry")),
        ("LANGFLOW_HOST", placement.listen_host().to_string()),
        ("LANGFLOW_PORT", listen_port.to_string()),
        // Path routing: served under /tenant/<prefix>; host routing: at the root of its own origin.
        (
            "LANGFLOW_ROOT_PATH",
            config.gateway.routing.root_path(instance.prefix),
        ),
        ("LANGFLOW_SECRET_KEY", instance.secret_key.to_string()),
        ("LANGFLOW_AUTO_LOGIN", "false".into()),
        // Langflow 1.13 refuses to start with auto-login off unless a superuser is configured;
        // schema-add created this one with the same password, so start-up finds it unchanged.
        ("LANGFLOW_SUPERUSER", OPERATOR_USERNAME.into()),
        (
            "LANGFLOW_SUPERUSER_PASSWORD",
            instance.operator_password.to_string(),
        ),
        ("LANGFLOW_ENABLE_SIGNUP", "false".into()),
        // Behind the gateway (like behind the ALB) every request comes from the proxy: rate-limit
        // on the client address it forwards, not on the proxy's own.
        ("LANGFLOW_RATE_LIMIT_TRUST_PROXY", "true".into()),
        (
            "LANGFLOW_RATE_LIMIT_PER_MINUTE",
            config.langflow.login_rate_limit_per_minute.to_string(),
        ),
        ("LANGFLOW_DO_NOT_TRACK", "true".into()),
        ("LANGFLOW_MODELS_DEV_REFRESH", "false".into()),
        ("LANGFLOW_STORE", "false".into()),
        ("LANGFLOW_CHECK_VERSION", "false".into()),
        // Tenant files go to the shared bucket under the tenant's own prefix.
        ("LANGFLOW_STORAGE_TYPE", "s3".into()),
        (
            "LANGFLOW_OBJECT_STORAGE_BUCKET_NAME",
            config.aws.tenant_bucket.clone(),
        ),
        (
            "LANGFLOW_OBJECT_STORAGE_PREFIX",
            format!("tenants/{}", instance.schema),
        ),
        ("AWS_ENDPOINT_URL", format!("http://{aws_host}:{aws_port}")),
        // Never let an SDK wander off 127.0.0.1 looking for instance metadata.
        ("AWS_EC2_METADATA_DISABLED", "true".into()),
        ("AWS_DEFAULT_REGION", config.aws.region.clone()),
        ("AWS_REGION", config.aws.region.clone()),
        ("PYTHONUNBUFFERED", "1".into()),
        // Temp files (components' downloads, uploads) stay in the run's state directory.
        ("TMPDIR", dir.join("tmp").display().to_string()),
        ("HOME", dir.display().to_string()),
    ]);
    match &instance.identity {
        // The pod's own identity: every AWS call (file storage, components on the default chain)
        // goes through web identity → LangflowRole, with the role's policies enforced.
        Some(identity) => {
            env.insert("AWS_ROLE_ARN", identity.role_arn.clone());
            env.insert(
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                identity.token_file.display().to_string(),
            );
            env.insert(
                "AWS_ROLE_SESSION_NAME",
                format!("langflow-{}", instance.prefix),
            );
            env.insert("AWS_ENDPOINT_URL_STS", identity.sts_url.clone());
        }
        None => {
            env.insert("AWS_ACCESS_KEY_ID", aws::EMULATOR_ACCESS_KEY.into());
            env.insert("AWS_SECRET_ACCESS_KEY", aws::EMULATOR_SECRET_KEY.into());
        }
    }
    let mut binds = vec![(dir.clone(), false)];
    if let Some(components) = components_path(config) {
        binds.push((PathBuf::from(&components), true));
        env.insert("LANGFLOW_COMPONENTS_PATH", components);
    }
    if let Some(token_dir) = instance
        .identity
        .as_ref()
        .and_then(|i| i.token_file.parent())
    {
        binds.push((token_dir.to_path_buf(), true));
    }
    if launcher.fork_server.is_some() {
        // The fork server imported Langflow with these; a worker must match what the import read.
        for (key, value) in super::forkserver::THREAD_POOL_ENV {
            env.insert(key, value.into());
        }
    }
    let args = [
        "-m",
        "uvicorn",
        "--factory",
        "langflow.main:setup_app",
        "--host",
        placement.listen_host(),
        "--port",
        &listen_port.to_string(),
        "--no-access-log",
    ]
    .map(String::from)
    .to_vec();
    let env = env.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    let mut spec = launcher.python_spec(&service_name(instance.prefix), args, env, dir, binds);
    spec.log = config
        .log_dir()
        .join(format!("{}.log", service_name(instance.prefix)));
    spec.port = instance.port;
    Ok(spec)
}

/// `components/` at the repository root, when it exists (custom components for every tenant).
fn components_path(config: &Config) -> Option<String> {
    let dir = config.root.join("components");
    dir.is_dir().then(|| dir.display().to_string())
}

/// Base URL of an instance (with its root path, which depends on the gateway's routing).
pub fn base_url(config: &Config, port: u16, prefix: &str) -> String {
    format!(
        "http://127.0.0.1:{port}{}",
        config.gateway.routing.root_path(prefix)
    )
}

/// Readiness: `GET /health_check` answers `{"status":"ok", "db":"ok", ...}`.
pub async fn probe(port: u16) -> Result<()> {
    let response = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/health_check"))
        .timeout(Duration::from_secs(3))
        .send()
        .await?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() || body["status"] != "ok" {
        bail!("/health_check answered {status}: {body}");
    }
    Ok(())
}

/// Waits until `/health_check` is ok.
pub async fn wait_ready(port: u16, timeout: Duration, alive: impl FnMut() -> bool) -> Result<()> {
    net::wait_until(
        "langflow",
        timeout,
        // Cheap to ask; a re-forked worker is ready seconds after it starts.
        Duration::from_millis(100),
        alive,
        || async move { probe(port).await.map(|_| true) },
    )
    .await
}
