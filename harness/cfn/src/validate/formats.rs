//! Formats of the validate report: a table for people, SARIF 2.1.0 (code-scanning UIs) and JUnit
//! XML (CI).

use serde_json::json;

use super::{Severity, ValidateReport};

/// The width the human report keeps to.
pub const WIDTH: usize = 120;

/// `text` broken into lines of at most `width` characters (at spaces; a longer word stands
/// alone), the first prefixed with `first`, the rest with `rest` (both counted in the width).
fn wrap(text: &str, width: usize, first: &str, rest: &str) -> String {
    let mut lines = Vec::new();
    let mut line = first.to_string();
    let mut empty = true;
    for word in text.split_whitespace() {
        let len = line.chars().count();
        if !empty && len + 1 + word.chars().count() > width {
            lines.push(std::mem::replace(&mut line, rest.to_string()));
            empty = true;
        }
        if !empty {
            line.push(' ');
        }
        line.push_str(word);
        empty = false;
    }
    lines.push(line);
    lines.join("\n")
}

/// `validate` for a terminal (120 columns): findings grouped by template, then resource, each
/// message and fix wrapped; info findings collapsed to a count per rule unless `verbose`; a
/// summary line, and one line with every check's time.
pub fn human(report: &ValidateReport, verbose: bool) -> String {
    use std::collections::BTreeMap;
    let mut out = Vec::new();
    let shown: Vec<&super::Finding> = report
        .findings
        .iter()
        .filter(|f| verbose || f.severity != Severity::Info)
        .collect();
    // template -> resource -> findings, in report order within each.
    let mut by_file: BTreeMap<&str, BTreeMap<(usize, &str), Vec<&super::Finding>>> =
        BTreeMap::new();
    for f in &shown {
        let resource = f.resource.as_deref().unwrap_or("");
        let entry = by_file.entry(f.file.as_str()).or_default();
        let line = entry
            .keys()
            .find(|(_, r)| *r == resource && !resource.is_empty())
            .map_or(f.line, |(l, _)| *l);
        entry.entry((line, resource)).or_default().push(f);
    }
    for (file, resources) in &by_file {
        out.push(file.to_string());
        for ((line, resource), findings) in resources {
            let head = if resource.is_empty() {
                format!("  line {line}")
            } else {
                format!("  {resource} (line {line})")
            };
            out.push(head);
            for f in findings {
                let severity = match f.severity {
                    Severity::Error => "error  ",
                    Severity::Warning => "warning",
                    Severity::Info => "info   ",
                };
                let at = if f.line != *line {
                    format!(" (line {})", f.line)
                } else {
                    String::new()
                };
                let also = if f.sources.is_empty() {
                    String::new()
                } else {
                    format!(" (also {})", f.sources.join(", "))
                };
                let text = format!("{}/{}{also}{at}: {}", f.check, f.rule, f.message);
                out.push(wrap(
                    &text,
                    WIDTH,
                    &format!("    {severity} "),
                    "            ",
                ));
                if let Some(fix) = &f.fix {
                    out.push(wrap(
                        &format!("fix: {fix}"),
                        WIDTH,
                        "            ",
                        "                 ",
                    ));
                }
            }
        }
    }
    if !verbose {
        let mut collapsed: BTreeMap<String, (usize, Vec<String>)> = BTreeMap::new();
        for f in report
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Info)
        {
            let entry = collapsed
                .entry(format!("{}/{}", f.check, f.rule))
                .or_default();
            entry.0 += 1;
            if let Some(r) = &f.resource {
                entry.1.push(r.clone());
            }
        }
        for (rule, (count, resources)) in collapsed {
            let listed = if resources.is_empty() {
                String::new()
            } else {
                format!(": {}", resources.join(", "))
            };
            out.push(wrap(
                &format!("{count} × {rule}{listed} (--verbose shows each)"),
                WIDTH,
                "info    ",
                "        ",
            ));
        }
    }
    let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
    out.push(wrap(
        &format!(
            "{} templates, {} parameter files{}: {} errors, {} warnings, {} info{}",
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
            if report.suppressed.is_empty() {
                String::new()
            } else {
                format!(
                    ", {} suppressed ({} lists each with its reason)",
                    report.suppressed.len(),
                    super::suppress::FILE
                )
            },
        ),
        WIDTH,
        "",
        "  ",
    ));
    let timings: Vec<String> = report
        .timings
        .iter()
        .map(|(part, secs)| {
            let found = report.findings.iter().filter(|f| part_of(f, part)).count();
            format!("{part} {secs:.2}s ({found})")
        })
        .collect();
    out.push(wrap(&timings.join(" · "), WIDTH, "checks: ", "        "));
    out.join("\n")
}

/// Whether finding `f` was reported by timed part `part` (`cfn-lint`, `guard`, …).
fn part_of(f: &super::Finding, part: &str) -> bool {
    f.check == part || (part == "parse" && f.check == "discover")
}

/// SARIF 2.1.0, one result per finding; suppressed findings are results too, with the
/// suppression's justification (code-scanning UIs show them as dismissed). Each result's
/// `properties.source` names the tool that found it (`guard`, `control-tower`, `cfn-lint`, …).
pub fn sarif(report: &ValidateReport) -> String {
    let all: Vec<(&super::Finding, Option<&str>)> = report
        .findings
        .iter()
        .map(|f| (f, None))
        .chain(
            report
                .suppressed
                .iter()
                .map(|s| (&s.finding, Some(s.reason.as_str()))),
        )
        .collect();
    let mut rule_ids: Vec<String> = all
        .iter()
        .map(|(f, _)| format!("{}/{}", f.check, f.rule))
        .collect();
    rule_ids.sort();
    rule_ids.dedup();
    let results: Vec<_> = all
        .iter()
        .map(|(f, suppressed)| {
            let text = match &f.fix {
                Some(fix) => format!("{} (fix: {fix})", f.message),
                None => f.message.clone(),
            };
            let mut result = json!({
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
                "properties": {"source": f.check, "rule": f.rule, "alsoReportedBy": f.sources},
            });
            if let Some(reason) = suppressed {
                result["suppressions"] =
                    json!([{"kind": "external", "justification": reason}]);
            }
            result
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

#[cfg(test)]
mod human_tests {
    use super::*;
    use crate::validate::Finding;

    fn finding(severity: Severity, rule: &str, resource: &str, message: &str) -> Finding {
        Finding {
            sources: Vec::new(),
            check: "guard".into(),
            rule: rule.into(),
            severity,
            file: "aws/x.yaml".into(),
            line: 7,
            resource: Some(resource.into()),
            path: None,
            message: message.into(),
            fix: Some("do the right thing ".repeat(12)),
        }
    }

    #[test]
    fn the_report_fits_120_columns_groups_by_resource_and_collapses_info() {
        let long = "a long message ".repeat(30);
        let report = ValidateReport {
            templates: vec!["aws/x.yaml".into()],
            parameter_files: Vec::new(),
            skipped: Vec::new(),
            findings: vec![
                finding(Severity::Error, "r1", "Bucket", &long),
                finding(Severity::Warning, "r2", "Bucket", "short"),
                finding(Severity::Info, "unused", "A", "x"),
                finding(Severity::Info, "unused", "B", "x"),
            ],
            suppressed: Vec::new(),
            timings: vec![("guard".into(), 0.01)],
        };
        let text = human(&report, false);
        assert!(text.lines().all(|l| l.chars().count() <= WIDTH), "{text}");
        assert_eq!(text.matches("Bucket (line 7)").count(), 1, "{text}");
        assert!(
            text.contains("2 × guard/unused: A, B (--verbose shows each)"),
            "{text}"
        );
        assert!(text.contains("checks: guard 0.01s (4)"), "{text}");
        let verbose = human(&report, true);
        assert!(
            verbose.contains("A (line 7)") && !verbose.contains("--verbose shows"),
            "{verbose}"
        );
    }
}
