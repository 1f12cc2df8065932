//! Which files under `--dir` are CloudFormation templates.
//!
//! Walked recursively in name order, skipping dot-directories and `<dir>/params/` (parameter
//! files). A file is a template when its name ends in `.cfn.yaml`, `.cfn.yml`, `.cfn.json` or
//! `.template` (always: so a broken one is reported, not skipped), or when it is a `.yaml`,
//! `.yml` or `.json` file that looks like CloudFormation: a top-level `Resources` or
//! `AWSTemplateFormatVersion` key. Other `.yaml`/`.yml`/`.json` files are listed as skipped.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::template::MAX_TEMPLATE_BYTES;

/// Name endings that always mean "template".
const TEMPLATE_SUFFIXES: &[&str] = &[".cfn.yaml", ".cfn.yml", ".cfn.json", ".template"];

/// Name endings of files that may be templates, decided by their content.
const CANDIDATE_SUFFIXES: &[&str] = &[".yaml", ".yml", ".json"];

/// Bytes read to decide whether a large file looks like CloudFormation.
const SNIFF_BYTES: u64 = 64 * 1024;

/// The templates under `dir`, and the candidate files that are not templates.
pub fn templates(dir: &Path) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut files = Vec::new();
    walk(dir, dir, &mut files);
    let mut templates = Vec::new();
    let mut skipped = Vec::new();
    for path in files {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        if TEMPLATE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            templates.push(path);
        } else if CANDIDATE_SUFFIXES.iter().any(|s| name.ends_with(s)) {
            if looks_like_cloudformation(&path) {
                templates.push(path);
            } else {
                skipped.push(path);
            }
        }
    }
    (templates, skipped)
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        // (symbolic links to directories are not followed: no loops)
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            let hidden = entry.file_name().to_string_lossy().starts_with('.');
            let params = dir == root && entry.file_name() == "params";
            if !(hidden || params) {
                walk(root, &path, out);
            }
        } else {
            out.push(path);
        }
    }
}

/// A top-level `Resources` or `AWSTemplateFormatVersion` key (JSON parsed when small enough;
/// otherwise, and for YAML, a key at the start of a line).
fn looks_like_cloudformation(path: &Path) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        // Unreadable: let the loader report why.
        return true;
    };
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut bytes = Vec::new();
    let limit = if size <= MAX_TEMPLATE_BYTES {
        MAX_TEMPLATE_BYTES
    } else {
        SNIFF_BYTES
    };
    if file.take(limit).read_to_end(&mut bytes).is_err() {
        return true;
    }
    let text = String::from_utf8_lossy(&bytes);
    if text.trim_start().starts_with('{') {
        if let Ok(Value::Object(map)) = serde_json::from_str::<Value>(&text) {
            return map.contains_key("Resources") || map.contains_key("AWSTemplateFormatVersion");
        }
        return ["\"Resources\"", "\"AWSTemplateFormatVersion\""]
            .iter()
            .any(|k| text.contains(k));
    }
    text.lines().any(|line| {
        let key = line.trim_start_matches(['"', '\'']);
        line.len() == line.trim_start().len()
            && ["Resources", "AWSTemplateFormatVersion"].iter().any(|k| {
                key.strip_prefix(k).is_some_and(|rest| {
                    rest.trim_start_matches(['"', '\''])
                        .trim_start()
                        .starts_with(':')
                })
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_recognised_by_name_or_top_level_keys() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &[u8]| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        write("a-stack.cfn.yaml", b"not: [valid");
        write("plain.yaml", b"# comment\nResources:\n  X: {Type: T}\n");
        write(
            "quoted.yml",
            b"\"AWSTemplateFormatVersion\": '2010-09-09'\n",
        );
        write("tpl.json", b"{\"Resources\": {}}");
        write("broken.json", b"{\"Resources\": {");
        write(
            "config.json",
            b"{\"name\": \"x\", \"x\": {\"Resources\": 1}}",
        );
        write("workflow.yml", b"on: push\njobs:\n  Resources: 1\n");
        write("params/vpc-dev.json", b"[]");
        write(".hidden/x.yaml", b"Resources: {}\n");
        write("nested/deeper/x.template", b"{}");
        write("README.md", b"Resources:\n");
        let (templates, skipped) = templates(dir.path());
        let names = |paths: &[PathBuf]| -> Vec<String> {
            paths
                .iter()
                .map(|p| {
                    p.strip_prefix(dir.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(
            names(&templates),
            [
                "a-stack.cfn.yaml",
                "broken.json",
                "nested/deeper/x.template",
                "plain.yaml",
                "quoted.yml",
                "tpl.json"
            ]
        );
        assert_eq!(names(&skipped), ["config.json", "workflow.yml"]);
    }
}
