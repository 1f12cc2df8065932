//! Static IRSA checks: the `k8s/` manifests (namespace, service account annotated with
//! `eks.amazonaws.com/role-arn`, deployment using it) must agree with the role definition in
//! `iam/` — its trust policy's `sub` (`system:serviceaccount:<ns>:<sa>`) and `aud` conditions and
//! the role ARN — and the role's permissions should be least-privilege.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::{Finding, Severity};

/// The audience EKS projects into service-account tokens for STS.
pub const STS_AUDIENCE: &str = "sts.amazonaws.com";

/// The role definition file in `iam/`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct RoleDefinition {
    /// IAM role name.
    pub role_name: String,
    /// Trust policy template file (next to this one); `{{ACCOUNT_ID}}` and `{{OIDC_PROVIDER}}`
    /// are filled in when it is rendered.
    pub trust_policy_template: String,
    /// Managed policies attached to the role.
    #[serde(default)]
    pub managed_policy_arns: Vec<String>,
    /// Inline policies by name (`{{TENANT_BUCKET}}` is filled in at provisioning).
    #[serde(default)]
    pub inline_policies: serde_json::Map<String, Value>,
    /// Free-text note for readers of the file.
    #[serde(default)]
    pub comment: Option<String>,
}

/// Renders a trust policy template.
pub fn render_trust_policy(template: &str, account_id: &str, oidc_provider: &str) -> String {
    template
        .replace("{{ACCOUNT_ID}}", account_id)
        .replace("{{OIDC_PROVIDER}}", oidc_provider)
}

struct Manifest {
    file: String,
    text: String,
    doc: Value,
}

fn finding(
    file: &str,
    line: usize,
    severity: Severity,
    rule: &str,
    message: String,
    fix: String,
) -> Finding {
    Finding {
        sources: Vec::new(),
        check: "irsa".into(),
        rule: rule.into(),
        severity,
        file: file.into(),
        line,
        resource: None,
        path: None,
        message,
        fix: Some(fix),
    }
}

fn line_containing(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(1, |i| i + 1)
}

fn load_manifests(dir: &Path, base: &Path, findings: &mut Vec<Finding>) -> Vec<Manifest> {
    let mut paths = Vec::new();
    super::files_with_suffix(dir, ".yaml", &mut paths);
    let mut manifests = Vec::new();
    for path in paths {
        let file = path
            .strip_prefix(base)
            .unwrap_or(&path)
            .display()
            .to_string();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for document in serde_norway::Deserializer::from_str(&text) {
            match serde_norway::Value::deserialize(document)
                .map_err(|e| e.to_string())
                .and_then(|v| serde_json::to_value(v).map_err(|e| e.to_string()))
            {
                Ok(doc) if doc.is_object() => manifests.push(Manifest {
                    file: file.clone(),
                    text: text.clone(),
                    doc,
                }),
                Ok(_) => {}
                Err(e) => findings.push(finding(
                    &file,
                    1,
                    Severity::Error,
                    "manifest-syntax",
                    format!("not a valid manifest: {e}"),
                    "fix the YAML".into(),
                )),
            }
        }
    }
    manifests
}

/// Checks `k8s_dir` against the role definitions in `iam_dir` (paths in findings relative to `base`).
pub fn check(k8s_dir: &Path, iam_dir: &Path, account_id: &str, base: &Path) -> Vec<Finding> {
    let mut findings = Vec::new();
    let manifests = load_manifests(k8s_dir, base, &mut findings);
    let role_path = iam_dir.join("langflow-role.json");
    let role_file = role_path
        .strip_prefix(base)
        .unwrap_or(&role_path)
        .display()
        .to_string();
    let read = std::fs::read_to_string(&role_path).map_err(|e| e.to_string());
    let role_text = read.clone().unwrap_or_default();
    let role: RoleDefinition =
        match read.and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())) {
            Ok(role) => role,
            Err(e) => {
                findings.push(finding(
                    &role_file,
                    1,
                    Severity::Error,
                    "role-definition",
                    format!("cannot read the role definition: {e}"),
                    "see iam/langflow-role.json in the repository for the expected shape".into(),
                ));
                return findings;
            }
        };
    let trust_path = iam_dir.join(&role.trust_policy_template);
    let trust_file = trust_path
        .strip_prefix(base)
        .unwrap_or(&trust_path)
        .display()
        .to_string();
    const PROVIDER: &str = "oidc.provider";
    let trust_text = std::fs::read_to_string(&trust_path).unwrap_or_default();
    let trust: Value =
        serde_json::from_str(&render_trust_policy(&trust_text, account_id, PROVIDER))
            .unwrap_or(Value::Null);
    let web_identity = trust["Statement"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| {
            let action = &s["Action"];
            action == "sts:AssumeRoleWithWebIdentity"
                || action
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x == "sts:AssumeRoleWithWebIdentity"))
        });
    let Some(statement) = web_identity else {
        findings.push(finding(
            &trust_file,
            1,
            Severity::Error,
            "trust-web-identity",
            "the trust policy has no sts:AssumeRoleWithWebIdentity statement".into(),
            "allow sts:AssumeRoleWithWebIdentity for the cluster's OIDC provider".into(),
        ));
        return findings;
    };
    let condition = |suffix: &str| -> Option<String> {
        ["StringEquals", "StringLike"].iter().find_map(|op| {
            statement["Condition"][op]
                .get(format!("{PROVIDER}:{suffix}"))
                .and_then(|v| v.as_str().map(String::from))
        })
    };
    match condition("aud") {
        None => findings.push(finding(
            &trust_file,
            line_containing(&trust_text, "Condition"),
            Severity::Error,
            "trust-aud",
            "the trust policy has no aud condition: a token minted for any audience of the provider can assume the role".into(),
            format!("add \"{{{{OIDC_PROVIDER}}}}:aud\": \"{STS_AUDIENCE}\" under StringEquals"),
        )),
        Some(aud) if aud != STS_AUDIENCE => findings.push(finding(
            &trust_file,
            line_containing(&trust_text, ":aud"),
            Severity::Error,
            "trust-aud",
            format!("the trust policy's aud is {aud:?}; EKS projects {STS_AUDIENCE:?}"),
            format!("set the aud condition to {STS_AUDIENCE}"),
        )),
        Some(_) => {}
    }
    let sub = condition("sub");
    if sub.is_none() {
        findings.push(finding(
            &trust_file,
            line_containing(&trust_text, "Condition"),
            Severity::Error,
            "trust-sub",
            "the trust policy has no sub condition: every service account of the cluster can assume the role".into(),
            "add \"{{OIDC_PROVIDER}}:sub\": \"system:serviceaccount:<namespace>:<service account>\"".into(),
        ));
    }

    let service_accounts: Vec<&Manifest> = manifests
        .iter()
        .filter(|m| m.doc["kind"] == "ServiceAccount")
        .collect();
    for deployment in manifests.iter().filter(|m| m.doc["kind"] == "Deployment") {
        let namespace = deployment.doc["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default");
        let name = deployment.doc["metadata"]["name"].as_str().unwrap_or("?");
        let account = deployment.doc["spec"]["template"]["spec"]["serviceAccountName"]
            .as_str()
            .unwrap_or("default");
        let line = line_containing(&deployment.text, "serviceAccountName");
        let Some(sa) = service_accounts.iter().find(|m| {
            m.doc["metadata"]["name"] == account
                && m.doc["metadata"]["namespace"].as_str().unwrap_or("default") == namespace
        }) else {
            findings.push(finding(
                &deployment.file,
                line,
                Severity::Error,
                "deployment-service-account",
                format!("deployment {namespace}/{name} runs as service account {account}, which no manifest defines in {namespace}"),
                "set serviceAccountName to the annotated service account".into(),
            ));
            continue;
        };
        let expected_sub = format!("system:serviceaccount:{namespace}:{account}");
        if let Some(sub) = &sub {
            let matches = sub == &expected_sub
                || (sub.contains('*')
                    && sub
                        .split('*')
                        .next()
                        .is_some_and(|p| expected_sub.starts_with(p)));
            if !matches {
                findings.push(finding(
                    &trust_file,
                    line_containing(&trust_text, ":sub"),
                    Severity::Error,
                    "trust-sub",
                    format!("the trust policy allows sub {sub:?}, but deployment {namespace}/{name} presents {expected_sub:?}"),
                    format!("set the sub condition to {expected_sub} (or the deployment's service account to match)"),
                ));
            }
        }
        let arn = sa.doc["metadata"]["annotations"]["eks.amazonaws.com/role-arn"].as_str();
        let sa_line = line_containing(&sa.text, "eks.amazonaws.com/role-arn");
        match arn.and_then(|a| a.strip_prefix("arn:aws:iam::")).and_then(|r| r.split_once(":role/")) {
            None => findings.push(finding(
                &sa.file,
                sa_line,
                Severity::Error,
                "service-account-role",
                format!("service account {namespace}/{account} has no valid eks.amazonaws.com/role-arn annotation"),
                format!("annotate it with arn:aws:iam::{account_id}:role/{}", role.role_name),
            )),
            Some((acct, role_name)) => {
                let role_name = role_name.rsplit('/').next().unwrap_or(role_name);
                if role_name != role.role_name || acct != account_id {
                    findings.push(finding(
                        &sa.file,
                        sa_line,
                        Severity::Error,
                        "service-account-role",
                        format!(
                            "service account {namespace}/{account} points at arn:aws:iam::{acct}:role/{role_name}, not the trusted role arn:aws:iam::{account_id}:role/{}",
                            role.role_name
                        ),
                        format!("annotate it with arn:aws:iam::{account_id}:role/{}", role.role_name),
                    ));
                }
            }
        }
    }
    for arn in &role.managed_policy_arns {
        if arn.contains("FullAccess") {
            findings.push(finding(
                &role_file,
                line_containing(&role_text, arn),
                Severity::Warning,
                "least-privilege",
                format!("{} has the managed policy {arn}", role.role_name),
                "replace it with an inline policy naming only the actions and resources Langflow uses (e.g. bedrock:Converse, s3:GetObject on the tenant bucket)".into(),
            ));
        }
    }
    for (name, policy) in &role.inline_policies {
        let wildcard = policy["Statement"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| {
                let actions: Vec<&str> = match &s["Action"] {
                    Value::String(a) => vec![a.as_str()],
                    Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
                    _ => Vec::new(),
                };
                s["Effect"] == "Allow" && actions.iter().any(|a| *a == "*" || a.ends_with(":*"))
            });
        if wildcard {
            findings.push(finding(
                &role_file,
                line_containing(&role_text, name),
                Severity::Warning,
                "least-privilege",
                format!("inline policy {name} allows every action of a service"),
                "list the actions Langflow needs instead of a wildcard".into(),
            ));
        }
    }
    findings
}
