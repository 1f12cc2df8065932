//! Cross-stack wiring, which no existing tool checks: for each stage's parameter files, every
//! `Fn::ImportValue` must resolve to an `Export` of another template under the naming convention
//! `<ProjectPrefix>-<ProjectId-prefix>-<Stage>-<type>-stack`; deploy order must have no cycle;
//! exports nobody imports are reported (info).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::params::ParamFile;
use super::template::Template;
use super::{Finding, Severity};

/// An export: which template makes it, and its value when statically known.
#[derive(Debug, Clone)]
struct Export {
    stack_type: String,
    output: String,
    value: Option<String>,
}

struct Ctx<'a> {
    stack_name: &'a str,
    params: &'a BTreeMap<String, String>,
    exports: &'a BTreeMap<String, Export>,
}

/// Evaluates the intrinsic functions that can be known before deployment; `None` otherwise.
fn eval(value: &Value, ctx: &Ctx) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next()?;
            match key.as_str() {
                "Ref" => {
                    let name = arg.as_str()?;
                    if name == "AWS::StackName" {
                        Some(ctx.stack_name.to_string())
                    } else {
                        ctx.params.get(name).cloned()
                    }
                }
                "Fn::Sub" => {
                    let (template, vars) = match arg {
                        Value::String(s) => (s.as_str(), None),
                        Value::Array(items) if items.len() == 2 => {
                            (items[0].as_str()?, items[1].as_object())
                        }
                        _ => return None,
                    };
                    substitute(template, |name| {
                        if let Some(v) = vars.and_then(|m| m.get(name)) {
                            return eval(v, ctx);
                        }
                        if name == "AWS::StackName" {
                            return Some(ctx.stack_name.to_string());
                        }
                        ctx.params.get(name).cloned()
                    })
                }
                "Fn::ImportValue" => {
                    let name = eval(arg, ctx)?;
                    ctx.exports.get(&name)?.value.clone()
                }
                "Fn::Join" => {
                    let items = arg.as_array()?;
                    let sep = items.first()?.as_str()?;
                    let parts: Option<Vec<String>> = items
                        .get(1)?
                        .as_array()?
                        .iter()
                        .map(|v| eval(v, ctx))
                        .collect();
                    Some(parts?.join(sep))
                }
                "Fn::Select" => {
                    let items = arg.as_array()?;
                    let index: usize = eval(items.first()?, ctx)?.parse().ok()?;
                    let list = items.get(1)?;
                    if let Some(split) = list.get("Fn::Split").and_then(Value::as_array) {
                        let sep = split.first()?.as_str()?;
                        let text = eval(split.get(1)?, ctx)?;
                        return text.split(sep).nth(index).map(String::from);
                    }
                    eval(list.as_array()?.get(index)?, ctx)
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// `${Name}` substitution; `${!Literal}` stays literal.
fn substitute(template: &str, mut lookup: impl FnMut(&str) -> Option<String>) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find('}')?;
        let name = &after[..end];
        if let Some(literal) = name.strip_prefix('!') {
            out.push_str(&format!("${{{literal}}}"));
        } else {
            out.push_str(&lookup(name)?);
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

/// Every `Fn::ImportValue` in a template: (section, logical id, key path, argument).
fn imports_of(template: &Template) -> Vec<(String, String, Vec<String>, Value)> {
    fn walk(value: &Value, path: &mut Vec<String>, found: &mut Vec<(Vec<String>, Value)>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "Fn::ImportValue" {
                        found.push((path.clone(), v.clone()));
                    }
                    let keyed = !k.starts_with("Fn::") && k != "Ref";
                    if keyed {
                        path.push(k.clone());
                    }
                    walk(v, path, found);
                    if keyed {
                        path.pop();
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, path, found)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    for section in ["Resources", "Outputs"] {
        if let Some(entries) = template.body[section].as_object() {
            for (name, body) in entries {
                let mut found = Vec::new();
                walk(body, &mut Vec::new(), &mut found);
                for (path, arg) in found {
                    all.push((section.to_string(), name.clone(), path, arg));
                }
            }
        }
    }
    all
}

fn finding(
    template: &Template,
    severity: Severity,
    rule: &str,
    line: usize,
    resource: Option<String>,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        check: "wiring".into(),
        rule: rule.into(),
        severity,
        file: template.display.clone(),
        line,
        resource,
        path: None,
        message,
        fix: Some(fix),
    }
}

/// Checks the wiring of `templates` for every stage that has parameter files.
pub fn check(templates: &[Template], param_files: &[ParamFile]) -> Vec<Finding> {
    let mut findings = Vec::new();
    let stages: BTreeSet<&str> = param_files.iter().map(|p| p.stage.as_str()).collect();
    let mut used: BTreeSet<(String, String)> = BTreeSet::new();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for stage in &stages {
        let params_of = |stack_type: &str, template: &Template| -> BTreeMap<String, String> {
            let mut values = template.parameter_defaults();
            if let Some(file) = param_files
                .iter()
                .find(|p| p.stage == *stage && p.stack_type == stack_type)
            {
                values.extend(file.values.clone());
            }
            values
        };
        // The naming convention's parts come from whichever stack takes them (the VPC stack).
        let naming = templates.iter().find_map(|t| {
            let params = params_of(&t.stack_type()?, t);
            let prefix = params.get("ProjectPrefix")?.clone();
            let id = params.get("ProjectId")?.split('-').next()?.to_string();
            let stage_name = params
                .get("StageName")
                .cloned()
                .unwrap_or(stage.to_string());
            Some(format!("{prefix}-{id}-{stage_name}"))
        });
        let Some(naming) = naming else {
            continue;
        };
        // Each typed template with its stage parameters and stack name.
        let stacks: Vec<(&Template, String, BTreeMap<String, String>, String)> = templates
            .iter()
            .filter_map(|t| {
                let stack_type = t.stack_type()?;
                let params = params_of(&stack_type, t);
                let name = format!("{naming}-{stack_type}-stack");
                Some((t, stack_type, params, name))
            })
            .collect();
        let empty = BTreeMap::new();
        // Pass 1: export names and statically known values.
        let mut exports: BTreeMap<String, Export> = BTreeMap::new();
        for (template, stack_type, params, name) in &stacks {
            let ctx = Ctx {
                stack_name: name,
                params,
                exports: &empty,
            };
            for (output, body) in template.body["Outputs"].as_object().into_iter().flatten() {
                let Some(export) = body.get("Export").and_then(|e| e.get("Name")) else {
                    continue;
                };
                match eval(export, &ctx) {
                    Some(export_name) => {
                        exports.insert(
                            export_name,
                            Export {
                                stack_type: stack_type.clone(),
                                output: output.clone(),
                                value: eval(&body["Value"], &ctx),
                            },
                        );
                    }
                    None => findings.push(finding(
                        template,
                        Severity::Warning,
                        "unresolvable-export",
                        template.line_of("Outputs", output, &["Export"]),
                        Some(output.clone()),
                        format!("the export name of output {output} cannot be resolved before deployment"),
                        "build export names from ${AWS::StackName} and parameters only".into(),
                    )),
                }
            }
        }
        // Pass 2: every import must name an export of another template.
        for (template, stack_type, params, name) in &stacks {
            let ctx = Ctx {
                stack_name: name,
                params,
                exports: &exports,
            };
            for (section, logical, path, arg) in imports_of(template) {
                let keys: Vec<&str> = path.iter().map(String::as_str).collect();
                let line = template.line_of(&section, &logical, &keys);
                match eval(&arg, &ctx) {
                    None => findings.push(finding(
                        template,
                        Severity::Warning,
                        "unresolvable-import",
                        line,
                        Some(logical.clone()),
                        format!("[{stage}] an ImportValue in {logical} cannot be resolved from the parameters"),
                        "give the stack-name parameters it uses in the stage's parameter file".into(),
                    )),
                    Some(import) => match exports.get(&import) {
                        Some(export) if export.stack_type != *stack_type => {
                            used.insert((export.stack_type.clone(), export.output.clone()));
                            edges
                                .entry(stack_type.clone())
                                .or_default()
                                .insert(export.stack_type.clone());
                        }
                        Some(_) => findings.push(finding(
                            template,
                            Severity::Error,
                            "self-import",
                            line,
                            Some(logical.clone()),
                            format!("[{stage}] {logical} imports {import}, which its own stack exports"),
                            "use !Ref / !GetAtt inside a stack".into(),
                        )),
                        None => {
                            let suffix = import.rsplit('-').next().unwrap_or("");
                            let near: Vec<&String> = exports
                                .keys()
                                .filter(|e| e.ends_with(&format!("-{suffix}")))
                                .collect();
                            let fix = if near.is_empty() {
                                format!(
                                    "export it from the stack that owns it, named <stack>-{suffix} (stacks are {naming}-<type>-stack)"
                                )
                            } else {
                                format!("did you mean {}?", near.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or "))
                            };
                            findings.push(finding(
                                template,
                                Severity::Error,
                                "dangling-import",
                                line,
                                Some(logical.clone()),
                                format!("[{stage}] {logical} imports {import}, which no template exports"),
                                fix,
                            ));
                        }
                    },
                }
            }
        }
    }
    // Deploy order: a cycle can never be deployed.
    if let Some(cycle) = find_cycle(&edges) {
        if let Some(template) = templates
            .iter()
            .find(|t| t.stack_type().as_deref() == Some(cycle[0].as_str()))
        {
            findings.push(finding(
                template,
                Severity::Error,
                "import-cycle",
                1,
                None,
                format!(
                    "stacks import each other in a cycle: {}",
                    cycle.join(" -> ")
                ),
                "move the shared resource into one stack that the others import from".into(),
            ));
        }
    }
    if !stages.is_empty() {
        for template in templates {
            let Some(stack_type) = template.stack_type() else {
                continue;
            };
            for (output, body) in template.body["Outputs"].as_object().into_iter().flatten() {
                if body.get("Export").is_some()
                    && !used.contains(&(stack_type.clone(), output.clone()))
                {
                    findings.push(finding(
                        template,
                        Severity::Info,
                        "unused-export",
                        template.line_of("Outputs", output, &[]),
                        Some(output.clone()),
                        format!("export of {output} is not imported by any template here"),
                        "fine for outputs meant for operators; otherwise drop the Export".into(),
                    ));
                }
            }
        }
    }
    findings
}

/// A cycle in the import graph, as a path that ends where it starts.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(pos) = stack.iter().position(|n| n == node) {
            let mut cycle = stack[pos..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        stack.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, stack, done) {
                return Some(cycle);
            }
        }
        stack.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|start| visit(start, edges, &mut Vec::new(), &mut done))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn substitution_and_cycles() {
        let vars = |n: &str| (n == "A").then(|| "x".to_string());
        assert_eq!(substitute("${A}-y-${!B}", vars).unwrap(), "x-y-${B}");
        assert!(substitute("${C}", vars).is_none());
        let edges = BTreeMap::from([
            ("a".to_string(), BTreeSet::from(["b".to_string()])),
            ("b".to_string(), BTreeSet::from(["a".to_string()])),
        ]);
        assert_eq!(find_cycle(&edges).unwrap(), ["a", "b", "a"]);
        let acyclic = BTreeMap::from([("a".to_string(), BTreeSet::from(["b".to_string()]))]);
        assert!(find_cycle(&acyclic).is_none());
    }
}
