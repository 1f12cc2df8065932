//! Secrets by data flow, not by name: a value that comes from a secret — a `NoEcho` parameter, a
//! dynamic reference (`{{resolve:secretsmanager:…}}`, `{{resolve:ssm-secure:…}}`), or an export
//! of another template whose value carries one — followed through `Ref`, `Fn::Sub`, `Fn::Join`,
//! `Fn::If`, `Fn::Select`, `Fn::Base64` and `Fn::ImportValue` (across the templates of the set)
//! into a container's plain `Environment` is an error naming the variable, where the secret
//! comes from and the `Secrets:` fix. Plain environment values are shown by
//! `DescribeTaskDefinition`, the console and every task's metadata endpoint; `Secrets` are
//! resolved by ECS at task start and never stored in the task definition.
//!
//! A variable whose name looks like a secret (`PASSWORD`, `SECRET`, `TOKEN`, `API_KEY`) but whose
//! value could not be traced to a secret (a literal, a plain parameter) is a warning: its origin
//! is unknown.

use std::collections::BTreeSet;

use serde_json::Value;

use super::template::Template;
use super::wiring;
use super::{Finding, Severity};

/// How deep values may nest (and imports chain) before the search gives up.
const MAX_DEPTH: usize = 64;

/// Where a secret value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A `NoEcho` parameter of the template.
    NoEcho(String),
    /// A dynamic reference resolved by CloudFormation at deploy time.
    Dynamic(String),
    /// An export of another template whose value carries a secret.
    Import {
        /// The export's name as written (wildcards for deploy-time parts).
        export: String,
        /// The exporting template (as reported).
        template: String,
        /// Where that export's secret comes from.
        inner: Box<Source>,
    },
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::NoEcho(name) => format!("the NoEcho parameter {name}"),
            Source::Dynamic(text) => format!("the dynamic reference {text}"),
            Source::Import {
                export,
                template,
                inner,
            } => format!(
                "the export {export} of {template}, which carries {}",
                inner.describe()
            ),
        }
    }
}

/// The templates of the set and every export they can make.
struct Flow<'a> {
    templates: &'a [Template],
    /// (export name pattern, exporting template index, the output's `Value`).
    exports: Vec<(String, usize, &'a Value)>,
}

impl<'a> Flow<'a> {
    fn new(templates: &'a [Template]) -> Self {
        let mut exports = Vec::new();
        for (index, template) in templates.iter().enumerate() {
            for output in template.body["Outputs"].as_object().into_iter().flatten() {
                let body = output.1;
                let Some(name) = body.get("Export").and_then(|e| e.get("Name")) else {
                    continue;
                };
                if let (Some(name), Some(value)) =
                    (wiring::open_name(name, template), body.get("Value"))
                {
                    exports.push((name, index, value));
                }
            }
        }
        Flow { templates, exports }
    }

    /// Where the secret in `value` (a property of template `at`) comes from, if it carries one.
    fn source(
        &self,
        at: usize,
        value: &Value,
        depth: usize,
        seen: &mut BTreeSet<(usize, String)>,
    ) -> Option<Source> {
        if depth > MAX_DEPTH {
            return None;
        }
        let template = &self.templates[at];
        match value {
            Value::String(text) => dynamic_reference(text).map(Source::Dynamic),
            Value::Array(items) => items
                .iter()
                .find_map(|item| self.source(at, item, depth + 1, seen)),
            Value::Object(map) if map.len() == 1 => {
                let (key, arg) = map.iter().next()?;
                match key.as_str() {
                    "Ref" => no_echo(template, arg.as_str()?).map(Source::NoEcho),
                    "Fn::GetAtt" | "Fn::FindInMap" | "Fn::GetAZs" | "Fn::Cidr" => None,
                    "Fn::Sub" => self.sub_source(at, arg, depth, seen),
                    "Fn::ImportValue" => self.import_source(at, arg, depth, seen),
                    "Fn::If" => arg
                        .as_array()
                        .into_iter()
                        .flatten()
                        .skip(1)
                        .find_map(|branch| self.source(at, branch, depth + 1, seen)),
                    // Fn::Join, Fn::Select, Fn::Base64, Fn::Split and anything else: any part.
                    _ => self.source(at, arg, depth + 1, seen),
                }
            }
            Value::Object(map) => map
                .values()
                .find_map(|v| self.source(at, v, depth + 1, seen)),
            _ => None,
        }
    }

    /// `Fn::Sub`: a dynamic reference in its text, a `${Var}` bound to a secret, or a `${Param}`
    /// naming a NoEcho parameter.
    fn sub_source(
        &self,
        at: usize,
        arg: &Value,
        depth: usize,
        seen: &mut BTreeSet<(usize, String)>,
    ) -> Option<Source> {
        let (text, vars) = match arg {
            Value::String(text) => (text.as_str(), None),
            Value::Array(items) if items.len() == 2 => (items[0].as_str()?, items[1].as_object()),
            _ => return self.source(at, arg, depth + 1, seen),
        };
        if let Some(reference) = dynamic_reference(text) {
            return Some(Source::Dynamic(reference));
        }
        for name in sub_variables(text) {
            if let Some(bound) = vars.and_then(|v| v.get(&name)) {
                if let Some(source) = self.source(at, bound, depth + 1, seen) {
                    return Some(source);
                }
            } else if let Some(param) = no_echo(&self.templates[at], &name) {
                return Some(Source::NoEcho(param));
            }
        }
        None
    }

    /// `Fn::ImportValue`: the secret an export of another template of the set carries.
    fn import_source(
        &self,
        at: usize,
        arg: &Value,
        depth: usize,
        seen: &mut BTreeSet<(usize, String)>,
    ) -> Option<Source> {
        let name = wiring::open_name(arg, &self.templates[at])?;
        for (pattern, owner, value) in &self.exports {
            if *owner == at || !wiring::names_can_match(pattern, &name) {
                continue;
            }
            if !seen.insert((*owner, pattern.clone())) {
                continue; // an import cycle: wiring reports it
            }
            if let Some(inner) = self.source(*owner, value, depth + 1, seen) {
                return Some(Source::Import {
                    export: wiring::shown_name(pattern),
                    template: self.templates[*owner].display.clone(),
                    inner: Box::new(inner),
                });
            }
        }
        None
    }
}

/// The parameter `name` of `template` when it is `NoEcho`.
fn no_echo(template: &Template, name: &str) -> Option<String> {
    let spec = template.body["Parameters"].get(name)?;
    let hidden = match spec.get("NoEcho") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    };
    hidden.then(|| name.to_string())
}

/// The first secret dynamic reference in `text` (`{{resolve:secretsmanager:…}}` or
/// `{{resolve:ssm-secure:…}}`), as written.
fn dynamic_reference(text: &str) -> Option<String> {
    ["{{resolve:secretsmanager:", "{{resolve:ssm-secure:"]
        .iter()
        .filter_map(|start| text.find(start))
        .min()
        .map(|begin| {
            let rest = &text[begin..];
            let end = rest.find("}}").map_or(rest.len(), |e| e + 2);
            rest[..end].to_string()
        })
}

/// The variables `${Name}` / `${Name.Attr}` of a `Fn::Sub` text (not `${!Literal}`), by name.
fn sub_variables(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { break };
        let inner = &after[..end];
        if !inner.starts_with('!') {
            let name = inner.split('.').next().unwrap_or(inner).trim();
            if !name.is_empty() {
                names.push(name.to_string());
            }
        }
        rest = &after[end + 1..];
    }
    names
}

/// Whether an environment variable's name looks like it holds a secret.
fn secret_like_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ["PASSWORD", "PASSWD", "SECRET", "TOKEN", "API_KEY", "APIKEY"]
        .iter()
        .any(|word| upper.contains(word))
}

/// One `Environment` entry `name` = `value` of container `container` in template `at`: (rule,
/// severity, message, fix) when it carries a secret or looks like one; `None` when it is fine.
fn judge(
    flow: &Flow,
    at: usize,
    name: &str,
    container: &str,
    value: &Value,
) -> Option<(&'static str, Severity, String, String)> {
    let mut seen = BTreeSet::new();
    match flow.source(at, value, 0, &mut seen) {
        Some(source) => {
            let first_key = value.as_object().and_then(|m| m.keys().next());
            let whole = value.is_string()
                || matches!(first_key.map(String::as_str), Some("Ref" | "Fn::ImportValue"));
            Some((
                "secret-in-environment",
                Severity::Error,
                format!(
                    "{name} (container {container}) {} {} as plain text: anyone who can describe the task definition or reach the task's metadata reads it",
                    if whole { "is" } else { "carries" },
                    source.describe()
                ),
                format!(
                    "move {name} to the container's Secrets: {{Name: {name}, ValueFrom: <ARN of a Secrets Manager secret (or its JSON key) / SSM SecureString>}}; a URL that embeds the password is built by the application from separate variables, or kept whole in the secret"
                ),
            ))
        }
        None if secret_like_name(name) => Some((
            "secret-name-in-environment",
            Severity::Warning,
            format!(
                "{name} (container {container}) looks like a secret by its name, and its value is plain text of unknown origin (not traced to a NoEcho parameter, a dynamic reference or a secret export)"
            ),
            format!(
                "if {name} is a secret, pass it as Secrets: {{Name: {name}, ValueFrom: <secret ARN>}}; if not, ignore this warning"
            ),
        )),
        None => None,
    }
}

/// Every container `Environment` entry of every task definition of the set, judged by where its
/// value comes from.
pub fn check(templates: &[Template]) -> Vec<Finding> {
    let flow = Flow::new(templates);
    let mut findings = Vec::new();
    for (at, template) in templates.iter().enumerate() {
        let resources = template.body["Resources"].as_object();
        for (logical, resource) in resources.into_iter().flatten() {
            if resource["Type"] != "AWS::ECS::TaskDefinition" {
                continue;
            }
            let containers = resource["Properties"]["ContainerDefinitions"].as_array();
            for (c, container) in containers.into_iter().flatten().enumerate() {
                let container_name = container["Name"].as_str().unwrap_or("?");
                let environment = container["Environment"].as_array();
                for (e, entry) in environment.into_iter().flatten().enumerate() {
                    let Some(name) = entry["Name"].as_str() else {
                        continue;
                    };
                    let Some(value) = entry.get("Value") else {
                        continue;
                    };
                    let (cs, es) = (c.to_string(), e.to_string());
                    let path = [
                        "Properties",
                        "ContainerDefinitions",
                        cs.as_str(),
                        "Environment",
                        es.as_str(),
                    ];
                    let line = template.line_of("Resources", logical, &path);
                    let Some((rule, severity, message, fix)) =
                        judge(&flow, at, name, container_name, value)
                    else {
                        continue;
                    };
                    findings.push(Finding {
                        sources: Vec::new(),
                        check: "secrets".into(),
                        rule: rule.into(),
                        severity,
                        file: template.display.clone(),
                        line,
                        resource: Some(logical.clone()),
                        path: Some(format!("ContainerDefinitions.{c}.Environment.{e}")),
                        message,
                        fix: Some(fix),
                    });
                }
            }
        }
    }
    findings
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_variables_skip_literals_and_attributes() {
        assert_eq!(
            sub_variables(
                "postgresql://${DBUser}:${DBPassword}@${Db.Endpoint.Address}/${!Literal}"
            ),
            ["DBUser", "DBPassword", "Db"]
        );
    }

    #[test]
    fn dynamic_references_are_found_inside_text() {
        assert_eq!(
            dynamic_reference(
                "postgresql://u:{{resolve:secretsmanager:db:SecretString:password}}@h/x"
            )
            .as_deref(),
            Some("{{resolve:secretsmanager:db:SecretString:password}}")
        );
        assert_eq!(
            dynamic_reference("{{resolve:ssm-secure:/app/key}}").as_deref(),
            Some("{{resolve:ssm-secure:/app/key}}")
        );
        // A plain SSM parameter is not a secret.
        assert_eq!(dynamic_reference("{{resolve:ssm:/app/level}}"), None);
    }
}
