//! Langflow service rules (check `langflow`): the deploy bugs of a Langflow service that no
//! general-purpose linter knows, judged on any template set by what its resources are — an
//! `AWS::ECS::TaskDefinition` container with `LANGFLOW_*` variables or a Langflow image is a
//! Langflow service; its `AWS::ECS::Service`, the service's target group and autoscaling target
//! are found through the references between them. Values are evaluated with the template's
//! defaults and with each stage's parameter file; a rule fires when any of them breaks it (the
//! finding names the stage). Each finding says what breaks and cites where Langflow 1.13 does it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::params::ParamFile;
use super::template::Template;
use super::wiring;
use super::{Finding, Severity};

/// Langflow's own settings the rules read (names are Langflow's, not any template's).
const SECRET_KEY: &str = "LANGFLOW_SECRET_KEY";
/// The reference image's key material (its `requires-env` label; it derives per-tenant keys).
const KEY_SEED: &str = "LANGFLOW_TENANT_KEY_SEED";
const WORKERS: &str = "LANGFLOW_WORKERS";
const JOB_QUEUE_TYPE: &str = "LANGFLOW_JOB_QUEUE_TYPE";
const CACHE_TYPE: &str = "LANGFLOW_CACHE_TYPE";
const EVENT_DELIVERY: &str = "LANGFLOW_EVENT_DELIVERY";
const STORAGE_TYPE: &str = "LANGFLOW_STORAGE_TYPE";
const ALLOW_MULTI_WORKER: &str = "LANGFLOW_DANGEROUSLY_ALLOW_MULTI_WORKER_WITHOUT_SHARED_QUEUE";
const DATABASE_URL: &str = "LANGFLOW_DATABASE_URL";
const SUPERUSER_PASSWORD: &str = "LANGFLOW_SUPERUSER_PASSWORD";
/// Variables that carry a database password by convention (the value's flow is what is
/// compared, not the name alone).
const DB_PASSWORD_NAMES: [&str; 5] = [
    "DB_PASSWORD",
    "DB_PASS",
    "DATABASE_PASSWORD",
    "POSTGRES_PASSWORD",
    "PGPASSWORD",
];
/// Variables that feed a database connection.
const DB_PART_NAMES: [&str; 7] = [
    "DB_HOST",
    "DB_USER",
    "DB_PASSWORD",
    "DB_PASS",
    "DB_NAME",
    "DB_PORT",
    "DATABASE_URL",
];

/// One evaluation scenario: which stage (`None` = the template's defaults) and the values.
struct Scenario {
    stage: Option<String>,
    values: BTreeMap<String, String>,
}

impl Scenario {
    fn eval(&self, template: &Template, value: &Value) -> Option<String> {
        let mut refs = self.values.clone();
        refs.insert("AWS::Region".into(), "us-east-1".into());
        refs.insert("AWS::AccountId".into(), "000000000000".into());
        refs.insert("AWS::Partition".into(), "aws".into());
        refs.insert("AWS::URLSuffix".into(), "amazonaws.com".into());
        wiring::resolve(
            value,
            "stack",
            &refs,
            &BTreeMap::new(),
            template.body["Conditions"].as_object(),
        )
    }

    fn label(&self) -> String {
        match &self.stage {
            Some(stage) => format!("stage {stage}"),
            None => "the template's defaults".to_string(),
        }
    }
}

/// A Langflow container of a task definition, with everything the rules need about it.
struct LangflowTask<'a> {
    template: &'a Template,
    task_id: &'a str,
    /// `Environment` by name.
    environment: BTreeMap<String, &'a Value>,
    /// `Secrets` by name (`ValueFrom`).
    secrets: BTreeMap<String, &'a Value>,
    /// The service running it, if any.
    service: Option<(&'a str, &'a Value)>,
    /// The container's `Command` (null: the image's own).
    command: &'a Value,
}

impl LangflowTask<'_> {
    fn given(&self, name: &str) -> bool {
        self.environment.contains_key(name) || self.secrets.contains_key(name)
    }

    fn finding(
        &self,
        rule: &str,
        severity: Severity,
        path: &str,
        message: String,
        fix: &str,
    ) -> Finding {
        let resource = self.service.map_or(self.task_id, |(id, _)| id);
        let keys: Vec<&str> = path.split('.').collect();
        Finding {
            sources: Vec::new(),
            check: "langflow".into(),
            rule: rule.into(),
            severity,
            file: self.template.display.clone(),
            line: self.template.line_of("Resources", resource, &keys),
            resource: Some(resource.to_string()),
            path: Some(path.to_string()),
            message,
            fix: Some(fix.to_string()),
        }
    }
}

/// Whether a container runs Langflow: a `LANGFLOW_*` variable, or "langflow" in its image.
pub(crate) fn is_langflow(container: &Value) -> bool {
    let named = |list: &Value| {
        list.as_array().into_iter().flatten().any(|e| {
            e["Name"]
                .as_str()
                .is_some_and(|n| n.starts_with("LANGFLOW_"))
        })
    };
    named(&container["Environment"])
        || named(&container["Secrets"])
        || serde_json::to_string(&container["Image"])
            .unwrap_or_default()
            .to_lowercase()
            .contains("langflow")
}

/// Whether `value` refers to logical id `id` (Ref, GetAtt, `${id}` / `${id.X}` in Sub).
fn mentions(value: &Value, id: &str) -> bool {
    match value {
        Value::String(s) => s.contains(&format!("${{{id}}}")) || s.contains(&format!("${{{id}.")),
        Value::Object(map) => map.iter().any(|(k, v)| {
            (k == "Ref" && v.as_str() == Some(id))
                || (k == "Fn::GetAtt"
                    && (v.get(0).and_then(Value::as_str) == Some(id)
                        || v.as_str().is_some_and(|s| s.split('.').next() == Some(id))))
                || mentions(v, id)
        }),
        Value::Array(items) => items.iter().any(|v| mentions(v, id)),
        _ => false,
    }
}

/// The names a value is built from: `Ref` targets and `${Name}` of `Fn::Sub` (pseudo parameters
/// left out), `Fn::ImportValue` arguments and dynamic references, each as text.
fn sources(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                let after = &rest[start + 2..];
                let Some(end) = after.find('}') else { break };
                let name = &after[..end];
                if !name.starts_with('!') && !name.starts_with("AWS::") {
                    out.insert(format!("ref:{name}"));
                }
                rest = &after[end + 1..];
            }
            let mut rest = s.as_str();
            while let Some(start) = rest.find("{{resolve:") {
                let after = &rest[start..];
                let end = after.find("}}").map_or(after.len(), |e| e + 2);
                out.insert(format!("dynamic:{}", &after[..end]));
                rest = &after[end..];
            }
        }
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("Ref", Value::String(name)) if !name.starts_with("AWS::") => {
                        out.insert(format!("ref:{name}"));
                    }
                    ("Fn::ImportValue", _) => {
                        out.insert(format!("import:{v}"));
                    }
                    _ => sources(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| sources(v, out)),
        _ => {}
    }
}

/// The `${Name}`s inside the password part (`user:PASSWORD@`) of a connection URL written as a
/// `Fn::Sub` string.
fn url_password_sources(value: &Value) -> BTreeSet<String> {
    let text = match value.get("Fn::Sub") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(items)) => items
            .first()
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        _ => return BTreeSet::new(),
    };
    let Some(after_scheme) = text.split_once("://").map(|(_, r)| r) else {
        return BTreeSet::new();
    };
    let Some((credentials, _)) = after_scheme.rsplit_once('@') else {
        return BTreeSet::new();
    };
    let Some((_, password)) = credentials.split_once(':') else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    sources(&Value::String(password.to_string()), &mut out);
    out
}

/// `Ref`s of parameters that are not under an `Fn::If` (a value guarded by a condition is the
/// template's own fallback logic).
fn unguarded_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(map) if map.contains_key("Fn::If") => {}
        Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("Ref", Value::String(name)) => {
                        out.insert(name.clone());
                    }
                    ("Fn::Sub", Value::String(s)) => {
                        let mut found = BTreeSet::new();
                        sources(&Value::String(s.clone()), &mut found);
                        out.extend(
                            found
                                .into_iter()
                                .filter_map(|f| f.strip_prefix("ref:").map(String::from)),
                        );
                    }
                    _ => unguarded_refs(v, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| unguarded_refs(v, out)),
        _ => {}
    }
}

/// Runs the Langflow rules over `templates` with their stages' parameter files.
pub fn check(templates: &[Template], param_files: &[ParamFile]) -> Vec<Finding> {
    let mut findings = Vec::new();
    for template in templates {
        let key = crate::deploy::stack_key(&template.path);
        let defaults = template.parameter_defaults();
        let mut scenarios = vec![Scenario {
            stage: None,
            values: defaults.clone(),
        }];
        for file in param_files.iter().filter(|f| f.stack_type == key) {
            let mut values = defaults.clone();
            values.extend(file.values.clone());
            scenarios.push(Scenario {
                stage: Some(file.stage.clone()),
                values,
            });
        }
        let resources = template.body["Resources"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        let resources_ref = template.body["Resources"].as_object();
        let Some(all) = resources_ref else { continue };
        let of_type = |kind: &str| -> Vec<(&String, &Value)> {
            all.iter().filter(|(_, r)| r["Type"] == kind).collect()
        };
        for (task_id, task) in of_type("AWS::ECS::TaskDefinition") {
            for container in task["Properties"]["ContainerDefinitions"]
                .as_array()
                .into_iter()
                .flatten()
            {
                if !is_langflow(container) {
                    continue;
                }
                let service = of_type("AWS::ECS::Service")
                    .into_iter()
                    .find(|(_, s)| mentions(&s["Properties"]["TaskDefinition"], task_id))
                    .map(|(id, s)| (id.as_str(), s));
                let lf = LangflowTask {
                    template,
                    task_id,
                    environment: named(&container["Environment"], "Value"),
                    secrets: named(&container["Secrets"], "ValueFrom"),
                    service,
                    command: &container["Command"],
                };
                findings.extend(task_rules(&lf, &scenarios, all));
            }
        }
        findings.extend(bucket_rules(template, &resources));
    }
    findings
}

/// `Name` → the entry's `value_key` of a container's `Environment` / `Secrets` list.
fn named<'a>(list: &'a Value, value_key: &str) -> BTreeMap<String, &'a Value> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| Some((e["Name"].as_str()?.to_string(), e.get(value_key)?)))
        .collect()
}

/// The largest number a value takes over the scenarios, with the scenario's label.
fn most(
    template: &Template,
    value: Option<&Value>,
    scenarios: &[Scenario],
) -> Option<(u64, String)> {
    let value = value?;
    // (reversed: of equal values, the first scenario — the defaults — is named)
    scenarios
        .iter()
        .rev()
        .filter_map(|s| {
            Some((
                s.eval(template, value)?.trim().parse::<u64>().ok()?,
                s.label(),
            ))
        })
        .max_by_key(|(n, _)| *n)
}

fn task_rules(
    lf: &LangflowTask<'_>,
    scenarios: &[Scenario],
    all: &serde_json::Map<String, Value>,
) -> Vec<Finding> {
    let mut out = Vec::new();
    let template = lf.template;
    // How many tasks and workers.
    let desired = lf
        .service
        .and_then(|(_, s)| most(template, Some(&s["Properties"]["DesiredCount"]), scenarios));
    let scaled = lf.service.and_then(|(service_id, _)| {
        all.iter()
            .filter(|(_, r)| r["Type"] == "AWS::ApplicationAutoScaling::ScalableTarget")
            .filter(|(_, r)| mentions(&r["Properties"]["ResourceId"], service_id))
            .filter_map(|(id, r)| {
                most(template, Some(&r["Properties"]["MaxCapacity"]), scenarios)
                    .map(|(n, label)| (n, format!("{label}, autoscaling target {id}")))
            })
            .max_by_key(|(n, _)| *n)
    });
    let tasks = [desired.clone(), scaled.clone()]
        .into_iter()
        .flatten()
        .max_by_key(|(n, _)| *n);
    let workers = most(template, lf.environment.get(WORKERS).copied(), scenarios);
    let task_count = tasks.as_ref().map_or(1, |(n, _)| *n);
    let worker_count = workers.as_ref().map_or(1, |(n, _)| *n);
    let text = |name: &str| -> Option<String> {
        let value = lf.environment.get(name)?;
        scenarios.iter().find_map(|s| s.eval(template, value))
    };
    let redis_queue = text(JOB_QUEUE_TYPE).is_some_and(|v| v.eq_ignore_ascii_case("redis"));
    // Direct event delivery: a build's events come back in its own response, so no request has
    // to reach the process that holds the job (`e2e --suite replicas` shows both cases).
    // (in every stage: one stage streaming from the job's process is enough to break)
    let direct_events = lf.environment.get(EVENT_DELIVERY).is_some_and(|value| {
        scenarios.iter().all(|s| {
            s.eval(template, value)
                .is_some_and(|v| v.eq_ignore_ascii_case("direct"))
        })
    });
    let shared_jobs = redis_queue || direct_events;

    // 1. Several processes sign tokens: one shared key.
    if task_count > 1 || worker_count > 1 {
        let shared = lf.given(SECRET_KEY) || lf.secrets.contains_key(KEY_SEED);
        if !shared {
            let why = match (&tasks, &workers) {
                (Some((t, label)), _) if *t > 1 => format!("up to {t} tasks ({label})"),
                (_, Some((w, label))) => format!("{w} workers per task ({label})"),
                _ => "several processes".to_string(),
            };
            out.push(lf.finding(
                "langflow-shared-signing-key",
                Severity::Error,
                "Properties.TaskDefinition",
                format!(
                    "the Langflow service can run {why}, but its container gets no {SECRET_KEY}: Langflow 1.13 (lfx/services/settings/auth.py) then writes a random secrets.token_urlsafe(32) key into each process's config dir, so a token issued by one task is refused by the others (login loops behind the load balancer, langflow-ai/langflow#4378, #9023) and stored credentials cannot be decrypted after a restart"
                ),
                "give every task one key from Secrets Manager: Secrets: [{Name: LANGFLOW_SECRET_KEY, ValueFrom: <secret ARN>}] (an AWS::SecretsManager::Secret with GenerateSecretString)",
            ));
        }
    }
    // 2. Several workers need the shared job queue (Langflow refuses to start otherwise).
    // `langflow run` (a stock image's CMD, or a Command naming it) refuses several workers with
    // the in-process queue even when builds deliver their events directly.
    let runs_langflow_run = match lf.command.as_array() {
        Some(parts) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ")
            .contains("langflow run"),
        None => !lf.given(KEY_SEED),
    };
    let allowed = text(ALLOW_MULTI_WORKER).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if worker_count > 1 && !redis_queue {
        let (w, label) = workers.clone().unwrap_or((worker_count, String::new()));
        let problem = if !direct_events {
            Some((
                format!(
                    "{WORKERS}={w} ({label}) with the in-process job queue: Langflow 1.13 refuses to start `langflow run` with several workers unless {JOB_QUEUE_TYPE}=redis (langflow/__main__.py ensure_multi_worker_safe: the build's GET /api/v1/build/<job_id>/events lands on another worker, 'Job queue not found for job_id', langflow-ai/langflow#7579)"
                ),
                "set LANGFLOW_EVENT_DELIVERY=direct (a build's events come in its own response), or LANGFLOW_JOB_QUEUE_TYPE=redis with LANGFLOW_REDIS_QUEUE_URL pointing at a shared Redis, or LANGFLOW_WORKERS=1 and scale with tasks",
            ))
        } else if runs_langflow_run && !allowed {
            Some((
                format!(
                    "{WORKERS}={w} ({label}) with the in-process job queue: builds are safe ({EVENT_DELIVERY}=direct), but `langflow run` (the image's command) refuses to start several workers unless {JOB_QUEUE_TYPE}=redis or {ALLOW_MULTI_WORKER}=true (langflow/__main__.py ensure_multi_worker_safe)"
                ),
                "set LANGFLOW_DANGEROUSLY_ALLOW_MULTI_WORKER_WITHOUT_SHARED_QUEUE=true (safe with direct event delivery), or LANGFLOW_JOB_QUEUE_TYPE=redis with a shared Redis",
            ))
        } else {
            None
        };
        if let Some((message, fix)) = problem {
            out.push(lf.finding(
                "langflow-workers-need-shared-queue",
                Severity::Error,
                "Properties.ContainerDefinitions",
                message,
                fix,
            ));
        }
    }
    if worker_count > 1 {
        let (w, _) = workers.clone().unwrap_or((worker_count, String::new()));
        let cache = text(CACHE_TYPE).unwrap_or_else(|| "async".into());
        if !cache.eq_ignore_ascii_case("redis") {
            out.push(lf.finding(
                "langflow-workers-per-process-cache",
                Severity::Warning,
                "Properties.ContainerDefinitions",
                format!(
                    "{WORKERS}={w} with {CACHE_TYPE}={cache}: Langflow's cache is per process (lfx/services/settings/groups/cache.py), so each worker builds and holds its own (langflow-ai/langflow#3926)"
                ),
                "set LANGFLOW_CACHE_TYPE=redis with LANGFLOW_REDIS_URL, or run one worker per task",
            ));
        }
    }
    // 3. Several tasks behind a target group that does not keep a client on one task.
    let target_groups: Vec<(&String, &Value)> = lf
        .service
        .map(|(_, s)| {
            all.iter()
                .filter(|(_, r)| r["Type"] == "AWS::ElasticLoadBalancingV2::TargetGroup")
                .filter(|(id, _)| mentions(&s["Properties"]["LoadBalancers"], id))
                .collect()
        })
        .unwrap_or_default();
    if task_count > 1 && !shared_jobs {
        for (tg_id, tg) in &target_groups {
            let sticky = tg["Properties"]["TargetGroupAttributes"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|a| {
                    a["Key"].as_str() == Some("stickiness.enabled")
                        && scenarios
                            .iter()
                            .all(|s| s.eval(template, &a["Value"]).as_deref() == Some("true"))
                });
            if !sticky {
                let (t, label) = tasks.clone().unwrap_or((task_count, String::new()));
                out.push(lf.finding(
                    "langflow-several-tasks-not-sticky",
                    Severity::Error,
                    "Properties.LoadBalancers",
                    format!(
                        "up to {t} tasks ({label}) behind target group {tg_id}, which is not sticky (in every stage), and the job queue is in-process: a flow built in the UI posts to one task and follows GET /api/v1/build/<job_id>/events on whichever the load balancer picks, which answers 'Job queue not found for job_id' (langflow/services/job_queue/service.py JobQueueNotFoundError)"
                    ),
                    "set LANGFLOW_EVENT_DELIVERY=direct (a build's events come in its own response), or turn on stickiness (TargetGroupAttributes stickiness.enabled: true, stickiness.type: lb_cookie), or share the job queue (LANGFLOW_JOB_QUEUE_TYPE=redis)",
                ));
            }
        }
    }
    // 4. Several tasks keep uploaded files on their own disks.
    if task_count > 1 {
        // The first stage (defaults first) that keeps them locally.
        let local = scenarios.iter().find_map(|scenario| {
            let storage = match lf.environment.get(STORAGE_TYPE) {
                Some(value) => scenario.eval(template, value)?,
                None => "local".to_string(),
            };
            (!storage.eq_ignore_ascii_case("s3")).then(|| (storage, scenario.label()))
        });
        if let Some((storage, stage)) = local {
            let (t, label) = tasks.clone().unwrap_or((task_count, String::new()));
            let storage = format!("{storage} ({stage})");
            out.push(lf.finding(
                "langflow-files-on-task-disk",
                Severity::Error,
                "Properties.ContainerDefinitions",
                format!(
                    "up to {t} tasks ({label}) with {STORAGE_TYPE}={storage}: a file uploaded through one task is stored on that task's disk (the config dir), so the others answer 404 for it and it is gone when the task is replaced (langflow-ai/langflow#5737)"
                ),
                "set LANGFLOW_STORAGE_TYPE=s3 with LANGFLOW_OBJECT_STORAGE_BUCKET_NAME (a bucket of the stack; the task role may read and write it)",
            ));
        }
    }
    // 5. The health check path.
    for (tg_id, tg) in &target_groups {
        let path_value = &tg["Properties"]["HealthCheckPath"];
        let mut reported = BTreeSet::new();
        for scenario in scenarios {
            let path = if path_value.is_null() {
                Some("/".to_string())
            } else {
                scenario.eval(template, path_value)
            };
            let Some(path) = path else { continue };
            let clean = path.split('?').next().unwrap_or_default().to_string();
            let (severity, message, rule) = if clean.len() > 1 && clean.ends_with('/') {
                (
                    Severity::Error,
                    format!("target group {tg_id} checks {path} ({}): Langflow answers a path with a trailing slash with a 307 redirect to the path without it, which the load balancer does not follow: under the default matcher 200 no task is ever healthy", scenario.label()),
                    "langflow-health-path-redirects",
                )
            } else if clean == "/health" || clean == "/" {
                (
                    Severity::Warning,
                    format!("target group {tg_id} checks {path} ({}): Langflow answers it 200 while its database is down (langflow-ai/langflow#8921), so a task that cannot serve stays in service", scenario.label()),
                    "langflow-health-path-not-readiness",
                )
            } else {
                continue;
            };
            if !reported.insert(rule) {
                continue;
            }
            let mut finding = lf.finding(
                rule,
                severity,
                "Properties.HealthCheckPath",
                message,
                "check /health_check, Langflow's readiness check (200 only when the database answers)",
            );
            finding.resource = Some((*tg_id).clone());
            finding.line = template.line_of("Resources", tg_id, &["Properties", "HealthCheckPath"]);
            out.push(finding);
        }
    }
    // 5. The superuser's password from the database password's source.
    let superuser = lf
        .environment
        .get(SUPERUSER_PASSWORD)
        .map(|v| (false, *v))
        .or_else(|| lf.secrets.get(SUPERUSER_PASSWORD).map(|v| (true, *v)));
    if let Some((secret, value)) = superuser {
        let mut db_sources = BTreeSet::new();
        let mut db_secret_exprs = BTreeSet::new();
        for name in DB_PASSWORD_NAMES {
            if let Some(v) = lf.environment.get(name) {
                sources(v, &mut db_sources);
            }
            if let Some(v) = lf.secrets.get(name) {
                db_secret_exprs.insert(v.to_string());
            }
        }
        if let Some(url) = lf.environment.get(DATABASE_URL) {
            db_sources.extend(url_password_sources(url));
        }
        for (_, r) in all.iter().filter(|(_, r)| {
            matches!(
                r["Type"].as_str(),
                Some("AWS::RDS::DBCluster" | "AWS::RDS::DBInstance")
            )
        }) {
            sources(&r["Properties"]["MasterUserPassword"], &mut db_sources);
        }
        let mut own = BTreeSet::new();
        sources(value, &mut own);
        let same = if secret {
            db_secret_exprs.contains(&value.to_string())
        } else {
            own.iter().any(|s| db_sources.contains(s))
        };
        if same {
            let shared: Vec<&str> = own
                .iter()
                .filter(|s| db_sources.contains(*s))
                .map(|s| s.split_once(':').map_or(s.as_str(), |(_, n)| n))
                .collect();
            out.push(lf.finding(
                "langflow-superuser-password-is-db-password",
                Severity::Error,
                "Properties.ContainerDefinitions",
                format!(
                    "{SUPERUSER_PASSWORD} comes from the database password's source{}: whoever logs in to Langflow as the superuser holds the database owner's password too, and rotating one rotates (or breaks) the other",
                    if shared.is_empty() { String::new() } else { format!(" ({})", shared.join(", ")) }
                ),
                "give the superuser a secret of its own (an AWS::SecretsManager::Secret with GenerateSecretString, as a Secrets entry)",
            ));
        }
    }
    // 6. Empty defaults that feed the database connection.
    let parameters = template.parameters();
    let mut feeding = BTreeSet::new();
    for (name, value) in &lf.environment {
        if name == DATABASE_URL || DB_PART_NAMES.contains(&name.as_str()) {
            unguarded_refs(value, &mut feeding);
        }
    }
    for param in feeding {
        let Some(spec) = parameters.get(&param) else {
            continue;
        };
        let empty_default = spec.get("Default").and_then(Value::as_str) == Some("");
        let required = spec
            .get("MinLength")
            .and_then(|m| m.as_u64().or_else(|| m.as_str()?.parse().ok()))
            .unwrap_or(0)
            > 0
            || spec.get("AllowedPattern").is_some();
        if empty_default && !required {
            let mut finding = lf.finding(
                "langflow-empty-database-default",
                Severity::Warning,
                "Default",
                format!(
                    "parameter {param} defaults to '' and feeds the database connection: a deploy that forgets --parameter-overrides {param}=… starts Langflow with an empty part in its database URL, which fails at start (or, without {DATABASE_URL}, falls back to SQLite in the task)"
                ),
                "drop the Default (CloudFormation then requires the value) or add MinLength: 1",
            );
            finding.resource = Some(param.clone());
            finding.line = template.line_of("Parameters", &param, &["Default"]);
            out.push(finding);
        }
    }
    out
}

/// Buckets whose CORS lets any origin write.
fn bucket_rules(template: &Template, resources: &serde_json::Map<String, Value>) -> Vec<Finding> {
    let mut out = Vec::new();
    for (id, bucket) in resources
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::S3::Bucket")
    {
        for (i, rule) in bucket["Properties"]["CorsConfiguration"]["CorsRules"]
            .as_array()
            .into_iter()
            .flatten()
            .enumerate()
        {
            let any_origin = rule["AllowedOrigins"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|o| o.as_str() == Some("*"));
            let writes: Vec<&str> = rule["AllowedMethods"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .filter(|m| matches!(*m, "PUT" | "POST" | "DELETE"))
                .collect();
            if any_origin && !writes.is_empty() {
                out.push(Finding {
                    sources: Vec::new(),
                    check: "langflow".into(),
                    rule: "bucket-cors-any-origin-writes".into(),
                    severity: Severity::Error,
                    file: template.display.clone(),
                    line: template.line_of("Resources", id, &["Properties", "CorsConfiguration"]),
                    resource: Some(id.clone()),
                    path: Some(format!("Properties.CorsConfiguration.CorsRules.{i}")),
                    message: format!(
                        "CORS rule {i} of bucket {id} lets any origin (*) {}: a page on any site can use a visitor's presigned URLs or session against the tenants' files",
                        writes.join("/")
                    ),
                    fix: Some("list the Langflow origins in AllowedOrigins, or allow only GET/HEAD".into()),
                });
            }
        }
    }
    out
}
