//! The deployed task as the image contract judges it ([`TaskShape`]: its container's port,
//! `Environment` and `Secrets`, the service's `DesiredCount`, the target group's health check path
//! and stickiness — made by `up --deploy` from the deployed stacks), `Secrets` references, and the
//! image contract: what an image needs that the task does not give is a finding, never something
//! the harness quietly adds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use anyhow::{bail, Result};
use serde::Serialize;

/// The Fargate stack's template, relative to the project root.
pub const TEMPLATE: &str = "aws/apps/fargate-stack.cfn.yaml";

/// Image label listing the environment variables the image requires (comma-separated).
pub const REQUIRES_ENV_LABEL: &str = "dev.langflow-infra.requires-env";
/// Image label giving the command that manages tenants inside the container.
pub const TENANTMGR_LABEL: &str = "dev.langflow-infra.tenantmgr";
/// Image label giving the most workers (`LANGFLOW_WORKERS`) one task of the image can run.
pub const MAX_WORKERS_LABEL: &str = "dev.langflow-infra.max-workers";
/// The variable that sets how many Langflow processes one task runs.
pub const WORKERS_VARIABLE: &str = "LANGFLOW_WORKERS";

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

/// Of [`STOCK_LANGFLOW_NEEDS`], what a stock Langflow cannot run the local stack without: without a
/// database URL it never touches the stack's Postgres. A task without a shared key runs (and
/// `e2e --suite replicas` shows what breaks), so that finding is a warning.
pub const STOCK_LANGFLOW_MUST_HAVE: [&str; 1] = ["LANGFLOW_DATABASE_URL"];

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

/// One variable an image needs that the task does not give.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ContractFinding {
    /// The missing variable.
    pub variable: String,
    /// What the image does without it.
    pub consequence: String,
    /// Whether the task cannot run without it (else it runs, broken in the way `consequence`
    /// says: a warning).
    pub blocking: bool,
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
                blocking: true,
            })
            .collect(),
        None => STOCK_LANGFLOW_NEEDS
            .iter()
            .filter(|(v, _)| !given.contains(*v))
            .map(|(v, why)| ContractFinding {
                variable: v.to_string(),
                consequence: why.to_string(),
                blocking: STOCK_LANGFLOW_MUST_HAVE.contains(v),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(variables: &[&str]) -> TaskShape {
        TaskShape {
            template: PathBuf::from("stack/Service"),
            stack_name: "stack".into(),
            container: "app".into(),
            container_port: 7860,
            environment: variables
                .iter()
                .map(|v| (v.to_string(), "x".to_string()))
                .collect(),
            secrets: BTreeMap::new(),
            health_path: "/health_check".into(),
            desired_count: 2,
            sticky: true,
        }
    }

    #[test]
    fn a_stock_image_is_told_what_the_task_lacks() {
        let given = task(&["DB_HOST", "DB_USER", "LANGFLOW_TENANT_KEY_SEED"]);
        let findings = contract_findings(&given, None);
        let names: Vec<&str> = findings.iter().map(|f| f.variable.as_str()).collect();
        assert_eq!(names, ["LANGFLOW_DATABASE_URL", "LANGFLOW_SECRET_KEY"]);
        assert!(findings[0].to_string().contains("SQLite"));
        assert!(
            findings[0].blocking,
            "no database URL: the task never uses the stack's"
        );
        assert!(
            !findings[1].blocking,
            "no shared key: it runs, broken across tasks"
        );
        let declared =
            contract_findings(&given, Some("DB_HOST, LANGFLOW_TENANT_KEY_SEED,X_MISSING"));
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
