//! The image contract, statically: the environment an image declares it requires (its
//! `dev.langflow-infra.requires-env` label: of a built image given with `validate --image`, or of
//! the repository's reference Dockerfile `compose/images/langflow-multi-tenant/Dockerfile`)
//! against what each ECS TaskDefinition's container is given (`Environment` and `Secrets` names).
//! A missing variable is an error: the image stops at start (or, for a stock Langflow, quietly
//! falls back to per-task SQLite and keys), which `up --image` reports at run time too. A
//! repository with neither has its Langflow containers judged as a stock Langflow image (a
//! warning: the image is assumed, `--image` makes it certain).

use std::collections::BTreeSet;
use std::path::Path;

use super::template::Template;
use super::{Finding, Severity};
use crate::taskdef::REQUIRES_ENV_LABEL;

/// Where the reference image's Dockerfile lives, relative to the repository root.
pub const REFERENCE_DOCKERFILE: &str = "compose/images/langflow-multi-tenant/Dockerfile";

/// A built image, as `validate --image` read it from the engine.
#[derive(Debug, Clone)]
pub struct BuiltImage {
    /// The image as given (`repo:tag`).
    pub name: String,
    /// Its `requires-env` label; `None` = it declares nothing (judged as a stock Langflow).
    pub requires_env: Option<String>,
}

/// Findings for every container that lacks what `required` names; `why` says where the
/// requirement comes from.
fn missing(
    templates: &[Template],
    required: &[(String, String)],
    severity: Severity,
    only_langflow: bool,
) -> Vec<Finding> {
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
                if only_langflow && !super::langflow::is_langflow(container) {
                    continue;
                }
                let given: BTreeSet<&str> = ["Environment", "Secrets"]
                    .iter()
                    .flat_map(|k| container[*k].as_array().into_iter().flatten())
                    .filter_map(|e| e["Name"].as_str())
                    .collect();
                for (variable, why) in required.iter().filter(|(v, _)| !given.contains(v.as_str()))
                {
                    findings.push(Finding {
                        sources: Vec::new(),
                        check: "image-contract".into(),
                        rule: "task-env-missing".into(),
                        severity,
                        file: template.display.clone(),
                        line: template.line_of("Resources", logical, &["Properties", "ContainerDefinitions"]),
                        resource: Some(logical.clone()),
                        path: Some(format!("Properties.ContainerDefinitions.{index}")),
                        message: format!("the container is not given {variable}: {why}"),
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

/// What a stock Langflow image needs, as (variable, why) with `prefix` before each reason.
fn stock_needs(prefix: &str) -> Vec<(String, String)> {
    crate::taskdef::STOCK_LANGFLOW_NEEDS
        .iter()
        .map(|(v, why)| (v.to_string(), format!("{prefix}{why}")))
        .collect()
}

/// The contract of a built image: its label's variables (errors), or a stock Langflow's needs
/// when it declares none.
pub fn check_built(templates: &[Template], image: &BuiltImage) -> Vec<Finding> {
    let required: Vec<(String, String)> = match &image.requires_env {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(|v| {
                (
                    v.to_string(),
                    format!("{} requires it ({REQUIRES_ENV_LABEL})", image.name),
                )
            })
            .collect(),
        None => stock_needs(&format!(
            "{} declares no {REQUIRES_ENV_LABEL}, so it is judged as a stock Langflow; ",
            image.name
        )),
    };
    missing(templates, &required, Severity::Error, false)
}

/// Langflow containers judged as a stock Langflow image (the repository has no reference
/// image and no `--image` was given): warnings, since the image is assumed.
pub fn check_stock(templates: &[Template]) -> Vec<Finding> {
    missing(
        templates,
        &stock_needs("judged as a stock Langflow image (pass validate --image IMAGE to judge the image you build by its requires-env label); "),
        Severity::Warning,
        true,
    )
}

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

/// Findings for every TaskDefinition container of `templates` that lacks a variable the
/// reference Dockerfile's label requires.
pub fn check(templates: &[Template], dockerfile: &Path, dockerfile_display: &str) -> Vec<Finding> {
    let Ok(text) = std::fs::read_to_string(dockerfile) else {
        return Vec::new();
    };
    let Some(required) = declared_requirements(&text) else {
        return Vec::new();
    };
    let required: Vec<(String, String)> = required
        .into_iter()
        .map(|v| {
            (
                v,
                format!("the image requires it ({REQUIRES_ENV_LABEL} in {dockerfile_display})"),
            )
        })
        .collect();
    missing(templates, &required, Severity::Error, false)
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

    #[test]
    fn a_built_image_is_judged_by_its_label_or_as_a_stock_langflow() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let path = root.join(crate::taskdef::TEMPLATE);
        let template = super::super::template::load(&path, "fargate").unwrap();
        let labelled = BuiltImage {
            name: "mine:1".into(),
            requires_env: Some("DB_HOST, MY_LICENSE".into()),
        };
        let findings = check_built(std::slice::from_ref(&template), &labelled);
        assert_eq!(findings.len(), 1, "{findings:#?}");
        assert!(
            findings[0].message.contains("MY_LICENSE") && findings[0].message.contains("mine:1")
        );
        let stock = BuiltImage {
            name: "langflowai/langflow:1.13.0".into(),
            requires_env: None,
        };
        let findings = check_built(std::slice::from_ref(&template), &stock);
        let names: Vec<&str> = findings.iter().map(|f| f.message.as_str()).collect();
        assert_eq!(findings.len(), 2, "{names:#?}");
        assert!(names[0].contains("LANGFLOW_DATABASE_URL") && names[0].contains("stock Langflow"));
        assert!(findings.iter().all(|f| f.severity == Severity::Error));
        // Without an image or a reference Dockerfile: assumed stock, warnings.
        let assumed = check_stock(std::slice::from_ref(&template));
        assert_eq!(assumed.len(), 2);
        assert!(assumed.iter().all(|f| f.severity == Severity::Warning));
    }
}
