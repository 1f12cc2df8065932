//! `up --deploy`: the user's template set deployed into the run's emulator (its CloudFormation,
//! through [`crate::rehearse::deploy_in_order`]), then what the deployed stacks describe realised
//! locally. Nothing here knows a logical id or a parameter name: resources are found by their type
//! and the values they hold are read from the emulator (stack resources, exports, Secrets
//! Manager) or, where it does not answer, from the template evaluated with the deployed stack's
//! parameters, physical ids and exports.
//!
//! - RDS clusters and instances are the local Postgres: their endpoint attributes are the
//!   Postgres host and port as the tasks reach it (put into the templates before they are sent,
//!   so every export and import carries them); a managed master secret
//!   (`ManageMasterUserPassword`) is made in the emulator first with a generated password; the
//!   master user is made in Postgres as RDS makes it (login, CREATEROLE, not superuser) with the
//!   password the template gives (a parameter, a `{{resolve:secretsmanager:…}}` reference, or
//!   the managed secret), and owns the cluster's `DatabaseName`.
//! - The load-balanced `AWS::ECS::Service` runs as the task definition says: image, port,
//!   `Environment`, `Secrets` read from the emulator's Secrets Manager as ECS reads them,
//!   `DesiredCount` tasks; its target group's health check (path, matcher, interval,
//!   thresholds) and stickiness drive the gateway and the readiness wait.
//! - Everything else is listed as not run locally, with the reason; autoscaling bounds are
//!   reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Stack;
use crate::services::{aws, emulator_caps, postgres};
use harness_cfn::deploy::{Plan, PlannedStack};
use harness_cfn::taskdef::{SecretRef, TaskShape};
use harness_cfn::validate::wiring::{self, Scope};
use harness_core::state::RunState;

/// The master user the harness makes for `@postgres.user` / `@postgres.password`.
pub const MASTER_USER: &str = "lf_master";
/// The file in the state directory holding the deployed task (0600: its environment has secrets).
const DEPLOYMENT_FILE: &str = "deployment.json";

/// Resource types `up --deploy` realises (or that live in the emulator as the deploy made them).
const REALISED: [&str; 12] = [
    "AWS::ECS::Service",
    "AWS::ECS::TaskDefinition",
    "AWS::ECS::Cluster",
    "AWS::RDS::DBCluster",
    "AWS::RDS::DBInstance",
    "AWS::ElasticLoadBalancingV2::LoadBalancer",
    "AWS::ElasticLoadBalancingV2::Listener",
    "AWS::ElasticLoadBalancingV2::TargetGroup",
    "AWS::S3::Bucket",
    "AWS::SecretsManager::Secret",
    "AWS::IAM::Role",
    "AWS::IAM::Policy",
];

/// A target group's health check, as the load balancer applies it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthCheck {
    /// `HealthCheckPath` (default `/`).
    pub path: String,
    /// `Matcher.HttpCode` (default `200`): codes, lists and ranges (`200,302`, `200-299`).
    pub matcher: String,
    /// `HealthCheckIntervalSeconds` (default 30).
    pub interval_secs: u64,
    /// `HealthyThresholdCount` (default 5).
    pub healthy: u32,
    /// `UnhealthyThresholdCount` (default 2).
    pub unhealthy: u32,
}

impl HealthCheck {
    /// Whether `status` is inside the matcher.
    pub fn matches(&self, status: u16) -> bool {
        self.matcher.split(',').any(|part| {
            let part = part.trim();
            match part.split_once('-') {
                Some((low, high)) => match (low.parse::<u16>(), high.parse::<u16>()) {
                    (Ok(low), Ok(high)) => (low..=high).contains(&status),
                    _ => false,
                },
                None => part.parse::<u16>() == Ok(status),
            }
        })
    }
}

/// The deployed service's task, realised for the local stack.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Deployment {
    /// The stage deployed.
    pub stage: String,
    /// The stacks, in deploy order.
    pub stacks: Vec<String>,
    /// `stack/LogicalId` of the service that runs.
    pub service: String,
    /// The container that serves (the load balancer's target).
    pub container: String,
    /// The image the task definition names.
    pub image_uri: String,
    /// The port the container serves on.
    pub container_port: u16,
    /// The container definition's `Command` (empty: the image's own `CMD`).
    #[serde(default)]
    pub command: Vec<String>,
    /// The container's environment as ECS would give it (`Secrets` read).
    pub env: BTreeMap<String, String>,
    /// Which variables came from `Secrets`.
    pub secret_names: BTreeSet<String>,
    /// `DesiredCount`.
    pub desired_count: u32,
    /// The target group's health check.
    pub health: HealthCheck,
    /// Whether the target group is sticky.
    pub sticky: bool,
    /// The task definition's `TaskRoleArn` (the role the emulator made): the tasks get its
    /// credentials, as ECS gives them; `None` = the platform's identity (IRSA) as before.
    #[serde(default)]
    pub task_role_arn: Option<String>,
    /// What the deploy does not run locally: `Type Id (stack): reason`.
    pub not_run: Vec<String>,
    /// What else a person should know (autoscaling bounds …).
    pub notes: Vec<String>,
}

impl Deployment {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(DEPLOYMENT_FILE)
    }

    /// The deployment of the run in `state_dir`, if it was deployed.
    pub fn read(state_dir: &Path) -> Result<Option<Self>> {
        harness_core::state::read_json(&Self::path(state_dir), "deployment record")
    }

    pub(super) fn write(&self, state_dir: &Path) -> Result<()> {
        harness_core::state::write_json_0600(&Self::path(state_dir), self)
    }

    /// Forgets the deployment (`down`, or an `up` without `--deploy`).
    pub fn remove(state_dir: &Path) -> Result<()> {
        harness_core::state::remove_if_exists(&Self::path(state_dir))
    }

    /// The task as the image contract judges it.
    pub(super) fn shape(&self) -> TaskShape {
        TaskShape {
            template: PathBuf::from(&self.service),
            stack_name: self
                .service
                .split('/')
                .next()
                .unwrap_or_default()
                .to_string(),
            container: self.container.clone(),
            container_port: self.container_port,
            environment: self
                .env
                .iter()
                .filter(|(k, _)| !self.secret_names.contains(*k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            secrets: self
                .secret_names
                .iter()
                .map(|k| {
                    let secret = SecretRef {
                        arn: String::new(),
                        json_key: None,
                    };
                    (k.clone(), secret)
                })
                .collect(),
            health_path: self.health.path.clone(),
            desired_count: self.desired_count,
            sticky: self.sticky,
        }
    }
}

/// A master user of a database the templates describe.
struct MasterUser {
    what: String,
    user: String,
    password: String,
    database: Option<String>,
}

/// One deployed stack, as the realisation reads it.
struct DeployedStack<'a> {
    planned: &'a PlannedStack,
    /// Logical id → (type, physical id) of what the emulator created.
    resources: BTreeMap<String, (String, String)>,
    refs: BTreeMap<String, String>,
    attributes: BTreeMap<String, String>,
}

impl DeployedStack<'_> {
    fn eval(&self, value: &Value, imports: &BTreeMap<String, String>) -> Option<String> {
        wiring::resolve_in(
            value,
            &Scope {
                stack_name: &self.planned.name,
                refs: &self.refs,
                attributes: &self.attributes,
                imports,
                conditions: self.planned.template.body["Conditions"].as_object(),
            },
        )
    }

    fn template_resources(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.planned.template.body["Resources"]
            .as_object()
            .into_iter()
            .flatten()
    }
}

/// Whether a resource's `ManageMasterUserPassword` is on.
fn managed_password(resource: &Value) -> bool {
    matches!(
        &resource["Properties"]["ManageMasterUserPassword"],
        Value::Bool(true)
    ) || resource["Properties"]["ManageMasterUserPassword"].as_str() == Some("true")
}

fn is_database(kind: &str) -> bool {
    kind == "AWS::RDS::DBCluster" || kind == "AWS::RDS::DBInstance"
}

/// Replaces `Fn::GetAtt` (and `${Id.Attr}` in `Fn::Sub`) of `id`'s attributes with `values`.
fn put_attributes(body: &mut Value, id: &str, values: &BTreeMap<String, String>) {
    match body {
        Value::Object(map) => {
            if let Some(att) = map.get("Fn::GetAtt") {
                let name = match att {
                    Value::Array(items) if items.len() == 2 => items[0]
                        .as_str()
                        .zip(items[1].as_str())
                        .map(|(a, b)| (a.to_string(), b.to_string())),
                    Value::String(s) => s.split_once('.').map(|(a, b)| (a.into(), b.into())),
                    _ => None,
                };
                if let Some(value) = name
                    .filter(|(target, _)| target == id)
                    .and_then(|(_, attr)| values.get(&attr))
                {
                    *body = Value::String(value.clone());
                    return;
                }
            }
            if let Some(Value::String(text)) = map.get_mut("Fn::Sub") {
                for (attr, value) in values {
                    *text = text.replace(&format!("${{{id}.{attr}}}"), value);
                }
            }
            if let Some(Value::Array(items)) = map.get_mut("Fn::Sub") {
                if let Some(Value::String(text)) = items.first_mut() {
                    for (attr, value) in values {
                        *text = text.replace(&format!("${{{id}.{attr}}}"), value);
                    }
                }
            }
            map.values_mut().for_each(|v| put_attributes(v, id, values));
        }
        Value::Array(items) => items.iter_mut().for_each(|v| put_attributes(v, id, values)),
        _ => {}
    }
}

/// Leaves out of every `AWS::S3::BucketPolicy` the `Deny` statements conditioned on
/// `aws:SecureTransport` being false (the emulator is reached over plain HTTP; on AWS the same
/// requests use HTTPS and pass); returns the policies changed.
fn drop_https_only_statements(body: &mut Value) -> Vec<String> {
    let mut changed = Vec::new();
    let Some(resources) = body.get_mut("Resources").and_then(Value::as_object_mut) else {
        return changed;
    };
    for (id, resource) in resources.iter_mut() {
        if resource["Type"] != "AWS::S3::BucketPolicy" {
            continue;
        }
        let Some(statements) = resource
            .pointer_mut("/Properties/PolicyDocument/Statement")
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        let before = statements.len();
        statements.retain(|st| {
            let insecure = st["Condition"]["Bool"]["aws:SecureTransport"].as_str() == Some("false")
                || st["Condition"]["Bool"]["aws:SecureTransport"] == Value::Bool(false);
            !(st["Effect"] == "Deny" && insecure)
        });
        if statements.len() != before {
            changed.push(id.clone());
        }
    }
    changed
}

/// Resolves `{{resolve:secretsmanager:ID[:SecretString[:KEY[:STAGE[:VERSION]]]]}}` references
/// in `text` with the emulator's Secrets Manager, as CloudFormation does.
async fn resolve_dynamic(sm: &aws_sdk_secretsmanager::Client, text: &str) -> Result<String> {
    const OPEN: &str = "{{resolve:secretsmanager:";
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len()..];
        let end = after
            .find("}}")
            .with_context(|| format!("unterminated dynamic reference in {text:?}"))?;
        let inner = &after[..end];
        let (id, key) = match inner.split_once(":SecretString") {
            Some((id, tail)) => {
                let key = tail
                    .trim_start_matches(':')
                    .split(':')
                    .next()
                    .filter(|k| !k.is_empty());
                (id, key)
            }
            None => (inner, None),
        };
        let secret = SecretRef {
            arn: id.to_string(),
            json_key: key.map(String::from),
        };
        out.push_str(
            &super::image::read_secret(sm, "a {{resolve:secretsmanager}} reference", &secret)
                .await?,
        );
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A Secrets entry's `ValueFrom`: a Secrets Manager ARN (`…:secret:NAME[:KEY:STAGE:VERSION]`), or
/// the name the emulator's `Ref` of a secret gives (`NAME[:KEY:STAGE:VERSION]`).
fn secret_ref(value_from: &str) -> Result<SecretRef> {
    if value_from.starts_with("arn:") {
        return SecretRef::parse(value_from);
    }
    let mut parts = value_from.split(':');
    let name = parts.next().unwrap_or_default().to_string();
    let json_key = parts.next().filter(|k| !k.is_empty()).map(String::from);
    if name.is_empty() {
        bail!("{value_from:?} names no secret");
    }
    Ok(SecretRef {
        arn: name,
        json_key,
    })
}

/// What the not-run list says about a resource type.
fn not_run_reason(kind: &str) -> &'static str {
    match kind {
        k if k.starts_with("AWS::EC2::") => "networking: the run's Docker network stands for it",
        k if k.starts_with("AWS::Logs::") => "logs: `cargo xtask logs` shows the task's output",
        k if k.starts_with("AWS::ApplicationAutoScaling::") => {
            "autoscaling: the task count is fixed (DesiredCount or --tasks)"
        }
        k if k.starts_with("AWS::KMS::") => "encryption keys: nothing is encrypted locally",
        k if k.starts_with("AWS::CertificateManager::") => {
            "certificates: the gateway's self-signed certificate stands for it"
        }
        k if k.starts_with("AWS::ECR::") => "image registry: local images (--image) stand for it",
        k if k.starts_with("AWS::CloudWatch::") => "alarms and dashboards are not emulated",
        "AWS::RDS::DBSubnetGroup"
        | "AWS::RDS::DBClusterParameterGroup"
        | "AWS::RDS::DBParameterGroup" => {
            "database settings: the local Postgres runs with its defaults"
        }
        _ => "no local equivalent",
    }
}

impl Stack {
    /// Deploys `plan` into the run's emulator and realises its load-balanced service: the
    /// Postgres master users, the task's environment (secrets read), its health check and
    /// stickiness, what is not run. `image` fills `@image` parameters.
    pub(super) async fn deploy_and_realise(
        &self,
        state: &Arc<Mutex<RunState>>,
        plan: &Plan,
        image: Option<&str>,
    ) -> Result<Deployment> {
        let snapshot = state.lock().expect("state lock").clone();
        let pg_port = Stack::service_port(&snapshot, "postgres")?;
        let aws_port = Stack::service_port(&snapshot, "aws")?;
        let placement = self.runtime.placement();
        let (pg_host, pg_inner) = placement.peer("postgres", pg_port, postgres::CONTAINER_PORT);
        let region = self.config.aws.region.clone();
        let mut secrets = self.files.read_secrets()?;
        let pg_password = secrets
            .postgres_password
            .clone()
            .context("no Postgres password in the run's secrets")?;
        let master_password = secrets
            .image_db_password
            .get_or_insert_with(|| harness_core::secret::password(32))
            .clone();
        self.files.write_secrets(&secrets)?;

        let mut plan = plan.clone();
        let uses_master = plan.stacks.iter().any(|s| {
            s.parameters
                .values()
                .any(|(v, _)| v == "@postgres.user" || v == "@postgres.password")
        });
        let database = self.config.postgres.database.clone();
        plan.fill_local_values(|name| match name {
            "@postgres.host" => Some(pg_host.clone()),
            "@postgres.port" => Some(pg_inner.to_string()),
            "@postgres.database" => Some(database.clone()),
            "@postgres.user" => Some(MASTER_USER.to_string()),
            "@postgres.password" => Some(master_password.clone()),
            "@image" => image.map(String::from),
            _ => None,
        })
        .map_err(|e| anyhow!("{e:#}: @image needs --image"))?;

        let shared = aws::sdk_config(aws_port, &region).await;
        let cfn = aws_sdk_cloudformation::Client::new(&shared);
        let sm = aws_sdk_secretsmanager::Client::new(&shared);

        // Managed master secrets first (the emulator's RDS makes none): a generated password
        // in a secret shaped like RDS's, its ARN where the templates ask for it.
        let mut masters: BTreeMap<(String, String), MasterUser> = BTreeMap::new();
        let mut managed_arns: BTreeMap<(String, String), String> = BTreeMap::new();
        for planned in &plan.stacks {
            let values = planned.values();
            for (id, resource) in planned.template.body["Resources"]
                .as_object()
                .into_iter()
                .flatten()
            {
                let kind = resource["Type"].as_str().unwrap_or_default();
                if !is_database(kind) || !managed_password(resource) {
                    continue;
                }
                let props = &resource["Properties"];
                let user = wiring::resolve(
                    &props["MasterUsername"],
                    &planned.name,
                    &values,
                    &BTreeMap::new(),
                    planned.template.body["Conditions"].as_object(),
                )
                .with_context(|| {
                    format!(
                        "{id} ({}): its MasterUsername cannot be known before the deploy",
                        planned.key
                    )
                })?;
                let password = harness_core::secret::password(32);
                let name = format!("rds!cluster-{}-{}", planned.name, id.to_lowercase());
                let body = serde_json::json!({"username": user, "password": password}).to_string();
                let arn = super::image::put_secret(&sm, &name, &body).await?;
                managed_arns.insert((planned.key.clone(), id.clone()), arn);
                masters.insert(
                    (planned.key.clone(), id.clone()),
                    MasterUser {
                        what: format!("{id} ({})", planned.key),
                        user,
                        password,
                        database: None,
                    },
                );
            }
        }
        let capabilities_dir = self.config.state_dir.join("emulator-caps");
        std::fs::create_dir_all(&capabilities_dir)
            .with_context(|| format!("cannot create {}", capabilities_dir.display()))?;
        let t0 = std::time::Instant::now();
        let capabilities = emulator_caps::probe(&self.config, aws_port, &capabilities_dir).await?;
        harness_core::progress::println(format!(
            "deploy: probed the emulator in {:.1}s",
            t0.elapsed().as_secs_f64()
        ));
        let t0 = std::time::Instant::now();
        let endpoint_values: BTreeMap<String, String> = [
            ("Endpoint.Address", pg_host.clone()),
            ("ReadEndpoint.Address", pg_host.clone()),
            ("Endpoint.Port", pg_inner.to_string()),
            ("ReadEndpoint.Port", pg_inner.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let transport_notes = std::sync::Mutex::new(Vec::<String>::new());
        let prepare = |planned: &PlannedStack, body: &mut Value| -> Result<()> {
            // Every stack of the set may name any database's attributes (in its own template:
            // exports carry them further).
            let ids: Vec<(String, bool, Option<String>)> = plan
                .stacks
                .iter()
                .flat_map(|s| {
                    s.template.body["Resources"]
                        .as_object()
                        .into_iter()
                        .flatten()
                        .filter(|(_, r)| is_database(r["Type"].as_str().unwrap_or_default()))
                        .map(|(id, r)| {
                            let managed = managed_arns.get(&(s.key.clone(), id.clone())).cloned();
                            (
                                id.clone(),
                                s.key == planned.key,
                                managed.filter(|_| managed_password(r)),
                            )
                        })
                        .collect::<Vec<_>>()
                })
                .collect();
            for (id, own, managed) in ids {
                if !own {
                    continue;
                }
                let mut values = endpoint_values.clone();
                if let Some(arn) = managed {
                    values.insert("MasterUserSecret.SecretArn".into(), arn);
                }
                put_attributes(body, &id, &values);
            }
            let dropped = drop_https_only_statements(body);
            transport_notes
                .lock()
                .expect("notes lock")
                .extend(dropped.into_iter().map(|id| {
                    format!(
                        "{id} ({}): its statement denying plain HTTP (aws:SecureTransport false) is left out locally: the emulator's endpoint is HTTP, AWS's is HTTPS",
                        planned.key
                    )
                }));
            Ok(())
        };
        let deployed =
            crate::rehearse::deploy_in_order(&cfn, &plan, &capabilities, &prepare).await?;
        if let Some(failed) = deployed.iter().find(|s| s.status != "CREATE_COMPLETE") {
            bail!(
                "the emulator refused stack {}: {} ({}); fix the template, or leave the resource out with a Condition",
                failed.name,
                failed.reason.clone().unwrap_or_else(|| "no reason given".into()),
                failed.status
            );
        }
        harness_core::progress::println(format!(
            "deploy: {} stacks in {:.1}s",
            deployed.len(),
            t0.elapsed().as_secs_f64()
        ));
        let t0 = std::time::Instant::now();
        let mut not_run: Vec<String> = Vec::new();
        for (stack, planned) in deployed.iter().zip(&plan.stacks) {
            for left in stack.skipped.iter().chain(&stack.not_emulated) {
                not_run.push(format!(
                    "{left} ({}): left out of the deploy, the emulator does not create it",
                    planned.key
                ));
            }
        }

        // Read back what the emulator made.
        let exports: BTreeMap<String, String> = {
            let mut all = BTreeMap::new();
            let mut token = None;
            loop {
                let page = cfn
                    .list_exports()
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| {
                        anyhow!(
                            "list-exports: {}",
                            aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                        )
                    })?;
                for export in page.exports() {
                    if let (Some(n), Some(v)) = (export.name(), export.value()) {
                        all.insert(n.to_string(), v.to_string());
                    }
                }
                token = page.next_token().map(String::from);
                if token.is_none() {
                    break all;
                }
            }
        };
        let mut stacks: Vec<DeployedStack> = Vec::new();
        for planned in &plan.stacks {
            let described = cfn
                .describe_stack_resources()
                .stack_name(&planned.name)
                .send()
                .await
                .map_err(|e| {
                    anyhow!(
                        "describe-stack-resources {}: {}",
                        planned.name,
                        aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                    )
                })?;
            let resources: BTreeMap<String, (String, String)> = described
                .stack_resources()
                .iter()
                .filter_map(|r| {
                    Some((
                        r.logical_resource_id()?.to_string(),
                        (
                            r.resource_type().unwrap_or_default().to_string(),
                            r.physical_resource_id().unwrap_or_default().to_string(),
                        ),
                    ))
                })
                .collect();
            let mut refs = planned.values();
            for (id, (_, physical)) in &resources {
                refs.insert(id.clone(), physical.clone());
            }
            refs.insert("AWS::StackName".into(), planned.name.clone());
            refs.insert("AWS::Region".into(), region.clone());
            refs.insert("AWS::AccountId".into(), self.config.aws.account_id.clone());
            refs.insert("AWS::Partition".into(), "aws".into());
            refs.insert("AWS::URLSuffix".into(), "amazonaws.com".into());
            let mut attributes = BTreeMap::new();
            for (id, (kind, physical)) in &resources {
                // The ARNs CloudFormation's GetAtt gives, from the physical ids (names) the
                // emulator made.
                let arn = match kind.as_str() {
                    "AWS::IAM::Role" if physical.starts_with("arn:") => Some(physical.clone()),
                    "AWS::IAM::Role" => Some(format!(
                        "arn:aws:iam::{}:role/{physical}",
                        self.config.aws.account_id
                    )),
                    "AWS::S3::Bucket" => Some(format!("arn:aws:s3:::{physical}")),
                    _ => None,
                };
                if let Some(arn) = arn {
                    attributes.insert(format!("{id}.Arn"), arn);
                }
            }
            for (id, resource) in planned.template.body["Resources"]
                .as_object()
                .into_iter()
                .flatten()
            {
                if is_database(resource["Type"].as_str().unwrap_or_default()) {
                    for (attr, value) in &endpoint_values {
                        attributes.insert(format!("{id}.{attr}"), value.clone());
                    }
                    if let Some(arn) = managed_arns.get(&(planned.key.clone(), id.clone())) {
                        attributes.insert(format!("{id}.MasterUserSecret.SecretArn"), arn.clone());
                    }
                }
            }
            stacks.push(DeployedStack {
                planned,
                resources,
                refs,
                attributes,
            });
        }

        // Databases: the master users, as the templates give them.
        for stack in &stacks {
            for (id, resource) in stack.template_resources() {
                let kind = resource["Type"].as_str().unwrap_or_default();
                if !is_database(kind) || !stack.resources.contains_key(id) {
                    continue;
                }
                let props = &resource["Properties"];
                if kind == "AWS::RDS::DBInstance" && !props["DBClusterIdentifier"].is_null() {
                    continue; // a cluster member: the cluster's user
                }
                let what = format!("{id} ({})", stack.planned.key);
                let database = stack
                    .eval(&props["DatabaseName"], &exports)
                    .or_else(|| stack.eval(&props["DBName"], &exports));
                let key = (stack.planned.key.clone(), id.clone());
                if let Some(master) = masters.get_mut(&key) {
                    master.database = database;
                    continue;
                }
                let user = match stack.eval(&props["MasterUsername"], &exports) {
                    Some(text) => resolve_dynamic(&sm, &text).await?,
                    None => bail!(
                        "{what}: its MasterUsername cannot be evaluated from the deployed stack"
                    ),
                };
                let password = match stack.eval(&props["MasterUserPassword"], &exports) {
                    Some(text) => resolve_dynamic(&sm, &text).await?,
                    None => bail!("{what}: its master password is neither MasterUserPassword (a parameter, a value or a {{{{resolve:secretsmanager:…}}}} reference) nor ManageMasterUserPassword: the task could not log in"),
                };
                masters.insert(
                    key,
                    MasterUser {
                        what,
                        user,
                        password,
                        database,
                    },
                );
            }
        }
        if uses_master {
            masters.insert(
                (String::new(), MASTER_USER.into()),
                MasterUser {
                    what: "@postgres.user".into(),
                    user: MASTER_USER.into(),
                    password: master_password.clone(),
                    database: None,
                },
            );
        }
        for master in masters.values() {
            super::image::ensure_master_user(
                pg_port,
                &pg_password,
                &self.config.postgres.database,
                &master.user,
                &master.password,
            )
            .await
            .with_context(|| format!("{}: the master user {}", master.what, master.user))?;
            if let Some(db) = master
                .database
                .as_deref()
                .filter(|d| *d != self.config.postgres.database)
            {
                ensure_database(
                    pg_port,
                    &pg_password,
                    &self.config.postgres.database,
                    db,
                    &master.user,
                )
                .await?;
            }
        }

        // The load-balanced service (the first one that has a load balancer, else the first).
        let mut services: Vec<(&DeployedStack, &String, &Value)> = stacks
            .iter()
            .flat_map(|s| {
                s.template_resources()
                    .filter(|(id, r)| {
                        r["Type"] == "AWS::ECS::Service" && s.resources.contains_key(*id)
                    })
                    .map(move |(id, r)| (s, id, r))
            })
            .collect();
        services.sort_by_key(|(_, _, r)| {
            r["Properties"]["LoadBalancers"]
                .as_array()
                .is_none_or(|l| l.is_empty())
        });
        let Some(&(stack, service_id, service)) = services.first() else {
            bail!(
                "no AWS::ECS::Service in the deployed stacks ({}): nothing to run",
                plan.stacks
                    .iter()
                    .map(|s| s.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        for (other_stack, other, _) in services.iter().skip(1) {
            not_run.push(format!("AWS::ECS::Service {other} ({}): one service runs locally, the load-balanced one ({service_id})", other_stack.planned.key));
        }
        let what = format!("{service_id} ({})", stack.planned.key);
        let props = &service["Properties"];
        let balancer = &props["LoadBalancers"][0];
        let task_id = props["TaskDefinition"]["Ref"]
            .as_str()
            .with_context(|| format!("{what}: its TaskDefinition is not a !Ref to a task definition of the same template"))?;
        let task = &stack.planned.template.body["Resources"][task_id];
        let containers = task["Properties"]["ContainerDefinitions"]
            .as_array()
            .with_context(|| {
                format!("{what}: task definition {task_id} has no ContainerDefinitions")
            })?;
        let wanted = stack.eval(&balancer["ContainerName"], &exports);
        let container = containers
            .iter()
            .find(|c| wanted.is_some() && stack.eval(&c["Name"], &exports) == wanted)
            .or_else(|| containers.first())
            .with_context(|| format!("{what}: task definition {task_id} has no container"))?;
        let container_name = stack
            .eval(&container["Name"], &exports)
            .unwrap_or_else(|| "app".into());
        let image_uri = stack
            .eval(&container["Image"], &exports)
            .with_context(|| format!("{what}: the container's Image cannot be evaluated"))?;
        let port_text = stack
            .eval(&balancer["ContainerPort"], &exports)
            .or_else(|| stack.eval(&container["PortMappings"][0]["ContainerPort"], &exports))
            .with_context(|| format!("{what}: the container has no port (PortMappings / LoadBalancers ContainerPort)"))?;
        let container_port: u16 = port_text
            .parse()
            .with_context(|| format!("{what}: ContainerPort {port_text:?} is not a port"))?;
        let mut env = BTreeMap::new();
        for entry in container["Environment"].as_array().into_iter().flatten() {
            let name = entry["Name"]
                .as_str()
                .context("an Environment entry without Name")?;
            let value = stack.eval(&entry["Value"], &exports).with_context(|| {
                format!(
                    "{what}: Environment {name} cannot be evaluated from the deployed stacks ({})",
                    entry["Value"]
                )
            })?;
            env.insert(name.to_string(), value);
        }
        let mut secret_names = BTreeSet::new();
        for entry in container["Secrets"].as_array().into_iter().flatten() {
            let name = entry["Name"]
                .as_str()
                .context("a Secrets entry without Name")?;
            let value_from = stack.eval(&entry["ValueFrom"], &exports).with_context(|| {
                format!("{what}: Secrets {name} cannot be evaluated from the deployed stacks")
            })?;
            let secret =
                secret_ref(&value_from).with_context(|| format!("{what}: secret {name}"))?;
            env.insert(
                name.to_string(),
                super::image::read_secret(&sm, name, &secret).await?,
            );
            secret_names.insert(name.to_string());
        }
        let mut command = Vec::new();
        for (i, part) in container["Command"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            command.push(stack.eval(part, &exports).with_context(|| {
                format!("{what}: the container's Command[{i}] cannot be evaluated from the deployed stack")
            })?);
        }
        for unsupported in [
            "EntryPoint",
            "Memory",
            "Cpu",
            "MemoryReservation",
            "HealthCheck",
        ] {
            if !container[unsupported].is_null() {
                not_run.push(format!(
                    "{unsupported} of container {container_name} ({what}): not applied locally; the image's own is used"
                ));
            }
        }
        let task_role_arn = match &task["Properties"]["TaskRoleArn"] {
            Value::Null => None,
            value => Some(stack.eval(value, &exports).with_context(|| {
                format!("{what}: task definition {task_id}'s TaskRoleArn ({value}) cannot be evaluated from the deployed stack")
            })?),
        };
        let desired_count: u32 = stack
            .eval(&props["DesiredCount"], &exports)
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);

        // Its target group.
        let group_arn = stack.eval(&balancer["TargetGroupArn"], &exports);
        let group = stacks.iter().find_map(|s| {
            let arn = group_arn.as_deref()?;
            let (id, _) = s.resources.iter().find(|(_, (kind, physical))| {
                kind == "AWS::ElasticLoadBalancingV2::TargetGroup" && physical == arn
            })?;
            Some((s, s.planned.template.body["Resources"][id].clone()))
        });
        let (health, sticky) = match &group {
            Some((s, tg)) => {
                let p = &tg["Properties"];
                let text = |key: &str, default: &str| {
                    s.eval(&p[key], &exports)
                        .unwrap_or_else(|| default.to_string())
                };
                let health = HealthCheck {
                    path: text("HealthCheckPath", "/"),
                    matcher: s
                        .eval(&p["Matcher"]["HttpCode"], &exports)
                        .unwrap_or_else(|| "200".into()),
                    interval_secs: text("HealthCheckIntervalSeconds", "30")
                        .parse()
                        .unwrap_or(30),
                    healthy: text("HealthyThresholdCount", "5").parse().unwrap_or(5),
                    unhealthy: text("UnhealthyThresholdCount", "2").parse().unwrap_or(2),
                };
                let sticky = p["TargetGroupAttributes"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| {
                        a["Key"].as_str() == Some("stickiness.enabled")
                            && s.eval(&a["Value"], &exports).as_deref() == Some("true")
                    });
                (health, sticky)
            }
            None => {
                not_run.push(format!("{what}: no target group of the set serves it: the gateway checks / with the default matcher"));
                (
                    HealthCheck {
                        path: "/".into(),
                        matcher: "200".into(),
                        interval_secs: 30,
                        healthy: 5,
                        unhealthy: 2,
                    },
                    false,
                )
            }
        };

        // What is not run, and autoscaling bounds.
        let mut notes = transport_notes.into_inner().expect("notes lock");
        for s in &stacks {
            for (id, resource) in s.template_resources() {
                let kind = resource["Type"].as_str().unwrap_or_default();
                // (Autoscaling bounds are read from the template even when the emulator left the
                // resource out.)
                if kind == "AWS::ApplicationAutoScaling::ScalableTarget" {
                    let p = &resource["Properties"];
                    let bound = |k: &str| s.eval(&p[k], &exports).unwrap_or_else(|| "?".into());
                    notes.push(format!(
                        "{id} ({}): the service may scale {}–{} tasks on AWS; locally it runs a fixed count",
                        s.planned.key,
                        bound("MinCapacity"),
                        bound("MaxCapacity")
                    ));
                }
                if !s.resources.contains_key(id) || REALISED.contains(&kind) {
                    continue;
                }
                not_run.push(format!(
                    "{kind} {id} ({}): {}",
                    s.planned.key,
                    not_run_reason(kind)
                ));
            }
        }
        harness_core::progress::println(format!(
            "deploy: realised in {:.1}s",
            t0.elapsed().as_secs_f64()
        ));
        Ok(Deployment {
            stage: plan.stage.clone(),
            stacks: plan.stacks.iter().map(|s| s.name.clone()).collect(),
            service: format!("{}/{service_id}", stack.planned.name),
            container: container_name,
            image_uri,
            container_port,
            command,
            env,
            secret_names,
            desired_count,
            health,
            sticky,
            task_role_arn,
            not_run,
            notes,
        })
    }
}

/// How long the task role's credentials are asked for (ECS refreshes them; a restarted task gets
/// new ones).
const TASK_ROLE_SECONDS: i32 = 12 * 3600;

/// The task role's temporary credentials, as ECS's agent gets them for a task: AssumeRole on the
/// emulator by the account (standing for the `ecs-tasks.amazonaws.com` service principal).
pub(super) async fn task_role_credentials(
    port: u16,
    region: &str,
    role_arn: &str,
) -> Result<[(String, String); 3]> {
    let sts = aws_sdk_sts::Client::new(&aws::sdk_config(port, region).await);
    let assumed = sts
        .assume_role()
        .role_arn(role_arn)
        .role_session_name("ecs-task")
        .duration_seconds(TASK_ROLE_SECONDS)
        .send()
        .await
        .map_err(|e| {
            anyhow!(
                "cannot assume the task role {role_arn} in the emulator: {}",
                aws_sdk_sts::error::DisplayErrorContext(&e)
            )
        })?;
    let c = assumed
        .credentials()
        .with_context(|| format!("AssumeRole of {role_arn} returned no credentials"))?;
    Ok([
        ("AWS_ACCESS_KEY_ID".into(), c.access_key_id().to_string()),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            c.secret_access_key().to_string(),
        ),
        ("AWS_SESSION_TOKEN".into(), c.session_token().to_string()),
    ])
}

/// Creates database `name` owned by `owner` when it does not exist (RDS creates a cluster's
/// `DatabaseName` for its master user).
async fn ensure_database(
    port: u16,
    superuser_password: &str,
    admin_db: &str,
    name: &str,
    owner: &str,
) -> Result<()> {
    let admin = postgres::PgTarget::superuser(port, superuser_password, admin_db)
        .connect()
        .await?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .await?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} OWNER {}",
                harness_core::sql::quote_ident(name),
                harness_core::sql::quote_ident(owner)
            ))
            .await
            .with_context(|| format!("cannot create database {name} for {owner}"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_take_codes_lists_and_ranges() {
        let check = |m: &str| HealthCheck {
            path: "/".into(),
            matcher: m.into(),
            interval_secs: 5,
            healthy: 2,
            unhealthy: 2,
        };
        assert!(check("200").matches(200) && !check("200").matches(307));
        assert!(check("200,302").matches(302));
        assert!(check("200-299").matches(204) && !check("200-299").matches(301));
    }

    #[test]
    fn attributes_of_a_database_are_put_in_everywhere() {
        let mut body = serde_json::json!({
            "Outputs": {
                "A": {"Value": {"Fn::GetAtt": ["Db", "Endpoint.Address"]}},
                "B": {"Value": {"Fn::Sub": "postgresql://u@${Db.Endpoint.Address}:${Db.Endpoint.Port}/x"}},
                "C": {"Value": {"Fn::GetAtt": "Db.MasterUserSecret.SecretArn"}},
                "D": {"Value": {"Fn::GetAtt": ["Other", "Endpoint.Address"]}}
            }
        });
        let values: BTreeMap<String, String> = [
            ("Endpoint.Address", "postgres"),
            ("Endpoint.Port", "5432"),
            ("MasterUserSecret.SecretArn", "arn:x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        put_attributes(&mut body, "Db", &values);
        assert_eq!(body["Outputs"]["A"]["Value"], "postgres");
        assert_eq!(
            body["Outputs"]["B"]["Value"]["Fn::Sub"],
            "postgresql://u@postgres:5432/x"
        );
        assert_eq!(body["Outputs"]["C"]["Value"], "arn:x");
        assert!(body["Outputs"]["D"]["Value"].is_object());
    }

    #[test]
    fn only_the_plain_http_deny_of_a_bucket_policy_is_left_out() {
        let mut body = serde_json::json!({"Resources": {"P": {"Type": "AWS::S3::BucketPolicy", "Properties": {"PolicyDocument": {"Statement": [
            {"Effect": "Deny", "Principal": "*", "Action": "s3:*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket"}
        ]}}}}});
        assert_eq!(drop_https_only_statements(&mut body), ["P"]);
        let left = body
            .pointer("/Resources/P/Properties/PolicyDocument/Statement")
            .unwrap();
        assert_eq!(left.as_array().unwrap().len(), 1);
        assert_eq!(left[0]["Action"], "s3:DeleteBucket");
    }

    #[test]
    fn secret_references_take_arns_and_the_emulators_names() {
        let r = secret_ref("stack-Sec-ABC:password::").unwrap();
        assert_eq!(
            (r.arn.as_str(), r.json_key.as_deref()),
            ("stack-Sec-ABC", Some("password"))
        );
        let r = secret_ref("arn:aws:secretsmanager:us-east-1:1:secret:n-1").unwrap();
        assert_eq!(r.json_key, None);
        assert!(secret_ref(":x").is_err());
    }
}
