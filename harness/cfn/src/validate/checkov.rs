//! checkov (PyPI, pinned by `[tools] checkov_version`, in a managed venv; empty = off): run once
//! over every template (`--framework cloudformation`, no download of its online policies), its
//! failed checks as findings of the check `checkov` (rule = its check id). checkov is optional:
//! when it cannot be installed the report says so (info) and the other checks stand. Results are
//! cached by version and the exact template bytes, like cfn-lint's.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use super::template::Template;
use super::{Finding, Severity};
use harness_core::config::Config;
use harness_core::venv::Venv;

/// The check name of checkov's findings.
pub const CHECKOV: &str = "checkov";
/// Longest one checkov run may take.
const TIMEOUT: Duration = Duration::from_secs(300);

fn note(file: &str, severity: Severity, rule: &str, message: String) -> Finding {
    Finding {
        sources: Vec::new(),
        check: CHECKOV.into(),
        rule: rule.into(),
        severity,
        file: file.into(),
        line: 1,
        resource: None,
        path: None,
        message,
        fix: Some("checkov is optional: set [tools] checkov_version = \"\" to leave it out".into()),
    }
}

/// checkov's findings for `templates` (relative to `base` for reports).
pub async fn run(
    config: &Config,
    templates: &[Template],
    base: &Path,
    shown_dir: &str,
) -> Vec<Finding> {
    let version = config.tools.checkov_version.trim().to_string();
    if version.is_empty() || templates.is_empty() {
        return Vec::new();
    }
    let key = {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        hash.update(version.as_bytes());
        for t in templates {
            hash.update([0]);
            hash.update(t.display.as_bytes());
            hash.update([0]);
            hash.update(t.text.as_bytes());
        }
        hash.finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let cache = config
        .cache_dir
        .join("checkov-results")
        .join(format!("{key}.json"));
    if let Some(items) = std::fs::read(&cache)
        .ok()
        .and_then(|b| serde_json::from_slice::<Vec<Value>>(&b).ok())
    {
        return findings(&items, templates, base);
    }
    let venv = Venv::new(
        &config.venv_dir(),
        &format!("checkov-{version}"),
        &[&format!("checkov=={version}")],
    );
    {
        let (venv, python) = (venv.clone(), config.tools.python.clone());
        let installed = tokio::task::spawn_blocking(move || venv.ensure(&python)).await;
        match installed {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return vec![note(
                    shown_dir,
                    Severity::Info,
                    "not-installed",
                    format!(
                    "checkov {version} could not be installed, so its checks did not run: {e:#}"
                ),
                )]
            }
            Err(e) => {
                return vec![note(
                    shown_dir,
                    Severity::Info,
                    "not-installed",
                    format!("installing checkov stopped: {e}"),
                )]
            }
        }
    }
    let mut command = tokio::process::Command::new(venv.bin("checkov"));
    command
        .args([
            "--framework",
            "cloudformation",
            "--skip-download",
            "--quiet",
            "-o",
            "json",
            "--compact",
        ])
        .current_dir(base)
        .env("BC_SKIP_MAPPING", "TRUE")
        .env("CHECKOV_RUN_SCA_PACKAGE_SCAN_V2", "false")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for t in templates {
        command.arg("-f").arg(&t.path);
    }
    let output = match tokio::time::timeout(TIMEOUT, command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return vec![note(
                shown_dir,
                Severity::Warning,
                "could-not-run",
                format!("checkov could not be started: {e}"),
            )]
        }
        Err(_) => {
            return vec![note(
                shown_dir,
                Severity::Warning,
                "could-not-run",
                format!("checkov gave no result within {} s", TIMEOUT.as_secs()),
            )]
        }
    };
    // checkov prints one report object, or a list of them (one per framework).
    let parsed: Option<Vec<Value>> =
        serde_json::from_slice::<Value>(&output.stdout)
            .ok()
            .map(|v| match v {
                Value::Array(items) => items,
                other => vec![other],
            });
    let Some(reports) = parsed else {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return vec![note(
            shown_dir,
            Severity::Warning,
            "could-not-run",
            format!(
                "checkov printed no report: {}",
                stderr
                    .lines()
                    .rfind(|l| !l.trim().is_empty())
                    .unwrap_or("(no output)")
            ),
        )];
    };
    let items: Vec<Value> = reports
        .iter()
        .flat_map(|r| {
            r["results"]["failed_checks"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    if let Some(dir) = cache.parent() {
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = harness_core::state::write_private(
                &cache,
                &serde_json::to_vec(&items).unwrap_or_default(),
            );
        }
    }
    findings(&items, templates, base)
}

/// checkov's failed checks as findings.
fn findings(items: &[Value], templates: &[Template], base: &Path) -> Vec<Finding> {
    items
        .iter()
        .map(|item| {
            let file = item["file_path"]
                .as_str()
                .unwrap_or("")
                .trim_start_matches('/');
            let display = templates
                .iter()
                .find(|t| {
                    t.path.ends_with(file)
                        || t.path
                            .strip_prefix(base)
                            .is_ok_and(|p| p == Path::new(file))
                })
                .map_or_else(|| file.to_string(), |t| t.display.clone());
            let resource = item["resource"]
                .as_str()
                .and_then(|r| r.rsplit_once('.'))
                .map(|(_, id)| id.to_string());
            Finding {
                sources: Vec::new(),
                check: CHECKOV.into(),
                rule: item["check_id"].as_str().unwrap_or("?").into(),
                severity: Severity::Error,
                file: display,
                line: item["file_line_range"][0].as_u64().unwrap_or(1) as usize,
                resource,
                path: None,
                message: item["check_name"]
                    .as_str()
                    .unwrap_or("checkov check failed")
                    .into(),
                fix: item["guideline"]
                    .as_str()
                    .filter(|g| !g.is_empty())
                    .map(|g| format!("see {g}")),
            }
        })
        .collect()
}
