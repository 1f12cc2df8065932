//! Suppressions: `<dir>/validate.toml` lists the findings a team has decided on, each with the
//! reason. A suppressed finding leaves the counts (and the exit code) but stays in the report
//! (`suppressed`, and in SARIF as a result with its justification), so the decision is visible.
//! A suppression without a reason is an error; one that matches nothing is reported (stale).
//!
//! ```toml
//! [[suppress]]
//! rule = "control-tower/s3_bucket_object_lock_enabled_check"   # check/rule, `*` wildcards
//! resource = "TenantFiles*"                                     # logical id glob (default: any)
//! file = "aws/apps/*"                                           # report path glob (default: any)
//! reason = "tenants delete their files; Object Lock would forbid it"
//! ```
//! Each tool's own template `Metadata` suppressions (cfn-lint's `cfn-lint: config: ignore_checks`)
//! keep working: those tools honour them before the harness sees their findings.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Finding, Severity};

/// The suppressions file's name, looked up in the validated folder.
pub const FILE: &str = "validate.toml";

/// One `[[suppress]]` entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Suppression {
    /// `check/rule` (`*` matches any run of characters).
    pub rule: String,
    /// Logical id glob; absent = any resource.
    #[serde(default)]
    pub resource: Option<String>,
    /// Report path glob; absent = any file.
    #[serde(default)]
    pub file: Option<String>,
    /// Why: required.
    #[serde(default)]
    pub reason: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SuppressionFile {
    #[serde(default)]
    suppress: Vec<Suppression>,
}

/// A finding a suppression took out of the counts, with the reason.
#[derive(Debug, Clone, Serialize)]
pub struct Suppressed {
    /// The finding.
    pub finding: Finding,
    /// The suppression's reason.
    pub reason: String,
}

/// Whether `text` matches `pattern`, where `*` stands for any run of characters.
pub fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || !text[first.len()..].ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

impl Suppression {
    fn matches(&self, f: &Finding) -> bool {
        // (a row merged from several tools is suppressed by a suppression of any of them)
        (glob(&self.rule, &format!("{}/{}", f.check, f.rule))
            || f.sources.iter().any(|s| glob(&self.rule, s)))
            && self
                .resource
                .as_deref()
                .is_none_or(|r| glob(r, f.resource.as_deref().unwrap_or("")))
            && self.file.as_deref().is_none_or(|p| glob(p, &f.file))
    }
}

fn problem(
    file: &str,
    line: usize,
    rule: &str,
    severity: Severity,
    message: String,
    fix: &str,
) -> Finding {
    Finding {
        sources: Vec::new(),
        check: "suppress".into(),
        rule: rule.into(),
        severity,
        file: file.into(),
        line,
        resource: None,
        path: None,
        message,
        fix: Some(fix.into()),
    }
}

/// Applies `<dir>/validate.toml` to `findings`: returns the findings that stay (plus any problem
/// with the file itself) and the suppressed ones.
pub fn apply(dir: &Path, shown: &str, findings: Vec<Finding>) -> (Vec<Finding>, Vec<Suppressed>) {
    let path = dir.join(FILE);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return (findings, Vec::new());
    };
    let parsed: SuppressionFile = match toml::from_str(&text) {
        Ok(parsed) => parsed,
        Err(e) => {
            let line = e.span().map_or(1, |s| {
                text[..s.start.min(text.len())].lines().count().max(1)
            });
            let mut kept = findings;
            kept.push(problem(
                shown,
                line,
                "malformed",
                Severity::Error,
                format!("{FILE} cannot be read: {}", e.message()),
                "fix the file: [[suppress]] entries with rule, reason and optional resource/file globs",
            ));
            return (kept, Vec::new());
        }
    };
    let line_of = |needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .map_or(1, |i| i + 1)
    };
    let mut kept = Vec::new();
    let mut problems = Vec::new();
    let valid: Vec<&Suppression> = parsed
        .suppress
        .iter()
        .filter(|s| {
            let ok = !s.reason.trim().is_empty();
            if !ok {
                problems.push(problem(
                    shown,
                    line_of(&s.rule),
                    "suppression-without-reason",
                    Severity::Error,
                    format!("the suppression of {} gives no reason: it suppresses nothing until it does", s.rule),
                    "add reason = \"why this finding does not apply or is accepted\"",
                ));
            }
            ok
        })
        .collect();
    let mut used = vec![false; valid.len()];
    let mut suppressed = Vec::new();
    for f in findings {
        match valid.iter().position(|s| s.matches(&f)) {
            Some(i) => {
                used[i] = true;
                suppressed.push(Suppressed {
                    reason: valid[i].reason.clone(),
                    finding: f,
                });
            }
            None => kept.push(f),
        }
    }
    for (s, used) in valid.iter().zip(used) {
        if !used {
            problems.push(problem(
                shown,
                line_of(&s.rule),
                "unused-suppression",
                Severity::Info,
                format!("the suppression of {} matches no finding", s.rule),
                "remove it if what it was for is fixed",
            ));
        }
    }
    kept.extend(problems);
    (kept, suppressed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(rule: &str, resource: &str) -> Finding {
        Finding {
            sources: Vec::new(),
            check: "control-tower".into(),
            rule: rule.into(),
            severity: Severity::Error,
            file: "aws/apps/x.yaml".into(),
            line: 1,
            resource: Some(resource.into()),
            path: None,
            message: "m".into(),
            fix: None,
        }
    }

    #[test]
    fn globs_match_runs_of_characters() {
        assert!(glob("control-tower/s3_*", "control-tower/s3_bucket_x"));
        assert!(glob("*Bucket", "TenantFilesBucket") && !glob("*Bucket", "BucketPolicy"));
        assert!(glob("a*b*c", "aXbYc") && !glob("a*b*c", "aXcYb"));
        assert!(glob("exact", "exact") && !glob("exact", "exactly"));
    }

    #[test]
    fn suppressions_need_a_reason_and_stale_ones_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE),
            "[[suppress]]\nrule = \"control-tower/s3_*\"\nresource = \"Tenant*\"\nreason = \"decided\"\n\n[[suppress]]\nrule = \"guard/no_reason\"\n\n[[suppress]]\nrule = \"guard/stale\"\nreason = \"fixed since\"\n",
        )
        .unwrap();
        let (kept, suppressed) = apply(
            dir.path(),
            "x/validate.toml",
            vec![
                finding("s3_lock", "TenantFiles"),
                finding("s3_lock", "Other"),
                finding("no_reason", "A"),
            ],
        );
        assert_eq!(suppressed.len(), 1);
        assert_eq!(suppressed[0].reason, "decided");
        let rules: Vec<String> = kept
            .iter()
            .map(|f| format!("{}/{}", f.check, f.rule))
            .collect();
        assert_eq!(
            rules,
            [
                "control-tower/s3_lock",
                "control-tower/no_reason",
                "suppress/suppression-without-reason",
                "suppress/unused-suppression"
            ]
        );
        assert_eq!(kept[2].line, 7);
    }
}
