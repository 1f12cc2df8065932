//! `validate --rehearse`: deploys the stacks of a deploy plan ([`harness_cfn::deploy`]: any
//! template set, its stacks named and ordered by their imports and exports) into the emulator's
//! CloudFormation, so `Fn::ImportValue` resolves for real; reports each stack's status and
//! outputs, then deletes the stacks (reverse order) and stops the emulator it started. The same
//! deploy ([`deploy_in_order`]) is what `up --deploy` keeps running.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use aws_sdk_cloudformation::types::{Capability, Parameter, StackStatus};
use serde::Serialize;

use crate::services::{aws, postgres};
use crate::stack::Stack;
use harness_cfn::deploy::{Plan, PlannedStack};
use harness_cfn::validate::template::Template;
use harness_core::config::Config;

/// How long one stack may take in the emulator.
const STACK_TIMEOUT: Duration = Duration::from_secs(120);

/// One rehearsed stack.
#[derive(Debug, Clone, Serialize)]
pub struct RehearsedStack {
    /// Stack name (from the plan).
    pub name: String,
    /// Final status (CREATE_COMPLETE when it worked).
    pub status: String,
    /// Why it failed (first failed resource event), if it did.
    pub reason: Option<String>,
    /// Outputs (key, value).
    pub outputs: Vec<(String, String)>,
    /// Seconds to create.
    pub secs: f64,
    /// Resources left out because the emulator does not know their types.
    pub skipped: Vec<String>,
    /// Resources left out because the emulator does not emulate their service (probed), or they
    /// import an export of such a resource or refer to one: `Id (Type): <reason>`. Skipped, never
    /// counted as rehearsed (LocalStack would "deploy" them as a fallback, on paper only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_emulated: Vec<String>,
}

/// The rehearsal's result.
#[derive(Debug, Clone, Serialize)]
pub struct Rehearsal {
    /// Stage whose parameter files were used.
    pub stage: String,
    /// Stacks in deploy order (stops at the first failure).
    pub stacks: Vec<RehearsedStack>,
    /// Whether every stack was deleted afterwards.
    pub deleted: bool,
    /// How many stacks were to be deployed.
    pub planned: usize,
    /// The emulator's probed capabilities (which resource types it really creates).
    pub emulator: crate::services::emulator_caps::Capabilities,
}

impl Rehearsal {
    /// True when every stack to deploy reached CREATE_COMPLETE.
    pub fn ok(&self) -> bool {
        self.stacks.len() == self.planned
            && self.stacks.iter().all(|s| s.status == "CREATE_COMPLETE")
    }
}

/// Rehearses `plan` in a fresh emulator of its own (an isolated infra-only stack).
pub async fn run(config: &Config, plan: &Plan) -> Result<Rehearsal> {
    let dir = tempfile::Builder::new()
        .prefix("lfi-rehearse-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let isolated = Config::isolated(&config.root, &dir.path().join("state"))?;
    // LocalStack runs only in a container; ministack natively, as before.
    let runtime = match isolated.aws.emulator {
        harness_core::config::Emulator::Localstack => {
            harness_runtime::runtime::for_run("docker", &isolated)?
        }
        harness_core::config::Emulator::Ministack => {
            harness_runtime::runtime::for_run("native", &isolated)?
        }
    };
    let stack = Stack::new(isolated).with_runtime(runtime).infra_only();
    let up = stack.up().await?;
    let result = async {
        let port = up
            .status
            .service("aws")
            .map(|s| s.port)
            .context("the emulator is not running")?;
        let capabilities =
            crate::services::emulator_caps::probe(stack.config(), port, dir.path()).await?;
        if let Some(reason) = capabilities.skip_reason("rehearse") {
            bail!("cannot rehearse: {reason}");
        }
        let shared = aws::sdk_config(port, &config.aws.region).await;
        let cfn = aws_sdk_cloudformation::Client::new(&shared);
        // Local values (`--param DBHost=@postgres.host`) stand for what a run would give.
        let mut plan = plan.clone();
        plan.fill_local_values(|name| {
            Some(match name {
                "@postgres.host" => "postgres".to_string(),
                "@postgres.port" => postgres::CONTAINER_PORT.to_string(),
                "@postgres.database" => config.postgres.database.clone(),
                "@postgres.user" => crate::stack::deploy::MASTER_USER.to_string(),
                "@postgres.password" => "rehearsal-only".to_string(),
                _ => "langflow-infra/rehearsal:local".to_string(),
            })
        })?;
        let stacks = deploy_in_order(&cfn, &plan, &capabilities, &|_, _| Ok(())).await?;
        let mut deleted = true;
        for rehearsed in stacks.iter().rev() {
            deleted &= cfn
                .delete_stack()
                .stack_name(&rehearsed.name)
                .send()
                .await
                .is_ok();
        }
        Ok::<_, anyhow::Error>(Rehearsal {
            stage: plan.stage.clone(),
            stacks,
            deleted,
            planned: plan.stacks.len(),
            emulator: capabilities,
        })
    }
    .await;
    stack.down(true)?;
    result
}

/// Prepares one stack's template body before it is sent (the deploy puts the local stack's
/// values in for what the emulator cannot give; the rehearsal sends it as written).
pub type Prepare<'a> = dyn Fn(&PlannedStack, &mut serde_json::Value) -> Result<()> + Sync + 'a;

/// Creates the stacks of `plan` in order in the emulator's CloudFormation, each with its planned
/// parameters; resources of services the emulator does not emulate, or of types it does not
/// know, are left out and listed. Stops after the first stack that does not reach
/// CREATE_COMPLETE (it is the last of the list).
pub async fn deploy_in_order(
    cfn: &aws_sdk_cloudformation::Client,
    plan: &Plan,
    capabilities: &crate::services::emulator_caps::Capabilities,
    prepare: &Prepare<'_>,
) -> Result<Vec<RehearsedStack>> {
    let mut stacks = Vec::new();
    // Exports of the stacks created so far, and those left out with resources the emulator
    // does not emulate (their importers are left out in turn).
    let mut exports: std::collections::BTreeMap<String, String> = Default::default();
    let mut missing_exports: BTreeSet<String> = BTreeSet::new();
    for planned in &plan.stacks {
        let parameters: Vec<Parameter> = planned
            .given()
            .iter()
            .map(|(k, v)| {
                Parameter::builder()
                    .parameter_key(k)
                    .parameter_value(v)
                    .build()
            })
            .collect();
        let template = &planned.template;
        let mut body = template.body.clone();
        prepare(planned, &mut body)?;
        let not_emulated = leave_out_not_emulated(
            &mut body,
            &NotEmulatedContext {
                template,
                stack_name: &planned.name,
                parameters: &parameters,
                exports: &exports,
                capabilities,
            },
            &mut missing_exports,
        );
        let mut rehearsed = create(cfn, &planned.name, template, body, parameters).await?;
        rehearsed.not_emulated = not_emulated;
        rehearsed
            .not_emulated
            .extend(deployed_on_paper(cfn, &planned.name, capabilities.emulator).await);
        harness_core::progress::println(format!(
            "deploy: {} ({}) {}",
            planned.name, planned.key, rehearsed.status
        ));
        if let Ok(listed) = cfn.list_exports().send().await {
            for export in listed.exports() {
                if let (Some(n), Some(v)) = (export.name(), export.value()) {
                    exports.insert(n.to_string(), v.to_string());
                }
            }
        }
        let failed = rehearsed.status != "CREATE_COMPLETE";
        stacks.push(rehearsed);
        if failed {
            break;
        }
    }
    Ok(stacks)
}

/// Resources of stack `name` that the emulator itself reports as not really created: LocalStack's
/// CloudFormation "deploys" a resource type it does not implement "as a fallback" (on paper, with
/// placeholder attributes) and says so in the resource's status reason. (Making it refuse them
/// instead, `CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES=0`, makes 4.14's community edition refuse every
/// type, S3 buckets included.)
async fn deployed_on_paper(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    emulator: harness_core::config::Emulator,
) -> Vec<String> {
    let Ok(answer) = cfn.describe_stack_events().stack_name(name).send().await else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    answer
        .stack_events()
        .iter()
        .filter_map(|event| {
            let reason = event.resource_status_reason()?;
            let lower = reason.to_lowercase();
            if !(lower.contains("deployed as a fallback") || lower.contains("is not supported")) {
                return None;
            }
            let id = event.logical_resource_id()?.to_string();
            if id == name || !seen.insert(id.clone()) {
                return None;
            }
            Some(format!(
                "{id} ({}): {emulator} did not create it ({reason})",
                event.resource_type().unwrap_or("?")
            ))
        })
        .collect()
}

/// What deciding which resources of one stack the emulator does not emulate needs.
struct NotEmulatedContext<'a> {
    template: &'a Template,
    stack_name: &'a str,
    parameters: &'a [Parameter],
    exports: &'a std::collections::BTreeMap<String, String>,
    capabilities: &'a crate::services::emulator_caps::Capabilities,
}

/// Leaves out of `body` the resources whose service the emulator does not emulate (probed), the
/// resources that import an export left out of an earlier stack, and everything that refers to
/// them; adds the exports of the outputs left out to `missing_exports`. Returns each resource left
/// out with its reason. LocalStack's CloudFormation would "deploy" such resources as a fallback
/// (created on paper, placeholder attributes such as `unknown` flowing into other stacks): they
/// are reported as skipped instead of counting as rehearsed.
fn leave_out_not_emulated(
    body: &mut serde_json::Value,
    ctx: &NotEmulatedContext<'_>,
    missing_exports: &mut BTreeSet<String>,
) -> Vec<String> {
    use serde_json::Value;
    let mut refs: std::collections::BTreeMap<String, String> = ctx
        .template
        .parameters()
        .iter()
        .filter_map(|(k, spec)| {
            spec.get("Default")
                .map(|d| (k.clone(), d.as_str().map_or(d.to_string(), String::from)))
        })
        .collect();
    for p in ctx.parameters {
        if let (Some(k), Some(v)) = (p.parameter_key(), p.parameter_value()) {
            refs.insert(k.to_string(), v.to_string());
        }
    }
    let conditions = ctx
        .template
        .body
        .get("Conditions")
        .and_then(Value::as_object);
    let resolve = |value: &Value| {
        harness_cfn::validate::wiring::resolve(
            value,
            ctx.stack_name,
            &refs,
            ctx.exports,
            conditions,
        )
    };
    fn imports_missing(
        value: &Value,
        resolve: &dyn Fn(&Value) -> Option<String>,
        missing: &BTreeSet<String>,
    ) -> Option<String> {
        match value {
            Value::Object(map) => map.iter().find_map(|(k, v)| {
                if k == "Fn::ImportValue" {
                    if let Some(name) = resolve(v).filter(|n| missing.contains(n)) {
                        return Some(name);
                    }
                }
                imports_missing(v, resolve, missing)
            }),
            Value::Array(items) => items
                .iter()
                .find_map(|v| imports_missing(v, resolve, missing)),
            _ => None,
        }
    }
    let mut reasons: std::collections::BTreeMap<String, String> = Default::default();
    if let Some(resources) = body["Resources"].as_object() {
        for (id, resource) in resources {
            let resource_type = resource["Type"].as_str().unwrap_or("?");
            if let Some(reason) = ctx.capabilities.resource_skip_reason(resource_type) {
                reasons.insert(id.clone(), format!("{id} ({resource_type}): {reason}"));
            } else if let Some(export) = imports_missing(resource, &resolve, missing_exports) {
                reasons.insert(
                    id.clone(),
                    format!(
                        "{id} ({resource_type}): imports {export}, whose resource {} does not emulate",
                        ctx.capabilities.emulator
                    ),
                );
            }
        }
    }
    if reasons.is_empty() {
        return Vec::new();
    }
    let outputs_before = body["Outputs"].as_object().cloned().unwrap_or_default();
    let types_before: std::collections::BTreeMap<String, String> = body["Resources"]
        .as_object()
        .map(|r| {
            r.iter()
                .map(|(id, v)| (id.clone(), v["Type"].as_str().unwrap_or("?").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let removed = prune_ids(body, reasons.keys().cloned().collect());
    for id in &removed {
        if let Some(output) = outputs_before.get(id) {
            if let Some(name) = output.pointer("/Export/Name").and_then(&resolve) {
                missing_exports.insert(name);
            }
        } else if let Some(resource_type) = types_before.get(id) {
            reasons.entry(id.clone()).or_insert_with(|| {
                format!(
                    "{id} ({resource_type}): refers to a resource {} does not emulate",
                    ctx.capabilities.emulator
                )
            });
        }
    }
    reasons.into_values().collect()
}

/// Whether `value` mentions any of `ids` through Ref, GetAtt, DependsOn or Sub.
fn mentions(value: &serde_json::Value, ids: &BTreeSet<String>) -> bool {
    use serde_json::Value;
    match value {
        Value::String(s) => ids
            .iter()
            .any(|id| s.contains(&format!("${{{id}}}")) || s.contains(&format!("${{{id}."))),
        Value::Object(map) => map.iter().any(|(k, v)| {
            let direct = match (k.as_str(), v) {
                ("Ref", Value::String(s)) | ("DependsOn", Value::String(s)) => ids.contains(s),
                ("Fn::GetAtt", Value::Array(a)) => a
                    .first()
                    .and_then(Value::as_str)
                    .is_some_and(|s| ids.contains(s)),
                ("DependsOn", Value::Array(a)) => {
                    a.iter().filter_map(Value::as_str).any(|s| ids.contains(s))
                }
                _ => false,
            };
            direct || mentions(v, ids)
        }),
        Value::Array(items) => items.iter().any(|v| mentions(v, ids)),
        _ => false,
    }
}

/// Removes resources of `types`, then everything that refers to a removed resource.
fn prune(body: &mut serde_json::Value, types: &[String]) -> Vec<String> {
    let ids: BTreeSet<String> = body["Resources"]
        .as_object()
        .map(|resources| {
            resources
                .iter()
                .filter(|(_, r)| types.iter().any(|t| r["Type"] == t.as_str()))
                .map(|(id, _)| id.clone())
                .collect()
        })
        .unwrap_or_default();
    prune_ids(body, ids)
}

/// Removes the resources `ids`, then everything (resources, outputs) that refers to a removed
/// resource; returns every id removed.
fn prune_ids(body: &mut serde_json::Value, ids: BTreeSet<String>) -> Vec<String> {
    let mut removed = ids;
    if let Some(resources) = body["Resources"].as_object_mut() {
        resources.retain(|id, _| !removed.contains(id));
    }
    loop {
        let mut more = Vec::new();
        for section in ["Resources", "Outputs"] {
            // (`get_mut`: indexing a missing section mutably would add it as null, which the emulator rejects)
            if let Some(entries) = body.get_mut(section).and_then(|s| s.as_object_mut()) {
                entries.retain(|id, r| {
                    let keep = !mentions(r, &removed);
                    if !keep {
                        more.push(id.clone());
                    }
                    keep
                });
            }
        }
        if more.is_empty() {
            break;
        }
        removed.extend(more);
    }
    removed.into_iter().collect()
}

/// Replaces `{"Ref": P}` of Number parameters with the number itself (the emulator does
/// arithmetic on what real CloudFormation converts; it chokes on the string form).
fn inline_numbers(body: &mut serde_json::Value, template: &Template, parameters: &[Parameter]) {
    use serde_json::Value;
    let numbers: std::collections::BTreeMap<String, Value> = template
        .parameters()
        .iter()
        .filter(|(_, spec)| spec["Type"] == "Number")
        .filter_map(|(name, spec)| {
            let given = parameters
                .iter()
                .find(|p| p.parameter_key() == Some(name))
                .and_then(|p| p.parameter_value().map(String::from));
            let text = given.or_else(|| {
                spec.get("Default")
                    .map(|d| d.to_string().trim_matches('"').to_string())
            })?;
            let number: serde_json::Number = text
                .parse::<i64>()
                .map(Into::into)
                .ok()
                .or_else(|| serde_json::Number::from_f64(text.parse::<f64>().ok()?))?;
            Some((name.clone(), Value::Number(number)))
        })
        .collect();
    fn walk(value: &mut Value, numbers: &std::collections::BTreeMap<String, Value>) {
        if let Some(Value::String(name)) = value.get("Ref") {
            if let Some(n) = numbers.get(name) {
                *value = n.clone();
                return;
            }
        }
        match value {
            Value::Object(map) => map.values_mut().for_each(|v| walk(v, numbers)),
            Value::Array(items) => items.iter_mut().for_each(|v| walk(v, numbers)),
            _ => {}
        }
    }
    if let Some(resources) = body.get_mut("Resources") {
        walk(resources, &numbers);
    }
}

/// Replaces `Fn::GetAtt` of `attribute` on resources of `resource_type` with a placeholder.
fn replace_attribute(body: &mut serde_json::Value, resource_type: &str, attribute: &str) -> bool {
    let ids: BTreeSet<String> = body["Resources"]
        .as_object()
        .map(|r| {
            r.iter()
                .filter(|(_, v)| v["Type"] == resource_type)
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    fn walk(value: &mut serde_json::Value, ids: &BTreeSet<String>, attribute: &str) -> bool {
        use serde_json::Value;
        if let Some(Value::Array(a)) = value.get("Fn::GetAtt") {
            let target = a.first().and_then(Value::as_str).unwrap_or("");
            let attr = a.get(1).and_then(Value::as_str).unwrap_or("");
            if ids.contains(target) && attr == attribute {
                *value = Value::String(format!("rehearsal-placeholder:{target}.{attr}"));
                return true;
            }
        }
        match value {
            Value::Object(map) => map
                .values_mut()
                .fold(false, |acc, v| walk(v, ids, attribute) | acc),
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |acc, v| walk(v, ids, attribute) | acc),
            _ => false,
        }
    }
    walk(body, &ids, attribute)
}

/// Creates a stack, working around the emulator's gaps: unknown resource types are left out
/// and unknown attributes replaced by placeholders, each reported in `skipped`.
async fn create(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    template: &Template,
    mut body: serde_json::Value,
    parameters: Vec<Parameter>,
) -> Result<RehearsedStack> {
    inline_numbers(&mut body, template, &parameters);
    let mut skipped = Vec::new();
    loop {
        let mut rehearsed = create_once(cfn, name, &mut body, parameters.clone()).await?;
        skipped.append(&mut rehearsed.skipped);
        let gap = rehearsed.reason.as_deref().and_then(|r| {
            let rest = &r[r.find("Requested attribute ")? + "Requested attribute ".len()..];
            let (attribute, rest) = rest.split_once(' ')?;
            let resource_type = rest
                .split("schema for ")
                .nth(1)?
                .split_whitespace()
                .next()?;
            Some((attribute.to_string(), resource_type.to_string()))
        });
        match gap {
            Some((attribute, resource_type))
                if replace_attribute(&mut body, &resource_type, &attribute) =>
            {
                skipped.push(format!("{resource_type}.{attribute} (attribute)"));
                let _ = cfn.delete_stack().stack_name(name).send().await;
                wait_deleted(cfn, name).await;
            }
            _ => {
                rehearsed.skipped = skipped;
                return Ok(rehearsed);
            }
        }
    }
}

async fn wait_deleted(cfn: &aws_sdk_cloudformation::Client, name: &str) {
    for _ in 0..40 {
        let gone = match cfn.describe_stacks().stack_name(name).send().await {
            Err(_) => true,
            Ok(out) => out.stacks().first().is_none_or(|s| {
                s.stack_status()
                    .is_some_and(|st| st.as_str() == "DELETE_COMPLETE")
            }),
        };
        if gone {
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn create_once(
    cfn: &aws_sdk_cloudformation::Client,
    name: &str,
    body: &mut serde_json::Value,
    parameters: Vec<Parameter>,
) -> Result<RehearsedStack> {
    let started = Instant::now();
    let mut skipped = Vec::new();
    loop {
        // The emulator takes JSON or YAML; JSON avoids any short-form tag quirks.
        let sent = cfn
            .create_stack()
            .stack_name(name)
            .template_body(serde_json::to_string(&*body)?)
            .set_parameters(Some(parameters.clone()))
            .capabilities(Capability::CapabilityIam)
            .capabilities(Capability::CapabilityNamedIam)
            .send()
            .await;
        let Err(e) = sent else { break };
        let text = aws_sdk_cloudformation::error::DisplayErrorContext(&e).to_string();
        // Resource types the emulator does not implement are left out of the rehearsal (and
        // reported); anything else is a real failure.
        let marker = "Unrecognized resource types: [";
        let Some(start) = text.find(marker) else {
            bail!("create-stack {name}: {text}");
        };
        let list = &text[start + marker.len()..];
        let types: Vec<String> = list[..list.find(']').unwrap_or(0)]
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        if types.is_empty() {
            bail!("create-stack {name}: {text}");
        }
        skipped.extend(prune(body, &types));
    }
    loop {
        let described = cfn
            .describe_stacks()
            .stack_name(name)
            .send()
            .await
            .map_err(|e| {
                anyhow!(
                    "describe-stacks {name}: {}",
                    aws_sdk_cloudformation::error::DisplayErrorContext(&e)
                )
            })?;
        let Some(stack) = described.stacks().first() else {
            bail!("stack {name} vanished");
        };
        let status = stack.stack_status().cloned();
        let in_progress = matches!(
            status,
            Some(StackStatus::CreateInProgress) | Some(StackStatus::ReviewInProgress) | None
        );
        if !in_progress || started.elapsed() > STACK_TIMEOUT {
            let status_text = status.map_or("UNKNOWN".to_string(), |s| s.as_str().to_string());
            let reason = if status_text == "CREATE_COMPLETE" {
                None
            } else {
                first_failure(cfn, name)
                    .await
                    .or_else(|| stack.stack_status_reason().map(String::from))
            };
            return Ok(RehearsedStack {
                name: name.to_string(),
                status: status_text,
                reason,
                outputs: stack
                    .outputs()
                    .iter()
                    .map(|o| {
                        (
                            o.output_key().unwrap_or_default().to_string(),
                            o.output_value().unwrap_or_default().to_string(),
                        )
                    })
                    .collect(),
                secs: started.elapsed().as_secs_f64(),
                skipped,
                not_emulated: Vec::new(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

async fn first_failure(cfn: &aws_sdk_cloudformation::Client, name: &str) -> Option<String> {
    let events = cfn
        .describe_stack_events()
        .stack_name(name)
        .send()
        .await
        .ok()?;
    events.stack_events().iter().rev().find_map(|e| {
        let failed = e
            .resource_status()
            .is_some_and(|s| s.as_str().ends_with("FAILED"));
        failed.then(|| {
            format!(
                "{}: {}",
                e.logical_resource_id().unwrap_or("?"),
                e.resource_status_reason().unwrap_or("failed")
            )
        })
    })
}
