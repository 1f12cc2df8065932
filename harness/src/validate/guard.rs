//! The cfn-guard rule pack (`rules/*.guard`), evaluated in-process through the cfn-guard library.
//!
//! Each template is rendered once per stage that has a parameter file for it (once with defaults
//! otherwise): `{"Ref": Parameter}` becomes the stage's value and the top-level key `Stage` names
//! the stage, so rules such as "deletion protection on prd" see what prd would deploy. Findings
//! repeated across stages are reported once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

use super::params::ParamFile;
use super::template::Template;
use super::{Finding, Severity};

/// The rule files under `dir` (`*.guard`), with their contents.
pub fn load_rules(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut rules = Vec::new();
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("cannot read rules in {}", dir.display()))?;
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    for path in paths {
        if path.extension().is_some_and(|e| e == "guard") {
            let text = std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            rules.push((path.display().to_string(), text));
        }
    }
    Ok(rules)
}

/// Replaces `{"Ref": P}` for known parameters with their values.
fn render(value: &Value, params: &BTreeMap<String, String>) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(name) = map.get("Ref").and_then(Value::as_str) {
                    if let Some(v) = params.get(name) {
                        return match v.as_str() {
                            "true" => Value::Bool(true),
                            "false" => Value::Bool(false),
                            _ => v
                                .parse::<i64>()
                                .map(Value::from)
                                .unwrap_or_else(|_| Value::String(v.clone())),
                        };
                    }
                }
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), render(v, params)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, params)).collect()),
        other => other.clone(),
    }
}

/// Splits a Guard custom message into (violation, fix).
fn split_message(custom: &str) -> (String, Option<String>) {
    let mut violation = String::new();
    let mut fix = None;
    // Guard separates the lines with newlines, or with ';' for some clause kinds.
    for line in custom.split(['\n', ';']).map(str::trim) {
        if let Some(v) = line.strip_prefix("Violation:") {
            violation = v.trim().to_string();
        } else if let Some(f) = line.strip_prefix("Fix:") {
            fix = Some(f.trim().to_string());
        }
    }
    (violation, fix)
}

/// The first `/Resources/...` path quoted in a Guard error message.
fn resource_path_in(message: &str) -> Option<String> {
    let start = message.find("/Resources/")?;
    let rest = &message[start..];
    let end = rest.find(['[', ']', ' ']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// Every failed clause under a rule's JSON record: (custom message, error message, data path).
fn failed_clauses(value: &Value, out: &mut Vec<(String, String, String)>) {
    match value {
        Value::Object(map) => {
            if let (Some(messages), Some(check)) = (map.get("messages"), map.get("check")) {
                let error = messages["error_message"].as_str().unwrap_or("");
                let path = check
                    .pointer("/Resolved/from/path")
                    .or_else(|| check.pointer("/UnResolved/value/traversed_to/path"))
                    .or_else(|| check.pointer("/InResolved/from/path"))
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .or_else(|| resource_path_in(error))
                    .unwrap_or_default();
                out.push((
                    messages["custom_message"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    messages["error_message"].as_str().unwrap_or("").to_string(),
                    path,
                ));
            }
            map.values().for_each(|v| failed_clauses(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| failed_clauses(v, out)),
        _ => {}
    }
}

/// Runs the rule pack over every template, per stage.
pub fn check(
    templates: &[Template],
    param_files: &[ParamFile],
    rules: &[(String, String)],
) -> Result<Vec<Finding>> {
    let mut findings = Vec::new();
    let mut seen = BTreeSet::new();
    for template in templates {
        let stack_type = template.stack_type().unwrap_or_default();
        let defaults = template.parameter_defaults();
        let mut stages: Vec<(String, BTreeMap<String, String>)> = param_files
            .iter()
            .filter(|p| p.stack_type == stack_type)
            .map(|p| {
                let mut values = defaults.clone();
                values.extend(p.values.clone());
                (p.stage.clone(), values)
            })
            .collect();
        if stages.is_empty() {
            stages.push(("default".to_string(), defaults.clone()));
        }
        for (stage, params) in stages {
            let mut data = render(&template.body, &params);
            data["Stage"] = Value::String(stage.clone());
            let content = serde_json::to_string(&data)?;
            for (rules_name, rules_text) in rules {
                let output = cfn_guard::run_checks(
                    cfn_guard::ValidateInput {
                        content: &content,
                        file_name: &template.display,
                    },
                    cfn_guard::ValidateInput {
                        content: rules_text,
                        file_name: rules_name,
                    },
                    false,
                )
                .map_err(|e| {
                    let first = e.to_string();
                    let first = first.lines().next().unwrap_or("").to_string();
                    anyhow::anyhow!("cfn-guard could not evaluate {rules_name}: {first}")
                })?;
                if output.trim().is_empty() {
                    continue;
                }
                let report: Value = serde_json::from_str(&output)
                    .context("cfn-guard printed something other than JSON")?;
                for rule in report["not_compliant"].as_array().into_iter().flatten() {
                    let name = rule["Rule"]["name"].as_str().unwrap_or("?").to_string();
                    let mut clauses = Vec::new();
                    failed_clauses(&rule["Rule"]["checks"], &mut clauses);
                    for (custom, error, path) in clauses {
                        let (violation, fix) = split_message(&custom);
                        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                        let resource = (segments.first() == Some(&"Resources"))
                            .then(|| segments.get(1).map(|s| s.to_string()))
                            .flatten();
                        let keys: Vec<&str> = segments.iter().skip(2).copied().collect();
                        let line = resource
                            .as_deref()
                            .map_or(1, |r| template.line_of("Resources", r, &keys));
                        let message = if violation.is_empty() {
                            error
                        } else {
                            violation
                        };
                        let key = (
                            template.display.clone(),
                            name.clone(),
                            path.clone(),
                            message.clone(),
                        );
                        if !seen.insert(key) {
                            continue;
                        }
                        findings.push(Finding {
                            check: "guard".into(),
                            rule: name.clone(),
                            severity: Severity::Error,
                            file: template.display.clone(),
                            line,
                            resource,
                            path: (!keys.is_empty()).then(|| keys.join(".")),
                            // (list indices stay in the path: they locate the item)
                            message: if stage == "default" {
                                message
                            } else {
                                format!("[{stage}] {message}")
                            },
                            fix,
                        });
                    }
                }
            }
        }
    }
    Ok(findings)
}
