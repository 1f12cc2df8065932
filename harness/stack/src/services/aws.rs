//! The AWS emulator: ministack (PyPI, pinned) in a managed venv, one process on a 127.0.0.1 port,
//! or in a container; or LocalStack (`[aws] emulator = "localstack"`) in a container. Either
//! serves S3, STS, IAM, Secrets Manager and CloudFormation on one endpoint; what each actually
//! enforces or emulates is probed by [`super::emulator_caps`].

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use harness_core::config::{Config, Emulator};
use harness_core::net;
use harness_core::venv::Venv;
use harness_runtime::runtime::{ContainerSpec, ProcessSpec, StopSignal};

/// The emulator's root access key: always allowed, also under IAM enforcement (AUTH=true).
pub const EMULATOR_ACCESS_KEY: &str = "test";
/// Secret key paired with [`EMULATOR_ACCESS_KEY`].
pub const EMULATOR_SECRET_KEY: &str = "test";

/// The managed venv holding the pinned ministack and boto3 (the native emulator, and the boto3
/// the Python credential scenarios and the capability probe run with, whichever emulator runs).
pub fn venv(config: &Config) -> Result<Venv> {
    let version = &config.aws.ministack_version;
    Ok(Venv::new(
        &config.venv_dir(),
        &format!("ministack-{version}"),
        &[&format!("ministack=={version}"), "boto3"],
    ))
}

/// Directory holding the emulator's data that must outlive the process like Postgres data does:
/// the S3 objects of the tenant bucket (kept across `down`, removed by `down --volumes`).
pub fn data_dir(config: &Config) -> std::path::PathBuf {
    config.state_dir.join("aws-data")
}

/// The emulator of a run placed by `placement` on host port `port`: natively from the managed
/// venv (installed first when missing), in containers from the emulator image.
pub async fn server_spec(
    config: &Config,
    placement: &harness_runtime::runtime::Placement,
    port: u16,
) -> Result<ProcessSpec> {
    if placement.containers {
        return Ok(container_spec(config, port));
    }
    check_runtime(config, placement.containers)?;
    let venv = venv(config)?;
    {
        let (venv, python) = (venv.clone(), config.tools.python.clone());
        tokio::task::spawn_blocking(move || venv.ensure(&python)).await??;
    }
    let spec = process_spec(config, &venv, port);
    std::fs::create_dir_all(&spec.cwd)?;
    harness_core::state::create_private_dir(&data_dir(config))?;
    Ok(spec)
}

/// Fails (one line, with the fix) when the configured emulator cannot run where the services of
/// the run go: LocalStack runs in a container only. `up` checks this before it starts anything.
pub fn check_runtime(config: &Config, containers: bool) -> Result<()> {
    if config.aws.emulator == Emulator::Localstack && !containers {
        bail!(
            "aws.emulator = \"localstack\" runs in a container only: add --runtime docker (or use --emulator ministack natively)"
        );
    }
    // LocalStack takes the account from the access key (`test` → 000000000000), not from a setting.
    if config.aws.emulator == Emulator::Localstack && config.aws.account_id != LOCALSTACK_ACCOUNT {
        bail!(
            "aws.account_id = {:?} cannot be used with LocalStack, whose account is {LOCALSTACK_ACCOUNT} for the harness's keys: set [aws] account_id = \"{LOCALSTACK_ACCOUNT}\" or use --emulator ministack",
            config.aws.account_id
        );
    }
    Ok(())
}

/// The account LocalStack serves for the harness's root key `test`.
const LOCALSTACK_ACCOUNT: &str = "000000000000";

/// The emulator's settings, on the host or in a container: listen address and port, region and
/// account, S3 objects written through to `s3_dir`, IAM enforcement as configured.
fn emulator_env(config: &Config, bind: &str, port: u16, s3_dir: &str) -> BTreeMap<String, String> {
    let auth = if config.aws.enforce_iam {
        "true"
    } else {
        "false"
    };
    [
        ("BIND_HOST", bind.to_string()),
        ("GATEWAY_PORT", port.to_string()),
        ("MINISTACK_REGION", config.aws.region.clone()),
        ("MINISTACK_ACCOUNT_ID", config.aws.account_id.clone()),
        ("S3_PERSIST", "1".to_string()),
        ("S3_DATA_DIR", s3_dir.to_string()),
        ("LOG_LEVEL", "INFO".to_string()),
        ("AUTH", auth.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Port the emulator listens on inside its container.
pub const CONTAINER_PORT: u16 = 4566;

/// The emulator process on `port`. S3 objects are written through to [`data_dir`] as they are
/// stored (`S3_PERSIST=1`) and loaded back at start, so tenant files survive `down`/`up` and a
/// crash of the emulator. Its other state (IAM, OIDC provider, secrets) lives in memory and is
/// re-provisioned by the harness at every start of the emulator.
pub fn process_spec(config: &Config, venv: &Venv, port: u16) -> ProcessSpec {
    let work = config.state_dir.join("aws");
    let mut env = emulator_env(
        config,
        &net::LOOPBACK.to_string(),
        port,
        &data_dir(config).join("s3").display().to_string(),
    );
    // Its pid file and any data it writes stay inside this run's state directory.
    env.insert("TMPDIR".to_string(), work.display().to_string());
    ProcessSpec {
        name: "aws".into(),
        program: venv.bin("ministack"),
        args: Vec::new(),
        env,
        cwd: work,
        log: config.log_dir().join("aws.log"),
        run_as: None,
        stop_signal: StopSignal::Term,
        port,
        container: None,
        fork_server: None,
    }
}

/// The configured emulator in a container, published on `port` (0 = any) of 127.0.0.1.
pub fn container_spec(config: &Config, port: u16) -> ProcessSpec {
    let token = std::env::var(LOCALSTACK_AUTH_TOKEN)
        .ok()
        .filter(|t| !t.is_empty());
    container_spec_with_token(config, port, token)
}

/// [`container_spec`] with the LocalStack auth token given (`None`: none passed) instead of read
/// from the environment: what a rendered file uses, so no token value can end up in it.
pub fn container_spec_with_token(config: &Config, port: u16, token: Option<String>) -> ProcessSpec {
    match config.aws.emulator {
        Emulator::Ministack => ministack_container_spec(config, port),
        Emulator::Localstack => localstack_container_spec(config, port, token),
    }
}

/// ministack in a container: the same settings as natively, its S3 objects in the run's
/// `awsdata` volume (kept across `down`, removed by `down --volumes`).
fn ministack_container_spec(config: &Config, port: u16) -> ProcessSpec {
    let env = emulator_env(config, "0.0.0.0", CONTAINER_PORT, "/data/s3");
    emulator_container(config, port, "aws", env, "awsdata", "/data")
}

/// The emulator service `aws` as a container of `image` (a service image name), published on
/// `port` of 127.0.0.1, the run's volume `volume` at `data_dir`.
fn emulator_container(
    config: &Config,
    port: u16,
    image: &str,
    env: BTreeMap<String, String>,
    volume: &str,
    data_dir: &str,
) -> ProcessSpec {
    ProcessSpec {
        name: "aws".into(),
        program: image.into(),
        args: Vec::new(),
        env: BTreeMap::new(),
        cwd: config.state_dir.clone(),
        log: config.log_dir().join("aws.log"),
        run_as: None,
        stop_signal: StopSignal::Term,
        port,
        container: Some(ContainerSpec {
            image: image.into(),
            command: Vec::new(),
            env,
            container_port: CONTAINER_PORT,
            binds: Vec::new(),
            volumes: vec![(volume.into(), data_dir.into())],
            user: None,
        }),
        fork_server: None,
    }
}

/// The user's LocalStack auth token, passed to the container when set (images newer than 4.14.0
/// need one); read from the harness's environment at start, never written to any file.
pub const LOCALSTACK_AUTH_TOKEN: &str = "LOCALSTACK_AUTH_TOKEN";

/// LocalStack (community) in a container on its usual port 4566: its gateway on every interface
/// of the container (published on 127.0.0.1 only), and everything that would reach outside the
/// run switched off (its DNS server, the test-certificate download, usage analytics). The
/// community edition keeps no state across a restart (`PERSISTENCE` is a Pro feature): tenant
/// files do not survive `down`/`up` or an emulator restart; the harness re-provisions the bucket,
/// IAM and secrets at every start.
fn localstack_container_spec(config: &Config, port: u16, token: Option<String>) -> ProcessSpec {
    let mut env: BTreeMap<String, String> = [
        ("GATEWAY_LISTEN", format!("0.0.0.0:{CONTAINER_PORT}")),
        ("DNS_ADDRESS", "0".to_string()),
        ("SKIP_SSL_CERT_DOWNLOAD", "1".to_string()),
        ("DISABLE_EVENTS", "1".to_string()),
        ("DEFAULT_REGION", config.aws.region.clone()),
        ("AWS_DEFAULT_REGION", config.aws.region.clone()),
        ("LS_LOG", "info".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if let Some(token) = token {
        env.insert(LOCALSTACK_AUTH_TOKEN.to_string(), token);
    }
    // Its own volume: a run switched between emulators never mounts one's data in the other.
    emulator_container(
        config,
        port,
        "localstack",
        env,
        "localstackdata",
        "/var/lib/localstack",
    )
}

/// Path of the emulator's health endpoint.
pub fn health_path(emulator: Emulator) -> &'static str {
    match emulator {
        Emulator::Ministack => "/_ministack/health",
        Emulator::Localstack => "/_localstack/health",
    }
}

/// Endpoint URL of an emulator on `port`.
pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Health probe: the emulator's health endpoint answers 200; LocalStack's must also list the
/// services the harness provisions (S3, IAM, STS, Secrets Manager) as available or running.
pub async fn probe(port: u16, emulator: Emulator) -> Result<()> {
    let response = reqwest::Client::new()
        .get(format!("{}{}", endpoint(port), health_path(emulator)))
        .timeout(Duration::from_secs(2))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("health endpoint answered {}", response.status());
    }
    if emulator == Emulator::Localstack {
        let health: serde_json::Value = response.json().await?;
        for service in ["s3", "iam", "sts", "secretsmanager"] {
            let state = health["services"][service].as_str().unwrap_or("missing");
            if !matches!(state, "available" | "running") {
                bail!("LocalStack reports {service} as {state}");
            }
        }
    }
    Ok(())
}

/// Waits until the emulator's health endpoint answers.
pub async fn wait_ready(
    port: u16,
    emulator: Emulator,
    timeout: Duration,
    alive: impl FnMut() -> bool,
) -> Result<()> {
    net::wait_until(
        "aws emulator",
        timeout,
        Duration::from_millis(100),
        alive,
        || async move { probe(port, emulator).await.map(|_| true) },
    )
    .await
}

/// SDK configuration pointing at the emulator with its static admin credentials.
pub async fn sdk_config(port: u16, region: &str) -> aws_config::SdkConfig {
    let credentials = aws_sdk_s3::config::Credentials::new(
        EMULATOR_ACCESS_KEY,
        EMULATOR_SECRET_KEY,
        None,
        None,
        "langflow-infra-emulator",
    );
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint(port))
        .region(aws_config::Region::new(region.to_string()))
        .credentials_provider(credentials)
        .load()
        .await
}

/// An S3 client for the emulator (path-style addressing, as on 127.0.0.1 there is no DNS).
pub async fn s3_client(port: u16, region: &str) -> aws_sdk_s3::Client {
    let shared = sdk_config(port, region).await;
    let config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Creates `bucket` unless it exists.
pub async fn ensure_bucket(port: u16, region: &str, bucket: &str) -> Result<()> {
    let s3 = s3_client(port, region).await;
    if s3.head_bucket().bucket(bucket).send().await.is_ok() {
        return Ok(());
    }
    s3.create_bucket()
        .bucket(bucket)
        .send()
        .await
        .map_err(aws_sdk_s3::Error::from)
        .with_context(|| format!("cannot create bucket {bucket} in the emulator"))?;
    Ok(())
}
