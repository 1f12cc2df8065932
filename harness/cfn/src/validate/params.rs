//! Parameter files (`aws/params/<type>-<stage>.json`, `[{"ParameterKey", "ParameterValue"}]`)
//! checked against their template's parameters: names, required values, types, AllowedValues,
//! AllowedPattern, lengths, Min/Max, and Fargate's CPU/memory combinations.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::template::Template;
use super::{Finding, Severity};

/// One parameter file, parsed.
#[derive(Debug, Clone)]
pub struct ParamFile {
    /// Path for reports.
    pub display: String,
    /// Stack type (`vpc`, `rds`, ...).
    pub stack_type: String,
    /// Stage (`dev`, `prd`, ...).
    pub stage: String,
    /// Source text.
    pub text: String,
    /// Values by parameter name.
    pub values: BTreeMap<String, String>,
}

impl ParamFile {
    /// Line of a parameter's key in the file (1 when not found).
    pub fn line_of(&self, key: &str) -> usize {
        let needle = format!("\"{key}\"");
        self.text
            .lines()
            .position(|l| l.contains("ParameterKey") && l.contains(&needle))
            .map_or(1, |i| i + 1)
    }
}

/// `<type>-<stage>.json` → (type, stage).
pub fn split_name(path: &Path) -> Option<(String, String)> {
    let stem = path.file_name()?.to_str()?.strip_suffix(".json")?;
    let (stack_type, stage) = stem.rsplit_once('-')?;
    Some((stack_type.to_string(), stage.to_string()))
}

fn error(file: &str, line: usize, rule: &str, message: String, fix: String) -> Box<Finding> {
    Box::new(Finding {
        sources: Vec::new(),
        check: "params".into(),
        rule: rule.into(),
        severity: Severity::Error,
        file: file.into(),
        line,
        resource: None,
        path: None,
        message,
        fix: Some(fix),
    })
}

/// Parses a parameter file; malformed content becomes a finding.
pub fn load(path: &Path, display: &str) -> Result<ParamFile, Box<Finding>> {
    let (stack_type, stage) = split_name(path).ok_or_else(|| {
        error(
            display,
            1,
            "file-name",
            "parameter file name is not <type>-<stage>.json".into(),
            "rename it like rds-dev.json".into(),
        )
    })?;
    let text = std::fs::read_to_string(path).map_err(|e| {
        error(
            display,
            1,
            "unreadable",
            format!("cannot read: {e}"),
            "check the file".into(),
        )
    })?;
    let entries: Vec<BTreeMap<String, Value>> = serde_json::from_str(&text).map_err(|e| {
        error(
            display,
            e.line().max(1),
            "json-syntax",
            format!("not a parameter list: {e}"),
            "use [{\"ParameterKey\": \"Name\", \"ParameterValue\": \"value\"}, ...]".into(),
        )
    })?;
    let mut values = BTreeMap::new();
    for entry in entries {
        let key = entry.get("ParameterKey").and_then(Value::as_str);
        let value = entry.get("ParameterValue").map(|v| match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        });
        match (key, value) {
            (Some(key), Some(value)) => {
                values.insert(key.to_string(), value);
            }
            _ => {
                return Err(error(
                    display,
                    1,
                    "entry-shape",
                    format!("entry without ParameterKey/ParameterValue: {entry:?}"),
                    "every entry needs both keys".into(),
                ))
            }
        }
    }
    Ok(ParamFile {
        display: display.into(),
        stack_type,
        stage,
        text,
        values,
    })
}

/// Valid Fargate (CPU units → memory MiB) combinations.
fn fargate_memory_ok(cpu: u32, memory: u32) -> bool {
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => (1024..=4096).contains(&memory) && memory.is_multiple_of(1024),
        1024 => (2048..=8192).contains(&memory) && memory.is_multiple_of(1024),
        2048 => (4096..=16384).contains(&memory) && memory.is_multiple_of(1024),
        4096 => (8192..=30720).contains(&memory) && memory.is_multiple_of(1024),
        _ => false,
    }
}

/// Checks one parameter file against its template.
pub fn check(file: &ParamFile, template: &Template) -> Vec<Finding> {
    let mut findings = Vec::new();
    let declared = template.parameters();
    for key in file.values.keys() {
        if !declared.contains_key(key) {
            findings.push(*error(
                &file.display,
                file.line_of(key),
                "unknown-parameter",
                format!("{key} is not a parameter of {}", template.display),
                format!(
                    "remove it or use one of: {}",
                    declared.keys().cloned().collect::<Vec<_>>().join(", ")
                ),
            ));
        }
    }
    for (name, spec) in &declared {
        let given = file.values.get(name);
        let Some(value) = given.or(None) else {
            if spec.get("Default").is_none() {
                findings.push(*error(
                    &file.display,
                    1,
                    "missing-parameter",
                    format!(
                        "{name} has no default in {} and is not given",
                        template.display
                    ),
                    format!("add {{\"ParameterKey\": \"{name}\", \"ParameterValue\": ...}}"),
                ));
            }
            continue;
        };
        let line = file.line_of(name);
        if let Some(message) = value_problem(value, spec) {
            findings.push(*error(
                &file.display,
                line,
                "invalid-value",
                format!("{name}={value:?}: {message}"),
                format!("see Parameters.{name} in {}", template.display),
            ));
        }
    }
    if let (Some(cpu), Some(memory)) = (
        effective(file, &declared, "TaskCpu"),
        effective(file, &declared, "TaskMemory"),
    ) {
        if let (Ok(cpu), Ok(memory)) = (cpu.parse::<u32>(), memory.parse::<u32>()) {
            if !fargate_memory_ok(cpu, memory) {
                findings.push(*error(
                    &file.display,
                    file.line_of("TaskMemory"),
                    "fargate-cpu-memory",
                    format!("TaskCpu {cpu} does not allow TaskMemory {memory}"),
                    "use a Fargate combination, e.g. 256→512-2048, 512→1024-4096, 1024→2048-8192, 2048→4096-16384, 4096→8192-30720 (MiB)".into(),
                ));
            }
        }
    }
    findings
}

/// A parameter's value from the file, else its default.
fn effective(
    file: &ParamFile,
    declared: &serde_json::Map<String, Value>,
    name: &str,
) -> Option<String> {
    file.values.get(name).cloned().or_else(|| {
        declared.get(name)?.get("Default").map(|d| match d {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    })
}

fn as_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Why `value` violates the parameter `spec`, if it does.
fn value_problem(value: &str, spec: &Value) -> Option<String> {
    let kind = spec["Type"].as_str().unwrap_or("String");
    let number = value.parse::<f64>().ok();
    if kind == "Number" && number.is_none() {
        return Some("not a number".into());
    }
    if let Some(allowed) = spec["AllowedValues"].as_array() {
        let ok = allowed.iter().any(|a| {
            as_text(a) == value || (kind == "Number" && as_text(a).parse::<f64>().ok() == number)
        });
        if !ok {
            let list: Vec<String> = allowed.iter().map(as_text).collect();
            return Some(format!("not one of {}", list.join(", ")));
        }
    }
    if let Some(pattern) = spec["AllowedPattern"].as_str() {
        match regex::Regex::new(&format!("^(?:{pattern})$")) {
            Ok(re) if !re.is_match(value) => {
                return Some(format!("does not match AllowedPattern {pattern}"))
            }
            Err(e) => {
                return Some(format!(
                    "AllowedPattern {pattern} is not a valid pattern: {e}"
                ))
            }
            _ => {}
        }
    }
    let len = value.chars().count() as f64;
    if spec["MinLength"].as_f64().is_some_and(|m| len < m) {
        return Some(format!("shorter than MinLength {}", spec["MinLength"]));
    }
    if spec["MaxLength"].as_f64().is_some_and(|m| len > m) {
        return Some(format!("longer than MaxLength {}", spec["MaxLength"]));
    }
    if let Some(n) = number.filter(|_| kind == "Number") {
        if spec["MinValue"].as_f64().is_some_and(|m| n < m) {
            return Some(format!("below MinValue {}", spec["MinValue"]));
        }
        if spec["MaxValue"].as_f64().is_some_and(|m| n > m) {
            return Some(format!("above MaxValue {}", spec["MaxValue"]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_combinations() {
        assert!(fargate_memory_ok(256, 512));
        assert!(!fargate_memory_ok(256, 4096));
        assert!(fargate_memory_ok(1024, 2048));
        assert!(!fargate_memory_ok(1024, 1024));
        assert!(fargate_memory_ok(4096, 30720));
        assert!(!fargate_memory_ok(3000, 4096));
    }

    #[test]
    fn value_rules() {
        let spec = serde_json::json!({"Type": "Number", "MinValue": 1, "MaxValue": 5});
        assert!(value_problem("3", &spec).is_none());
        assert!(value_problem("9", &spec).unwrap().contains("MaxValue"));
        assert!(value_problem("x", &spec).unwrap().contains("not a number"));
        let spec = serde_json::json!({"Type": "String", "AllowedPattern": "[a-z]+"});
        assert!(value_problem("abc", &spec).is_none());
        assert!(value_problem("abc1", &spec)
            .unwrap()
            .contains("AllowedPattern"));
        let spec = serde_json::json!({"Type": "String", "AllowedValues": ["dev", "prd"]});
        assert!(value_problem("prod", &spec)
            .unwrap()
            .contains("not one of dev, prd"));
    }
}
