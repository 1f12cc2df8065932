//! The last result of each checking command of a checkout (`e2e`, `chaos`, `validate`, `bench`),
//! kept as `<state dir>/reports/<kind>.json` (0600) for the dashboard's Reports page. Every run
//! of such a command writes its kind's file, pass or fail, whatever `--json`/`--junit` it was
//! given.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// One kept result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// `e2e-isolation`, `e2e-replicas`, `chaos`, `validate`, `bench` …
    pub kind: String,
    /// When the command finished (seconds since the epoch).
    pub finished_at: u64,
    /// Whether it passed (its exit status was success).
    pub passed: bool,
    /// The command's own JSON report.
    pub report: serde_json::Value,
}

/// The folder of a checkout's kept results.
pub fn reports_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("reports")
}

/// Whether `kind` is a safe file stem (letters, digits, `-`).
fn valid_kind(kind: &str) -> bool {
    !kind.is_empty()
        && kind.len() <= 64
        && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// Keeps `report` as the last result of `kind`.
pub fn record(
    state_dir: &Path,
    kind: &str,
    passed: bool,
    report: &impl Serialize,
) -> Result<PathBuf> {
    anyhow::ensure!(valid_kind(kind), "report kind {kind:?} is not a file stem");
    let dir = reports_dir(state_dir);
    crate::state::create_private_dir(&dir)?;
    let path = dir.join(format!("{kind}.json"));
    let kept = RunReport {
        kind: kind.to_string(),
        finished_at: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs(),
        passed,
        report: serde_json::to_value(report).context("report is not JSON")?,
    };
    crate::state::write_json_0600(&path, &kept)?;
    Ok(path)
}

/// Keeps `report` like [`record`], saying on stderr when it cannot (the command's own result
/// stands either way).
pub fn record_or_warn(state_dir: &Path, kind: &str, passed: bool, report: &impl Serialize) {
    if let Err(e) = record(state_dir, kind, passed, report) {
        crate::progress::println(format!("could not keep the {kind} report: {e:#}"));
    }
}

/// Every kept result, newest first; files that do not parse are skipped.
pub fn list(state_dir: &Path) -> Vec<RunReport> {
    let Ok(entries) = std::fs::read_dir(reports_dir(state_dir)) else {
        return Vec::new();
    };
    let mut reports: Vec<RunReport> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .filter_map(|text| serde_json::from_str(&text).ok())
        .collect();
    reports.sort_by_key(|r| std::cmp::Reverse(r.finished_at));
    reports
}

/// Screenshot files a kept report names in its evidence (`screenshot: <path>.png`).
pub fn screenshots(report: &RunReport) -> Vec<PathBuf> {
    let text = report.report.to_string();
    let mut found = Vec::new();
    for (i, _) in text.match_indices("screenshot: ") {
        let rest = &text[i + "screenshot: ".len()..];
        let end = rest
            .find(|c: char| c == '"' || c == ';' || c.is_whitespace() || c == '\\')
            .unwrap_or(rest.len());
        let path = &rest[..end];
        if path.ends_with(".png") {
            found.push(PathBuf::from(path));
        }
    }
    found.dedup();
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_report_is_listed_with_its_screenshots() {
        let dir = tempfile::tempdir().unwrap();
        let report = serde_json::json!({"results": [
            {"check": "browser/requests", "outcome": "fail", "evidence": "a fetch crossed; screenshot: /tmp/x/requests-acme.png"}
        ]});
        let path = record(dir.path(), "e2e-browser", false, &report).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let listed = list(dir.path());
        assert_eq!(listed.len(), 1);
        assert!(!listed[0].passed);
        assert_eq!(
            screenshots(&listed[0]),
            vec![PathBuf::from("/tmp/x/requests-acme.png")]
        );
        assert!(record(dir.path(), "../escape", true, &report).is_err());
    }
}
