//! The deploy plan of a template set, whatever its names: which templates become which stacks,
//! with which parameters, in which order. Nothing here knows our own templates: stacks are named
//! by what their importers pass (an importer's `VpcStackName`-style parameter given a value names
//! the exporting stack) or after their file, and an importer's stack-name parameter without a value
//! is inferred from the export it must reach. Parameters come from the template's defaults, then
//! the stage's parameter files (`params/<key>-<stage>.json`), then `--param Key=Value` /
//! `--param key.Key=Value`. Everything that cannot be planned is one line naming the template,
//! the parameter or the import and the fix, before anything is deployed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::validate::params::{self, ParamFile};
use crate::validate::template::{self, Template};
use crate::validate::wiring;

/// Stands for the one unknown part of a name while solving for it.
const HOLE: &str = "\u{0}";

/// How many solving rounds the planner runs (each fixes at least one name or parameter).
const MAX_ROUNDS: usize = 64;

/// The local stack's values a parameter may name instead of a literal (`--param DBHost=@postgres.host`):
/// name and what it stands for. They are filled in once the local stack runs.
pub const LOCAL_VALUES: [(&str, &str); 6] = [
    (
        "@postgres.host",
        "the local Postgres host as the tasks reach it",
    ),
    (
        "@postgres.port",
        "the local Postgres port as the tasks reach it",
    ),
    ("@postgres.database", "the local Postgres database"),
    (
        "@postgres.user",
        "the local RDS-style master user (made by the harness)",
    ),
    (
        "@postgres.password",
        "that master user's password (generated once per run, kept 0600)",
    ),
    ("@image", "the image given with --image"),
];

/// One `--param`: `Key=Value` (every stack that has `Key`) or `stack.Key=Value`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamArg {
    /// The stack key (`fargate`) or name it is for; `None` = every stack with the parameter.
    pub stack: Option<String>,
    /// The parameter's name.
    pub key: String,
    /// Its value (may be one of [`LOCAL_VALUES`]).
    pub value: String,
}

impl FromStr for ParamArg {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Self> {
        let Some((left, value)) = text.split_once('=') else {
            bail!("--param {text:?}: expected Key=Value or stack.Key=Value");
        };
        let (stack, key) = match left.rsplit_once('.') {
            Some((stack, key)) => (Some(stack.to_string()), key),
            None => (None, left),
        };
        let valid = |s: &str| {
            !s.is_empty()
                && s.len() <= 255
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !key.chars().all(|c| c.is_ascii_alphanumeric()) || key.is_empty() {
            bail!("--param {text:?}: {key:?} is not a parameter name (letters and digits only)");
        }
        if let Some(stack) = stack.as_deref().filter(|s| !valid(s)) {
            bail!("--param {text:?}: {stack:?} is not a stack key or name");
        }
        if value.starts_with('@') && !LOCAL_VALUES.iter().any(|(name, _)| *name == value) {
            let known: Vec<&str> = LOCAL_VALUES.iter().map(|(n, _)| *n).collect();
            bail!(
                "--param {text:?}: {value} is not a local value; use one of {}",
                known.join(", ")
            );
        }
        Ok(Self {
            stack,
            key: key.to_string(),
            value: value.to_string(),
        })
    }
}

impl fmt::Display for ParamArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.stack {
            Some(stack) => write!(f, "{stack}.{}={}", self.key, self.value),
            None => write!(f, "{}={}", self.key, self.value),
        }
    }
}

/// Where a parameter's value came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ValueSource {
    /// The template's `Default`.
    Default,
    /// A parameter file.
    File(String),
    /// `--param`.
    CommandLine,
    /// The name of the stack whose export an import must reach.
    StackName(String),
}

/// One stack of the plan.
#[derive(Debug, Clone, Serialize)]
pub struct PlannedStack {
    /// Short key (file name without extension and `-stack`): `vpc`, `network`, `app`.
    pub key: String,
    /// The stack's name in the emulator.
    pub name: String,
    /// The template file.
    pub path: PathBuf,
    /// Every parameter's value (defaults included) and where it came from.
    pub parameters: BTreeMap<String, (String, ValueSource)>,
    /// Keys of the stacks whose exports this one imports.
    pub depends_on: BTreeSet<String>,
    /// The template, loaded.
    #[serde(skip)]
    pub template: Template,
}

impl PlannedStack {
    /// The parameters to pass to CreateStack: every value not the template's default.
    pub fn given(&self) -> BTreeMap<String, String> {
        self.parameters
            .iter()
            .filter(|(_, (_, source))| *source != ValueSource::Default)
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Every parameter's value.
    pub fn values(&self) -> BTreeMap<String, String> {
        self.parameters
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }
}

/// The stacks of a template set in deploy order.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// The stage whose parameter files were read.
    pub stage: String,
    /// Stacks, exporters before their importers.
    pub stacks: Vec<PlannedStack>,
}

impl Plan {
    /// The stack with key or name `which`.
    pub fn stack(&self, which: &str) -> Option<&PlannedStack> {
        self.stacks
            .iter()
            .find(|s| s.key == which || s.name == which)
    }

    /// Replaces every parameter value that names a local value (`@postgres.host` …) with
    /// `lookup(name)`.
    pub fn fill_local_values(&mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<()> {
        for stack in &mut self.stacks {
            for (key, (value, _)) in stack.parameters.iter_mut() {
                if value.starts_with('@') {
                    *value = lookup(value).with_context(|| {
                        format!("{}: {key}={value} has no value in this run", stack.key)
                    })?;
                }
            }
        }
        Ok(())
    }
}

/// The short key of a template file: `apps/fargate-stack.cfn.yaml` → `fargate`.
pub fn stack_key(path: &Path) -> String {
    if let Some(key) = template::stack_type_of(path) {
        return key;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_default();
    let lower = name.to_lowercase();
    let mut stem = name.as_str();
    for suffix in [
        ".cfn.yaml",
        ".cfn.yml",
        ".cfn.json",
        ".template",
        ".yaml",
        ".yml",
        ".json",
    ] {
        if lower.ends_with(suffix) {
            stem = &name[..name.len() - suffix.len()];
            break;
        }
    }
    let stem = stem.strip_suffix("-stack").unwrap_or(stem);
    stem.to_string()
}

/// A stack name made of `text` (letters, digits and `-`, starting with a letter, ≤ 128 chars).
fn stack_name_of(text: &str) -> String {
    let mut name: String = text
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        name.insert_str(0, "s-");
    }
    name.truncate(128);
    name
}

/// The name of a stack nobody names: like its named siblings' when their names carry their keys
/// (`acme-dev-vpc-stack` names `ecr` `acme-dev-ecr-stack`), else `<key>-<stage>`.
fn default_name(planning: &Planning<'_>, i: usize, stage: &str) -> String {
    let key = &planning.keys[i];
    let sibling = planning.names.iter().enumerate().find_map(|(j, name)| {
        let name = name.as_deref()?;
        let other = &planning.keys[j];
        let mut segments: Vec<&str> = name.split('-').collect();
        let at = segments.iter().position(|s| s == other)?;
        segments[at] = key;
        Some(segments.join("-"))
    });
    let taken = |n: &String| planning.names.iter().flatten().any(|m| m == n);
    sibling
        .filter(|n| is_stack_name(n) && !taken(n))
        .unwrap_or_else(|| stack_name_of(&format!("{key}-{stage}")))
}

/// Whether `name` can be a CloudFormation stack name.
fn is_stack_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// Loads the templates and parameter files under `dir` and plans `stage` with `args`.
pub fn plan(dir: &Path, stage: &str, args: &[ParamArg], region: &str) -> Result<Plan> {
    let (paths, _) = crate::validate::discover::templates(dir);
    if paths.is_empty() {
        bail!(
            "no CloudFormation templates under {}: point --dir at your templates",
            dir.display()
        );
    }
    let mut templates = Vec::new();
    for path in &paths {
        let shown = path.display().to_string();
        let loaded = template::load(path, &shown).map_err(|f| {
            anyhow::anyhow!(
                "{}:{}: {} (run `cargo xtask validate --dir {}` for every finding)",
                f.file,
                f.line,
                f.message,
                dir.display()
            )
        })?;
        templates.push(loaded);
    }
    let mut param_dirs = BTreeSet::new();
    param_dirs.insert(dir.join("params"));
    for path in &paths {
        if let Some(parent) = path.parent() {
            param_dirs.insert(parent.join("params"));
            if let Some(grand) = parent.parent().filter(|g| g.starts_with(dir)) {
                param_dirs.insert(grand.join("params"));
            }
        }
    }
    let mut param_files = Vec::new();
    let mut seen = BTreeSet::new();
    for params_dir in param_dirs {
        let mut found = Vec::new();
        crate::validate::files_with_suffix(&params_dir, ".json", &mut found);
        for path in found {
            let Ok(canonical) = path.canonicalize() else {
                continue;
            };
            if !seen.insert(canonical) {
                continue;
            }
            let shown = path.display().to_string();
            let file = params::load(&path, &shown)
                .map_err(|f| anyhow::anyhow!("{}:{}: {}", f.file, f.line, f.message))?;
            param_files.push(file);
        }
    }
    plan_templates(templates, &param_files, stage, args, region)
}

/// Every `Fn::ImportValue` argument in a template's resources and outputs (nested ones too).
fn imports_in(template: &Template) -> Vec<Value> {
    fn walk(value: &Value, found: &mut Vec<Value>) {
        match value {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "Fn::ImportValue" {
                        found.push(v.clone());
                    }
                    walk(v, found);
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, found)),
            _ => {}
        }
    }
    let mut found = Vec::new();
    for section in ["Resources", "Outputs"] {
        walk(&template.body[section], &mut found);
    }
    found
}

/// `(output, export name expression, value expression)` of a template's exports.
fn exports_in(template: &Template) -> Vec<(String, Value, Value)> {
    template.body["Outputs"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(id, output)| {
            let name = output.pointer("/Export/Name")?.clone();
            Some((id.clone(), name, output["Value"].clone()))
        })
        .collect()
}

/// The text standing for `HOLE` in `pattern` (exactly one hole) when `full` fits it.
fn solve(pattern: &str, full: &str) -> Option<String> {
    if full.contains(HOLE) || pattern.matches(HOLE).count() != 1 {
        return None;
    }
    let (prefix, suffix) = pattern.split_once(HOLE)?;
    if full.len() <= prefix.len() + suffix.len() {
        return None;
    }
    let middle = full.strip_prefix(prefix)?.strip_suffix(suffix)?;
    Some(middle.to_string())
}

struct Planning<'a> {
    templates: &'a [Template],
    keys: Vec<String>,
    values: Vec<BTreeMap<String, (String, ValueSource)>>,
    names: Vec<Option<String>>,
    region: &'a str,
}

impl Planning<'_> {
    fn refs(&self, i: usize, extra: Option<(&str, &str)>) -> BTreeMap<String, String> {
        let mut refs: BTreeMap<String, String> = self.values[i]
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        refs.insert("AWS::Region".into(), self.region.to_string());
        refs.insert("AWS::AccountId".into(), "000000000000".into());
        refs.insert("AWS::Partition".into(), "aws".into());
        refs.insert("AWS::URLSuffix".into(), "amazonaws.com".into());
        if let Some((k, v)) = extra {
            refs.insert(k.to_string(), v.to_string());
        }
        refs
    }

    fn eval(
        &self,
        i: usize,
        value: &Value,
        stack_name: &str,
        refs: &BTreeMap<String, String>,
        imports: &BTreeMap<String, String>,
    ) -> Option<String> {
        let conditions = self.templates[i].body["Conditions"].as_object();
        wiring::resolve(value, stack_name, refs, imports, conditions)
    }

    /// Export names (and static values) of template `i`; its name a hole when not yet known.
    fn exports(
        &self,
        i: usize,
        imports: &BTreeMap<String, String>,
    ) -> Vec<(String, Option<String>)> {
        let name = self.names[i].clone().unwrap_or_else(|| HOLE.to_string());
        let refs = self.refs(i, None);
        exports_in(&self.templates[i])
            .iter()
            .filter_map(|(_, export, value)| {
                let export = self.eval(i, export, &name, &refs, imports)?;
                let value = if self.names[i].is_some() {
                    self.eval(i, value, &name, &refs, imports)
                } else {
                    None
                };
                Some((export, value))
            })
            .collect()
    }

    /// Export values statically known so far, by export name.
    fn known_exports(&self) -> BTreeMap<String, String> {
        let mut known = BTreeMap::new();
        for _ in 0..3 {
            for i in 0..self.templates.len() {
                if self.names[i].is_some() {
                    for (name, value) in self.exports(i, &known.clone()) {
                        if let Some(value) = value {
                            known.insert(name, value);
                        }
                    }
                }
            }
        }
        known
    }

    /// One solving round: names exporters after what importers pass, and importers' missing
    /// parameters after the exporters' names; true when something was learnt.
    fn round(&mut self) -> Result<bool> {
        let known = self.known_exports();
        let mut learnt = false;
        for u in 0..self.templates.len() {
            for import in imports_in(&self.templates[u]) {
                let refs = self.refs(u, None);
                let own_name = self.names[u].clone().unwrap_or_default();
                if let Some(full) = self.eval(u, &import, &own_name, &refs, &known) {
                    // The importer's side is known: an unnamed exporter whose export fits is named.
                    let unnamed: Vec<usize> = (0..self.templates.len())
                        .filter(|t| *t != u && self.names[*t].is_none())
                        .collect();
                    for t in unnamed {
                        let found = self
                            .exports(t, &known)
                            .into_iter()
                            .find_map(|(pattern, _)| solve(&pattern, &full));
                        if let Some(name) = found.filter(|n| is_stack_name(n)) {
                            self.names[t] = Some(name);
                            learnt = true;
                        }
                    }
                    continue;
                }
                // A parameter of the importer without a value may be the exporter's stack name.
                let missing: Vec<String> = self.templates[u]
                    .parameters()
                    .keys()
                    .filter(|p| !self.values[u].contains_key(*p))
                    .cloned()
                    .collect();
                for param in missing {
                    let refs = self.refs(u, Some((&param, HOLE)));
                    let Some(pattern) = self.eval(u, &import, &own_name, &refs, &known) else {
                        continue;
                    };
                    let candidates: BTreeSet<String> = (0..self.templates.len())
                        .filter(|t| *t != u && self.names[*t].is_some())
                        .flat_map(|t| self.exports(t, &known))
                        .filter_map(|(full, _)| solve(&pattern, &full))
                        .collect();
                    if candidates.len() == 1 {
                        let exporter = candidates.into_iter().next().unwrap_or_default();
                        self.values[u]
                            .insert(param, (exporter.clone(), ValueSource::StackName(exporter)));
                        learnt = true;
                        break;
                    }
                }
            }
        }
        Ok(learnt)
    }
}

/// Plans `templates` (already loaded) for `stage` with `param_files` and `args`.
pub fn plan_templates(
    templates: Vec<Template>,
    param_files: &[ParamFile],
    stage: &str,
    args: &[ParamArg],
    region: &str,
) -> Result<Plan> {
    let keys: Vec<String> = templates.iter().map(|t| stack_key(&t.path)).collect();
    for (i, key) in keys.iter().enumerate() {
        if let Some(j) = keys[..i].iter().position(|k| k == key) {
            bail!(
                "{} and {} are both stack {key:?}: rename one (a stack's key is its file name without extension and -stack)",
                templates[j].display,
                templates[i].display
            );
        }
    }
    // Values: defaults, then the stage's files, then --param.
    let mut values: Vec<BTreeMap<String, (String, ValueSource)>> = templates
        .iter()
        .map(|t| {
            t.parameter_defaults()
                .into_iter()
                .map(|(k, v)| (k, (v, ValueSource::Default)))
                .collect()
        })
        .collect();
    for (i, template) in templates.iter().enumerate() {
        let declared = template.parameters();
        for file in param_files
            .iter()
            .filter(|f| f.stage == stage && f.stack_type == keys[i])
        {
            for (k, v) in &file.values {
                if !declared.contains_key(k) {
                    bail!(
                        "{}: {k} is not a parameter of {}: remove it or fix its name",
                        file.display,
                        template.display
                    );
                }
                values[i].insert(
                    k.clone(),
                    (v.clone(), ValueSource::File(file.display.clone())),
                );
            }
        }
    }
    for arg in args {
        let targets: Vec<usize> = match &arg.stack {
            Some(stack) => {
                let i = keys.iter().position(|k| k == stack).with_context(|| {
                    format!(
                        "--param {arg}: no stack {stack:?}; the stacks are {}",
                        keys.join(", ")
                    )
                })?;
                if !templates[i].parameters().contains_key(&arg.key) {
                    bail!(
                        "--param {arg}: {} has no parameter {}",
                        templates[i].display,
                        arg.key
                    );
                }
                vec![i]
            }
            None => {
                let with: Vec<usize> = (0..templates.len())
                    .filter(|i| templates[*i].parameters().contains_key(&arg.key))
                    .collect();
                if with.is_empty() {
                    bail!(
                        "--param {arg}: no template has a parameter {} (stacks: {})",
                        arg.key,
                        keys.join(", ")
                    );
                }
                with
            }
        };
        for i in targets {
            values[i].insert(
                arg.key.clone(),
                (arg.value.clone(), ValueSource::CommandLine),
            );
        }
    }
    let mut planning = Planning {
        templates: &templates,
        keys: keys.clone(),
        values,
        names: vec![None; templates.len()],
        region,
    };
    // Solve: names from importers, importers' stack-name parameters from names; when nothing
    // more can be learnt, the first unnamed stack is named after its file.
    for _ in 0..MAX_ROUNDS {
        if planning.round()? {
            continue;
        }
        match planning.names.iter().position(Option::is_none) {
            Some(i) => planning.names[i] = Some(default_name(&planning, i, stage)),
            None => break,
        }
    }
    let names: Vec<String> = planning
        .names
        .iter()
        .map(|n| n.clone().unwrap_or_default())
        .collect();
    if let Some(dup) = names
        .iter()
        .enumerate()
        .find_map(|(i, n)| names[..i].iter().position(|m| m == n).map(|j| (j, i)))
    {
        bail!(
            "{} and {} would both be stack {}: give one of them's importers another stack-name parameter value",
            templates[dup.0].display,
            templates[dup.1].display,
            names[dup.1]
        );
    }
    // Unresolved parameters: one line each.
    let mut missing = Vec::new();
    for (i, template) in templates.iter().enumerate() {
        for name in template.parameters().keys() {
            if !planning.values[i].contains_key(name) {
                missing.push(format!(
                    "parameter {name} of {} has no value: pass --param {}.{name}=VALUE (or add it to params/{}-{stage}.json)",
                    template.display, keys[i], keys[i]
                ));
            }
        }
    }
    if !missing.is_empty() {
        bail!("{}", missing.join("\n"));
    }
    // Dependencies: every import must reach an export of another stack of the set.
    let known = planning.known_exports();
    let export_owner: BTreeMap<String, usize> = (0..templates.len())
        .flat_map(|t| {
            planning
                .exports(t, &known)
                .into_iter()
                .map(move |(name, _)| (name, t))
        })
        .collect();
    let mut depends: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); templates.len()];
    for (u, template) in templates.iter().enumerate() {
        let refs = planning.refs(u, None);
        for import in imports_in(template) {
            let Some(name) = planning.eval(u, &import, &names[u], &refs, &known) else {
                // Built from another import's value: the emulator resolves it; the inner import
                // gives the dependency.
                continue;
            };
            match export_owner.get(&name) {
                Some(t) if *t != u => {
                    depends[u].insert(*t);
                }
                Some(_) => bail!(
                    "{} imports {name}, which it exports itself: a stack cannot import its own export",
                    template.display
                ),
                None => bail!(
                    "{} imports {name}, which no template of the set exports: add the template that exports it, or pass the importing parameter with --param",
                    template.display
                ),
            }
        }
    }
    // Deploy order (exporters first); a cycle is named.
    let mut order = Vec::new();
    let mut placed = vec![false; templates.len()];
    while order.len() < templates.len() {
        let next =
            (0..templates.len()).find(|i| !placed[*i] && depends[*i].iter().all(|d| placed[*d]));
        match next {
            Some(i) => {
                placed[i] = true;
                order.push(i);
            }
            None => {
                let rest: Vec<&str> = (0..templates.len())
                    .filter(|i| !placed[*i])
                    .map(|i| keys[i].as_str())
                    .collect();
                bail!(
                    "stacks {} import each other's exports in a cycle: no order can deploy them; move one export to a stack of its own",
                    rest.join(", ")
                );
            }
        }
    }
    let values = planning.values;
    let mut templates: Vec<Option<Template>> = templates.into_iter().map(Some).collect();
    let stacks = order
        .into_iter()
        .map(|i| {
            let template = templates[i].take().expect("each template placed once");
            PlannedStack {
                key: keys[i].clone(),
                name: names[i].clone(),
                path: template.path.clone(),
                parameters: values[i].clone(),
                depends_on: depends[i].iter().map(|d| keys[*d].clone()).collect(),
                template,
            }
        })
        .collect();
    Ok(Plan {
        stage: stage.to_string(),
        stacks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn param_arguments_parse_and_bad_ones_are_named() {
        let a: ParamArg = "DBHost=@postgres.host".parse().unwrap();
        assert_eq!(
            (a.stack, a.key.as_str(), a.value.as_str()),
            (None, "DBHost", "@postgres.host")
        );
        let b: ParamArg = "app.DesiredCount=2".parse().unwrap();
        assert_eq!(b.stack.as_deref(), Some("app"));
        assert_eq!(b.value, "2");
        let c: ParamArg = "Url=a=b".parse().unwrap();
        assert_eq!(c.value, "a=b");
        for bad in ["NoEquals", "=x", "Bad-Key=1", "a.b.c=1", "K=@nothing"] {
            let e = bad.parse::<ParamArg>().unwrap_err().to_string();
            assert!(e.starts_with("--param"), "{bad}: {e}");
        }
    }

    #[test]
    fn keys_come_from_file_names() {
        assert_eq!(
            stack_key(Path::new("aws/apps/fargate-stack.cfn.yaml")),
            "fargate"
        );
        assert_eq!(stack_key(Path::new("x/network.yaml")), "network");
        assert_eq!(stack_key(Path::new("x/App-Stack.template")), "App-Stack");
        assert_eq!(stack_key(Path::new("x/db-stack.json")), "db");
    }

    #[test]
    fn the_project_set_plans_in_dependency_order_with_the_conventions_names() {
        let plan = plan(&repo().join("aws"), "dev", &[], "us-east-1").unwrap();
        let keys: Vec<&str> = plan.stacks.iter().map(|s| s.key.as_str()).collect();
        let pos = |k: &str| keys.iter().position(|x| *x == k).unwrap();
        assert!(
            pos("vpc") < pos("rds") && pos("rds") < pos("fargate"),
            "{keys:?}"
        );
        // The importers' parameter files name the exporters.
        assert_eq!(
            plan.stack("rds").unwrap().name,
            "langflow-acme-dev-rds-stack"
        );
        assert_eq!(
            plan.stack("vpc").unwrap().name,
            "langflow-acme-dev-vpc-stack"
        );
        assert!(plan.stack("fargate").unwrap().depends_on.contains("rds"));
        // Nobody imports from ecr or fargate: named like their siblings.
        assert_eq!(
            plan.stack("ecr").unwrap().name,
            "langflow-acme-dev-ecr-stack"
        );
        assert_eq!(
            plan.stack("fargate").unwrap().name,
            "langflow-acme-dev-fargate-stack"
        );
    }

    fn variant(name: &str) -> PathBuf {
        repo().join("fixtures/cfn-variants").join(name)
    }

    #[test]
    fn importers_name_exporters_and_missing_stack_names_are_inferred() {
        let plan = plan(&variant("managed-secret"), "dev", &[], "us-east-1").unwrap();
        let order: Vec<&str> = plan.stacks.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(order, ["network", "database", "service"]);
        // database-dev.json passes the network stack's name: the network stack is named by it.
        assert_eq!(plan.stack("network").unwrap().name, "variant-a-net");
        let service = plan.stack("service").unwrap();
        // The service's stack-name parameters had no value anywhere: inferred from the exports.
        assert_eq!(
            service.parameters["NetworkStack"],
            (
                "variant-a-net".to_string(),
                ValueSource::StackName("variant-a-net".into())
            )
        );
        assert_eq!(
            service.parameters["DatabaseStack"].0,
            plan.stack("database").unwrap().name
        );
        assert_eq!(
            service.depends_on,
            ["database", "network"].map(String::from).into()
        );
        assert_eq!(
            service.given()["Image"],
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/langflow-mt:1.13.0"
        );
        assert!(
            !service.given().contains_key("Tasks"),
            "defaults are not passed"
        );
    }

    #[test]
    fn exports_named_by_parameters_order_stacks_in_nested_folders() {
        let plan = plan(&variant("own-secret"), "dev", &[], "us-east-1").unwrap();
        let keys: Vec<&str> = plan.stacks.iter().map(|s| s.key.as_str()).collect();
        let pos = |k: &str| keys.iter().position(|x| *x == k).unwrap();
        assert!(
            pos("core") < pos("db")
                && pos("db") < pos("langflow")
                && pos("storage") < pos("langflow"),
            "{keys:?}"
        );
        assert_eq!(plan.stack("langflow").unwrap().depends_on.len(), 3);
    }

    #[test]
    fn unresolved_parameters_are_named_with_the_param_to_pass() {
        let dir = variant("plain-params");
        let e = plan(&dir, "dev", &[], "us-east-1").unwrap_err().to_string();
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(
            e.contains("parameter DbPass of ") && e.contains("--param app.DbPass=VALUE"),
            "{e}"
        );
        let args: Vec<ParamArg> = [
            "ImageUri=@image",
            "DbHost=@postgres.host",
            "DbUser=@postgres.user",
            "app.DbPass=@postgres.password",
            "SigningKey=k",
        ]
        .iter()
        .map(|a| a.parse().unwrap())
        .collect();
        let mut plan = plan(&dir, "dev", &args, "us-east-1").unwrap();
        assert_eq!(plan.stacks.len(), 1);
        assert_eq!(
            plan.stacks[0].parameters["DbHost"].1,
            ValueSource::CommandLine
        );
        plan.fill_local_values(|v| Some(format!("<{v}>"))).unwrap();
        assert_eq!(plan.stacks[0].given()["DbPass"], "<@postgres.password>");
        let wrong: ParamArg = "NoSuchParam=1".parse().unwrap();
        let e = super::plan(&dir, "dev", &[wrong], "us-east-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("no template has a parameter NoSuchParam"), "{e}");
    }

    #[test]
    fn cycles_and_imports_nobody_exports_are_refused() {
        let e = plan(&repo().join("fixtures/cfn/cycle"), "dev", &[], "us-east-1")
            .unwrap_err()
            .to_string();
        assert!(e.contains("cycle"), "{e}");
        let e = plan(
            &repo().join("fixtures/cfn/dangling-import"),
            "dev",
            &[],
            "us-east-1",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("which no template of the set exports"), "{e}");
    }
}
