//! JUnit XML for CI systems: one `<testcase>` per check, failures and skips with their evidence.

use super::{E2eReport, Outcome};

/// `text` escaped for an XML attribute or text node (control characters dropped).
pub fn escape(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => " ".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// The report as a JUnit XML document.
pub fn render(report: &E2eReport) -> String {
    let failures = report.failures();
    let skipped = report
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Skip)
        .count();
    let total_secs: f64 = report.results.iter().map(|r| r.ms).sum::<f64>() / 1000.0;
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites>\n  <testsuite name=\"tenant-isolation\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total_secs:.3}\">\n",
        report.results.len()
    );
    for r in &report.results {
        xml.push_str(&format!(
            "    <testcase classname=\"e2e.{}\" name=\"{} {}\" time=\"{:.3}\"",
            escape(&r.check),
            escape(&r.check),
            escape(&r.pair),
            r.ms / 1000.0
        ));
        let evidence = escape(r.evidence.as_deref().unwrap_or(""));
        match r.outcome {
            Outcome::Pass => xml.push_str("/>\n"),
            Outcome::Fail => xml.push_str(&format!(
                ">\n      <failure message=\"{evidence}\"/>\n    </testcase>\n"
            )),
            Outcome::Skip => xml.push_str(&format!(
                ">\n      <skipped message=\"{evidence}\"/>\n    </testcase>\n"
            )),
        }
    }
    xml.push_str("  </testsuite>\n</testsuites>\n");
    xml
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e2e::CheckResult;

    #[test]
    fn failures_and_skips_carry_escaped_evidence() {
        let row = |outcome, evidence: Option<&str>| CheckResult {
            check: "login".into(),
            pair: "a→b".into(),
            outcome,
            ms: 12.0,
            evidence: evidence.map(String::from),
        };
        let report = E2eReport {
            target: "http://127.0.0.1:1".into(),
            results: vec![
                row(Outcome::Pass, None),
                row(Outcome::Fail, Some("HTTP 200 <\"ok\">")),
                row(Outcome::Skip, Some("local only")),
            ],
            up_secs: 0.0,
            setup_secs: 0.0,
            checks_secs: 0.0,
            down_secs: 0.0,
            emulator: None,
        };
        let xml = render(&report);
        assert!(
            xml.contains("tests=\"3\" failures=\"1\" skipped=\"1\""),
            "{xml}"
        );
        assert!(
            xml.contains("<failure message=\"HTTP 200 &lt;&quot;ok&quot;&gt;\"/>"),
            "{xml}"
        );
        assert!(xml.contains("<skipped message=\"local only\"/>"), "{xml}");
    }
}
