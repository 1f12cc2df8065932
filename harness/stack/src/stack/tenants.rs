//! The tenant tiers of a run: provisioning the tenants file's tenants and users, the gateway
//! (tier 1) and one Langflow instance per tenant schema (tier 2).
//!
//! Invariants:
//! - the gateway's routes file always names exactly the instances recorded in `state.json`;
//! - every tenant schema in the database gets an instance, whether it came from the tenants file
//!   or from `cargo xtask tenant schema-add`;
//! - generated passwords are returned to the caller once and never written anywhere.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;

use super::{finish_step, Stack};
use crate::gateway::{Routes, Upstream};
use crate::services::langflow;
use crate::tenancy::fixture::TenantsFixture;
use crate::tenancy::{IssuedCredentials, Tenancy, TenantSchema, OPERATOR_USERNAME};
use harness_core::net;
use harness_core::progress::Step;
use harness_core::state::{Probe, RunState, ServiceRecord};

/// Service name of the gateway in the state file.
pub const GATEWAY_SERVICE: &str = "gateway";
/// Stop tier of the gateway.
pub const GATEWAY_TIER: u8 = 1;
/// Stop tier of tenant instances.
pub const INSTANCE_TIER: u8 = 2;
/// How long the gateway may take to answer `/health`.
const GATEWAY_READY_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a Langflow instance may take to answer `/health_check` (the first start of a fresh
/// venv compiles ~1 GB of Python; two instances share two cores).
pub const INSTANCE_READY_TIMEOUT: Duration = Duration::from_secs(300);

/// How to start the harness's own server processes: one program, with leading arguments for the
/// gateway (then `--port P --routes FILE`), for the identity server (then `--port P --dir D
/// --aws-port A --region R`), the supervisor and the dashboard (then `--input FILE`).
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct GatewayCommand {
    /// Executable.
    pub program: PathBuf,
    /// Gateway: arguments before `--port`.
    pub args: Vec<String>,
    /// Identity server: arguments before `--port`.
    pub identity_args: Vec<String>,
    /// Supervisor: arguments before `--input FILE`.
    pub supervisor_args: Vec<String>,
    /// Dashboard: arguments before `--input FILE`.
    #[serde(default)]
    pub dashboard_args: Vec<String>,
}

impl GatewayCommand {
    /// The standalone `langflow-infra-gateway` binary at `program`.
    pub fn standalone(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            identity_args: vec!["identity".into()],
            supervisor_args: vec!["supervise".into()],
            dashboard_args: vec!["dashboard".into()],
        }
    }

    /// The `cargo xtask` executable at `program`, which runs the same servers as its hidden
    /// `gateway-serve`, `identity-serve` and `supervise` commands.
    pub fn cli(program: impl Into<PathBuf>) -> Self {
        Self {
            program: program.into(),
            args: vec!["gateway-serve".into()],
            identity_args: vec!["identity-serve".into()],
            supervisor_args: vec!["supervise".into()],
            dashboard_args: vec!["dashboard-serve".into()],
        }
    }
}

/// Where one tenant is reached.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TenantEndpoint {
    /// Tenant prefix.
    pub prefix: String,
    /// Schema id.
    pub schema: String,
    /// URL through the gateway (`http://127.0.0.1:<gw>/tenant/<prefix>/`, or
    /// `http://<prefix>.localhost:<gw>/` with host routing).
    pub url: String,
    /// Port of the tenant's own instance (direct, bypassing the gateway).
    pub instance_port: u16,
    /// Its Langflow users (the harness's operator user left out).
    pub users: Vec<String>,
}

/// What provisioning the tenants file did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Provisioned {
    /// Schemas created by this `up`.
    pub created: Vec<TenantSchema>,
    /// Users created by this `up`, with their passwords (shown once).
    pub credentials: Vec<IssuedCredentials>,
    /// Schemas of `schema-add`s cut off half-way (an interrupted `up`) that this `up` removed;
    /// they had never been listed or served.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_unfinished: Vec<String>,
}

impl Stack {
    /// The gateway's routes file.
    pub fn routes_path(&self) -> PathBuf {
        self.config.state_dir.join("gateway").join("routes.json")
    }

    /// tenantmgr over this run's Postgres, for use while the state lock is held.
    pub(super) fn tenancy_in_run(&self, state: &RunState) -> Result<Tenancy> {
        let postgres = state
            .services
            .get("postgres")
            .ok_or_else(|| anyhow!("Postgres is not part of the run"))?;
        let password = self
            .files
            .read_secrets()?
            .postgres_password
            .context("no Postgres password in secrets.json")?;
        Ok(
            Tenancy::new(&self.config, &self.files, postgres.port, &password)
                .with_runtime(self.runtime.clone())
                .holding_stack_lock(),
        )
    }

    /// Creates the tenants file's missing tenants (schemas migrated in parallel).
    pub(super) async fn provision_tenants(
        &self,
        state: &Arc<Mutex<RunState>>,
    ) -> Result<Provisioned> {
        let fixture = TenantsFixture::load(&self.config.tenants_file)?;
        let snapshot = state.lock().expect("state lock").clone();
        let tenancy = self.tenancy_in_run(&snapshot)?;
        // A schema-add cut off half-way (an interrupted `up`) is no tenant: remove it before
        // starting new ones (up holds the state lock: none is in progress).
        let removed_unfinished = tenancy.remove_unfinished().await?;
        let existing = tenancy.schema_list().await?;
        let missing: Vec<&str> = fixture
            .tenants
            .iter()
            .map(|t| t.prefix.as_str())
            .filter(|p| !existing.iter().any(|s| s.prefix == *p))
            .collect();
        if !missing.is_empty() {
            // Installs the venv once up front (natively) rather than in each parallel migration.
            langflow::Launcher::prepare(&self.config, self.runtime.placement()).await?;
        }
        let created =
            futures::future::try_join_all(missing.iter().map(|p| tenancy.schema_add(p))).await?;
        Ok(Provisioned {
            created,
            credentials: Vec::new(),
            removed_unfinished,
        })
    }

    /// Creates the tenants file's users that do not exist yet. Runs last in `up`, once every
    /// instance is ready, so a failed `up` never swallows a generated password.
    pub(super) async fn provision_users(
        &self,
        state: &Arc<Mutex<RunState>>,
    ) -> Result<Vec<IssuedCredentials>> {
        let fixture = TenantsFixture::load(&self.config.tenants_file)?;
        let snapshot = state.lock().expect("state lock").clone();
        let tenancy = self.tenancy_in_run(&snapshot)?;
        let schemas = tenancy.schema_list().await?;
        let mut credentials = Vec::new();
        for tenant in &fixture.tenants {
            let schema = &schemas
                .iter()
                .find(|s| s.prefix == tenant.prefix)
                .context("tenant vanished while provisioning")?
                .schema;
            for user in &tenant.users {
                if tenancy.user_exists(schema, &user.username).await? {
                    continue;
                }
                credentials.push(
                    tenancy
                        .user_add(
                            schema,
                            &user.username,
                            user.password.as_deref(),
                            user.superuser,
                        )
                        .await?,
                );
            }
        }
        Ok(credentials)
    }

    /// Starts the gateway and one instance per tenant schema, all ready when this returns.
    pub(super) async fn start_tenant_tiers(
        &self,
        state: &Arc<Mutex<RunState>>,
    ) -> Result<Vec<(String, f64)>> {
        let snapshot = state.lock().expect("state lock").clone();
        let tenancy = self.tenancy_in_run(&snapshot)?;
        let schemas = tenancy.schema_list().await?;
        let gateway_port = net::resolve_port("gateway", self.config.ports.gateway)?;
        let placement = self.runtime.placement();
        // Natively the ports go into the instances' arguments, so they are chosen now (all at
        // once: no repeats); in containers the engine picks them and `start` reads them back.
        let instance_ports = if placement.containers {
            vec![0; schemas.len()]
        } else {
            net::free_ports(schemas.len())?
        };
        // The gateway starts with no routes; they are written once the instances' ports are known
        // (it re-reads the file on change).
        Routes {
            routing: self.config.gateway.routing,
            ..Routes::default()
        }
        .write(&self.routes_path())?;
        let mut ready = vec![self.start_gateway(state, gateway_port).await?];
        if !schemas.is_empty() {
            let launcher = langflow::Launcher::prepare(&self.config, placement).await?;
            ready.extend(self.start_forkserver_if_wanted(state, &launcher).await?);
            let launcher = self.instance_launcher(state, launcher);
            let instances = schemas
                .iter()
                .zip(&instance_ports)
                .map(|(s, port)| self.start_instance(state, &tenancy, &launcher, s, *port));
            ready.extend(futures::future::try_join_all(instances).await?);
        }
        let recorded = state.lock().expect("state lock").clone();
        let routes = Routes {
            routing: self.config.gateway.routing,
            tenants: schemas
                .iter()
                .filter_map(|s| {
                    let record = recorded.services.get(&langflow::service_name(&s.prefix))?;
                    let upstream = Upstream {
                        port: record.port,
                        schema: s.schema.clone(),
                    };
                    Some((s.prefix.clone(), upstream))
                })
                .collect(),
            ..Routes::default()
        };
        routes.write(&self.routes_path())?;
        Ok(ready)
    }

    pub(super) async fn start_gateway(
        &self,
        state: &Arc<Mutex<RunState>>,
        port: u16,
    ) -> Result<(String, f64)> {
        let step = Step::start(GATEWAY_SERVICE);
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let command = self.servers()?;
            let mut args = command.args.clone();
            args.extend([
                "--port".to_string(),
                port.to_string(),
                "--routes".to_string(),
                self.routes_path().display().to_string(),
            ]);
            let tls_dir = self.gateway_tls_dir();
            let (url, ca_file) = if self.config.gateway.tls {
                let redirect =
                    net::resolve_port("gateway redirect", self.config.ports.gateway_redirect)?;
                args.extend([
                    "--tls-dir".to_string(),
                    tls_dir.display().to_string(),
                    "--redirect-port".to_string(),
                    redirect.to_string(),
                ]);
                (
                    format!("https://127.0.0.1:{port}"),
                    Some(crate::gateway_tls::cert_path(&tls_dir)),
                )
            } else {
                (format!("http://127.0.0.1:{port}"), None)
            };
            let (process, log) = self.start_host_server(GATEWAY_SERVICE, args, port)?;
            let record = ServiceRecord {
                process: process.clone(),
                port,
                url: url.clone(),
                log: log.clone(),
                probe: Probe::Http {
                    url: format!("{url}/health"),
                    ca_file,
                },
                tier: GATEWAY_TIER,
                restarts: 0,
                last_exit: None,
            };
            step.set_message(format!("waiting for {url}/health"));
            self.record_and_await(state, GATEWAY_SERVICE, record, GATEWAY_READY_TIMEOUT)
                .await?;
            Ok((GATEWAY_SERVICE.to_string(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }

    /// Where the gateway's generated TLS certificate and key live.
    pub fn gateway_tls_dir(&self) -> std::path::PathBuf {
        self.config.state_dir.join("gateway").join("tls")
    }

    /// The IRSA settings for instances (and image mode's tasks), when the run has an identity
    /// service.
    pub(super) fn instance_identity(
        &self,
        state: &Arc<Mutex<RunState>>,
    ) -> Result<Option<langflow::InstanceIdentity>> {
        let Some(port) = super::recorded_port(state, crate::credentials::IDENTITY_SERVICE) else {
            return Ok(None);
        };
        let placement = self.runtime.placement();
        let identities = crate::credentials::read_identities(&self.config)?;
        Ok(Some(langflow::InstanceIdentity {
            role_arn: identities.role_arn,
            token_file: crate::credentials::identity_dir(&self.config)
                .join(crate::credentials::PROJECTED_TOKEN_FILE),
            sts_url: placement.host_server_url(port),
        }))
    }

    pub(super) async fn start_instance(
        &self,
        state: &Arc<Mutex<RunState>>,
        tenancy: &Tenancy,
        launcher: &langflow::Launcher,
        schema: &TenantSchema,
        port: u16,
    ) -> Result<(String, f64)> {
        let name = langflow::service_name(&schema.prefix);
        let step = Step::start(name.clone());
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let aws_port = super::aws_port(state)?;
            let mut secrets = tenancy.tenant_secrets(&schema.schema)?;
            let mut database = tenancy.tenant_target(&schema.schema)?;
            // Self-test faults: borrow the first tenant's key or role.
            let first = match self.fault {
                Some(_) => self.files.read_secrets()?.tenants.into_iter().next(),
                None => None,
            };
            match (self.fault, first) {
                (Some(super::Fault::SharedSecretKey), Some((_, first))) => {
                    secrets.secret_key = first.secret_key;
                }
                (Some(super::Fault::SharedDatabaseRole), Some((first_schema, _))) => {
                    database = tenancy.tenant_target(&first_schema)?;
                }
                _ => {}
            }
            let spec = langflow::process_spec(
                &self.config,
                launcher,
                &langflow::InstanceSpec {
                    prefix: &schema.prefix,
                    schema: &schema.schema,
                    database: &database,
                    secret_key: &secrets.secret_key,
                    operator_password: &secrets.operator_password,
                    port,
                    aws_port,
                    identity: self.instance_identity(state)?,
                },
            )?;
            let (process, port) = self.start_spec(&spec).await?;
            self.record(
                state,
                &name,
                ServiceRecord {
                    process: process.clone(),
                    port,
                    url: langflow::base_url(&self.config, port, &schema.prefix) + "/",
                    log: spec.log.clone(),
                    probe: Probe::Http {
                        url: format!("http://127.0.0.1:{port}/health_check"),
                        ca_file: None,
                    },
                    tier: INSTANCE_TIER,
                    restarts: 0,
                    last_exit: None,
                },
            )?;
            step.set_message(format!("waiting for /health_check on 127.0.0.1:{port}"));
            langflow::wait_ready(port, INSTANCE_READY_TIMEOUT, self.alive_fn(&process))
                .await
                .map_err(|e| self.with_log_tail(e, &process, &spec.log))
                .with_context(|| format!("tenant {} did not start", schema.prefix))?;
            Ok((name.clone(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }

    /// Where each tenant of the current run is reached (from the routes file and the gateway),
    /// with its users.
    pub async fn tenant_endpoints(&self) -> Result<Vec<TenantEndpoint>> {
        let Some(state) = self.files.read_state()? else {
            return Ok(Vec::new());
        };
        let Some(gateway) = state.services.get(GATEWAY_SERVICE) else {
            return Ok(Vec::new());
        };
        let routes = match Routes::read(&self.routes_path()) {
            Ok(routes) => routes,
            Err(_) => return Ok(Vec::new()),
        };
        let tenancy = self.tenancy_in_run(&state)?;
        let mut endpoints = Vec::new();
        for (prefix, upstream) in routes.tenants {
            let users = tenancy
                .user_list(&upstream.schema)
                .await
                .map(|users| {
                    users
                        .into_iter()
                        .map(|u| u.username)
                        .filter(|name| name != OPERATOR_USERNAME)
                        .collect()
                })
                .unwrap_or_default();
            endpoints.push(TenantEndpoint {
                url: routes.routing.tenant_url(&gateway.url, &prefix),
                prefix,
                schema: upstream.schema,
                instance_port: upstream.port,
                users,
            });
        }
        Ok(endpoints)
    }

    /// Starts the instance of a tenant just added to a running stack and routes the gateway to
    /// it. Returns `None` when no stack with a gateway runs (the next `up` starts it).
    pub async fn attach_tenant(&self, schema: &TenantSchema) -> Result<Option<TenantEndpoint>> {
        let _lock = self.files.lock()?;
        let Some(current) = self.files.read_state()? else {
            return Ok(None);
        };
        if !current.services.contains_key(GATEWAY_SERVICE) {
            return Ok(None);
        }
        let name = langflow::service_name(&schema.prefix);
        if current.services.contains_key(&name) {
            bail!(
                "tenant {} already has a running instance ({name})",
                schema.prefix
            );
        }
        let tenancy = self.tenancy_in_run(&current)?;
        let placement = self.runtime.placement();
        let port = placement.host_port(&name, 0)?;
        let launcher = langflow::Launcher::prepare(&self.config, placement).await?;
        let state = Arc::new(Mutex::new(current));
        let launcher = self.instance_launcher(&state, launcher);
        let started = self
            .start_instance(&state, &tenancy, &launcher, schema, port)
            .await;
        if let Err(e) = started {
            // Leave the run as it was: stop what was started, forget it.
            let mut state = state.lock().expect("state lock");
            if let Some(record) = state.services.remove(&name) {
                let _ = self.runtime.stop(&record.process, super::STOP_GRACE);
            }
            self.files.write_state(&state)?;
            return Err(e);
        }
        let port = state.lock().expect("state lock").services[&name].port;
        let mut routes = Routes::read(&self.routes_path()).unwrap_or_default();
        routes.routing = self.config.gateway.routing;
        routes.tenants.insert(
            schema.prefix.clone(),
            Upstream {
                port,
                schema: schema.schema.clone(),
            },
        );
        routes.write(&self.routes_path())?;
        drop(_lock);
        Ok(self
            .tenant_endpoints()
            .await?
            .into_iter()
            .find(|t| t.prefix == schema.prefix))
    }

    /// Stops a tenant's instance and removes its route (before its schema is dropped). Does
    /// nothing when no stack runs.
    pub fn detach_tenant(&self, prefix: &str) -> Result<()> {
        let _lock = self.files.lock()?;
        let Some(mut state) = self.files.read_state()? else {
            return Ok(());
        };
        if let Ok(mut routes) = Routes::read(&self.routes_path()) {
            if routes.tenants.remove(prefix).is_some() {
                routes.write(&self.routes_path())?;
            }
        }
        if let Some(record) = state.services.remove(&langflow::service_name(prefix)) {
            self.runtime.stop(&record.process, super::STOP_GRACE)?;
            self.files.write_state(&state)?;
        }
        Ok(())
    }
}
