//! Cross-stack wiring, which no existing tool checks: for each stage's parameter files, every
//! `Fn::ImportValue` must resolve to an `Export` of another template under the naming convention
//! `<ProjectPrefix>-<ProjectId-prefix>-<Stage>-<type>-stack`; deploy order must have no cycle;
//! exports nobody imports are reported (info). Templates outside the convention (no stage
//! parameter files, other names) are judged with parameter defaults and an unknown stack name:
//! imports nothing in the set exports are warnings, imports that cannot be resolved are info.

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

/// Stands for a part of a name known only at deploy time (a stack name outside the naming
/// convention, a parameter without default, a pseudo parameter such as `AWS::Region`).
const UNKNOWN: char = '\u{0}';

/// How deep conditions may refer to conditions (cycles end here).
const MAX_DEPTH: usize = 64;

struct Ctx<'a> {
    /// The stack's name; empty when unknown.
    stack_name: &'a str,
    params: &'a BTreeMap<String, String>,
    exports: &'a BTreeMap<String, Export>,
    /// The template's `Conditions`, for `Fn::If`.
    conditions: Option<&'a serde_json::Map<String, Value>>,
    /// Unknown parts become [`UNKNOWN`] instead of making the whole value unknown.
    open: bool,
    /// `Fn::GetAtt` values by `Id.Attribute`, when known (a deployed stack's).
    attributes: Option<&'a BTreeMap<String, String>>,
}

impl Ctx<'_> {
    /// The value of `Ref`/`${}` name `name`.
    fn reference(&self, name: &str) -> Option<String> {
        if name == "AWS::StackName" && !self.stack_name.is_empty() {
            return Some(self.stack_name.to_string());
        }
        if let Some(value) = self.params.get(name) {
            return Some(value.clone());
        }
        if name.contains('.') {
            if let Some(value) = self.attributes.and_then(|a| a.get(name)) {
                return Some(value.clone());
            }
        }
        self.open.then(|| UNKNOWN.to_string())
    }

    /// The truth of condition `name`, when it can be known from the parameters.
    fn condition(&self, name: &str, depth: usize) -> Option<bool> {
        let body = self.conditions?.get(name)?;
        self.truth(body, depth + 1)
    }

    fn truth(&self, value: &Value, depth: usize) -> Option<bool> {
        if depth > MAX_DEPTH {
            return None;
        }
        let map = value.as_object().filter(|m| m.len() == 1)?;
        let (key, arg) = map.iter().next()?;
        let known = |v: &Value| {
            let closed = Ctx {
                open: false,
                ..*self
            };
            eval_at(v, &closed, depth + 1)
        };
        match key.as_str() {
            "Condition" => self.condition(arg.as_str()?, depth),
            "Fn::Equals" => {
                let items = arg.as_array()?;
                Some(known(items.first()?)? == known(items.get(1)?)?)
            }
            "Fn::Not" => Some(!self.truth(arg.as_array()?.first()?, depth + 1)?),
            "Fn::And" | "Fn::Or" => {
                let all: Option<Vec<bool>> = arg
                    .as_array()?
                    .iter()
                    .map(|c| self.truth(c, depth + 1))
                    .collect();
                let mut all = all?.into_iter();
                Some(if key == "Fn::And" {
                    all.all(|b| b)
                } else {
                    all.any(|b| b)
                })
            }
            _ => None,
        }
    }
}

/// Evaluates `value` (a property of a template in JSON form) with known parameter and resource
/// `refs`, export values by name (`imports`) and the template's `Conditions`; `None` when any part
/// of it is unknown or uses a function this evaluator does not know (`Fn::GetAtt`, ...).
/// [`resolve_in`] knows attributes too.
pub fn resolve(
    value: &Value,
    stack_name: &str,
    refs: &BTreeMap<String, String>,
    imports: &BTreeMap<String, String>,
    conditions: Option<&serde_json::Map<String, Value>>,
) -> Option<String> {
    resolve_in(
        value,
        &Scope {
            stack_name,
            refs,
            attributes: &BTreeMap::new(),
            imports,
            conditions,
        },
    )
}

/// What a template's values are evaluated against: a stack's name, its parameters and resources
/// (`Ref`), its resources' attributes (`Fn::GetAtt`, by `Id.Attribute`), the exports in reach
/// (`Fn::ImportValue`) and its `Conditions`.
pub struct Scope<'a> {
    /// The stack's name (`AWS::StackName`).
    pub stack_name: &'a str,
    /// Parameter values, physical ids and pseudo parameters by name.
    pub refs: &'a BTreeMap<String, String>,
    /// Attribute values by `LogicalId.Attribute`.
    pub attributes: &'a BTreeMap<String, String>,
    /// Export values by export name.
    pub imports: &'a BTreeMap<String, String>,
    /// The template's `Conditions`.
    pub conditions: Option<&'a serde_json::Map<String, Value>>,
}

/// Evaluates `value` in `scope` (`Fn::GetAtt` included); `None` when any part is unknown.
pub fn resolve_in(value: &Value, scope: &Scope<'_>) -> Option<String> {
    let (stack_name, refs, imports, conditions) = (
        scope.stack_name,
        scope.refs,
        scope.imports,
        scope.conditions,
    );
    let exports: BTreeMap<String, Export> = imports
        .iter()
        .map(|(name, value)| {
            let export = Export {
                stack_type: String::new(),
                output: name.clone(),
                value: Some(value.clone()),
            };
            (name.clone(), export)
        })
        .collect();
    let ctx = Ctx {
        stack_name,
        params: refs,
        exports: &exports,
        conditions,
        open: false,
        attributes: Some(scope.attributes),
    };
    eval(value, &ctx)
}

/// Evaluates the intrinsic functions that can be known before deployment; `None` otherwise.
fn eval(value: &Value, ctx: &Ctx) -> Option<String> {
    eval_at(value, ctx, 0)
}

fn eval_at(value: &Value, ctx: &Ctx, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    let eval = |v: &Value| eval_at(v, ctx, depth + 1);
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(map) if map.len() == 1 => {
            let (key, arg) = map.iter().next()?;
            match key.as_str() {
                "Ref" => ctx.reference(arg.as_str()?),
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
                            return eval(v);
                        }
                        ctx.reference(name)
                    })
                }
                "Fn::GetAtt" => {
                    let name = match arg {
                        Value::Array(items) if items.len() == 2 => {
                            format!("{}.{}", items[0].as_str()?, eval(&items[1])?)
                        }
                        Value::String(s) => s.clone(),
                        _ => return None,
                    };
                    ctx.attributes.and_then(|a| a.get(&name)).cloned()
                }
                "Fn::ImportValue" => {
                    let name = eval(arg)?;
                    match ctx.exports.get(&name).and_then(|e| e.value.clone()) {
                        Some(value) => Some(value),
                        None => ctx.open.then(|| UNKNOWN.to_string()),
                    }
                }
                "Fn::Join" => {
                    let items = arg.as_array()?;
                    let sep = items.first()?.as_str()?;
                    let parts: Option<Vec<String>> =
                        items.get(1)?.as_array()?.iter().map(eval).collect();
                    Some(parts?.join(sep))
                }
                "Fn::Select" => {
                    let items = arg.as_array()?;
                    let index: usize = eval(items.first()?)?.parse().ok()?;
                    let list = items.get(1)?;
                    if let Some(split) = list.get("Fn::Split").and_then(Value::as_array) {
                        let sep = split.first()?.as_str()?;
                        let text = eval(split.get(1)?)?;
                        if sep.is_empty() || text.contains(UNKNOWN) {
                            return None;
                        }
                        return text.split(sep).nth(index).map(String::from);
                    }
                    eval(list.as_array()?.get(index)?)
                }
                "Fn::If" => {
                    let items = arg.as_array()?;
                    let chosen = if ctx.condition(items.first()?.as_str()?, depth)? {
                        items.get(1)?
                    } else {
                        items.get(2)?
                    };
                    eval(chosen)
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
            Value::Array(items) => {
                // (an index locates a list item; line_of stops where it cannot follow)
                for (i, v) in items.iter().enumerate() {
                    path.push(i.to_string());
                    walk(v, path, found);
                    path.pop();
                }
            }
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
        sources: Vec::new(),
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
    // Templates judged under the naming convention, and the export names their stages make.
    let mut covered: BTreeSet<String> = BTreeSet::new();
    let mut stage_exports: BTreeMap<String, String> = BTreeMap::new();
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
            covered.insert(template.display.clone());
            let ctx = Ctx {
                stack_name: name,
                params,
                exports: &empty,
                conditions: template.body["Conditions"].as_object(),
                open: false,
                attributes: None,
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
        stage_exports.extend(exports.iter().filter_map(|(name, e)| {
            let owner = stacks.iter().find(|s| s.1 == e.stack_type)?;
            Some((name.clone(), owner.0.display.clone()))
        }));
        // Pass 2: every import must name an export of another template.
        for (template, stack_type, params, name) in &stacks {
            let ctx = Ctx {
                stack_name: name,
                params,
                exports: &exports,
                conditions: template.body["Conditions"].as_object(),
                open: false,
                attributes: None,
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
    findings.extend(outside_convention(templates, &covered, &stage_exports));
    findings
}

/// Longest export/import name compared with unknown parts (CloudFormation allows 255).
const MAX_PATTERN_CHARS: usize = 512;

/// Imports of templates outside the naming convention (no stage parameter files, or names of
/// another scheme), judged with parameter defaults and an unknown stack name: an import that no
/// template of the set can export is a warning (`import-not-in-set`: it must exist before the
/// deploy); one that cannot be resolved statically is info (`import-unresolvable`).
fn outside_convention(
    templates: &[Template],
    covered: &BTreeSet<String>,
    stage_exports: &BTreeMap<String, String>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if templates.iter().all(|t| covered.contains(&t.display)) {
        return findings;
    }
    let empty = BTreeMap::new();
    // Every export name each template can make, unknown parts kept as UNKNOWN.
    let mut patterns: Vec<(String, &str)> = stage_exports
        .iter()
        .map(|(name, owner)| (name.clone(), owner.as_str()))
        .collect();
    for template in templates {
        let params = template.parameter_defaults();
        let ctx = Ctx {
            stack_name: "",
            params: &params,
            exports: &empty,
            conditions: template.body["Conditions"].as_object(),
            open: true,
            attributes: None,
        };
        for body in template.body["Outputs"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(_, b)| b)
        {
            if let Some(name) = body.get("Export").and_then(|e| e.get("Name")) {
                if let Some(name) = eval(name, &ctx) {
                    patterns.push((name, template.display.as_str()));
                }
            }
        }
    }
    let shown = |name: &str| name.replace(UNKNOWN, "${?}");
    for template in templates.iter().filter(|t| !covered.contains(&t.display)) {
        let params = template.parameter_defaults();
        let ctx = Ctx {
            stack_name: "",
            params: &params,
            exports: &empty,
            conditions: template.body["Conditions"].as_object(),
            open: true,
            attributes: None,
        };
        for (section, logical, path, arg) in imports_of(template) {
            let keys: Vec<&str> = path.iter().map(String::as_str).collect();
            let line = template.line_of(&section, &logical, &keys);
            let Some(import) = eval(&arg, &ctx) else {
                findings.push(finding(
                    template,
                    Severity::Info,
                    "import-unresolvable",
                    line,
                    Some(logical.clone()),
                    format!(
                        "an ImportValue in {logical} cannot be resolved statically (its name is built with functions or conditions validate cannot evaluate before deployment)"
                    ),
                    "make sure the exporting stack is deployed first; build import names from parameters with defaults to have them checked".into(),
                ));
                continue;
            };
            let exported = patterns
                .iter()
                .any(|(pattern, owner)| *owner != template.display && compatible(pattern, &import));
            if exported {
                continue;
            }
            if import.contains(UNKNOWN) {
                findings.push(finding(
                    template,
                    Severity::Info,
                    "import-unresolvable",
                    line,
                    Some(logical.clone()),
                    format!(
                        "{logical} imports {}, which cannot be resolved statically (parameters without defaults or pseudo parameters), and no template here exports a matching name",
                        shown(&import)
                    ),
                    "make sure the exporting stack is deployed first, or add its template to the folder".into(),
                ));
            } else {
                findings.push(finding(
                    template,
                    Severity::Warning,
                    "import-not-in-set",
                    line,
                    Some(logical.clone()),
                    format!(
                        "{logical} imports {import}, which no template in this set exports: it must already exist in the account and region when this stack is deployed"
                    ),
                    "deploy the exporting stack first, or add its template to the folder".into(),
                ));
            }
        }
    }
    findings
}

/// `value` (an export or import name) evaluated in `template` with its parameter defaults and an
/// unknown stack name; parts known only at deploy time become wildcards ([`names_can_match`]).
pub(crate) fn open_name(value: &Value, template: &Template) -> Option<String> {
    let params = template.parameter_defaults();
    let empty = BTreeMap::new();
    let ctx = Ctx {
        stack_name: "",
        params: &params,
        exports: &empty,
        conditions: template.body["Conditions"].as_object(),
        open: true,
        attributes: None,
    };
    eval(value, &ctx)
}

/// A name from [`open_name`] as people read it: wildcards shown as `${?}`.
pub(crate) fn shown_name(name: &str) -> String {
    name.replace(UNKNOWN, "${?}")
}

/// Whether two names from [`open_name`] can be equal once deployed.
pub(crate) fn names_can_match(a: &str, b: &str) -> bool {
    compatible(a, b)
}

/// Whether two names, each with [`UNKNOWN`] parts standing for any text, can be equal.
fn compatible(a: &str, b: &str) -> bool {
    if !a.contains(UNKNOWN) && !b.contains(UNKNOWN) {
        return a == b;
    }
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    if a.len() > MAX_PATTERN_CHARS || b.len() > MAX_PATTERN_CHARS {
        return false;
    }
    // can[i][j]: a[i..] and b[j..] can be equal; filled from the ends.
    let (n, m) = (a.len(), b.len());
    let mut can = vec![vec![false; m + 1]; n + 1];
    can[n][m] = true;
    for i in (0..=n).rev() {
        for j in (0..=m).rev() {
            if i == n && j == m {
                continue;
            }
            let wild_a = i < n && a[i] == UNKNOWN;
            let wild_b = j < m && b[j] == UNKNOWN;
            can[i][j] = (wild_a && (can[i + 1][j] || (j < m && can[i][j + 1])))
                || (wild_b && (can[i][j + 1] || (i < n && can[i + 1][j])))
                || (i < n && j < m && a[i] == b[j] && can[i + 1][j + 1]);
        }
    }
    can[0][0]
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

    #[test]
    fn names_with_unknown_parts_match_like_globs() {
        let u = UNKNOWN;
        assert!(compatible(
            &format!("{u}:ClusterName"),
            "production:ClusterName"
        ));
        assert!(compatible(
            "production:ClusterName",
            &format!("{u}:ClusterName")
        ));
        assert!(compatible(&format!("{u}-Vpc"), &format!("net-{u}")));
        assert!(!compatible(&format!("{u}:ClusterName"), "production:VPCId"));
        assert!(compatible("a", "a") && !compatible("a", "b"));
    }

    #[test]
    fn conditions_choose_the_if_branch() {
        let body = serde_json::json!({
            "IsPrd": {"Fn::Equals": [{"Ref": "Stage"}, "prd"]},
            "NotPrd": {"Fn::Not": [{"Condition": "IsPrd"}]},
            "Loop": {"Condition": "Loop"},
        });
        let params = BTreeMap::from([("Stage".to_string(), "dev".to_string())]);
        let exports = BTreeMap::new();
        let ctx = Ctx {
            stack_name: "",
            params: &params,
            exports: &exports,
            conditions: body.as_object(),
            open: true,
            attributes: None,
        };
        let name =
            serde_json::json!({"Fn::If": ["NotPrd", {"Fn::Sub": "${AWS::StackName}-dev"}, "prd"]});
        assert_eq!(eval(&name, &ctx).unwrap(), format!("{UNKNOWN}-dev"));
        let looping = serde_json::json!({"Fn::If": ["Loop", "a", "b"]});
        assert!(eval(&looping, &ctx).is_none());
    }
}
