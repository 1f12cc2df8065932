//! Rule libraries kept by others, used instead of hand-written rules: the AWS Control Tower
//! proactive-control Guard rules as shipped in the pinned PyPI package
//! `cdklabs-cdk-validator-cfnguard` (Apache-2.0; `[tools] control_tower_rules_version`). The
//! package is downloaded (not installed: its dependencies are the CDK) into the harness's cache
//! and the `.guard` files under `rules/control-tower/cfn-guard/` of its jsii tarball extracted
//! there; nothing is copied into the repository. The rules run in-process like the project's
//! pack, their findings under the check `control-tower`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use harness_core::config::Config;
use harness_core::venv::Venv;

use super::Finding;

/// The PyPI package carrying the Control Tower rules.
pub const CONTROL_TOWER_PACKAGE: &str = "cdklabs-cdk-validator-cfnguard";
/// The check name of the Control Tower rules' findings.
pub const CONTROL_TOWER: &str = "control-tower";
/// Where the rules sit inside the package's jsii tarball.
const RULES_PREFIX: &str = "package/rules/control-tower/cfn-guard/";
/// Written last: the extraction is complete.
const COMPLETE: &str = ".complete";

/// Downloads the wheel with pip and extracts the Guard rules of its jsii tarball into argv[2]
/// (regular files under the rules prefix only, no path escapes).
const EXTRACT: &str = r#"
import io, os, subprocess, sys, tarfile, tempfile, zipfile
spec, dest, prefix = sys.argv[1], sys.argv[2], sys.argv[3]
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
                    "-q", "-d", tmp, spec], check=True)
    wheel = [f for f in os.listdir(tmp) if f.endswith(".whl")][0]
    archive = zipfile.ZipFile(os.path.join(tmp, wheel))
    inner = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
    if not inner:
        sys.exit("no jsii tarball in " + wheel)
    count = 0
    with tarfile.open(fileobj=io.BytesIO(archive.read(inner[0]))) as tar:
        for member in tar.getmembers():
            name = member.name
            if not member.isfile() or not name.startswith(prefix) or ".." in name.split("/"):
                continue
            if not name.endswith(".guard"):
                continue
            target = os.path.join(dest, name[len(prefix):])
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with open(target, "wb") as out:
                out.write(tar.extractfile(member).read())
            count += 1
    print(count)
"#;

/// The folder of the Control Tower Guard rules of the configured version, downloaded and
/// extracted on first use; `None` when `[tools] control_tower_rules_version` is empty (off).
pub async fn control_tower_rules(config: &Config) -> Result<Option<PathBuf>> {
    let version = config.tools.control_tower_rules_version.trim().to_string();
    if version.is_empty() {
        return Ok(None);
    }
    let dir = config
        .cache_dir
        .join("rule-libraries")
        .join(format!("{CONTROL_TOWER_PACKAGE}-{version}"));
    if dir.join(COMPLETE).is_file() {
        return Ok(Some(dir));
    }
    // A venv of its own only for pip (the system Python may have none).
    let venv = Venv::new(&config.venv_dir(), "rule-libraries", &["pip"]);
    {
        let (venv, python) = (venv.clone(), config.tools.python.clone());
        tokio::task::spawn_blocking(move || venv.ensure(&python))
            .await?
            .context("cannot make the venv that downloads the rule libraries")?;
    }
    let staging = dir.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    std::fs::create_dir_all(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let output = tokio::process::Command::new(venv.bin("python"))
        .arg("-c")
        .arg(EXTRACT)
        .arg(format!("{CONTROL_TOWER_PACKAGE}=={version}"))
        .arg(&staging)
        .arg(RULES_PREFIX)
        .kill_on_drop(true)
        .output()
        .await
        .context("cannot run pip to download the Control Tower rules")?;
    if !output.status.success() {
        let _ = std::fs::remove_dir_all(&staging);
        let stderr = String::from_utf8_lossy(&output.stderr);
        bail!(
            "cannot download {CONTROL_TOWER_PACKAGE}=={version} from PyPI: {}",
            stderr.lines().last().unwrap_or("pip failed")
        );
    }
    let count: usize = String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if count == 0 {
        let _ = std::fs::remove_dir_all(&staging);
        bail!("{CONTROL_TOWER_PACKAGE}=={version} holds no Guard rules under {RULES_PREFIX}");
    }
    std::fs::write(staging.join(COMPLETE), count.to_string())?;
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::rename(&staging, &dir)
        .with_context(|| format!("cannot move the rules into {}", dir.display()))?;
    Ok(Some(dir))
}

/// What a library rule says of itself: its control id and title, and its fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleText {
    /// `CT.RDS.PR.7: Require Amazon RDS database instances to have …`.
    pub title: String,
    /// The `[FIX]:` text.
    pub fix: Option<String>,
}

/// The rules' own texts, by rule name, read from the `.guard` files under `dir`
/// (`rule NAME when …` followed by `[CT.X.PR.N]: title` and `[FIX]: text` lines).
pub fn rule_texts(dir: &Path) -> BTreeMap<String, RuleText> {
    let mut files = Vec::new();
    super::files_with_suffix(dir, ".guard", &mut files);
    let mut texts = BTreeMap::new();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let mut current: Option<String> = None;
        for line in text.lines().map(str::trim) {
            if let Some(rest) = line.strip_prefix("rule ") {
                let name = rest.split_whitespace().next().unwrap_or_default();
                current = (rest.contains(" when ") && !texts.contains_key(name))
                    .then(|| name.to_string());
            } else if let Some(name) = &current {
                if line.starts_with("[CT.") {
                    let title = line.trim_start_matches('[').replacen("]:", ":", 1);
                    texts.insert(name.clone(), RuleText { title, fix: None });
                } else if let Some(fix) = line.strip_prefix("[FIX]:") {
                    if let Some(entry) = texts.get_mut(name) {
                        entry.fix = Some(fix.trim().to_string());
                    }
                    current = None;
                }
            }
        }
    }
    texts
}

/// One finding per template, rule and resource (the library reports each failed clause of each
/// stage), worded with the rule's own title and fix, naming the stages it fails in.
pub fn merge(findings: Vec<Finding>, texts: &BTreeMap<String, RuleText>) -> Vec<Finding> {
    let mut merged: Vec<(Finding, Vec<String>)> = Vec::new();
    for f in findings {
        let stage = f
            .message
            .strip_prefix('[')
            .and_then(|m| m.split_once(']'))
            .map(|(stage, _)| stage.to_string());
        let same = merged.iter_mut().find(|(m, _)| {
            m.file == f.file && m.rule == f.rule && m.resource == f.resource && m.check == f.check
        });
        match same {
            Some((_, stages)) => {
                if let Some(stage) = stage.filter(|s| !stages.contains(s)) {
                    stages.push(stage);
                }
            }
            None => merged.push((f, stage.into_iter().collect())),
        }
    }
    merged
        .into_iter()
        .map(|(mut f, stages)| {
            if let Some(text) = texts.get(&f.rule) {
                let at = if stages.is_empty() {
                    String::new()
                } else {
                    format!("[{}] ", stages.join(", "))
                };
                f.message = format!("{at}{}", text.title);
                if text.fix.is_some() {
                    f.fix = text.fix.clone();
                }
            }
            f
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::validate::Severity;

    #[test]
    fn a_rules_clauses_and_stages_become_one_finding_in_its_own_words() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("ct-rds-pr-7.guard"),
            "rule rds_iam_check when is_cfn_template(%INPUT_DOCUMENT) {\n  check(x)\n  <<\n  [CT.RDS.PR.7]: Require IAM auth\n  [FIX]: Set 'EnableIAMDatabaseAuthentication' to 'true'.\n  >>\n}\nrule check(x) { x exists }\n",
        )
        .unwrap();
        let texts = rule_texts(dir.path());
        assert_eq!(
            texts["rds_iam_check"].title,
            "CT.RDS.PR.7: Require IAM auth"
        );
        let finding = |message: &str| Finding {
            sources: Vec::new(),
            check: CONTROL_TOWER.into(),
            rule: "rds_iam_check".into(),
            severity: Severity::Error,
            file: "aws/rds.yaml".into(),
            line: 3,
            resource: Some("Db".into()),
            path: None,
            message: message.into(),
            fix: None,
        };
        let merged = merge(
            vec![
                finding("[dev] Check was not compliant …"),
                finding("[dev] other clause"),
                finding("[prd] x"),
            ],
            &texts,
        );
        assert_eq!(merged.len(), 1);
        assert_eq!(
            merged[0].message,
            "[dev, prd] CT.RDS.PR.7: Require IAM auth"
        );
        assert_eq!(
            merged[0].fix.as_deref(),
            Some("Set 'EnableIAMDatabaseAuthentication' to 'true'.")
        );
    }
}
