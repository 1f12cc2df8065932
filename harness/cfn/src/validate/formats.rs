//! Formats of the validate report: a table for people, SARIF 2.1.0 (code-scanning UIs) and JUnit
//! XML (CI).

use comfy_table::{Cell, Color};
use serde_json::json;

use super::{Severity, ValidateReport};

/// `validate` findings and a summary line.
pub fn human(report: &ValidateReport) -> String {
    let mut table = harness_core::tables::table(&[
        "severity", "check", "rule", "location", "resource", "message", "fix",
    ]);
    for f in &report.findings {
        let (text, color) = match f.severity {
            Severity::Error => ("error", Color::Red),
            Severity::Warning => ("warning", Color::Yellow),
            Severity::Info => ("info", Color::Reset),
        };
        table.add_row(vec![
            Cell::new(text).fg(color),
            Cell::new(&f.check),
            Cell::new(&f.rule),
            Cell::new(format!("{}:{}", f.file, f.line)),
            Cell::new(f.resource.as_deref().unwrap_or("")),
            Cell::new(&f.message),
            Cell::new(f.fix.as_deref().unwrap_or("")),
        ]);
    }
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    let timings: Vec<String> = report
        .timings
        .iter()
        .map(|(part, secs)| format!("{part} {secs:.2}s"))
        .collect();
    format!(
        "{}{} templates, {} parameter files{}: {} errors, {} warnings, {} info ({})",
        if report.findings.is_empty() {
            String::new()
        } else {
            format!("{table}\n")
        },
        report.templates.len(),
        report.parameter_files.len(),
        if report.skipped.is_empty() {
            String::new()
        } else {
            format!(
                " ({} YAML/JSON files skipped: not CloudFormation)",
                report.skipped.len()
            )
        },
        count(Severity::Error),
        count(Severity::Warning),
        count(Severity::Info),
        timings.join(", ")
    )
}

/// SARIF 2.1.0, one result per finding.
pub fn sarif(report: &ValidateReport) -> String {
    let mut rule_ids: Vec<String> = report
        .findings
        .iter()
        .map(|f| format!("{}/{}", f.check, f.rule))
        .collect();
    rule_ids.sort();
    rule_ids.dedup();
    let results: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            let text = match &f.fix {
                Some(fix) => format!("{} (fix: {fix})", f.message),
                None => f.message.clone(),
            };
            json!({
                "ruleId": format!("{}/{}", f.check, f.rule),
                "level": match f.severity {
                    Severity::Error => "error",
                    Severity::Warning => "warning",
                    Severity::Info => "note",
                },
                "message": {"text": text},
                "locations": [{
                    "physicalLocation": {
                        "artifactLocation": {"uri": f.file},
                        "region": {"startLine": f.line},
                    },
                    "logicalLocations": f.resource.as_ref().map(|r| vec![json!({"name": r})]).unwrap_or_default(),
                }],
            })
        })
        .collect();
    let document = json!({
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "langflow-infra validate",
                "rules": rule_ids.iter().map(|id| json!({"id": id})).collect::<Vec<_>>(),
            }},
            "results": results,
        }],
    });
    serde_json::to_string_pretty(&document).expect("SARIF serialises")
}

/// XML text: markup escaped, and characters XML 1.0 cannot carry (controls from hostile input
/// quoted in a message) replaced, so the document always parses.
fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect::<String>()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// JUnit XML: one test case per file; its error-level findings are the failure.
pub fn junit(report: &ValidateReport) -> String {
    let mut files: Vec<&String> = report
        .templates
        .iter()
        .chain(&report.parameter_files)
        .collect();
    for f in &report.findings {
        if !files.contains(&&f.file) {
            files.push(&f.file);
        }
    }
    let failures = files
        .iter()
        .filter(|file| {
            report
                .findings
                .iter()
                .any(|f| &&f.file == *file && f.severity == Severity::Error)
        })
        .count();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"validate\" tests=\"{}\" failures=\"{failures}\">\n",
        files.len()
    );
    for file in files {
        let errors: Vec<String> = report
            .findings
            .iter()
            .filter(|f| &f.file == file && f.severity == Severity::Error)
            .map(|f| {
                format!(
                    "{}:{} [{}/{}] {}",
                    f.file, f.line, f.check, f.rule, f.message
                )
            })
            .collect();
        xml.push_str(&format!(
            "    <testcase classname=\"validate\" name=\"{}\"",
            escape(file)
        ));
        if errors.is_empty() {
            xml.push_str("/>\n");
        } else {
            xml.push_str(&format!(
                ">\n      <failure message=\"{} error(s)\">{}</failure>\n    </testcase>\n",
                errors.len(),
                escape(&errors.join("\n"))
            ));
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}
