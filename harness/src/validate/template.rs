//! Loading CloudFormation YAML templates into JSON form (short-form tags such as `!Ref` and
//! `!Sub` become `{"Ref": …}` / `{"Fn::Sub": …}`), with file:line errors instead of panics, and
//! line lookup for findings.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{Finding, Severity};

/// Short-form intrinsic function tags CloudFormation accepts (`!Name` → `Fn::Name`).
const FN_TAGS: &[&str] = &[
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "GetAtt",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
];

/// One loaded template.
#[derive(Debug, Clone)]
pub struct Template {
    /// Path as given.
    pub path: PathBuf,
    /// Path relative to the validated directory's parent (for reports).
    pub display: String,
    /// Source text.
    pub text: String,
    /// The template in JSON form.
    pub body: Value,
}

impl Template {
    /// Stack type from the file name: `vpc-stack.cfn.yaml` → `vpc`.
    pub fn stack_type(&self) -> Option<String> {
        stack_type_of(&self.path)
    }

    /// The template's `Parameters` section.
    pub fn parameters(&self) -> Map<String, Value> {
        self.body["Parameters"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    }

    /// Default values of the template's parameters, as text.
    pub fn parameter_defaults(&self) -> std::collections::BTreeMap<String, String> {
        self.parameters()
            .iter()
            .filter_map(|(k, spec)| {
                let d = spec.get("Default")?;
                Some((
                    k.clone(),
                    d.as_str().map_or_else(|| d.to_string(), String::from),
                ))
            })
            .collect()
    }

    /// Line (1-based) of resource/output/parameter `name` under `section`, then of the first
    /// key of `path` below it, as far as it can be found; 1 when nothing matches.
    pub fn line_of(&self, section: &str, name: &str, path: &[&str]) -> usize {
        line_of(&self.text, section, name, path)
    }
}

/// Stack type from a template file name: `vpc-stack.cfn.yaml` → `vpc`.
pub fn stack_type_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix("-stack.cfn.yaml").map(String::from)
}

/// Loads a template; malformed YAML or an unknown tag becomes a finding with its line.
pub fn load(path: &Path, display: &str) -> Result<Template, Box<Finding>> {
    let finding = |rule: &str, line: usize, message: String, fix: &str| {
        Box::new(Finding {
            check: "parse".into(),
            rule: rule.into(),
            severity: Severity::Error,
            file: display.to_string(),
            line,
            resource: None,
            path: None,
            message,
            fix: Some(fix.into()),
        })
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        finding(
            "unreadable",
            1,
            format!("cannot read: {e}"),
            "check the file exists and is UTF-8",
        )
    })?;
    let yaml: serde_norway::Value = serde_norway::from_str(&text).map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        finding(
            "yaml-syntax",
            line,
            format!("not valid YAML: {e}"),
            "fix the YAML syntax at this line",
        )
    })?;
    let body = to_json(&yaml).map_err(|tag| {
        let line = text
            .lines()
            .position(|l| l.contains(&tag))
            .map_or(1, |i| i + 1);
        finding(
            "unknown-tag",
            line,
            format!("unknown tag {tag}"),
            "use a CloudFormation short form such as !Ref, !Sub, !GetAtt, !ImportValue",
        )
    })?;
    if !body.is_object() || !body["Resources"].is_object() {
        return Err(finding(
            "not-a-template",
            1,
            "no Resources section".into(),
            "a CloudFormation template needs a Resources mapping",
        ));
    }
    Ok(Template {
        path: path.to_path_buf(),
        display: display.to_string(),
        text,
        body,
    })
}

/// YAML → JSON with intrinsic tags expanded; `Err(tag)` for an unknown tag.
fn to_json(value: &serde_norway::Value) -> Result<Value, String> {
    use serde_norway::Value as Y;
    Ok(match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(*b),
        Y::Number(n) => serde_json::to_value(n).unwrap_or(Value::Null),
        Y::String(s) => Value::String(s.clone()),
        Y::Sequence(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s.clone(),
                    other => serde_norway::to_string(other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                out.insert(key, to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(&tagged.value)?;
            let key = match name {
                "Ref" => "Ref".to_string(),
                "Condition" => "Condition".to_string(),
                "GetAtt" => {
                    // `!GetAtt A.B` is the short form of `Fn::GetAtt: [A, B]`.
                    let inner = match inner {
                        Value::String(s) => match s.split_once('.') {
                            Some((a, b)) => Value::Array(vec![a.into(), b.into()]),
                            None => Value::String(s),
                        },
                        other => other,
                    };
                    return Ok(Value::Object(Map::from_iter([(
                        "Fn::GetAtt".to_string(),
                        inner,
                    )])));
                }
                n if FN_TAGS.contains(&n) => format!("Fn::{n}"),
                _ => return Err(tag),
            };
            Value::Object(Map::from_iter([(key, inner)]))
        }
    })
}

/// Finds the line of `name:` under a top-level `section:`, then of each key of `path` below it;
/// a numeric key selects that item (0-based) of the YAML list below the current line.
pub fn line_of(text: &str, section: &str, name: &str, path: &[&str]) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key_at = |from: usize, key: &str, top_level: bool| -> Option<usize> {
        lines.iter().enumerate().skip(from).find_map(|(i, l)| {
            let trimmed = l.trim_start();
            let indented = l.len() != trimmed.len();
            let matches = trimmed.starts_with(&format!("{key}:"))
                || trimmed.starts_with(&format!("\"{key}\":"))
                || trimmed.starts_with(&format!("- {key}:"));
            (matches && indented != top_level).then_some(i)
        })
    };
    let item_at = |from: usize, index: usize| -> Option<usize> {
        let parent = indent(lines.get(from)?);
        let mut items = lines
            .iter()
            .enumerate()
            .skip(from + 1)
            .take_while(|(_, l)| l.trim().is_empty() || indent(l) > parent)
            .filter(|(_, l)| l.trim_start().starts_with("- "));
        let first = items.next()?;
        let item_indent = indent(first.1);
        std::iter::once(first)
            .chain(items.filter(|(_, l)| indent(l) == item_indent))
            .nth(index)
            .map(|(i, _)| i)
    };
    let Some(section_line) = key_at(0, section, true) else {
        return 1;
    };
    let Some(mut line) = key_at(section_line + 1, name, false) else {
        return section_line + 1;
    };
    for key in path {
        let next = match key.parse::<usize>() {
            Ok(index) => item_at(line, index),
            Err(_) => key_at(line, key, false).filter(|found| *found >= line),
        };
        match next {
            Some(found) => line = found,
            None => break,
        }
    }
    line + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_expand_and_unknown_tags_are_named() {
        let yaml: serde_norway::Value = serde_norway::from_str(
            "a: !Ref X\nb: !GetAtt R.Arn\nc: !Sub '${X}-y'\nd: !ImportValue {\"Fn::Sub\": z}\n",
        )
        .unwrap();
        let json = to_json(&yaml).unwrap();
        assert_eq!(json["a"], serde_json::json!({"Ref": "X"}));
        assert_eq!(json["b"], serde_json::json!({"Fn::GetAtt": ["R", "Arn"]}));
        assert_eq!(json["c"], serde_json::json!({"Fn::Sub": "${X}-y"}));
        assert_eq!(json["d"]["Fn::ImportValue"]["Fn::Sub"], "z");
        let bad: serde_norway::Value = serde_norway::from_str("a: !Reff X\n").unwrap();
        assert_eq!(to_json(&bad).unwrap_err(), "!Reff");
    }

    #[test]
    fn lines_are_found_by_section_name_and_path() {
        let text = "Parameters:\n  A:\n    Type: String\nResources:\n  Bucket:\n    Type: X\n    Properties:\n      Name: n\n";
        assert_eq!(line_of(text, "Resources", "Bucket", &[]), 5);
        assert_eq!(
            line_of(text, "Resources", "Bucket", &["Properties", "Name"]),
            8
        );
        assert_eq!(line_of(text, "Parameters", "A", &[]), 2);
        let list = "Resources:\n  R:\n    Properties:\n      Env:\n        - Name: a\n          Value: 1\n        - Name: b\n          Value: 2\n";
        assert_eq!(
            line_of(list, "Resources", "R", &["Properties", "Env", "1", "Name"]),
            7
        );
        assert_eq!(
            line_of(list, "Resources", "R", &["Properties", "Env", "0", "Value"]),
            6
        );
    }
}
