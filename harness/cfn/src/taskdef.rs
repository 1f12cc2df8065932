//! The deployed task as ECS would run it: the Fargate stack's TaskDefinition
//! (`aws/apps/fargate-stack.cfn.yaml`: its container's port, `Environment` and `Secrets`), the
//! service's `DesiredCount` and the target group's health check path and stickiness, rendered for
//! the local stack. Parameters come from the stage's parameter file (`aws/params/fargate-<stage>.json`)
//! over the template's defaults, then the local overrides; imports and resource references resolve
//! to the local stack's endpoints. What an image needs that the task does not give is a finding
//! (the image-contract check), never something the harness quietly adds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

/// The Fargate stack's template, relative to the project root.
pub const TEMPLATE: &str = "aws/apps/fargate-stack.cfn.yaml";

/// Image label listing the environment variables the image requires (comma-separated).
pub const REQUIRES_ENV_LABEL: &str = "dev.langflow-infra.requires-env";
/// Image label giving the command that manages tenants inside the container.
pub const TENANTMGR_LABEL: &str = "dev.langflow-infra.tenantmgr";

/// What a stock Langflow image needs from its environment to serve more than one task, and what it
/// does without it (read in Langflow 1.13's own settings, `lfx/services/settings`: without a
/// database URL `groups/database.py` builds `sqlite:///…` in the config dir; without a key
/// `auth.py` writes `secrets.token_urlsafe(32)` to `<config dir>/secret_key`).
pub const STOCK_LANGFLOW_NEEDS: [(&str, &str); 2] = [
    (
        "LANGFLOW_DATABASE_URL",
        "without it Langflow falls back to SQLite inside each task's own filesystem: every task has its own data, lost when the task stops",
    ),
    (
        "LANGFLOW_SECRET_KEY",
        "without it Langflow generates a random key in each task's config dir: a token issued by one task is refused by the others and stored secrets cannot be read after a restart",
    ),
];

/// A Secrets Manager reference of a `Secrets` entry (`ValueFrom`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecretRef {
    /// The secret's ARN (without the JSON key, version stage and version id).
    pub arn: String,
    /// The JSON key to read from the secret's string, if any.
    pub json_key: Option<String>,
}

impl SecretRef {
    /// Parses a `ValueFrom`: `arn:aws:secretsmanager:<region>:<account>:secret:<name>[:<json-key>:<stage>:<version>]`.
    pub fn parse(value_from: &str) -> Result<Self> {
        let parts: Vec<&str> = value_from.split(':').collect();
        if parts.len() < 7 || parts[0] != "arn" || parts[2] != "secretsmanager" {
            bail!("{value_from:?} is not a Secrets Manager ARN (SSM parameters are not supported locally)");
        }
        let arn = parts[..7].join(":");
        let json_key = parts
            .get(7)
            .filter(|k| !k.is_empty())
            .map(|k| k.to_string());
        Ok(Self { arn, json_key })
    }
}

/// The task of the deployed service, rendered for the local stack.
#[derive(Debug, Clone, Serialize)]
pub struct TaskShape {
    /// The template it was read from.
    pub template: PathBuf,
    /// The stack name it was rendered with.
    pub stack_name: String,
    /// The container's name in the TaskDefinition.
    pub container: String,
    /// The port the container listens on.
    pub container_port: u16,
    /// `Environment`, resolved.
    pub environment: BTreeMap<String, String>,
    /// `Secrets`: variable → where ECS reads its value.
    pub secrets: BTreeMap<String, SecretRef>,
    /// The target group's health check path.
    pub health_path: String,
    /// The service's `DesiredCount`.
    pub desired_count: u32,
    /// Whether the target group is sticky (lb_cookie).
    pub sticky: bool,
}

impl TaskShape {
    /// Every variable the container gets (environment and secrets).
    pub fn variables(&self) -> BTreeSet<String> {
        self.environment
            .keys()
            .chain(self.secrets.keys())
            .cloned()
            .collect()
    }
}

/// The local stack's side of the wiring: what the template's parameters, resources and imports
/// stand for here.
#[derive(Debug, Clone, Default)]
pub struct LocalWiring {
    /// Stage whose parameter file is read (`dev`).
    pub stage: String,
    /// Where the parameter files are when the template has no `params/` beside its folder (a
    /// template given with `--template` outside the project): the project's `aws/params`.
    pub params_dir: Option<PathBuf>,
    /// Parameter values that replace the file's (`ContainerImage`, ...).
    pub overrides: BTreeMap<String, String>,
    /// Physical ids of the stack's own resources by logical id (`TenantFilesBucket` → bucket name).
    pub resources: BTreeMap<String, String>,
    /// Outputs of the RDS stack by output name (`DBClusterEndpoint`, `DBSecretArn`), imported as
    /// `<RdsStackName>-<output>`.
    pub rds_outputs: BTreeMap<String, String>,
    /// Region and account of the pseudo parameters.
    pub region: String,
    /// Account id (`AWS::AccountId`).
    pub account: String,
}

/// Reads the Fargate template at `template` and renders its task for the local stack.
pub fn render(template: &Path, wiring: &LocalWiring) -> Result<TaskShape> {
    let display = template.display().to_string();
    let loaded = crate::validate::template::load(template, &display)
        .map_err(|f| anyhow!("{display}: {}", f.message))?;
    let body = &loaded.body;
    let mut params = loaded.parameter_defaults();
    let file_name = format!("fargate-{}.json", wiring.stage);
    let params_file = template
        .parent()
        .and_then(Path::parent)
        .map(|aws| aws.join("params").join(&file_name))
        .filter(|f| f.is_file())
        .or_else(|| wiring.params_dir.as_ref().map(|d| d.join(&file_name)));
    if let Some(file) = params_file.filter(|f| f.is_file()) {
        let parsed = crate::validate::params::load(&file, &file.display().to_string())
            .map_err(|f| anyhow!("{}: {}", file.display(), f.message))?;
        params.extend(parsed.values);
    }
    params.extend(wiring.overrides.clone());
    let stack_name = format!("langflow-local-{}-fargate-stack", wiring.stage);
    let mut refs = params.clone();
    refs.extend(wiring.resources.clone());
    refs.insert("AWS::Region".into(), wiring.region.clone());
    refs.insert("AWS::AccountId".into(), wiring.account.clone());
    refs.insert("AWS::Partition".into(), "aws".into());
    refs.insert("AWS::URLSuffix".into(), "amazonaws.com".into());
    let rds = params.get("RdsStackName").cloned().unwrap_or_default();
    let imports: BTreeMap<String, String> = wiring
        .rds_outputs
        .iter()
        .map(|(output, value)| (format!("{rds}-{output}"), value.clone()))
        .collect();
    let conditions = body["Conditions"].as_object();
    let resolve = |value: &Value, what: &str| -> Result<String> {
        crate::validate::wiring::resolve(value, &stack_name, &refs, &imports, conditions)
            .with_context(|| {
                format!("{display}: {what} cannot be resolved for the local stack ({value})")
            })
    };

    let resources = body["Resources"]
        .as_object()
        .with_context(|| format!("{display} has no Resources"))?;
    let of_type = |kind: &'static str| {
        resources
            .iter()
            .filter(move |(_, r)| r["Type"].as_str() == Some(kind))
    };
    let (task_id, task) = of_type("AWS::ECS::TaskDefinition")
        .next()
        .with_context(|| format!("{display} has no AWS::ECS::TaskDefinition"))?;
    let container = task["Properties"]["ContainerDefinitions"]
        .as_array()
        .and_then(|c| c.first())
        .with_context(|| format!("{display}: {task_id} has no ContainerDefinitions"))?;
    let name = container["Name"].as_str().unwrap_or("app").to_string();
    let port_value = &container["PortMappings"][0]["ContainerPort"];
    let container_port: u16 = resolve(port_value, "ContainerPort")?
        .parse()
        .with_context(|| format!("{display}: {task_id}'s ContainerPort is not a port"))?;
    let mut environment = BTreeMap::new();
    for entry in container["Environment"].as_array().into_iter().flatten() {
        let key = entry["Name"]
            .as_str()
            .context("an Environment entry without Name")?;
        environment.insert(key.to_string(), resolve(&entry["Value"], key)?);
    }
    let mut secrets = BTreeMap::new();
    for entry in container["Secrets"].as_array().into_iter().flatten() {
        let key = entry["Name"]
            .as_str()
            .context("a Secrets entry without Name")?;
        let value_from = resolve(&entry["ValueFrom"], key)?;
        let secret =
            SecretRef::parse(&value_from).with_context(|| format!("{display}: secret {key}"))?;
        secrets.insert(key.to_string(), secret);
    }
    let desired_count = of_type("AWS::ECS::Service")
        .next()
        .and_then(|(_, s)| resolve(&s["Properties"]["DesiredCount"], "DesiredCount").ok())
        .and_then(|n| n.parse().ok())
        .unwrap_or(1);
    let target_group = of_type("AWS::ElasticLoadBalancingV2::TargetGroup").next();
    let health_path = target_group
        .and_then(|(_, t)| resolve(&t["Properties"]["HealthCheckPath"], "HealthCheckPath").ok())
        .unwrap_or_else(|| "/".to_string());
    let sticky = target_group
        .and_then(|(_, t)| t["Properties"]["TargetGroupAttributes"].as_array())
        .into_iter()
        .flatten()
        .any(|a| {
            a["Key"].as_str() == Some("stickiness.enabled")
                && resolve(&a["Value"], "stickiness").ok().as_deref() == Some("true")
        });
    Ok(TaskShape {
        template: template.to_path_buf(),
        stack_name,
        container: name,
        container_port,
        environment,
        secrets,
        health_path,
        desired_count,
        sticky,
    })
}

/// One variable an image needs that the task does not give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractFinding {
    /// The missing variable.
    pub variable: String,
    /// What the image does without it.
    pub consequence: String,
}

impl std::fmt::Display for ContractFinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the TaskDefinition does not provide {}: {}",
            self.variable, self.consequence
        )
    }
}

/// The image's contract: the variables it declares it requires (`requires` from its
/// [`REQUIRES_ENV_LABEL`] label), or, for an image that declares nothing, what a stock Langflow
/// needs to serve more than one task; each one the task does not give is a finding.
pub fn contract_findings(task: &TaskShape, requires: Option<&str>) -> Vec<ContractFinding> {
    let given = task.variables();
    match requires {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty() && !given.contains(*v))
            .map(|v| ContractFinding {
                variable: v.to_string(),
                consequence: format!(
                    "the image declares it required ({REQUIRES_ENV_LABEL}); add it to the container's Environment or Secrets"
                ),
            })
            .collect(),
        None => STOCK_LANGFLOW_NEEDS
            .iter()
            .filter(|(v, _)| !given.contains(*v))
            .map(|(v, why)| ContractFinding {
                variable: v.to_string(),
                consequence: why.to_string(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring() -> LocalWiring {
        LocalWiring {
            stage: "dev".into(),
            params_dir: None,
            overrides: [("ContainerImage".to_string(), "img:1".to_string())].into(),
            resources: [
                ("TenantFilesBucket".to_string(), "bucket-a".to_string()),
                (
                    "TenantKeySeed".to_string(),
                    "arn:aws:secretsmanager:us-east-1:000000000000:secret:seed-AbCdEf".to_string(),
                ),
            ]
            .into(),
            rds_outputs: [
                ("DBClusterEndpoint".to_string(), "postgres".to_string()),
                (
                    "DBSecretArn".to_string(),
                    "arn:aws:secretsmanager:us-east-1:000000000000:secret:db-XyZ123".to_string(),
                ),
            ]
            .into(),
            region: "us-east-1".into(),
            account: "000000000000".into(),
        }
    }

    fn project_template() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join(TEMPLATE)
    }

    #[test]
    fn the_project_task_renders_with_local_endpoints() {
        let task = render(&project_template(), &wiring()).unwrap();
        assert_eq!(task.container_port, 7860);
        assert_eq!(task.environment["DB_HOST"], "postgres");
        assert_eq!(
            task.environment["LANGFLOW_OBJECT_STORAGE_BUCKET_NAME"],
            "bucket-a"
        );
        let db = &task.secrets["DB_PASSWORD"];
        assert!(db.arn.ends_with("secret:db-XyZ123"), "{db:?}");
        assert_eq!(db.json_key.as_deref(), Some("password"));
        assert_eq!(task.secrets["LANGFLOW_TENANT_KEY_SEED"].json_key, None);
        assert_eq!(task.health_path, "/health_check");
        assert!(task.sticky);
        assert!(task.desired_count >= 1);
    }

    #[test]
    fn a_stock_image_is_told_what_the_task_lacks() {
        let task = render(&project_template(), &wiring()).unwrap();
        let findings = contract_findings(&task, None);
        let names: Vec<&str> = findings.iter().map(|f| f.variable.as_str()).collect();
        assert_eq!(names, ["LANGFLOW_DATABASE_URL", "LANGFLOW_SECRET_KEY"]);
        assert!(findings[0].to_string().contains("SQLite"));
        let declared =
            contract_findings(&task, Some("DB_HOST, LANGFLOW_TENANT_KEY_SEED,X_MISSING"));
        assert_eq!(declared.len(), 1);
        assert_eq!(declared[0].variable, "X_MISSING");
    }

    #[test]
    fn secret_references_parse_and_bad_ones_are_named() {
        let r = SecretRef::parse("arn:aws:secretsmanager:r:1:secret:n-1:password::").unwrap();
        assert_eq!(r.arn, "arn:aws:secretsmanager:r:1:secret:n-1");
        assert_eq!(r.json_key.as_deref(), Some("password"));
        let e = SecretRef::parse("arn:aws:ssm:r:1:parameter/x").unwrap_err();
        assert!(e.to_string().contains("not a Secrets Manager ARN"));
    }
}
