//! The identity service of a run: the harness's OIDC issuer + STS gate (a harness server process,
//! tier 0 with the infrastructure), and the identities it needs in the emulator's IAM.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::{finish_step, Stack};
use crate::credentials::{self, iam_setup, identity_server::KEY_FILE, oidc::SigningKey};
use crate::services::aws;
use harness_core::net;
use harness_core::progress::Step;
use harness_core::state::{Probe, RunState, ServiceRecord};

/// How long the identity server may take to answer `/health`.
const IDENTITY_READY_TIMEOUT: Duration = Duration::from_secs(15);

impl Stack {
    /// Starts the identity server next to the emulator on `aws_port` and provisions the OIDC
    /// provider, roles and developer user in the emulator (written to `identities.json`, 0600).
    pub(super) async fn start_identity(
        &self,
        state: &Arc<Mutex<RunState>>,
        aws_port: u16,
        port: Option<u16>,
    ) -> Result<(String, f64)> {
        let step = Step::start(credentials::IDENTITY_SERVICE);
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let command = self.servers()?;
            let config = &self.config;
            let dir = credentials::identity_dir(config);
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            // Created here, before the server starts, so both agree on it.
            let key = SigningKey::load_or_create(&dir.join(KEY_FILE))?;
            let port = net::resolve_port("identity", port.unwrap_or(config.ports.identity))?;
            let mut args = command.identity_args.clone();
            args.extend([
                "--port".to_string(),
                port.to_string(),
                "--dir".to_string(),
                dir.display().to_string(),
                "--aws-port".to_string(),
                aws_port.to_string(),
                "--region".to_string(),
                config.aws.region.clone(),
            ]);
            // Containers reach it on the run network's gateway address (never 0.0.0.0).
            if let Some(ip) = self.runtime.placement().host_bind {
                args.extend(["--also-bind".to_string(), ip.to_string()]);
            }
            let (process, log) =
                self.start_host_server(credentials::IDENTITY_SERVICE, args, port)?;
            let url = format!("http://127.0.0.1:{port}");
            self.record(
                state,
                credentials::IDENTITY_SERVICE,
                ServiceRecord {
                    process: process.clone(),
                    port,
                    url: key.issuer_url(port),
                    log: log.clone(),
                    probe: Probe::Http {
                        url: format!("{url}/health"),
                        ca_file: None,
                    },
                    tier: 0,
                    restarts: 0,
                    last_exit: None,
                },
            )?;
            step.set_message(format!("waiting for {url}/health"));
            net::wait_until(
                credentials::IDENTITY_SERVICE,
                IDENTITY_READY_TIMEOUT,
                Duration::from_millis(50),
                self.alive_fn(&process),
                || {
                    let url = format!("{url}/health");
                    async move { Ok(reqwest::get(&url).await?.status().is_success()) }
                },
            )
            .await
            .map_err(|e| self.with_log_tail(e, &process, &log))?;
            step.set_message("provisioning the OIDC provider and roles");
            self.provision_identities(aws_port, port).await?;
            Ok((
                credentials::IDENTITY_SERVICE.to_string(),
                t0.elapsed().as_secs_f64(),
            ))
        }
        .await;
        finish_step(step, &result);
        result
    }

    /// Provisions (again: the emulator keeps IAM in memory) the OIDC provider of the identity
    /// server on `identity_port`, the roles and the developer user in the emulator on `aws_port`,
    /// and writes `identities.json` (0600).
    pub(super) async fn provision_identities(
        &self,
        aws_port: u16,
        identity_port: u16,
    ) -> Result<()> {
        let config = &self.config;
        let dir = credentials::identity_dir(config);
        let key = SigningKey::load_or_create(&dir.join(KEY_FILE))?;
        let sdk = aws::sdk_config(aws_port, &config.aws.region).await;
        let identities = iam_setup::provision(
            &sdk,
            &config.root.join("iam"),
            &config.aws.account_id,
            &key.issuer_url(identity_port),
            &config.aws.tenant_bucket,
        )
        .await?;
        harness_core::state::write_json_0600(&dir.join(credentials::IDENTITIES_FILE), &identities)
    }
}
