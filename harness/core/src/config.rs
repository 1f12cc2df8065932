//! Harness configuration: `harness.toml` at the repository root, then environment overrides.
//!
//! Every key has a default, so a missing file is fine; an unreadable or malformed one is an error
//! that names the file and the key.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Name of the configuration file looked up at the repository root.
pub const CONFIG_FILE: &str = "harness.toml";

/// The whole harness configuration, with paths already made absolute.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Repository root the configuration was loaded from (not a file key).
    #[serde(skip)]
    pub root: PathBuf,
    /// Directory holding run state: state file, logs, secrets, Postgres data.
    pub state_dir: PathBuf,
    /// Directory for reusable downloads (Python venvs), shared by every run on the machine.
    pub cache_dir: PathBuf,
    /// YAML file listing the tenants `up` provisions.
    pub tenants_file: PathBuf,
    /// Fixed ports per service; 0 = pick a free one.
    pub ports: Ports,
    /// Postgres settings.
    pub postgres: PostgresConfig,
    /// AWS emulator settings.
    pub aws: AwsConfig,
    /// Langflow settings.
    pub langflow: LangflowConfig,
    /// Gateway (ALB emulation) settings.
    pub gateway: GatewayConfig,
    /// External tools.
    pub tools: ToolsConfig,
    /// Docker images (the docker runtime and `cargo xtask images`).
    pub docker: DockerConfig,
    /// Where services run.
    pub runtime: RuntimeConfig,
    /// `up --deploy`: how the deployed task definitions' images map to local ones.
    pub deploy: DeployConfig,
}

/// `[deploy]`: the deployed stacks' settings that only the local run needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeployConfig {
    /// Image URI (as the task definition names it, e.g. an ECR URI) or its repository (without
    /// tag) → the local image that stands for it (`--image` wins).
    pub images: std::collections::BTreeMap<String, String>,
}

impl DeployConfig {
    /// The local image for `uri`: the entry for the exact URI, else for its repository.
    pub fn local_image(&self, uri: &str) -> Option<String> {
        if let Some(local) = self.images.get(uri) {
            return Some(local.clone());
        }
        let without_digest = uri.split('@').next().unwrap_or(uri);
        let repository = match without_digest.rsplit_once(':') {
            Some((repo, tag)) if !tag.contains('/') => repo,
            _ => without_digest,
        };
        self.images.get(repository).cloned()
    }
}

/// Where services run: `auto` (docker when an engine answers and its images can be had, else
/// native), `native` (host processes) or `docker` (containers).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// `auto`, `native` or `docker` (`LANGFLOW_INFRA_RUNTIME` overrides).
    pub kind: String,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            kind: "auto".into(),
        }
    }
}

/// Gateway settings.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Serve HTTPS with a generated self-signed certificate (as the ALB does when a certificate
    /// is configured) and redirect plain HTTP on `ports.gateway_redirect` to it.
    pub tls: bool,
    /// How tenants are told apart, like the ALB's listener rules: `path` (`/tenant/<prefix>/`,
    /// one shared origin) or `host` (`<prefix>.localhost:<port>`, one origin per tenant).
    /// `LANGFLOW_INFRA_GATEWAY_ROUTING` overrides.
    pub routing: crate::routing::Routing,
}

/// Fixed ports; 0 means a free port is chosen at start.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Ports {
    /// Postgres listen port.
    pub postgres: u16,
    /// AWS emulator port.
    pub aws: u16,
    /// Gateway (ALB emulation) port.
    pub gateway: u16,
    /// Identity server port (OIDC issuer + STS endpoint).
    pub identity: u16,
    /// Plain-HTTP port that redirects to the gateway's HTTPS port (`gateway.tls` only).
    pub gateway_redirect: u16,
    /// The dashboard's port (the harness's own server, 127.0.0.1 only).
    pub dashboard: u16,
}

/// Postgres settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// Directory with `initdb` and `postgres`; empty = search.
    pub bin_dir: String,
    /// Unprivileged OS user that runs postgres when the harness runs as root.
    pub os_user: String,
    /// Database created for Langflow.
    pub database: String,
}

/// AWS emulator settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AwsConfig {
    /// Which emulator: `ministack` (any runtime) or `localstack` (docker runtime only).
    /// `--emulator` / `LANGFLOW_INFRA_AWS_EMULATOR` override; a running stack keeps its own.
    pub emulator: Emulator,
    /// Pinned ministack version (PyPI).
    pub ministack_version: String,
    /// Pinned LocalStack version: the image `localstack/localstack:<version>`, or the local build
    /// from the `localstack-core` package of that version.
    pub localstack_version: String,
    /// Region every client uses.
    pub region: String,
    /// Account id the emulator reports.
    pub account_id: String,
    /// Shared S3 bucket for tenant files (created at `up`).
    pub tenant_bucket: String,
    /// Run the emulator with IAM enforcement (`AUTH=true`): SigV4 signatures verified, identity
    /// and trust policies evaluated, as AWS does. The harness's own admin calls use the
    /// emulator's root key, which is always allowed.
    pub enforce_iam: bool,
}

/// The AWS emulator a run uses (`[aws] emulator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Emulator {
    /// ministack (PyPI, MIT): IAM enforcement with `AUTH=true`, Bedrock, CloudFormation for every
    /// resource type of `aws/` (the default).
    #[default]
    Ministack,
    /// LocalStack (community edition), in a container.
    Localstack,
}

impl Emulator {
    /// Its name as configured (`ministack`, `localstack`).
    pub fn name(self) -> &'static str {
        match self {
            Emulator::Ministack => "ministack",
            Emulator::Localstack => "localstack",
        }
    }
}

impl std::fmt::Display for Emulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Emulator {
    type Err = anyhow::Error;
    fn from_str(value: &str) -> Result<Self> {
        match value {
            "ministack" => Ok(Self::Ministack),
            "localstack" => Ok(Self::Localstack),
            other => {
                anyhow::bail!("unknown AWS emulator {other:?}; use \"ministack\" or \"localstack\"")
            }
        }
    }
}

/// Langflow settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LangflowConfig {
    /// Pinned `langflow-base` version (PyPI).
    pub version: String,
    /// Login attempts per minute per client IP (`LANGFLOW_RATE_LIMIT_PER_MINUTE`; Langflow's
    /// default is 5). The gateway is a trusted proxy, so the client IP is its X-Forwarded-For.
    pub login_rate_limit_per_minute: u32,
    /// How tenant instances start natively: `fork` (one fork server imports Langflow once and
    /// forks a worker per tenant; falls back to `spawn` by itself where forking is unsafe) or
    /// `spawn` (one fresh process per tenant). `LANGFLOW_INFRA_LANGFLOW_START` overrides.
    pub start: StartMode,
}

/// How tenant instances are started (`[langflow] start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum StartMode {
    /// Fork each tenant's worker from one pre-imported Langflow (the default).
    #[default]
    Fork,
    /// Start each tenant as its own Python process.
    Spawn,
}

impl std::str::FromStr for StartMode {
    type Err = anyhow::Error;
    fn from_str(value: &str) -> Result<Self> {
        match value {
            "fork" => Ok(Self::Fork),
            "spawn" => Ok(Self::Spawn),
            other => anyhow::bail!("unknown start mode {other:?}; use \"fork\" or \"spawn\""),
        }
    }
}

/// External tool settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    /// Python interpreter used to create venvs.
    pub python: String,
    /// Pinned cfn-lint version (PyPI).
    pub cfn_lint_version: String,
    /// Pinned version of `cdklabs-cdk-validator-cfnguard` (PyPI), whose AWS Control Tower
    /// proactive-control Guard rules `validate` evaluates; empty = off.
    pub control_tower_rules_version: String,
    /// Pinned checkov version (PyPI), an optional linter of `validate`; empty = off.
    pub checkov_version: String,
}

/// Docker settings: which images run, and how `cargo xtask images build` makes local ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The public image per service, used when present locally or pullable.
    pub images: DockerImages,
    /// Debian mirror for bootstrapping the base image; empty = the host's apt sources (a
    /// plain-http `bookworm` entry), else http://deb.debian.org/debian.
    pub debian_mirror: String,
    /// CA bundle passed into image builds (for pip/uv behind a TLS-intercepting proxy); empty =
    /// PIP_CERT / SSL_CERT_FILE / REQUESTS_CA_BUNDLE, /etc/pip.conf's `cert`, then
    /// /etc/ssl/certs/ca-certificates.crt.
    pub ca_bundle: String,
}

/// The public images users would pick, per service. An empty value means the default, which
/// follows the pinned versions (`[aws] ministack_version`, `[langflow] version`): after
/// [`Config::load`] every field is filled in; elsewhere use [`DockerImages::with_defaults`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerImages {
    /// Base of the locally built images (`debian:bookworm-slim`).
    pub base: String,
    /// Postgres (`postgres:15`).
    pub postgres: String,
    /// The AWS emulator (`ministackorg/ministack:<aws.ministack_version>`).
    pub aws: String,
    /// LocalStack, when `[aws] emulator = "localstack"` (`localstack/localstack:<aws.localstack_version>`;
    /// images newer than 4.14.0 need `LOCALSTACK_AUTH_TOKEN` in the environment).
    pub localstack: String,
    /// Langflow (`langflowai/langflow:<langflow.version>`).
    pub langflow: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from("."),
            state_dir: PathBuf::from(".harness"),
            cache_dir: default_cache_dir(),
            tenants_file: PathBuf::from("fixtures/tenants.yaml"),
            ports: Ports::default(),
            postgres: PostgresConfig::default(),
            aws: AwsConfig::default(),
            langflow: LangflowConfig::default(),
            gateway: GatewayConfig::default(),
            tools: ToolsConfig::default(),
            docker: DockerConfig::default(),
            runtime: RuntimeConfig::default(),
            deploy: DeployConfig::default(),
        }
    }
}

impl Default for PostgresConfig {
    fn default() -> Self {
        Self {
            bin_dir: String::new(),
            os_user: "postgres".into(),
            database: "langflow".into(),
        }
    }
}

impl Default for AwsConfig {
    fn default() -> Self {
        Self {
            emulator: Emulator::Ministack,
            ministack_version: "1.5.33".into(),
            localstack_version: "4.14.0".into(),
            region: "us-east-1".into(),
            account_id: "000000000000".into(),
            tenant_bucket: "langflow-infra-tenant-files".into(),
            enforce_iam: true,
        }
    }
}

impl Default for LangflowConfig {
    fn default() -> Self {
        Self {
            version: "1.13.0".into(),
            login_rate_limit_per_minute: 5,
            start: StartMode::Fork,
        }
    }
}

impl Default for ToolsConfig {
    fn default() -> Self {
        Self {
            python: "python3".into(),
            cfn_lint_version: "1.58.0".into(),
            control_tower_rules_version: "0.0.62".into(),
            checkov_version: "3.3.30".into(),
        }
    }
}

impl DockerImages {
    /// These images with every empty value replaced by its default, which follows the pinned
    /// versions.
    pub fn with_defaults(&self, aws: &AwsConfig, langflow: &LangflowConfig) -> DockerImages {
        let pick = |value: &str, default: String| {
            if value.trim().is_empty() {
                default
            } else {
                value.to_string()
            }
        };
        DockerImages {
            base: pick(&self.base, "debian:bookworm-slim".into()),
            postgres: pick(&self.postgres, "postgres:15".into()),
            aws: pick(
                &self.aws,
                format!("ministackorg/ministack:{}", aws.ministack_version),
            ),
            localstack: pick(
                &self.localstack,
                format!("localstack/localstack:{}", aws.localstack_version),
            ),
            langflow: pick(
                &self.langflow,
                format!("langflowai/langflow:{}", langflow.version),
            ),
        }
    }
}

fn default_cache_dir() -> PathBuf {
    if let Some(xdg) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return PathBuf::from(xdg).join("langflow-infra");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".cache").join("langflow-infra")
}

impl Config {
    /// Loads `harness.toml` from `root` (if present), applies environment overrides and makes
    /// relative paths absolute against `root`.
    pub fn load(root: &Path) -> Result<Self> {
        let file = root.join(CONFIG_FILE);
        let mut config = if file.exists() {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            toml::from_str::<Config>(&text).map_err(|e| {
                anyhow::anyhow!(
                    "{} is not valid harness configuration: {}",
                    file.display(),
                    e.message()
                )
            })?
        } else {
            Config::default()
        };
        config.apply_env_overrides()?;
        config.docker.images = config
            .docker
            .images
            .with_defaults(&config.aws, &config.langflow);
        config.make_absolute(root);
        config.root = root.to_path_buf();
        Ok(config)
    }

    /// A configuration for an isolated run (tests, e2e): defaults plus environment overrides,
    /// with its own state directory and free ports.
    pub fn isolated(root: &Path, state_dir: &Path) -> Result<Self> {
        let mut config = Self::load(root)?;
        config.state_dir = state_dir.to_path_buf();
        config.ports = Ports::default();
        Ok(config)
    }

    /// An isolated configuration under `dir` (state in `dir/state`) whose tenants file
    /// `dir/tenants.yaml` is written with `tenants_yaml`.
    pub fn isolated_with_tenants(root: &Path, dir: &Path, tenants_yaml: &str) -> Result<Self> {
        let mut config = Self::isolated(root, &dir.join("state"))?;
        config.tenants_file = dir.join("tenants.yaml");
        std::fs::write(&config.tenants_file, tenants_yaml)
            .with_context(|| format!("cannot write {}", config.tenants_file.display()))?;
        Ok(config)
    }

    fn apply_env_overrides(&mut self) -> Result<()> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        if let Some(v) = var("LANGFLOW_INFRA_STATE_DIR") {
            self.state_dir = v.into();
        }
        if let Some(v) = var("LANGFLOW_INFRA_TENANTS_FILE") {
            self.tenants_file = v.into();
        }
        if let Some(v) = var("LANGFLOW_INFRA_CACHE_DIR") {
            self.cache_dir = v.into();
        }
        if let Some(v) = var("LANGFLOW_INFRA_PG_BIN_DIR") {
            self.postgres.bin_dir = v;
        }
        if let Some(v) = var("LANGFLOW_INFRA_PYTHON") {
            self.tools.python = v;
        }
        for (name, slot) in [
            (
                "LANGFLOW_INFRA_IMAGE_POSTGRES",
                &mut self.docker.images.postgres,
            ),
            ("LANGFLOW_INFRA_IMAGE_AWS", &mut self.docker.images.aws),
            (
                "LANGFLOW_INFRA_IMAGE_LOCALSTACK",
                &mut self.docker.images.localstack,
            ),
            (
                "LANGFLOW_INFRA_IMAGE_LANGFLOW",
                &mut self.docker.images.langflow,
            ),
        ] {
            if let Some(v) = var(name) {
                *slot = v;
            }
        }
        if let Some(v) = var("LANGFLOW_INFRA_LANGFLOW_START") {
            self.langflow.start = v
                .parse()
                .with_context(|| format!("LANGFLOW_INFRA_LANGFLOW_START={v:?}"))?;
        }
        if let Some(v) = var("LANGFLOW_INFRA_AWS_EMULATOR") {
            self.aws.emulator = v
                .parse()
                .context("LANGFLOW_INFRA_AWS_EMULATOR is not an emulator")?;
        }
        if let Some(v) = var("LANGFLOW_INFRA_RUNTIME") {
            self.runtime.kind = v;
        }
        if let Some(v) = var("LANGFLOW_INFRA_GATEWAY_ROUTING") {
            self.gateway.routing = v
                .parse()
                .with_context(|| format!("LANGFLOW_INFRA_GATEWAY_ROUTING={v:?}"))?;
        }
        for (name, slot) in [
            ("LANGFLOW_INFRA_PORT_POSTGRES", &mut self.ports.postgres),
            ("LANGFLOW_INFRA_PORT_AWS", &mut self.ports.aws),
            ("LANGFLOW_INFRA_PORT_GATEWAY", &mut self.ports.gateway),
            ("LANGFLOW_INFRA_PORT_IDENTITY", &mut self.ports.identity),
            (
                "LANGFLOW_INFRA_PORT_GATEWAY_REDIRECT",
                &mut self.ports.gateway_redirect,
            ),
            ("LANGFLOW_INFRA_PORT_DASHBOARD", &mut self.ports.dashboard),
        ] {
            if let Some(v) = var(name) {
                *slot = match v.parse() {
                    Ok(port) => port,
                    Err(_) => {
                        bail!("{name}={v:?} is not a port number; use 0..=65535 (0 = free port)")
                    }
                };
            }
        }
        Ok(())
    }

    fn make_absolute(&mut self, root: &Path) {
        for path in [
            &mut self.state_dir,
            &mut self.cache_dir,
            &mut self.tenants_file,
        ] {
            if path.is_relative() {
                *path = root.join(&*path);
            }
        }
    }

    /// Directory of per-service log files.
    pub fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }

    /// Directory of managed Python venvs.
    pub fn venv_dir(&self) -> PathBuf {
        self.cache_dir.join("venvs")
    }
}

/// Finds the repository root: `LANGFLOW_INFRA_ROOT`, else the nearest ancestor of the current
/// directory holding `harness.toml`, else `fallback` (the workspace the CLI was built from).
pub fn find_root(fallback: &Path) -> PathBuf {
    if let Some(root) = std::env::var_os("LANGFLOW_INFRA_ROOT").filter(|v| !v.is_empty()) {
        return PathBuf::from(root);
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if dir.join(CONFIG_FILE).is_file() {
                return dir.to_path_buf();
            }
        }
    }
    fallback.to_path_buf()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_gives_defaults_with_absolute_paths() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert!(config.state_dir.is_absolute());
        assert_eq!(config.postgres.database, "langflow");
        assert_eq!(config.ports.postgres, 0);
    }

    #[test]
    fn image_defaults_follow_pinned_versions() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(CONFIG_FILE),
            "[aws]\nministack_version = \"9.9.9\"\n[docker.images]\npostgres = \"postgres:16\"\n",
        )
        .unwrap();
        let config = Config::load(dir.path()).unwrap();
        assert_eq!(config.docker.images.aws, "ministackorg/ministack:9.9.9");
        assert_eq!(config.docker.images.postgres, "postgres:16");
        assert_eq!(config.docker.images.langflow, "langflowai/langflow:1.13.0");
        assert_eq!(config.docker.images.base, "debian:bookworm-slim");
    }

    #[test]
    fn unknown_key_is_rejected_with_file_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(CONFIG_FILE), "[ports]\npostgress = 5\n").unwrap();
        let err = Config::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("harness.toml"), "{err}");
        assert!(err.contains("postgress"), "{err}");
    }

    #[test]
    fn deployed_images_map_by_uri_or_repository() {
        let deploy = DeployConfig {
            images: [
                (
                    "123.dkr.ecr.us-east-1.amazonaws.com/lf".to_string(),
                    "local/lf:1".to_string(),
                ),
                (
                    "registry:5000/exact:2".to_string(),
                    "local/exact:2".to_string(),
                ),
            ]
            .into(),
        };
        assert_eq!(
            deploy
                .local_image("123.dkr.ecr.us-east-1.amazonaws.com/lf:1.13.0")
                .as_deref(),
            Some("local/lf:1")
        );
        assert_eq!(
            deploy
                .local_image("123.dkr.ecr.us-east-1.amazonaws.com/lf@sha256:ab")
                .as_deref(),
            Some("local/lf:1")
        );
        assert_eq!(
            deploy.local_image("registry:5000/exact:2").as_deref(),
            Some("local/exact:2")
        );
        assert_eq!(deploy.local_image("registry:5000/exact:3"), None);
        assert_eq!(deploy.local_image("other/image:1"), None);
    }
}
