//! `cargo xtask validate`: checks the CloudFormation templates under `aws/` before a deploy and
//! merges every source into one report (exit 0 only without error-level findings):
//! parsing (file:line for malformed YAML and unknown tags), the cfn-guard rule pack (in-process),
//! cfn-lint, cross-stack wiring, the parameter files, and the IRSA wiring of `k8s/` and `iam/`; `--rehearse` deploys the stacks into the
//! emulator's CloudFormation ([`rehearse`]).

pub mod formats;
pub mod guard;
pub mod irsa;
pub mod lint;
pub mod params;
pub mod rehearse;
pub mod template;
pub mod wiring;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;

use crate::config::Config;

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
    /// Which check found it: parse, cfn-lint, wiring, params.
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
}

/// Options of a validation run.
#[derive(Debug, Clone)]
pub struct ValidateOptions {
    /// Directory holding `**/*.cfn.yaml` and `params/*.json`.
    pub dir: PathBuf,
    /// Run cfn-lint too.
    pub lint: bool,
    /// Folder of the cfn-guard rule pack (`*.guard`).
    pub rules: PathBuf,
}

/// The merged report.
#[derive(Debug, Clone, Serialize)]
pub struct ValidateReport {
    /// Templates checked.
    pub templates: Vec<String>,
    /// Parameter files checked.
    pub parameter_files: Vec<String>,
    /// Findings, errors first, then by file and line.
    pub findings: Vec<Finding>,
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

pub(crate) fn files_with_suffix(dir: &Path, suffix: &str, out: &mut Vec<PathBuf>) {
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

/// Validates `options.dir`.
pub async fn run(config: &Config, options: &ValidateOptions) -> Result<ValidateReport> {
    let started = Instant::now();
    let dir = &options.dir;
    if !dir.is_dir() {
        bail!(
            "{} is not a directory; pass the folder holding the *.cfn.yaml templates (default: aws/)",
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
    let mut template_paths = Vec::new();
    files_with_suffix(dir, ".cfn.yaml", &mut template_paths);
    if template_paths.is_empty() {
        bail!("no *.cfn.yaml templates under {}", dir.display());
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
                match templates
                    .iter()
                    .find(|t| t.stack_type().as_deref() == Some(file.stack_type.as_str()))
                {
                    Some(template) => findings.extend(params::check(&file, template)),
                    None => findings.push(Finding {
                        check: "params".into(),
                        rule: "no-template".into(),
                        severity: Severity::Error,
                        file: file.display.clone(),
                        line: 1,
                        resource: None,
                        path: None,
                        message: format!(
                            "no template {}-stack.cfn.yaml for this parameter file",
                            file.stack_type
                        ),
                        fix: Some(
                            "name parameter files <type>-<stage>.json after their template".into(),
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
    let rules = guard::load_rules(&options.rules)?;
    findings.extend(guard::check(&templates, &param_files, &rules)?);
    timings.push(("guard".to_string(), t.elapsed().as_secs_f64()));

    let t = Instant::now();
    findings.extend(wiring::check(&templates, &param_files));
    timings.push(("wiring".to_string(), t.elapsed().as_secs_f64()));

    // IRSA: k8s/ manifests against the role in iam/, when the repository has them.
    let (k8s_dir, iam_dir) = (base.join("k8s"), base.join("iam"));
    if k8s_dir.is_dir() && iam_dir.is_dir() {
        let t = Instant::now();
        findings.extend(irsa::check(
            &k8s_dir,
            &iam_dir,
            &config.aws.account_id,
            &base,
        ));
        timings.push(("irsa".to_string(), t.elapsed().as_secs_f64()));
    }

    if options.lint {
        let t = Instant::now();
        findings.extend(lint::run(config, &templates, &base).await?);
        timings.push(("cfn-lint".to_string(), t.elapsed().as_secs_f64()));
    }
    findings.sort_by(|a, b| {
        (a.severity, &a.file, a.line, &a.rule).cmp(&(b.severity, &b.file, b.line, &b.rule))
    });
    timings.push(("total".to_string(), started.elapsed().as_secs_f64()));
    Ok(ValidateReport {
        templates: templates.iter().map(|t| t.display.clone()).collect(),
        parameter_files: param_files.iter().map(|p| p.display.clone()).collect(),
        findings,
        timings,
    })
}
