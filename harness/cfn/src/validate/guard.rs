//! The cfn-guard rule packs (the project's `rules/*.guard`, plus any `--rules DIR` of the user's own),
//! evaluated in-process through the cfn-guard library.
//!
//! Each template is rendered once per stage that has a parameter file for it (once with defaults
//! otherwise): `{"Ref": Parameter}` becomes the stage's value and the top-level key `Stage` names
//! the stage, so rules such as "deletion protection on prd" see what prd would deploy. Findings
//! repeated across stages are reported once, and at most 100 per rule and template are listed.
//!
//! A rules file that does not parse is a finding naming it (and is left out); a rules file that
//! cannot be evaluated on a template (cfn-guard error or panic) is a finding naming the rules
//! file and the template. Both are errors: a check that cannot tell is not a pass.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::params::ParamFile;
use super::template::Template;
use super::{Finding, Severity};

/// Rules files larger than this are not read (the Guard Rules Registry's largest is ~30 KB).
const MAX_RULES_BYTES: u64 = 4 * 1024 * 1024;

/// One rules file of a pack, already known to parse.
#[derive(Debug, Clone)]
pub struct RuleFile {
    /// Path for reports.
    pub display: String,
    /// File name (used as the rule id when the whole file cannot be evaluated).
    pub name: String,
    /// Guard source.
    pub text: String,
}

/// The rules files under `path` (a `*.guard` / `*.ruleset` file, or a folder searched
/// recursively); `display` turns a path into its name in reports. A file that cannot be read or
/// parsed becomes a finding naming it, and is left out; the other files still count.
pub fn load_rules(path: &Path, display: &dyn Fn(&Path) -> String) -> (Vec<RuleFile>, Vec<Finding>) {
    let mut rules = Vec::new();
    let mut findings = Vec::new();
    let bad = |file: String, name: String, line: usize, message: String, fix: &str| Finding {
        sources: Vec::new(),
        check: "guard".into(),
        rule: name,
        severity: Severity::Error,
        file,
        line,
        resource: None,
        path: None,
        message,
        fix: Some(fix.into()),
    };
    let mut paths = Vec::new();
    if path.is_dir() {
        rule_files(path, &mut paths);
        if paths.is_empty() {
            findings.push(bad(
                display(path),
                "no-rules".into(),
                1,
                "no *.guard or *.ruleset files in this rules folder".into(),
                "point --rules at a folder holding Guard rules files",
            ));
        }
    } else if path.is_file() {
        paths.push(path.to_path_buf());
    } else {
        findings.push(bad(
            display(path),
            "no-rules".into(),
            1,
            "rules folder or file not found".into(),
            "point --rules at a folder holding Guard rules files",
        ));
    }
    for path in paths {
        let shown = display(&path);
        let name = path
            .file_name()
            .map_or_else(|| shown.clone(), |n| n.to_string_lossy().into_owned());
        let text = match std::fs::metadata(&path) {
            Ok(m) if m.len() > MAX_RULES_BYTES => Err(format!(
                "{} bytes: larger than the {MAX_RULES_BYTES} bytes a rules file may have",
                m.len()
            )),
            _ => std::fs::read(&path)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|b| String::from_utf8(b).map_err(|_| "not UTF-8".to_string())),
        };
        let text = match text {
            Ok(text) => text,
            Err(why) => {
                findings.push(bad(shown, name, 1, why, "fix or remove the rules file"));
                continue;
            }
        };
        let parsed = std::panic::catch_unwind(|| {
            cfn_guard::commands::validate::parse_rules(&text, &shown)
                .map(|rules| rules.is_some())
                .map_err(|e| e.to_string())
        });
        match parsed {
            Ok(Ok(true)) => rules.push(RuleFile {
                display: shown,
                name,
                text,
            }),
            // Only comments: nothing to evaluate.
            Ok(Ok(false)) => {}
            Ok(Err(why)) => findings.push(bad(
                shown,
                name,
                line_in_guard_error(&why),
                format!(
                    "cfn-guard cannot parse this rules file: {}",
                    first_line(&why)
                ),
                "fix the Guard syntax (cfn-guard parse-tree -r FILE shows where it stops)",
            )),
            Err(panic) => findings.push(bad(
                shown,
                name,
                1,
                format!(
                    "cfn-guard panicked parsing this rules file: {}",
                    super::panic_text(&panic)
                ),
                "simplify or remove the rules file",
            )),
        }
    }
    (rules, findings)
}

/// `*.guard` and `*.ruleset` files under `dir`, recursively, in name order.
fn rule_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let hidden = entry.file_name().to_string_lossy().starts_with('.');
        let is_dir = entry.file_type().is_ok_and(|k| k.is_dir());
        if is_dir && !hidden {
            rule_files(&path, out);
        } else if !is_dir
            && path
                .extension()
                .is_some_and(|e| e == "guard" || e == "ruleset")
        {
            out.push(path);
        }
    }
}

fn first_line(text: &str) -> &str {
    text.lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
}

/// The line a Guard parse error points at (`... line: 12, column: 3 ...`), else 1.
fn line_in_guard_error(message: &str) -> usize {
    let re = regex::Regex::new(r"(?i)line:?\s*(\d+)").expect("valid pattern");
    re.captures(message)
        .and_then(|c| c[1].parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(1)
}

/// Replaces `{"Ref": P}` for known parameters with their values.
fn render(value: &Value, params: &BTreeMap<String, String>) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1 {
                if let Some(name) = map.get("Ref").and_then(Value::as_str) {
                    if let Some(v) = params.get(name) {
                        return match v.as_str() {
                            "true" => Value::Bool(true),
                            "false" => Value::Bool(false),
                            _ => v
                                .parse::<i64>()
                                .map(Value::from)
                                .unwrap_or_else(|_| Value::String(v.clone())),
                        };
                    }
                }
            }
            Value::Object(
                map.iter()
                    .map(|(k, v)| (k.clone(), render(v, params)))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| render(v, params)).collect()),
        other => other.clone(),
    }
}

/// Splits a Guard custom message into (violation, fix).
fn split_message(custom: &str) -> (String, Option<String>) {
    let mut violation = String::new();
    let mut fix = None;
    // Guard separates the lines with newlines, or with ';' for some clause kinds.
    for line in custom.split(['\n', ';']).map(str::trim) {
        if let Some(v) = line.strip_prefix("Violation:") {
            violation = v.trim().to_string();
        } else if let Some(f) = line.strip_prefix("Fix:") {
            fix = Some(f.trim().to_string());
        }
    }
    (violation, fix)
}

/// The first `/Resources/...` path quoted in a Guard error message.
fn resource_path_in(message: &str) -> Option<String> {
    let start = message.find("/Resources/")?;
    let rest = &message[start..];
    let end = rest.find(['[', ']', ' ']).unwrap_or(rest.len());
    Some(rest[..end].to_string())
}

/// Every failed clause under a rule's JSON record: (custom message, error message, data path).
fn failed_clauses(value: &Value, out: &mut Vec<(String, String, String)>) {
    match value {
        Value::Object(map) => {
            if let (Some(messages), Some(check)) = (map.get("messages"), map.get("check")) {
                let error = messages["error_message"].as_str().unwrap_or("");
                let path = check
                    .pointer("/Resolved/from/path")
                    .or_else(|| check.pointer("/UnResolved/value/traversed_to/path"))
                    .or_else(|| check.pointer("/InResolved/from/path"))
                    .and_then(Value::as_str)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .or_else(|| resource_path_in(error))
                    .unwrap_or_default();
                out.push((
                    messages["custom_message"]
                        .as_str()
                        .unwrap_or("")
                        .to_string(),
                    messages["error_message"].as_str().unwrap_or("").to_string(),
                    path,
                ));
            }
            map.values().for_each(|v| failed_clauses(v, out));
        }
        Value::Array(items) => items.iter().for_each(|v| failed_clauses(v, out)),
        _ => {}
    }
}

/// Findings listed per rule and template; more are summed up in one finding (a template with
/// thousands of violating resources keeps a readable, bounded report).
const MAX_LISTED_PER_RULE: usize = 100;

/// Stack for the thread that runs cfn-guard, which recurses over data and rules.
const GUARD_STACK_BYTES: usize = 64 << 20;

/// Runs the rule packs over every template, per stage. Never fails: a rules file that cannot be
/// evaluated on a template (cfn-guard error, panic, unreadable output) becomes an error finding
/// naming that rules file and template, and every other rules file is still evaluated.
pub fn check(
    templates: &[Template],
    param_files: &[ParamFile],
    rules: &[RuleFile],
) -> Vec<Finding> {
    if rules.is_empty() {
        return Vec::new();
    }
    let run = || check_here(templates, param_files, rules);
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("cfn-guard".into())
            .stack_size(GUARD_STACK_BYTES)
            .spawn_scoped(scope, run);
        match spawned {
            Ok(handle) => handle.join().unwrap_or_else(|panic| {
                vec![internal_error(
                    templates.first().map_or("", |t| t.display.as_str()),
                    &super::panic_text(&panic),
                )]
            }),
            Err(_) => run(),
        }
    })
}

fn internal_error(file: &str, why: &str) -> Finding {
    Finding {
        sources: Vec::new(),
        check: "guard".into(),
        rule: "internal-error".into(),
        severity: Severity::Error,
        file: file.into(),
        line: 1,
        resource: None,
        path: None,
        message: format!("the guard check stopped: {why}"),
        fix: None,
    }
}

/// What cfn-guard reported as not compliant: the `not_compliant` records of one evaluation.
///
/// Not `cfn_guard::run_checks`: cfn-guard 3.2.1 writes that report through a `BufWriter` and
/// returns only `BufWriter::buffer()`, the part not yet flushed, so any report over 8 KiB comes
/// back as its tail and is not JSON. The validate command below writes into a plain `Vec`.
fn evaluate(content: &str, rules: &[&RuleFile]) -> Result<Vec<Value>, String> {
    use cfn_guard::commands::validate::{OutputFormatType, ShowSummaryType};
    use cfn_guard::commands::Executable;
    use cfn_guard::utils::reader::{ReadBuffer, Reader};
    use cfn_guard::utils::writer::{WriteBuffer, Writer};
    use cfn_guard::CommandBuilder;
    let payload = serde_json::json!({
        "rules": rules.iter().map(|r| r.text.as_str()).collect::<Vec<_>>(),
        "data": [content],
    })
    .to_string();
    let run = move || -> Result<String, String> {
        let command = cfn_guard::ValidateBuilder::default()
            .payload(true)
            .structured(true)
            .output_format(OutputFormatType::JSON)
            .show_summary(vec![ShowSummaryType::None])
            .try_build()
            .map_err(|e| e.to_string())?;
        let mut reader = Reader::new(ReadBuffer::Cursor(std::io::Cursor::new(
            payload.into_bytes(),
        )));
        let mut writer =
            Writer::new_with_err(WriteBuffer::Vec(Vec::new()), WriteBuffer::Vec(Vec::new()))
                .map_err(|e| e.to_string())?;
        let status = command
            .execute(&mut writer, &mut reader)
            .map_err(|e| e.to_string())?;
        // 0 compliant, 19 not compliant; 5 means a rules file did not parse.
        if status == 5 {
            return Err("cfn-guard could not parse the rules".into());
        }
        writer.into_string().map_err(|e| e.to_string())
    };
    let output = std::panic::catch_unwind(std::panic::AssertUnwindSafe(run))
        .map_err(|panic| format!("cfn-guard panicked: {}", super::panic_text(&panic)))??;
    let report: Value = serde_json::from_str(&output).map_err(|e| {
        format!(
            "cfn-guard printed something other than JSON ({e}): {:.120}",
            output.trim()
        )
    })?;
    let file = report
        .as_array()
        .and_then(|files| files.first())
        .ok_or_else(|| format!("cfn-guard printed no file report: {:.120}", output.trim()))?;
    Ok(file["not_compliant"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// [`check`] on the current thread.
fn check_here(
    templates: &[Template],
    param_files: &[ParamFile],
    rules: &[RuleFile],
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let mut seen = BTreeSet::new();
    for template in templates {
        // Findings per rule listed so far, and how many more were left out.
        let mut listed: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        let stack_type = crate::deploy::stack_key(&template.path);
        let defaults = template.parameter_defaults();
        let mut stages: Vec<(String, BTreeMap<String, String>)> = param_files
            .iter()
            .filter(|p| p.stack_type == stack_type)
            .map(|p| {
                let mut values = defaults.clone();
                values.extend(p.values.clone());
                (p.stage.clone(), values)
            })
            .collect();
        if stages.is_empty() {
            stages.push(("default".to_string(), defaults.clone()));
        }
        for (stage, params) in stages {
            let in_stage = |message: String| {
                if stage == "default" {
                    message
                } else {
                    format!("[{stage}] {message}")
                }
            };
            let mut data = render(&template.body, &params);
            if let Some(map) = data.as_object_mut() {
                map.insert("Stage".into(), Value::String(stage.clone()));
            }
            let content = serde_json::to_string(&data).unwrap_or_default();
            let all: Vec<&RuleFile> = rules.iter().collect();
            let mut records = Vec::new();
            match evaluate(&content, &all) {
                Ok(found) => records = found,
                Err(why) => {
                    // Find which rules files fail; the others still count.
                    for rule in rules {
                        match evaluate(&content, &[rule]) {
                            Ok(found) => records.extend(found),
                            Err(why_this) => {
                                let why = if rules.len() == 1 { &why } else { &why_this };
                                let message = format!(
                                    "the rules in {} could not be evaluated on this template: {why}",
                                    rule.display
                                );
                                let key = (
                                    template.display.clone(),
                                    rule.name.clone(),
                                    String::new(),
                                    message.clone(),
                                );
                                if seen.insert(key) {
                                    findings.push(Finding {
                                        sources: Vec::new(),
                                        check: "guard".into(),
                                        rule: rule.name.clone(),
                                        severity: Severity::Error,
                                        file: template.display.clone(),
                                        line: 1,
                                        resource: None,
                                        path: None,
                                        message: in_stage(message),
                                        fix: Some(
                                            "a check that cannot evaluate is not a pass: fix the rule or the template construct it stops at".into(),
                                        ),
                                    });
                                }
                            }
                        }
                    }
                }
            }
            for rule in &records {
                let name = rule["Rule"]["name"].as_str().unwrap_or("?").to_string();
                let mut clauses = Vec::new();
                failed_clauses(&rule["Rule"]["checks"], &mut clauses);
                for (custom, error, path) in clauses {
                    let (violation, fix) = split_message(&custom);
                    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
                    let resource = (segments.first() == Some(&"Resources"))
                        .then(|| segments.get(1).map(|s| s.to_string()))
                        .flatten();
                    let keys: Vec<&str> = segments.iter().skip(2).copied().collect();
                    let line = resource
                        .as_deref()
                        .map_or(1, |r| template.line_of("Resources", r, &keys));
                    let message = if violation.is_empty() {
                        error
                    } else {
                        violation
                    };
                    let key = (
                        template.display.clone(),
                        name.clone(),
                        path.clone(),
                        message.clone(),
                    );
                    if !seen.insert(key) {
                        continue;
                    }
                    let count = listed.entry(name.clone()).or_default();
                    if count.0 == MAX_LISTED_PER_RULE {
                        count.1 += 1;
                        continue;
                    }
                    count.0 += 1;
                    findings.push(Finding {
                        sources: Vec::new(),
                        check: "guard".into(),
                        rule: name.clone(),
                        severity: Severity::Error,
                        file: template.display.clone(),
                        line,
                        resource,
                        path: (!keys.is_empty()).then(|| keys.join(".")),
                        // (list indices stay in the path: they locate the item)
                        message: in_stage(message),
                        fix,
                    });
                }
            }
        }
        for (rule, (_, more)) in listed.into_iter().filter(|(_, (_, more))| *more > 0) {
            findings.push(Finding {
                sources: Vec::new(),
                check: "guard".into(),
                rule,
                severity: Severity::Error,
                file: template.display.clone(),
                line: 1,
                resource: None,
                path: None,
                message: format!(
                    "{more} more violations of this rule in this template are not listed (at most {MAX_LISTED_PER_RULE} per rule and template)"
                ),
                fix: Some("fix the listed ones; the rest are of the same kind".into()),
            });
        }
    }
    findings
}
