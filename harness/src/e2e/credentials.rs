//! The `credentials` suite of a local e2e run:
//!
//! - the credential-chain scenarios (`credentials/<scenario>`: IRSA and its negatives, profile,
//!   region typo, assume-role, precedence), each under aws-config and boto3;
//! - the Langflow AWS components from `components/`, run inside each tenant through the Langflow
//!   API (a one-node flow, `POST /api/v1/run/<flow>`), against the emulator:
//!   `components/bedrock-irsa` and `components/s3-irsa` (empty credentials → the pod's default
//!   chain → `LangflowRole`), `components/s3-assume-role` and `components/bedrock-assume-role`
//!   (keys + "IAM Role ARN" → `LangflowLocalRole`), and `components/bedrock-least-privilege` (a principal without Bedrock
//!   permissions is refused by the emulator's IAM).

use serde_json::{json, Value};

use super::client::{Answer, Auth, TenantClient};
use super::{err, timed, CheckResult};
use crate::credentials::iam_setup::Identities;
use crate::credentials::scenarios::ProbeCommand;
use crate::services::emulator_caps::Capabilities;

/// `run` unless `skip` names a missing premise: then the check is skipped with that reason
/// (the future is never polled).
async fn unless_skipped(
    skip: Option<String>,
    run: impl std::future::Future<Output = super::Verdict>,
) -> super::Verdict {
    match skip {
        Some(reason) => Ok(Some(reason)),
        None => run.await,
    }
}

/// What the credentials suite needs from a local run.
pub struct CredentialsAccess {
    /// The run's configuration (identity dir, region).
    pub config: crate::config::Config,
    /// Emulator port.
    pub aws_port: u16,
    /// Identity server port.
    pub identity_port: u16,
    /// The Rust probe; `None` skips the chain scenarios.
    pub probe: Option<ProbeCommand>,
    /// The emulator's probed capabilities: a check whose premise it lacks is skipped, with the
    /// reason (probed again by the chain scenarios when `None`).
    pub capabilities: Option<Capabilities>,
}

/// A tenant as the component checks use it.
pub struct ComponentTenant<'a> {
    /// Prefix.
    pub prefix: &'a str,
    /// API client.
    pub client: &'a TenantClient,
    /// Bearer token of its admin.
    pub token: &'a str,
    /// An API key of its admin (`/api/v1/run` wants one).
    pub api_key: &'a str,
}

/// Runs the chain scenarios (one row each, both SDKs) and the component checks per tenant.
pub async fn run(
    results: &mut Vec<CheckResult>,
    access: &CredentialsAccess,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    tenants: &[ComponentTenant<'_>],
) {
    if let Some(probe) = &access.probe {
        match crate::credentials::check::run(
            &access.config,
            access.aws_port,
            access.identity_port,
            probe.clone(),
            true,
            access.capabilities.clone(),
        )
        .await
        {
            Ok(report) => {
                let mut names: Vec<&str> =
                    report.results.iter().map(|r| r.scenario.as_str()).collect();
                names.dedup();
                for name in names {
                    let runs: Vec<_> = report
                        .results
                        .iter()
                        .filter(|r| r.scenario == name)
                        .collect();
                    let ms: u128 = runs.iter().map(|r| r.ms).max().unwrap_or(0);
                    timed(results, &format!("credentials/{name}"), "-", async {
                        if let Some(reason) = runs.iter().find_map(|r| r.skipped.clone()) {
                            return Ok(Some(reason));
                        }
                        let failed: Vec<String> = runs
                            .iter()
                            .filter(|r| !r.passed)
                            .map(|r| format!("{:?}: {}", r.sdk, r.explanation.join("; ")))
                            .collect();
                        if failed.is_empty() {
                            Ok(None)
                        } else {
                            Err(failed.join(" | "))
                        }
                    })
                    .await;
                    if let Some(last) = results.last_mut() {
                        last.ms = ms as f64;
                    }
                }
            }
            Err(e) => timed(results, "credentials/chain", "-", async { Err(err(e)) }).await,
        }
    }
    let identities = match crate::credentials::read_identities(&access.config) {
        Ok(ids) => ids,
        Err(e) => {
            timed(results, "components/setup", "-", async { Err(err(e)) }).await;
            return;
        }
    };
    for tenant in tenants {
        component_checks(
            results,
            &identities,
            s3,
            bucket,
            tenant,
            access.capabilities.as_ref(),
        )
        .await;
    }
}

async fn component_checks(
    results: &mut Vec<CheckResult>,
    ids: &Identities,
    s3: &aws_sdk_s3::Client,
    bucket: &str,
    tenant: &ComponentTenant<'_>,
    caps: Option<&Capabilities>,
) {
    let skip = |check: &str| caps.and_then(|c| c.skip_reason(check));
    let prefix = tenant.prefix;
    let catalog = match tenant
        .client
        .get("api/v1/all", &Auth::Bearer(tenant.token))
        .await
    {
        Ok(answer) if answer.status == 200 => answer.json(),
        Ok(answer) => {
            timed(results, "components/loaded", prefix, async {
                Err(format!("GET api/v1/all: {}", answer.evidence()))
            })
            .await;
            return;
        }
        Err(e) => {
            timed(results, "components/loaded", prefix, async { Err(err(e)) }).await;
            return;
        }
    };
    let template = |class: &str| -> Option<Value> {
        catalog
            .as_object()?
            .values()
            .filter_map(Value::as_object)
            .flat_map(|category| category.iter())
            .find(|(key, _)| key.contains(class))
            .map(|(_, node)| node.clone())
    };
    let (bedrock, s3_downloader) = (
        template("BedrockConverseComponent"),
        template("S3DownloaderComponent"),
    );
    timed(results, "components/loaded", prefix, async {
        match (&bedrock, &s3_downloader) {
            (Some(_), Some(_)) => Ok(None),
            _ => Err("Bedrock Converse / S3 Downloader not in api/v1/all: is LANGFLOW_COMPONENTS_PATH set to components/?".into()),
        }
    })
    .await;
    let (Some(bedrock), Some(s3_downloader)) = (bedrock, s3_downloader) else {
        return;
    };
    let role_name = |arn: &str| arn.rsplit('/').next().unwrap_or_default().to_string();
    let irsa_caller = format!(
        "arn:aws:sts::{}:assumed-role/{}/langflow-{prefix}",
        ids.account_id,
        role_name(&ids.role_arn)
    );

    timed(
        results,
        "components/bedrock-irsa",
        prefix,
        unless_skipped(skip("components/bedrock-irsa"), async {
            let out = run_component(
                tenant,
                &bedrock,
                "reply",
                &[("prompt", json!(format!("hello from {prefix}")))],
            )
            .await?;
            expect_caller(&out, &irsa_caller, "assume-role-with-web-identity")?;
            let text = out["text"].as_str().unwrap_or_default();
            if text.is_empty() || !text.contains(out["model_id"].as_str().unwrap_or("?")) {
                return Err(format!("no Converse reply from the emulator: {out}"));
            }
            Ok(None)
        }),
    )
    .await;

    // Objects seeded with the emulator's root key, as another system would put them there.
    let seed = format!("component-fixtures/{prefix}-{}/", crate::secret::hex(3));
    let objects = [
        ("reports/summary.txt", format!("summary for {prefix}")),
        (
            "reports/2026/q4/detail.csv",
            format!("id,tenant\n1,{prefix}\n"),
        ),
    ];
    let seeded = async {
        for (key, body) in &objects {
            s3.put_object()
                .bucket(bucket)
                .key(format!("{seed}{key}"))
                .body(body.clone().into_bytes().into())
                .send()
                .await
                .map_err(|e| format!("cannot seed s3://{bucket}/{seed}{key}: {e}"))?;
        }
        Ok::<_, String>(())
    }
    .await;
    let check_files = |out: &Value| -> Result<(), String> {
        let files = out["files"].as_array().cloned().unwrap_or_default();
        for (key, body) in &objects {
            let found = files
                .iter()
                .find(|f| f["relative_path"] == *key)
                .ok_or_else(|| format!("{key} missing (directory structure not kept?): {out}"))?;
            if found["text"] != *body {
                return Err(format!("{key} content differs: {}", found["text"]));
            }
            let path = found["path"].as_str().unwrap_or_default();
            if !path.ends_with(key) {
                return Err(format!(
                    "{key} saved as {path}, not under its relative path"
                ));
            }
        }
        if files.len() != objects.len() {
            return Err(format!(
                "expected {} files, got {}",
                objects.len(),
                files.len()
            ));
        }
        Ok(())
    };
    // The developer's own keys, and the role the components' "IAM Role ARN" field assumes.
    let developer_key = ("access_key_id", json!(ids.developer_access_key_id));
    let developer_secret = ("secret_access_key", json!(ids.developer_secret_access_key));
    let local_role = ("role_arn", json!(ids.local_role_arn));
    timed(
        results,
        "components/s3-irsa",
        prefix,
        unless_skipped(skip("components/s3-irsa"), async {
            seeded.clone()?;
            let out = run_component(
                tenant,
                &s3_downloader,
                "files",
                &[("bucket", json!(bucket)), ("key", json!(seed))],
            )
            .await?;
            expect_caller(&out, &irsa_caller, "assume-role-with-web-identity")?;
            check_files(&out)?;
            Ok(None)
        }),
    )
    .await;
    timed(
        results,
        "components/s3-assume-role",
        prefix,
        unless_skipped(skip("components/s3-assume-role"), async {
            seeded.clone()?;
            let out = run_component(
                tenant,
                &s3_downloader,
                "files",
                &[
                    ("bucket", json!(bucket)),
                    ("key", json!(format!("{seed}reports/2026/q4/detail.csv"))),
                    local_role.clone(),
                    developer_key.clone(),
                    developer_secret.clone(),
                ],
            )
            .await?;
            expect_assumed(&out, &ids.local_role_arn)?;
            let files = out["files"].as_array().cloned().unwrap_or_default();
            if files.len() != 1 || files[0]["relative_path"] != "detail.csv" {
                return Err(format!("expected the single object as detail.csv: {out}"));
            }
            Ok(None)
        }),
    )
    .await;
    timed(
        results,
        "components/bedrock-assume-role",
        prefix,
        unless_skipped(skip("components/bedrock-assume-role"), async {
            let out = run_component(
                tenant,
                &bedrock,
                "reply",
                &[
                    ("prompt", json!(format!("assume-role from {prefix}"))),
                    local_role.clone(),
                    developer_key.clone(),
                    developer_secret.clone(),
                ],
            )
            .await?;
            expect_assumed(&out, &ids.local_role_arn)?;
            if out["text"].as_str().unwrap_or_default().is_empty() {
                return Err(format!("no Converse reply from the emulator: {out}"));
            }
            Ok(None)
        }),
    )
    .await;
    timed(
        results,
        "components/bedrock-least-privilege",
        prefix,
        unless_skipped(skip("components/bedrock-least-privilege"), async {
            // The developer user may assume LangflowLocalRole but has no Bedrock permission itself.
            match run_component(
                tenant,
                &bedrock,
                "reply",
                &[
                    ("prompt", json!("must be refused")),
                    developer_key.clone(),
                    developer_secret.clone(),
                ],
            )
            .await
            {
                Ok(out) => Err(format!(
                    "Bedrock answered a principal without permission: {out}"
                )),
                Err(e) if e.contains("AccessDenied") => Ok(None),
                Err(e) => Err(format!("refused, but not by IAM: {e}")),
            }
        }),
    )
    .await;
}

/// The component ran as a session of `role_arn` (assumed through its "IAM Role ARN" field).
fn expect_assumed(out: &Value, role_arn: &str) -> Result<(), String> {
    let caller = out["caller"].as_str().unwrap_or_default();
    let role = role_arn.rsplit('/').next().unwrap_or_default();
    let wanted = format!(":assumed-role/{role}/");
    if caller.contains(&wanted) {
        Ok(())
    } else {
        Err(format!("caller {caller}, expected …{wanted}…"))
    }
}

fn expect_caller(out: &Value, caller: &str, provider: &str) -> Result<(), String> {
    if out["caller"] != caller || out["provider"] != provider {
        return Err(format!(
            "ran as {} via {}, expected {caller} via {provider}",
            out["caller"], out["provider"]
        ));
    }
    Ok(())
}

/// Creates a one-node flow with the component `node` (fields set), runs it through
/// `POST /api/v1/run/<flow>` and returns the object the component's `output` produced.
async fn run_component(
    tenant: &ComponentTenant<'_>,
    node: &Value,
    output: &str,
    fields: &[(&str, Value)],
) -> Result<Value, String> {
    let mut node = node.clone();
    for (name, value) in fields {
        node["template"][*name]["value"] = value.clone();
        // Secret fields default to naming a global variable; these are literal values.
        node["template"][*name]["load_from_db"] = json!(false);
    }
    let kind = node["name"].as_str().unwrap_or("Component").to_string();
    let id = format!("{kind}-{}", crate::secret::hex(3));
    let flow = json!({
        "name": format!("credentials-{id}"),
        "data": {
            "nodes": [{
                "id": id,
                "type": "genericNode",
                "position": {"x": 0, "y": 0},
                "data": {"id": id, "type": kind, "node": node},
            }],
            "edges": [],
        },
    });
    let created = tenant
        .client
        .post_json("api/v1/flows/", &flow, &Auth::Bearer(tenant.token))
        .await
        .map_err(err)?;
    let flow_id = created.json()["id"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("cannot create the flow: {}", created.evidence()))?;
    let answer: Answer = tenant
        .client
        .post_json(
            &format!("api/v1/run/{flow_id}?stream=false"),
            &json!({"input_value": "", "input_type": "chat", "output_type": "debug"}),
            &Auth::ApiKey(tenant.api_key),
        )
        .await
        .map_err(err)?;
    let body = answer.json();
    let produced = &body["outputs"][0]["outputs"][0]["outputs"][output]["message"];
    if answer.status == 200 && produced.is_object() {
        return Ok(produced.clone());
    }
    Err(format!(
        "HTTP {}: {}",
        answer.status,
        answer.body.chars().take(600).collect::<String>()
    ))
}
