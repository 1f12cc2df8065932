//! What the running AWS emulator emulates and enforces, found by probing it
//! (`harness/python/emulator_caps.py`: the calls the checks rely on, made and watched — never
//! looked up by emulator name), and which checks each capability is the premise of. A check
//! whose premise the emulator lacks is reported as `skipped: <emulator> does not enforce <what>`
//! (or `does not emulate`), never as passed.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use harness_core::config::{Config, Emulator};

/// The probe script, run with boto3 from the harness's small emulator venv.
pub const SCRIPT: &str = include_str!("../../../python/emulator_caps.py");

/// One probed capability.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Capability {
    /// `s3`, `iam-trust-policies`, `api:rds`, …
    pub id: String,
    /// `emulates` (the API works) or `enforces` (a call that must be refused is refused).
    pub kind: String,
    /// What it is, in words (`IAM trust policies`).
    pub what: String,
    /// Whether the emulator has it.
    pub supported: bool,
    /// The probe got no clear answer (a timeout, a connection error, a wrong result): the probe
    /// failed; such a capability never makes a check skip.
    #[serde(default)]
    pub undecided: bool,
    /// What the probe saw.
    pub evidence: String,
}

/// The capability matrix of one emulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capabilities {
    /// The emulator probed.
    pub emulator: Emulator,
    /// Every capability, in probe order.
    pub capabilities: Vec<Capability>,
}

/// Which checks rely on which capabilities (the premise of a check, not the emulator's answer:
/// that is probed). `rehearse/<Type>` rows are the CloudFormation resource types of `aws/`.
pub const PREMISES: &[(&str, &[&str])] = &[
    ("credentials/irsa", &["sts-web-identity"]),
    ("credentials/irsa-wrong-sa", &["iam-trust-policies"]),
    ("credentials/irsa-wrong-namespace", &["iam-trust-policies"]),
    ("components/bedrock-irsa", &["bedrock-runtime"]),
    ("components/bedrock-assume-role", &["bedrock-runtime"]),
    (
        "components/bedrock-least-privilege",
        &["bedrock-runtime", "iam-permission-policies"],
    ),
    ("components/s3-irsa", &["s3", "sts-web-identity"]),
    ("components/s3-assume-role", &["s3"]),
    ("rehearse", &["cloudformation"]),
    ("rehearse/AWS::EC2::*", &["api:ec2"]),
    ("rehearse/AWS::RDS::*", &["api:rds"]),
    ("rehearse/AWS::ECS::*", &["api:ecs"]),
    ("rehearse/AWS::ElasticLoadBalancingV2::*", &["api:elbv2"]),
    ("rehearse/AWS::ECR::*", &["api:ecr"]),
    ("rehearse/AWS::KMS::*", &["api:kms"]),
    ("rehearse/AWS::Logs::*", &["api:logs"]),
    (
        "rehearse/AWS::ApplicationAutoScaling::*",
        &["api:application-autoscaling"],
    ),
];

impl Capabilities {
    /// The capability `id`, when probed.
    pub fn get(&self, id: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.id == id)
    }

    /// Why `check` cannot be judged on this emulator: `<emulator> does not enforce <what>` (or
    /// `does not emulate <what>`) for its first premise the emulator lacks; `None` when every
    /// premise holds or the check has none. A premise the probe could not test counts as lacking.
    pub fn skip_reason(&self, check: &str) -> Option<String> {
        let needs = premises_of(check);
        needs.into_iter().find_map(|id| match self.get(id) {
            Some(cap) if cap.supported => None,
            Some(cap) => Some(format!(
                "{} does not {} {}",
                self.emulator,
                if cap.kind == "enforces" {
                    "enforce"
                } else {
                    "emulate"
                },
                cap.what
            )),
            None => Some(format!(
                "{} was not probed for {id}, a premise of this check",
                self.emulator
            )),
        })
    }

    /// Why a CloudFormation resource of `resource_type` (`AWS::RDS::DBCluster`) cannot be
    /// rehearsed here, when its service's API is missing.
    pub fn resource_skip_reason(&self, resource_type: &str) -> Option<String> {
        let service = resource_type.split("::").nth(1)?;
        self.skip_reason(&format!("rehearse/AWS::{service}::*"))
    }

    /// Checks that this emulator cannot judge, with the reason (for the report's summary).
    pub fn unsupported_checks(&self) -> Vec<(String, String)> {
        PREMISES
            .iter()
            .filter_map(|(check, _)| self.skip_reason(check).map(|r| (check.to_string(), r)))
            .collect()
    }
}

/// The capabilities `check` relies on.
pub fn premises_of(check: &str) -> Vec<&'static str> {
    PREMISES
        .iter()
        .filter(|(name, _)| *name == check)
        .flat_map(|(_, needs)| needs.iter().copied())
        .collect()
}

/// Probes the emulator on `port` (what it emulates, what it enforces), with the root keys; the
/// probe removes everything it creates. `scratch` holds the script while it runs.
pub async fn probe(config: &Config, port: u16, scratch: &Path) -> Result<Capabilities> {
    // One build of the emulator answers the same: its matrix is probed once per emulator, pinned
    // version, IAM enforcement, region/account and probe script, and kept in the cache.
    let cache = cache_file(config);
    if let Some(cached) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|text| serde_json::from_str::<Capabilities>(&text).ok())
        .filter(|c| c.emulator == config.aws.emulator)
    {
        return Ok(cached);
    }
    let probed = probe_now(config, port, scratch).await?;
    if let Some(dir) = cache.parent() {
        if std::fs::create_dir_all(dir).is_ok() {
            let _ = harness_core::state::write_json_0600(&cache, &probed);
        }
    }
    Ok(probed)
}

/// Where the matrix of this configuration's emulator build is kept.
fn cache_file(config: &Config) -> std::path::PathBuf {
    use sha2::{Digest, Sha256};
    let version = match config.aws.emulator {
        Emulator::Ministack => &config.aws.ministack_version,
        Emulator::Localstack => &config.aws.localstack_version,
    };
    let mut digest = Sha256::new();
    for part in [
        SCRIPT,
        config.aws.emulator.name(),
        version,
        if config.aws.enforce_iam {
            "iam"
        } else {
            "no-iam"
        },
        &config.aws.region,
        &config.aws.account_id,
    ] {
        digest.update(part.as_bytes());
        digest.update([0]);
    }
    let hex: String = digest.finalize()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    config.cache_dir.join("emulator-caps").join(format!(
        "{}-{version}-{hex}.json",
        config.aws.emulator.name()
    ))
}

/// Probes the emulator at `port` now (no cache).
pub async fn probe_now(config: &Config, port: u16, scratch: &Path) -> Result<Capabilities> {
    let venv = super::aws::venv(config)?;
    {
        let (venv, python) = (venv.clone(), config.tools.python.clone());
        tokio::task::spawn_blocking(move || venv.ensure(&python))
            .await?
            .context("the capability probe needs boto3 (the emulator's venv)")?;
    }
    let script = scratch.join("emulator_caps.py");
    std::fs::write(&script, SCRIPT)?;
    let mut command = tokio::process::Command::new(venv.bin("python"));
    command
        .arg(&script)
        .arg(super::aws::endpoint(port))
        .arg(&config.aws.region)
        .arg(&config.aws.account_id)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", scratch)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ACCESS_KEY_ID", super::aws::EMULATOR_ACCESS_KEY)
        .env("AWS_SECRET_ACCESS_KEY", super::aws::EMULATOR_SECRET_KEY)
        .kill_on_drop(true);
    let output = tokio::time::timeout(Duration::from_secs(180), command.output()).await;
    let _ = std::fs::remove_file(&script);
    let output = output
        .context("the emulator capability probe timed out after 180 s")?
        .context("cannot run the emulator capability probe")?;
    #[derive(Deserialize)]
    struct Probed {
        capabilities: Vec<Capability>,
    }
    let probed: Probed =
        crate::credentials::scenarios::last_json_line(&output, "the emulator capability probe")?;
    // A check is skipped only on a clear answer: anything the probe could not decide, or did not
    // probe, fails the probe (and with it the run) instead.
    let undecided: Vec<String> = probed
        .capabilities
        .iter()
        .filter(|c| c.undecided)
        .map(|c| format!("{}: {}", c.id, c.evidence))
        .chain(
            PREMISES
                .iter()
                .flat_map(|(_, needs)| needs.iter())
                .filter(|id| !probed.capabilities.iter().any(|c| c.id == **id))
                .map(|id| format!("{id}: not reported")),
        )
        .collect();
    if !undecided.is_empty() {
        bail!(
            "the emulator capability probe could not decide {}",
            undecided.join("; ")
        );
    }
    Ok(Capabilities {
        emulator: config.aws.emulator,
        capabilities: probed.capabilities,
    })
}

/// The matrix as a table: capability, kind, supported, checks that rely on it, evidence.
pub fn render_table(caps: &Capabilities) -> String {
    let mut table = harness_core::tables::table(&[
        "capability",
        "kind",
        caps.emulator.name(),
        "checks",
        "evidence",
    ]);
    for cap in &caps.capabilities {
        let checks: Vec<&str> = PREMISES
            .iter()
            .filter(|(_, needs)| needs.contains(&cap.id.as_str()))
            .map(|(check, _)| *check)
            .collect();
        table.add_row(vec![
            cap.id.clone(),
            cap.kind.clone(),
            if cap.supported { "yes" } else { "NO" }.to_string(),
            if checks.is_empty() {
                "-".to_string()
            } else {
                checks.join(", ")
            },
            harness_core::tables::truncate(&cap.evidence, 60),
        ]);
    }
    table.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(entries: &[(&str, &str, bool)]) -> Capabilities {
        Capabilities {
            emulator: Emulator::Localstack,
            capabilities: entries
                .iter()
                .map(|(id, kind, supported)| Capability {
                    id: id.to_string(),
                    kind: kind.to_string(),
                    what: match *id {
                        "iam-trust-policies" => "IAM trust policies".into(),
                        "api:rds" => "the rds API".into(),
                        other => other.to_string(),
                    },
                    supported: *supported,
                    undecided: false,
                    evidence: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn a_check_is_skipped_naming_its_first_missing_premise() {
        let caps = caps(&[
            ("iam-trust-policies", "enforces", false),
            ("sts-web-identity", "emulates", true),
            ("api:rds", "emulates", false),
        ]);
        assert_eq!(
            caps.skip_reason("credentials/irsa-wrong-sa").as_deref(),
            Some("localstack does not enforce IAM trust policies")
        );
        assert_eq!(caps.skip_reason("credentials/irsa"), None);
        assert_eq!(
            caps.resource_skip_reason("AWS::RDS::DBCluster").as_deref(),
            Some("localstack does not emulate the rds API")
        );
        // A premise the probe did not test is not assumed to hold.
        assert!(caps
            .skip_reason("components/bedrock-irsa")
            .unwrap()
            .contains("was not probed for bedrock-runtime"));
        // A check with no premise is never skipped.
        assert_eq!(caps.skip_reason("login"), None);
    }

    /// Every service of a resource type in `aws/` is either probed for the rehearsal or one the
    /// whole harness needs anyway (IAM, S3, Secrets Manager, CloudFormation itself): a new service
    /// in the templates cannot be counted as rehearsed on an emulator that only fakes it.
    #[test]
    fn every_service_in_the_templates_has_a_rehearsal_premise() {
        let always = ["IAM", "S3", "SecretsManager", "CloudFormation"];
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .join("aws");
        let mut services = std::collections::BTreeSet::new();
        let mut dirs = vec![root];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    dirs.push(path);
                } else if path.to_string_lossy().ends_with(".cfn.yaml") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (i, _) in text.match_indices("AWS::") {
                        let rest = &text[i + 5..];
                        if let Some(end) = rest.find("::") {
                            let service = &rest[..end];
                            if !service.is_empty()
                                && service.chars().all(|c| c.is_ascii_alphanumeric())
                            {
                                services.insert(service.to_string());
                            }
                        }
                    }
                }
            }
        }
        assert!(services.contains("RDS"), "{services:?}");
        for service in services {
            let premise = format!("rehearse/AWS::{service}::*");
            assert!(
                always.contains(&service.as_str()) || !premises_of(&premise).is_empty(),
                "{premise} has no premise in PREMISES (and no probe in emulator_caps.py)"
            );
        }
    }

    #[test]
    fn every_premise_names_a_capability_the_probe_reports() {
        for (_, needs) in PREMISES {
            for id in *needs {
                assert!(
                    SCRIPT.contains(&format!("\"{id}\""))
                        || (id.starts_with("api:")
                            && SCRIPT.contains(&format!("api_available(\"{}\"", &id[4..]))),
                    "{id} is not probed by emulator_caps.py"
                );
            }
        }
    }
}
