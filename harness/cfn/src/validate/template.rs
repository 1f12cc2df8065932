//! Loading CloudFormation YAML templates into JSON form (short-form tags such as `!Ref` and
//! `!Sub` become `{"Ref": …}` / `{"Fn::Sub": …}`), with file:line errors instead of panics, and
//! line lookup for findings.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use super::{Finding, Severity};

/// Short-form intrinsic function tags CloudFormation accepts (`!Name` → `Fn::Name`), including
/// the functions of a template's `Rules` section.
const FN_TAGS: &[&str] = &[
    "And",
    "Base64",
    "Cidr",
    "Contains",
    "EachMemberEquals",
    "EachMemberIn",
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
    "RefAll",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
    "ValueOf",
    "ValueOfAll",
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
    /// Line lookup, built on first use.
    pub lines: std::sync::OnceLock<LineIndex>,
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
        self.lines
            .get_or_init(|| LineIndex::new(&self.text))
            .line_of(&self.text, section, name, path)
    }
}

/// Stack type from a template file name: `vpc-stack.cfn.yaml` → `vpc`.
pub fn stack_type_of(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    name.strip_suffix("-stack.cfn.yaml").map(String::from)
}

/// CloudFormation's own limit on a template body (a template in S3): anything larger cannot be
/// deployed, so it is reported without being read further (bounds time and memory).
pub const MAX_TEMPLATE_BYTES: u64 = 1024 * 1024;

/// At most this many YAML nodes after alias expansion (a 1 MiB file holds at most ~0.5 M nodes
/// of its own; more means aliases multiplied it: a "billion laughs" bomb).
const MAX_NODES: usize = 1 << 20;

/// At most this many bytes of strings after alias expansion.
const MAX_STRING_BYTES: usize = 16 << 20;

/// Loads a template (YAML or JSON); unreadable, oversized, non-UTF-8 or malformed input, an
/// unknown tag, a YAML bomb or too deep nesting becomes a finding with its line, never a panic.
pub fn load(path: &Path, display: &str) -> Result<Template, Box<Finding>> {
    let finding = |rule: &str, line: usize, message: String, fix: &str| {
        Box::new(Finding {
            sources: Vec::new(),
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
    let bytes = read_bounded(path).map_err(|e| match e {
        ReadError::Io(e) => finding(
            "unreadable",
            1,
            format!("cannot read: {e}"),
            "check the file exists and is readable",
        ),
        ReadError::TooLarge(size) => finding(
            "too-large",
            1,
            format!(
                "{size} bytes: larger than CloudFormation's template limit of {MAX_TEMPLATE_BYTES} bytes; not checked further"
            ),
            "split the template into nested or cross-stack templates",
        ),
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..at].iter().filter(|b| **b == b'\n').count();
        finding(
            "not-utf8",
            line,
            format!("not UTF-8: invalid byte at offset {at}"),
            "CloudFormation templates must be UTF-8; re-encode the file",
        )
    })?;
    // A byte-order mark is an encoding marker, not content (libyaml misreads some files after it).
    let text = match text.strip_prefix('\u{feff}') {
        Some(rest) => rest.to_string(),
        None => text,
    };
    let parsed = std::panic::catch_unwind(|| parse(&text)).unwrap_or_else(|panic| {
        Err(ParseError {
            rule: "parser-panic",
            line: 1,
            message: format!("the parser panicked: {}", super::panic_text(&panic)),
        })
    });
    let body = parsed.map_err(|e| {
        let fix = match e.rule {
            "unknown-tag" => {
                "use a CloudFormation short form such as !Ref, !Sub, !GetAtt, !ImportValue"
            }
            "alias-expansion" => "do not multiply content with YAML anchors and aliases",
            "too-deep" => "flatten the nesting (at most 128 levels)",
            "json-syntax" => "fix the JSON syntax at this line",
            _ => "fix the YAML syntax at this line",
        };
        finding(e.rule, e.line, e.message, fix)
    })?;
    if !body.is_object() || !body["Resources"].is_object() {
        let line = text
            .lines()
            .position(|l| l.starts_with("Resources") || l.trim_start().starts_with("\"Resources\""))
            .map_or(1, |i| i + 1);
        let has_section = body.get("Resources").is_some();
        return Err(finding(
            "not-a-template",
            if has_section { line } else { 1 },
            if has_section {
                "Resources is not a mapping".into()
            } else {
                "no Resources section".into()
            },
            "a CloudFormation template needs a Resources mapping",
        ));
    }
    Ok(Template {
        path: path.to_path_buf(),
        display: display.to_string(),
        text,
        body,
        lines: Default::default(),
    })
}

enum ReadError {
    Io(std::io::Error),
    TooLarge(u64),
}

/// The file's bytes, refusing (without reading them) files over [`MAX_TEMPLATE_BYTES`].
fn read_bounded(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(ReadError::Io)?;
    let size = file.metadata().map_err(ReadError::Io)?.len();
    if size > MAX_TEMPLATE_BYTES {
        return Err(ReadError::TooLarge(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // (the file may grow while it is read)
    file.take(MAX_TEMPLATE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(ReadError::Io)?;
    if bytes.len() as u64 > MAX_TEMPLATE_BYTES {
        return Err(ReadError::TooLarge(bytes.len() as u64));
    }
    Ok(bytes)
}

/// Why a template text could not be parsed.
struct ParseError {
    rule: &'static str,
    line: usize,
    message: String,
}

/// Parses template text: JSON when it starts with `{`, YAML otherwise (short-form tags expanded).
fn parse(text: &str) -> Result<Value, ParseError> {
    if text.trim_start().starts_with('{') {
        return serde_json::from_str(text).map_err(|e| ParseError {
            rule: if e.to_string().contains("recursion limit") {
                "too-deep"
            } else {
                "json-syntax"
            },
            line: e.line().max(1),
            message: format!("not valid JSON: {e}"),
        });
    }
    if let Some(line) = flow_too_deep(text) {
        return Err(ParseError {
            rule: "too-deep",
            line,
            message: format!(
                "flow collections ([ ], {{ }}) nested more than {MAX_FLOW_DEPTH} levels deep"
            ),
        });
    }
    use serde::de::DeserializeSeed;
    let budget = Budget::default();
    let deserializer = serde_norway::Deserializer::from_str(text);
    let result = Node { budget: &budget }.deserialize(deserializer);
    result.map_err(|e| {
        let line = e.location().map_or(1, |l| l.line());
        let text = e.to_string();
        if let Some(tag) = budget.unknown_tag.take() {
            ParseError {
                rule: "unknown-tag",
                line,
                message: format!("unknown tag {tag}"),
            }
        } else if budget.exhausted.get() || text.contains("repetition limit") {
            ParseError {
                rule: "alias-expansion",
                line,
                message: format!(
                    "YAML aliases expand this file beyond {MAX_NODES} nodes or {MAX_STRING_BYTES} bytes of text (a YAML bomb?): {text}"
                ),
            }
        } else if text.contains("recursion limit") {
            ParseError {
                rule: "too-deep",
                line,
                message: format!("nested too deeply: {text}"),
            }
        } else {
            ParseError {
                rule: "yaml-syntax",
                line,
                message: format!("not valid YAML: {text}"),
            }
        }
    })
}

/// Flow collections nested deeper than this are refused before libyaml sees them: its scanner
/// slows down quadratically with flow depth (100 000 levels of `[` take ~20 s), and
/// deserialisation stops at 128 levels anyway.
const MAX_FLOW_DEPTH: usize = 1000;

/// The line where `[`/`{` flow nesting first exceeds [`MAX_FLOW_DEPTH`], by a quick scan that
/// skips quoted strings and comments (it may overcount, never for real templates).
fn flow_too_deep(text: &str) -> Option<usize> {
    let (mut depth, mut line) = (0usize, 1usize);
    let mut quote: Option<char> = None;
    let mut escaped = false;
    let mut comment = false;
    // The previous character, and the previous one that is not a space.
    let (mut prev, mut last) = ('\n', '\n');
    for c in text.chars() {
        if c == '\n' {
            line += 1;
            comment = false;
            (prev, last) = ('\n', '\n');
            continue;
        }
        if prev == '\n' && !c.is_whitespace() {
            // A line at column 0 ends any quoted scalar the scan thought open.
            quote = None;
        }
        if comment {
            continue;
        }
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if q == '"' && c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            prev = c;
            continue;
        }
        let token_start = prev.is_whitespace() || matches!(prev, '[' | '{' | ',' | ':');
        match c {
            '"' | '\'' if token_start || matches!(last, '\n' | ':' | ',' | '[' | '{' | '-') => {
                quote = Some(c)
            }
            '#' if prev.is_whitespace() => comment = true,
            '[' | '{' if token_start => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    return Some(line);
                }
            }
            ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        prev = c;
        if !c.is_whitespace() {
            last = c;
        }
    }
    None
}

/// What YAML deserialisation may still produce (bounds alias expansion).
#[derive(Default)]
struct Budget {
    nodes: std::cell::Cell<usize>,
    string_bytes: std::cell::Cell<usize>,
    exhausted: std::cell::Cell<bool>,
    unknown_tag: std::cell::Cell<Option<String>>,
}

impl Budget {
    fn spend<E: serde::de::Error>(&self, string_bytes: usize) -> Result<(), E> {
        self.nodes.set(self.nodes.get() + 1);
        self.string_bytes
            .set(self.string_bytes.get().saturating_add(string_bytes));
        if self.nodes.get() > MAX_NODES || self.string_bytes.get() > MAX_STRING_BYTES {
            self.exhausted.set(true);
            return Err(E::custom("YAML expands beyond the size limit"));
        }
        Ok(())
    }
}

/// Deserialises one YAML node straight into JSON form, expanding intrinsic tags
/// (`!Ref X` → `{"Ref": "X"}`, `!Sub s` → `{"Fn::Sub": s}`) within the [`Budget`].
struct Node<'b> {
    budget: &'b Budget,
}

impl<'de> serde::de::DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a YAML value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::from(v))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::from(v))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.budget.spend(v.len())?;
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.budget.spend(v.len())?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.budget.spend(0)?;
        Ok(Value::Null)
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        serde::de::DeserializeSeed::deserialize(self, d)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.budget.spend(0)?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(Node {
            budget: self.budget,
        })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.budget.spend(0)?;
        let mut out = Map::new();
        while let Some(key) = map.next_key_seed(Node {
            budget: self.budget,
        })? {
            let key = match key {
                Value::String(s) => s,
                other => other.to_string(),
            };
            let value = map.next_value_seed(Node {
                budget: self.budget,
            })?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }

    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use serde::de::{Error, VariantAccess};
        // serde_norway presents a tagged node as an enum whose variant is the tag without `!`.
        let (tag, contents): (String, _) = data.variant()?;
        let inner = contents.newtype_variant_seed(Node {
            budget: self.budget,
        })?;
        let key = match tag.as_str() {
            "Ref" | "Condition" => tag.clone(),
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
            _ => {
                self.budget.unknown_tag.set(Some(format!("!{tag}")));
                return Err(A::Error::custom(format!("unknown tag !{tag}")));
            }
        };
        Ok(Value::Object(Map::from_iter([(key, inner)])))
    }
}

/// Finds the line of `name:` under a top-level `section:`, then of each key of `path` below it;
/// a numeric key selects that item (0-based) of the YAML list below the current line.
pub fn line_of(text: &str, section: &str, name: &str, path: &[&str]) -> usize {
    LineIndex::new(text).line_of(text, section, name, path)
}

/// Where a template's sections and their entries start, built in one pass so that looking up
/// thousands of findings in a large template stays linear.
#[derive(Debug, Clone, Default)]
pub struct LineIndex {
    /// Byte offset where each line starts.
    starts: Vec<usize>,
    /// Indentation of each line (`usize::MAX` for blank and comment lines).
    indents: Vec<usize>,
    /// First line (0-based) of each top-level key.
    sections: std::collections::HashMap<String, usize>,
    /// First line (0-based) of each entry directly under a section.
    entries: std::collections::HashMap<(String, String), usize>,
}

impl LineIndex {
    /// Indexes `text`.
    pub fn new(text: &str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let indents: Vec<usize> = lines
            .iter()
            .map(|l| {
                let t = l.trim_start();
                if t.is_empty() || t.starts_with('#') {
                    usize::MAX
                } else {
                    l.len() - t.len()
                }
            })
            .collect();
        // Top-level keys sit at the indentation of the first key (0 in YAML, 2 or 4 in JSON).
        let top = lines
            .iter()
            .zip(&indents)
            .find(|(l, i)| **i != usize::MAX && !matches!(l.trim(), "{" | "---"))
            .map_or(0, |(_, i)| *i);
        let mut starts = Vec::with_capacity(lines.len());
        let mut offset = 0;
        for piece in text.split_inclusive('\n') {
            starts.push(offset);
            offset += piece.len();
        }
        let mut index = LineIndex {
            starts,
            indents,
            ..Default::default()
        };
        let mut section: Option<String> = None;
        let mut child_indent = None;
        for (i, line) in lines.iter().enumerate() {
            let indent = index.indents[i];
            if indent == usize::MAX {
                continue;
            }
            if indent <= top {
                section = key_of(line.trim_start()).map(String::from);
                if let Some(name) = &section {
                    index.sections.entry(name.clone()).or_insert(i);
                }
                child_indent = None;
            } else if let Some(section) = &section {
                let child = *child_indent.get_or_insert(indent);
                if indent == child {
                    if let Some(key) = key_of(line.trim_start()) {
                        index
                            .entries
                            .entry((section.clone(), key.to_string()))
                            .or_insert(i);
                    }
                }
            }
        }
        index
    }

    /// 1-based line of entry `name` of `section`, then of each key of `path` within that entry
    /// (a numeric key selects a list item); the deepest line found, 1 when nothing matches.
    pub fn line_of(&self, text: &str, section: &str, name: &str, path: &[&str]) -> usize {
        let Some(&section_line) = self.sections.get(section) else {
            return 1;
        };
        let Some(&entry) = self.entries.get(&(section.to_string(), name.to_string())) else {
            return section_line + 1;
        };
        let count = self.indents.len();
        let line_text = |i: usize| -> &str {
            let start = self.starts.get(i).copied().unwrap_or(text.len());
            let end = self.starts.get(i + 1).copied().unwrap_or(text.len());
            text.get(start..end).unwrap_or("").trim()
        };
        let indent = |i: usize| self.indents.get(i).copied().unwrap_or(usize::MAX);
        // The entry's block: up to the next line indented no deeper than the entry.
        let end = (entry + 1..count)
            .find(|i| indent(*i) <= indent(entry))
            .unwrap_or(count);
        let key_at = |from: usize, key: &str| -> Option<usize> {
            (from..end).find(|i| indent(*i) != usize::MAX && is_key_line(line_text(*i), key))
        };
        let item_at = |from: usize, index: usize| -> Option<usize> {
            let parent = indent(from);
            let mut items = (from + 1..end)
                .take_while(|i| indent(*i) == usize::MAX || indent(*i) > parent)
                .filter(|i| line_text(*i).starts_with("- "));
            let first = items.next()?;
            let item_indent = indent(first);
            std::iter::once(first)
                .chain(items.filter(|i| indent(*i) == item_indent))
                .nth(index)
        };
        let mut line = entry;
        for key in path {
            let next = match key.parse::<usize>() {
                Ok(index) => item_at(line, index),
                Err(_) => key_at(line, key),
            };
            match next {
                Some(found) => line = found,
                None => break,
            }
        }
        line + 1
    }
}

/// The key a line starts with (`Key:`, `"Key" :`, `'Key':`, `- Key:`), if any.
fn key_of(trimmed: &str) -> Option<&str> {
    let rest = trimmed.strip_prefix("- ").unwrap_or(trimmed);
    if let Some(q @ ('"' | '\'')) = rest.chars().next() {
        let inner = &rest[1..];
        let close = inner.find(q)?;
        return inner[close + 1..]
            .trim_start()
            .starts_with(':')
            .then(|| &inner[..close]);
    }
    // An unquoted YAML key ends at the first ": " or a ':' that ends the line.
    let bytes = rest.as_bytes();
    (0..bytes.len())
        .find(|&i| bytes[i] == b':' && bytes.get(i + 1).is_none_or(|b| *b == b' ' || *b == b'\t'))
        .map(|i| rest[..i].trim_end())
        .filter(|k| !k.is_empty())
}

/// `key:`, `"key":`, `'key' :`, `- key:` (YAML or JSON) at the start of `trimmed`.
fn is_key_line(trimmed: &str, key: &str) -> bool {
    let rest = trimmed.strip_prefix("- ").unwrap_or(trimmed);
    let (rest, quote) = match rest.chars().next() {
        Some(q @ ('"' | '\'')) => (&rest[1..], Some(q)),
        _ => (rest, None),
    };
    let Some(rest) = rest.strip_prefix(key) else {
        return false;
    };
    let rest = match quote {
        Some(q) => match rest.strip_prefix(q) {
            Some(r) => r,
            None => return false,
        },
        None => rest,
    };
    rest.trim_start().starts_with(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_forms_expand_and_unknown_tags_are_named() {
        let json = parse(
            "a: !Ref X\nb: !GetAtt R.Arn\nc: !Sub '${X}-y'\nd: !ImportValue {\"Fn::Sub\": z}\n",
        )
        .ok()
        .unwrap();
        assert_eq!(json["a"], serde_json::json!({"Ref": "X"}));
        assert_eq!(json["b"], serde_json::json!({"Fn::GetAtt": ["R", "Arn"]}));
        assert_eq!(json["c"], serde_json::json!({"Fn::Sub": "${X}-y"}));
        assert_eq!(json["d"]["Fn::ImportValue"]["Fn::Sub"], "z");
        let bad = parse("a: 1\nb: !Reff X\n").err().unwrap();
        assert_eq!((bad.rule, bad.line), ("unknown-tag", 2));
        assert_eq!(bad.message, "unknown tag !Reff");
        let bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\ng: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        assert_eq!(parse(bomb).err().unwrap().rule, "alias-expansion");
        let deep = format!("a: {}{}\n", "[".repeat(500), "]".repeat(500));
        assert_eq!(parse(&deep).err().unwrap().rule, "too-deep");
        let deeper = format!("a:\n  - {}{}\n", "[".repeat(5000), "]".repeat(5000));
        let refused = parse(&deeper).err().unwrap();
        assert_eq!((refused.rule, refused.line), ("too-deep", 2));
        assert!(flow_too_deep(&format!(
            "a: '{}'\nb: \"{}\" # {}\n",
            "[".repeat(5000),
            "{".repeat(5000),
            "[".repeat(5000)
        ))
        .is_none());
        assert!(flow_too_deep(&"x: arn[\n".repeat(5000)).is_none());
        let deep_json = format!("{{\"a\": {}{}}}", "[".repeat(500), "]".repeat(500));
        assert_eq!(parse(&deep_json).err().unwrap().rule, "too-deep");
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
        let json = "{\n  \"Resources\" : {\n    \"Bucket\" : {\n      \"Type\" : \"X\",\n      \"Properties\" : {\"Name\": \"n\"}\n    }\n  }\n}\n";
        assert_eq!(line_of(json, "Resources", "Bucket", &[]), 3);
        assert_eq!(line_of(json, "Resources", "Bucket", &["Properties"]), 5);
    }
}
