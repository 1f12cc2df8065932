//! `cargo xtask validate`: checks the CloudFormation templates under `aws/` (or any folder, see
//! [`discover`]) before a deploy and merges every source into one report (exit 0 only without
//! error-level findings): parsing (file:line for malformed YAML and unknown tags), the cfn-guard
//! rule packs (in-process), cfn-lint, cross-stack wiring, the parameter files, and the IRSA wiring
//! of `k8s/` and `iam/`; `--rehearse` deploys the stacks into the emulator's CloudFormation
//! ([`rehearse`]).
//!
//! No input aborts the report: a template, rules file or tool that cannot be evaluated becomes an
//! error-level finding naming the check, the rule and the file (a check that cannot tell is not a
//! pass), and every other template still gets its findings.

pub mod checkov;
pub mod contract;
pub mod discover;
pub mod formats;
pub mod guard;
pub mod irsa;
pub mod langflow;
pub mod libraries;
pub mod lint;
pub mod merge;
pub mod params;
pub mod secrets;
pub mod suppress;
pub mod template;
pub mod wiring;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use futures::FutureExt;
use serde::Serialize;

use harness_core::config::Config;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Blocks a deploy (non-zero exit).
    Error,
    /// Should be fixed.
    Warning,
    /// For information.
    Info,
}

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Finding {
    /// Which check found it: discover, parse, guard, cfn-lint, wiring, secrets, params, irsa.
    pub check: String,
    /// Rule id within the check.
    pub rule: String,
    /// Severity.
    pub severity: Severity,
    /// File, relative to the validated directory's parent.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// Logical id of the resource or output concerned.
    pub resource: Option<String>,
    /// Property path, dot-separated.
    pub path: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub fix: Option<String>,
    /// The other tools' rules that reported the same control on the same resource (`check/rule`),
    /// merged into this one row.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<String>,
}

/// Options of a validation run.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Directory holding the templates (see [`discover`]) and `params/*.json`.
    pub dir: PathBuf,
    /// Run cfn-lint too.
    pub lint: bool,
    /// Folder of the project's cfn-guard rule pack (`*.guard`).
    pub rules: PathBuf,
    /// The user's own rule packs (`--rules DIR`: folders searched recursively for `*.guard` /
    /// `*.ruleset`, or single files), evaluated like the project's.
    pub extra_rules: Vec<PathBuf>,
    /// `--image IMAGE`: the task's image as built, judged by its own `requires-env` label
    /// (read from the engine by the caller) instead of the repository's reference Dockerfile.
    pub image: Option<contract::BuiltImage>,
}

/// The merged report.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// Templates checked.
    pub templates: Vec<String>,
    /// Parameter files checked.
    pub parameter_files: Vec<String>,
    /// `.yaml`/`.yml`/`.json` files under the folder that do not look like CloudFormation.
    pub skipped: Vec<String>,
    /// Findings, errors first, then by file and line.
    pub findings: Vec<Finding>,
    /// Findings taken out by `validate.toml`, with the reasons.
    pub suppressed: Vec<suppress::Suppressed>,
    /// Seconds per part (parse, params, wiring, cfn-lint, total).
    pub timings: Vec<(String, f64)>,
}

impl ValidateReport {
    /// Number of error-level findings.
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

/// The files of `dir` (not recursive) whose names end in `suffix`, appended to `out`.
pub fn files_with_suffix(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files_with_suffix(&path, suffix, out);
        } else if path.to_string_lossy().ends_with(suffix) {
            out.push(path);
        }
    }
}

/// The message of a caught panic.
pub(crate) fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

/// Runs one check; a panic inside it becomes an error finding instead of ending the report.
fn guarded(check: &str, file: &str, run: impl FnOnce() -> Vec<Finding>) -> Vec<Finding> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .unwrap_or_else(|panic| vec![check_failed(check, file, &panic_text(&panic))])
}

/// The finding for a check that stopped before judging `file`.
fn check_failed(check: &str, file: &str, why: &str) -> Finding {
    Finding {
        sources: Vec::new(),
        check: check.into(),
        rule: "internal-error".into(),
        severity: Severity::Error,
        file: file.into(),
        line: 1,
        resource: None,
        path: None,
        message: format!("the {check} check stopped: {why}"),
        fix: Some("a check that cannot evaluate is not a pass; report this input".into()),
    }
}

/// Validates `options.dir`. Fails only when the folder itself is missing: every problem of a
/// template, parameter file, rules file or tool is a finding of the report.
pub async fn run(config: &Config, options: &ValidateOptions) -> Result<ValidateReport> {
    let started = Instant::now();
    let dir = &options.dir;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass the folder holding the templates (default: aws/)",
            dir.display()
        );
    }
    let base = dir.parent().unwrap_or(dir).to_path_buf();
    let display = |p: &Path| {
        p.strip_prefix(&base)
            .unwrap_or(p)
            .to_string_lossy()
            .into_owned()
    };
    let mut timings = Vec::new();
    let mut findings = Vec::new();

    let t = Instant::now();
    let (template_paths, skipped) = discover::templates(dir);
    if template_paths.is_empty() {
        findings.push(Finding {
            sources: Vec::new(),
            check: "discover".into(),
            rule: "no-templates".into(),
            severity: Severity::Error,
            file: display(dir),
            line: 1,
            resource: None,
            path: None,
            message: "no CloudFormation templates in this folder".into(),
            fix: Some(
                "templates are *.cfn.yaml/.cfn.yml/.cfn.json/.template, or *.yaml/.yml/.json with a top-level Resources or AWSTemplateFormatVersion key".into(),
            ),
        });
    }
    let mut templates = Vec::new();
    for path in &template_paths {
        match template::load(path, &display(path)) {
            Ok(t) => templates.push(t),
            Err(f) => findings.push(*f),
        }
    }
    timings.push(("parse".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut param_paths = Vec::new();
    files_with_suffix(&dir.join("params"), ".json", &mut param_paths);
    let mut param_files = Vec::new();
    for path in &param_paths {
        match params::load(path, &display(path)) {
            Ok(file) => {
                let key = file.stack_type.clone();
                match templates
                    .iter()
                    .find(|t| crate::deploy::stack_key(&t.path) == key)
                {
                    Some(template) => findings.extend(guarded("params", &file.display, || {
                        params::check(&file, template)
                    })),
                    // Its template did not load: the parse finding says why.
                    None if template_paths
                        .iter()
                        .any(|p| crate::deploy::stack_key(p) == key) => {}
                    None => findings.push(Finding {
                        sources: Vec::new(),
                        check: "params".into(),
                        rule: "no-template".into(),
                        severity: Severity::Error,
                        file: file.display.clone(),
                        line: 1,
                        resource: None,
                        path: None,
                        message: format!(
                            "no template {key}-stack.cfn.yaml (or {key}.yaml, {key}.json …) for this parameter file"
                        ),
                        fix: Some(
                            "name parameter files <key>-<stage>.json after their template's file name (without extension and -stack)".into(),
                        ),
                    }),
                }
                param_files.push(file);
            }
            Err(f) => findings.push(*f),
        }
    }
    timings.push(("params".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    let mut rules = Vec::new();
    for pack in std::iter::once(&options.rules).chain(&options.extra_rules) {
        let (loaded, problems) = guard::load_rules(pack, &display);
        rules.extend(loaded);
        findings.extend(problems);
    }
    findings.extend(guard::check(&templates, &param_files, &rules));
    timings.push(("guard".to_string(), t.elapsed().as_secs_f64()));

    // Rule libraries (with the external tools: --no-lint leaves them out too).
    if options.lint {
        let t = Instant::now();
        match libraries::control_tower_rules(config).await {
            Ok(Some(dir)) => {
                let (loaded, problems) = guard::load_rules(&dir, &|p: &Path| {
                    format!(
                        "{}/{}",
                        libraries::CONTROL_TOWER,
                        p.strip_prefix(&dir).unwrap_or(p).display()
                    )
                });
                let mut found = guard::check(&templates, &param_files, &loaded);
                found.extend(problems);
                for f in &mut found {
                    if f.check == "guard" {
                        f.check = libraries::CONTROL_TOWER.into();
                    }
                }
                findings.extend(libraries::merge(found, &libraries::rule_texts(&dir)));
                timings.push((libraries::CONTROL_TOWER.to_string(), t.elapsed().as_secs_f64()));
            }
            Ok(None) => {}
            Err(why) => findings.push(Finding {
                sources: Vec::new(),
                check: libraries::CONTROL_TOWER.into(),
                rule: "could-not-run".into(),
                severity: Severity::Error,
                file: display(dir),
                line: 1,
                resource: None,
                path: None,
                message: format!("the Control Tower rules could not be had: {why:#}"),
                fix: Some("check the network to PyPI, or set [tools] control_tower_rules_version = \"\" to leave them out".into()),
            }),
        }
    }

    let t = Instant::now();
    findings.extend(guarded("wiring", &display(dir), || {
        wiring::check(&templates, &param_files)
    }));
    timings.push(("wiring".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    findings.extend(guarded("secrets", &display(dir), || {
        secrets::check(&templates)
    }));
    timings.push(("secrets".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    findings.extend(guarded("langflow", &display(dir), || {
        langflow::check(&templates, &param_files)
    }));
    timings.push(("langflow".to_string(), t.elapsed().as_secs_f64()));

    // The image contract: what the reference image requires against what its task is given,
    // when the repository has the image.
    // A built image (`--image`) is judged by its label; else the repository's reference image
    // when it has one; else every Langflow container as a stock Langflow image.
    let dockerfile = base.join(contract::REFERENCE_DOCKERFILE);
    let t = Instant::now();
    let judged = match &options.image {
        Some(image) => Some(guarded("image-contract", &image.name, || {
            contract::check_built(&templates, image)
        })),
        None if dockerfile.is_file() => {
            Some(guarded("image-contract", &display(&dockerfile), || {
                contract::check(&templates, &dockerfile, &display(&dockerfile))
            }))
        }
        None => Some(guarded("image-contract", &display(dir), || {
            contract::check_stock(&templates)
        })),
    };
    if let Some(found) = judged {
        findings.extend(found);
        timings.push(("image-contract".to_string(), t.elapsed().as_secs_f64()));
    }

    // IRSA: k8s/ manifests against the role in iam/, when the repository has them.
    let (k8s_dir, iam_dir) = (base.join("k8s"), base.join("iam"));
    if k8s_dir.is_dir() && iam_dir.is_dir() {
        let t = Instant::now();
        findings.extend(guarded("irsa", "k8s", || {
            irsa::check(&k8s_dir, &iam_dir, &config.aws.account_id, &base)
        }));
        timings.push(("irsa".to_string(), t.elapsed().as_secs_f64()));
    }

    if options.lint {
        let t = Instant::now();
        let linted = std::panic::AssertUnwindSafe(lint::run(config, &templates, &base))
            .catch_unwind()
            .await;
        findings.extend(linted.unwrap_or_else(|panic| {
            vec![check_failed("cfn-lint", &display(dir), &panic_text(&panic))]
        }));
        timings.push(("cfn-lint".to_string(), t.elapsed().as_secs_f64()));
    }
    if options.lint {
        let t = Instant::now();
        let checked =
            std::panic::AssertUnwindSafe(checkov::run(config, &templates, &base, &display(dir)))
                .catch_unwind()
                .await;
        findings.extend(checked.unwrap_or_else(|panic| {
            vec![check_failed(
                checkov::CHECKOV,
                &display(dir),
                &panic_text(&panic),
            )]
        }));
        timings.push((checkov::CHECKOV.to_string(), t.elapsed().as_secs_f64()));
    }
    let findings = merge::across_tools(findings);
    let (mut findings, suppressed) =
        suppress::apply(dir, &display(&dir.join(suppress::FILE)), findings);
    findings.sort_by(|a, b| {
        (a.severity, &a.file, a.line, &a.rule).cmp(&(b.severity, &b.file, b.line, &b.rule))
    });
    timings.push(("total".to_string(), started.elapsed().as_secs_f64()));
    Ok(ValidateReport {
        templates: templates.iter().map(|t| t.display.clone()).collect(),
        parameter_files: param_files.iter().map(|p| p.display.clone()).collect(),
        skipped: skipped.iter().map(|p| display(p)).collect(),
        findings,
        suppressed,
        timings,
    })
}
