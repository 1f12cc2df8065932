//! The image contract, statically: the environment the multi-tenant image declares it requires
//! (the `dev.langflow-infra.requires-env` label of `compose/images/langflow-multi-tenant/Dockerfile`)
//! against what each ECS TaskDefinition's container is given (`Environment` and `Secrets` names).
//! A missing variable is an error: the image stops at start (or, for a stock Langflow, quietly
//! falls back to per-task SQLite and keys), which `up --image` reports at run time too.

use std::collections::BTreeSet;
use std::path::Path;

use super::template::Template;
use super::{Finding, Severity};
use crate::taskdef::REQUIRES_ENV_LABEL;

/// Where the reference image's Dockerfile lives, relative to the repository root.
pub const REFERENCE_DOCKERFILE: &str = "compose/images/langflow-multi-tenant/Dockerfile";

/// The variables a Dockerfile's `LABEL` declares required (`None` when it declares none).
pub fn declared_requirements(dockerfile: &str) -> Option<Vec<String>> {
    let joined = dockerfile.replace("\\\n", " ");
    let start = joined.find(&format!("{REQUIRES_ENV_LABEL}="))? + REQUIRES_ENV_LABEL.len() + 1;
    let rest = &joined[start..];
    let value = match rest.strip_prefix('"') {
        Some(quoted) => &quoted[..quoted.find('"')?],
        None => rest.split_whitespace().next()?,
    };
    Some(
        value
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect(),
    )
}

/// Findings for every TaskDefinition container of `templates` that lacks a required variable.
pub fn check(templates: &[Template], dockerfile: &Path, dockerfile_display: &str) -> Vec<Finding> {
    let Ok(text) = std::fs::read_to_string(dockerfile) else {
        return Vec::new();
    };
    let Some(required) = declared_requirements(&text) else {
        return Vec::new();
    };
    let mut findings = Vec::new();
    for template in templates {
        let Some(resources) = template.body["Resources"].as_object() else {
            continue;
        };
        for (logical, resource) in resources {
            if resource["Type"].as_str() != Some("AWS::ECS::TaskDefinition") {
                continue;
            }
            let containers = resource["Properties"]["ContainerDefinitions"].as_array();
            for (index, container) in containers.into_iter().flatten().enumerate() {
                let given: BTreeSet<&str> = ["Environment", "Secrets"]
                    .iter()
                    .flat_map(|k| container[*k].as_array().into_iter().flatten())
                    .filter_map(|e| e["Name"].as_str())
                    .collect();
                for variable in required.iter().filter(|v| !given.contains(v.as_str())) {
                    findings.push(Finding {
                        check: "image-contract".into(),
                        rule: "task-env-missing".into(),
                        severity: Severity::Error,
                        file: template.display.clone(),
                        line: template.line_of("Resources", logical, &["Properties", "ContainerDefinitions"]),
                        resource: Some(logical.clone()),
                        path: Some(format!("Properties.ContainerDefinitions.{index}")),
                        message: format!(
                            "the container is not given {variable}, which the image requires ({REQUIRES_ENV_LABEL} in {dockerfile_display})"
                        ),
                        fix: Some(format!(
                            "add {variable} to the container's Environment (or Secrets, for a secret value)"
                        )),
                    });
                }
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_label_is_read_across_continuation_lines() {
        let dockerfile = "FROM x\nLABEL a=b \\\n      dev.langflow-infra.requires-env=\"DB_HOST, DB_USER\" \\\n      c=d\n";
        assert_eq!(
            declared_requirements(dockerfile).unwrap(),
            ["DB_HOST", "DB_USER"]
        );
        assert_eq!(declared_requirements("FROM x\n"), None);
    }

    #[test]
    fn the_project_template_gives_the_reference_image_what_it_requires() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = root.join(crate::taskdef::TEMPLATE);
        let template = super::super::template::load(&path, "fargate").unwrap();
        let findings = check(
            std::slice::from_ref(&template),
            &root.join(REFERENCE_DOCKERFILE),
            "Dockerfile",
        );
        assert!(findings.is_empty(), "{findings:#?}");
        // The same template without the seed secret is refused, naming the variable.
        let mut broken = template.clone();
        let secrets = broken.body["Resources"]["TaskDefinition"]["Properties"]
            ["ContainerDefinitions"][0]["Secrets"]
            .as_array_mut()
            .unwrap();
        secrets.retain(|s| s["Name"] != "LANGFLOW_TENANT_KEY_SEED");
        let findings = check(&[broken], &root.join(REFERENCE_DOCKERFILE), "Dockerfile");
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert!(findings[0].message.contains("LANGFLOW_TENANT_KEY_SEED"));
    }
}
