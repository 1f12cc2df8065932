//! cfn-lint (PyPI, pinned, in a managed venv), run once over every template, its JSON output
//! mapped onto the report's findings. Its ~6 s start-up dominates `validate`, so its JSON is
//! cached under the cache dir, keyed by the cfn-lint version and the exact bytes (and paths) of
//! every template and any `.cfnlintrc`: an unchanged set of templates is never linted twice.
//! cfn-lint that cannot run (install, crash, timeout, unreadable output) yields an error finding
//! per template it did not check, never an aborted report.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use super::template::Template;
use super::{Finding, Severity};
use harness_core::config::Config;
use harness_core::venv::Venv;

/// The managed cfn-lint venv.
pub fn venv(config: &Config) -> Venv {
    let version = &config.tools.cfn_lint_version;
    Venv::new(
        &config.venv_dir(),
        &format!("cfn-lint-{version}"),
        &[&format!("cfn-lint[sarif,junit]=={version}")],
    )
}

/// Longest one cfn-lint run may take; it is killed after that.
const TIMEOUT: Duration = Duration::from_secs(300);

/// Why cfn-lint gave no result.
enum Failure {
    /// cfn-lint could not be installed or started: no template can be linted.
    Setup(String),
    /// cfn-lint ran and crashed, timed out or printed something unreadable.
    Run(String),
}

/// Runs cfn-lint on `templates` (one process for all of them). Never fails: when cfn-lint cannot
/// run, each template gets an error finding saying why; when a run over several templates
/// crashes, each template is linted alone so the others still get their findings.
pub async fn run(config: &Config, templates: &[Template], base: &Path) -> Vec<Finding> {
    if templates.is_empty() {
        return Vec::new();
    }
    match run_batch(config, templates, base).await {
        Ok(found) => found,
        Err(Failure::Setup(why)) => templates.iter().map(|t| not_run(t, &why)).collect(),
        Err(Failure::Run(why)) if templates.len() == 1 => vec![not_run(&templates[0], &why)],
        Err(Failure::Run(_)) => {
            let mut found = Vec::new();
            for template in templates {
                match run_batch(config, std::slice::from_ref(template), base).await {
                    Ok(more) => found.extend(more),
                    Err(Failure::Setup(why) | Failure::Run(why)) => {
                        found.push(not_run(template, &why))
                    }
                }
            }
            found
        }
    }
}

/// The finding for a template cfn-lint could not check.
fn not_run(template: &Template, why: &str) -> Finding {
    Finding {
        sources: Vec::new(),
        check: "cfn-lint".into(),
        rule: "could-not-run".into(),
        severity: Severity::Error,
        file: template.display.clone(),
        line: 1,
        resource: None,
        path: None,
        message: format!("cfn-lint could not check this template: {why}"),
        fix: Some(
            "a check that cannot evaluate is not a pass: fix what cfn-lint stops at, or run with --no-lint to skip it".into(),
        ),
    }
}

async fn run_batch(
    config: &Config,
    templates: &[Template],
    base: &Path,
) -> Result<Vec<Finding>, Failure> {
    // A template that cannot be hashed is linted without the cache.
    let cache_file = cache_key(config, templates, base).ok().map(|key| {
        config
            .cache_dir
            .join("cfn-lint-results")
            .join(format!("{key}.json"))
    });
    if let Some(cached) = cache_file.as_ref().and_then(|f| std::fs::read(f).ok()) {
        if let Ok(items) = serde_json::from_slice::<Vec<Value>>(&cached) {
            return Ok(findings(&items, templates));
        }
    }
    let venv = venv(config);
    {
        let (venv, python) = (venv.clone(), config.tools.python.clone());
        tokio::task::spawn_blocking(move || venv.ensure(&python))
            .await
            .map_err(|e| Failure::Setup(format!("installing cfn-lint stopped: {e}")))?
            .map_err(|e| Failure::Setup(format!("cannot install cfn-lint: {e:#}")))?;
    }
    let run = tokio::process::Command::new(venv.bin("cfn-lint"))
        .arg("--format")
        .arg("json")
        .args(templates.iter().map(|t| &t.path))
        .current_dir(base)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(TIMEOUT, run)
        .await
        .map_err(|_| Failure::Run(format!("no result within {} s", TIMEOUT.as_secs())))?
        .map_err(|e| Failure::Setup(format!("cannot run cfn-lint: {e}")))?;
    // The exit code is a bitmask of finding levels (2 error, 4 warning, 8 info); 1 is a crash.
    if output.status.code() == Some(1) || output.stdout.is_empty() && !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(Failure::Run(format!(
            "cfn-lint failed: {}",
            stderr
                .lines()
                .rfind(|l| !l.trim().is_empty())
                .unwrap_or("(no output)")
        )));
    }
    let items: Vec<Value> = serde_json::from_slice(&output.stdout).map_err(|e| {
        Failure::Run(format!(
            "cfn-lint printed something other than JSON ({e}): {:.120}",
            String::from_utf8_lossy(&output.stdout).trim()
        ))
    })?;
    // A cache that cannot be written only costs speed.
    if let Some(file) = &cache_file {
        if file
            .parent()
            .is_some_and(|d| std::fs::create_dir_all(d).is_ok())
        {
            let _ = harness_core::state::write_private(file, &output.stdout);
        }
    }
    Ok(findings(&items, templates))
}

/// The cache key of one cfn-lint run: version, working dir, every template's path and bytes,
/// and the `.cfnlintrc` that cfn-lint would read.
fn cache_key(config: &Config, templates: &[Template], base: &Path) -> Result<String> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    hash.update(config.tools.cfn_lint_version.as_bytes());
    hash.update([0]);
    hash.update(base.to_string_lossy().as_bytes());
    for template in templates {
        hash.update([0]);
        hash.update(template.path.to_string_lossy().as_bytes());
        hash.update([0]);
        hash.update(
            std::fs::read(&template.path)
                .with_context(|| format!("cannot read {}", template.path.display()))?,
        );
    }
    for rc in [".cfnlintrc", ".cfnlintrc.yaml", ".cfnlintrc.yml"] {
        if let Ok(bytes) = std::fs::read(base.join(rc)) {
            hash.update([1]);
            hash.update(bytes);
        }
    }
    Ok(hash.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// cfn-lint's JSON items as findings.
fn findings(items: &[Value], templates: &[Template]) -> Vec<Finding> {
    items
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
                sources: Vec::new(),
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
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_key_follows_template_bytes_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x-stack.cfn.yaml");
        std::fs::write(&path, "Resources: {}\n").unwrap();
        let template = || Template {
            path: path.clone(),
            display: "x-stack.cfn.yaml".into(),
            text: String::new(),
            body: Value::Null,
            lines: Default::default(),
        };
        let mut config = Config::default();
        let first = cache_key(&config, &[template()], dir.path()).unwrap();
        assert_eq!(
            first,
            cache_key(&config, &[template()], dir.path()).unwrap()
        );
        std::fs::write(&path, "Resources: {} # edited\n").unwrap();
        let edited = cache_key(&config, &[template()], dir.path()).unwrap();
        assert_ne!(first, edited, "an edited template must be linted again");
        config.tools.cfn_lint_version = "0.0.0".into();
        assert_ne!(
            edited,
            cache_key(&config, &[template()], dir.path()).unwrap()
        );
        std::fs::write(dir.path().join(".cfnlintrc"), "ignore_checks: [W]\n").unwrap();
        config.tools.cfn_lint_version = Config::default().tools.cfn_lint_version;
        assert_ne!(
            edited,
            cache_key(&config, &[template()], dir.path()).unwrap()
        );
    }
}
