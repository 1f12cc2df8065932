//! cfn-lint (PyPI, pinned, in a managed venv), run once over every template, its JSON output
//! mapped onto the report's findings.

use std::path::Path;
use std::process::Stdio;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use super::template::Template;
use super::{Finding, Severity};
use crate::config::Config;
use crate::venv::Venv;

/// The managed cfn-lint venv.
pub fn venv(config: &Config) -> Venv {
    let version = &config.tools.cfn_lint_version;
    Venv::new(
        &config.venv_dir(),
        &format!("cfn-lint-{version}"),
        &[&format!("cfn-lint[sarif,junit]=={version}")],
    )
}

/// Runs cfn-lint on `templates` (one process for all of them).
pub async fn run(config: &Config, templates: &[Template], base: &Path) -> Result<Vec<Finding>> {
    if templates.is_empty() {
        return Ok(Vec::new());
    }
    let venv = venv(config);
    {
        let (venv, python) = (venv.clone(), config.tools.python.clone());
        tokio::task::spawn_blocking(move || venv.ensure(&python)).await??;
    }
    let output = tokio::process::Command::new(venv.bin("cfn-lint"))
        .arg("--format")
        .arg("json")
        .args(templates.iter().map(|t| &t.path))
        .current_dir(base)
        .stdin(Stdio::null())
        .output()
        .await
        .context("cannot run cfn-lint")?;
    // The exit code is a bitmask of finding levels (2 error, 4 warning, 8 info); 1 is a crash.
    if output.status.code() == Some(1) || output.stdout.is_empty() && !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "cfn-lint failed: {}",
            stderr.lines().last().unwrap_or("(no output)")
        );
    }
    let items: Vec<Value> = serde_json::from_slice(&output.stdout)
        .context("cfn-lint printed something other than JSON")?;
    Ok(items
        .iter()
        .map(|item| {
            let file = item["Filename"].as_str().unwrap_or("");
            let display = templates
                .iter()
                .find(|t| t.path.to_string_lossy() == file || t.path.ends_with(file))
                .map_or_else(|| file.to_string(), |t| t.display.clone());
            let path: Vec<String> = item["Location"]["Path"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| p.as_str().map_or_else(|| p.to_string(), String::from))
                .collect();
            let resource = (path.first().map(String::as_str) == Some("Resources"))
                .then(|| path.get(1).cloned())
                .flatten();
            Finding {
                check: "cfn-lint".into(),
                rule: item["Rule"]["Id"].as_str().unwrap_or("?").into(),
                severity: match item["Level"].as_str() {
                    Some("Error") => Severity::Error,
                    Some("Warning") => Severity::Warning,
                    _ => Severity::Info,
                },
                file: display,
                line: item["Location"]["Start"]["LineNumber"]
                    .as_u64()
                    .unwrap_or(1) as usize,
                resource,
                path: (!path.is_empty()).then(|| path.join(".")),
                message: item["Message"].as_str().unwrap_or("").into(),
                fix: item["Rule"]["Description"].as_str().map(String::from),
            }
        })
        .collect())
}
