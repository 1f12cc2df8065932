//! The AWS emulator: ministack (PyPI, pinned) in a managed venv, one process on a 127.0.0.1 port.
//! It serves S3, STS, IAM, Secrets Manager, CloudFormation and Bedrock on one endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::net;
use crate::runtime::{ProcessSpec, StopSignal};
use crate::venv::Venv;

/// The emulator's root access key: always allowed, also under IAM enforcement (AUTH=true).
pub const EMULATOR_ACCESS_KEY: &str = "test";
/// Secret key paired with [`EMULATOR_ACCESS_KEY`].
pub const EMULATOR_SECRET_KEY: &str = "test";

/// The managed venv holding the pinned emulator.
pub fn venv(config: &Config) -> Result<Venv> {
    if config.aws.emulator != "ministack" {
        bail!(
            "aws.emulator = {:?} is not supported by the native runtime; use \"ministack\"",
            config.aws.emulator
        );
    }
    let version = &config.aws.ministack_version;
    Ok(Venv::new(
        &config.venv_dir(),
        &format!("ministack-{version}"),
        &[&format!("ministack=={version}"), "boto3"],
    ))
}

/// The emulator process on `port`.
pub fn process_spec(config: &Config, venv: &Venv, port: u16) -> ProcessSpec {
    let work = config.state_dir.join("aws");
    let env = BTreeMap::from([
        ("BIND_HOST".to_string(), net::LOOPBACK.to_string()),
        ("GATEWAY_PORT".to_string(), port.to_string()),
        ("MINISTACK_REGION".to_string(), config.aws.region.clone()),
        (
            "MINISTACK_ACCOUNT_ID".to_string(),
            config.aws.account_id.clone(),
        ),
        // Its pid file and any data it writes stay inside this run's state directory.
        ("TMPDIR".to_string(), work.display().to_string()),
        (
            "S3_DATA_DIR".to_string(),
            work.join("s3").display().to_string(),
        ),
        ("LOG_LEVEL".to_string(), "INFO".to_string()),
        (
            "AUTH".to_string(),
            if config.aws.enforce_iam {
                "true"
            } else {
                "false"
            }
            .to_string(),
        ),
    ]);
    ProcessSpec {
        name: "aws".into(),
        program: venv.bin("ministack"),
        args: Vec::new(),
        env,
        cwd: work,
        log: config.log_dir().join("aws.log"),
        run_as: None,
        stop_signal: StopSignal::Term,
    }
}

/// Endpoint URL of an emulator on `port`.
pub fn endpoint(port: u16) -> String {
    format!("http://127.0.0.1:{port}")
}

/// Health probe: `GET /_ministack/health` answers 200.
pub async fn probe(port: u16) -> Result<()> {
    let response = reqwest::Client::new()
        .get(format!("{}/_ministack/health", endpoint(port)))
        .timeout(Duration::from_secs(2))
        .send()
        .await?;
    if !response.status().is_success() {
        bail!("health endpoint answered {}", response.status());
    }
    Ok(())
}

/// Waits until the emulator's health endpoint answers.
pub async fn wait_ready(port: u16, timeout: Duration, alive: impl FnMut() -> bool) -> Result<()> {
    net::wait_until(
        "aws emulator",
        timeout,
        Duration::from_millis(100),
        alive,
        || async move { probe(port).await.map(|_| true) },
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
