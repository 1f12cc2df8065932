//! What the emulator's IAM holds for the credential chain, created from the files in `iam/`:
//! the cluster's OIDC provider (client id `sts.amazonaws.com`), `LangflowRole` with the seed's
//! trust policy (rendered from `iam/langflow-role-trust.json`) and inline policies, a developer
//! IAM user with an access key (the identity behind a CLI profile), and `LangflowLocalRole`
//! that the developer may assume.

use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::oidc::{self, STS_AUDIENCE};
use harness_cfn::validate::irsa::{render_trust_policy, RoleDefinition};

/// IAM user standing for a developer's own AWS account identity.
pub const DEVELOPER_USER: &str = "langflow-developer";

/// Everything the scenarios need to know about the emulator's identities. Holds a secret key:
/// stored only in 0600 files.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identities {
    /// Account id.
    pub account_id: String,
    /// Issuer URL of the cluster's OIDC provider.
    pub issuer: String,
    /// `arn:aws:iam::<acct>:oidc-provider/<host/path>`.
    pub provider_arn: String,
    /// `LangflowRole` ARN (IRSA).
    pub role_arn: String,
    /// `LangflowLocalRole` ARN (assume-role from a profile).
    pub local_role_arn: String,
    /// The developer user's ARN.
    pub developer_arn: String,
    /// The developer's access key id.
    pub developer_access_key_id: String,
    /// The developer's secret access key.
    pub developer_secret_access_key: String,
    /// Trust policy of `LangflowRole` as created (rendered).
    pub trust_policy: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LocalRoleDefinition {
    role_name: String,
    inline_policies_from: String,
    trust_policy: Value,
}

fn render(text: &str, account_id: &str, bucket: &str) -> String {
    text.replace("{{ACCOUNT_ID}}", account_id)
        .replace("{{TENANT_BUCKET}}", bucket)
        .replace("{{DEVELOPER_USER}}", DEVELOPER_USER)
}

fn is_conflict<E: aws_sdk_iam::error::ProvideErrorMetadata>(error: &E) -> bool {
    error.code() == Some("EntityAlreadyExists")
}

/// Creates (or brings up to date) the OIDC provider, roles, developer user and a fresh access key
/// in the emulator at `sdk` (root credentials), from the definitions in `iam_dir`.
pub async fn provision(
    sdk: &aws_config::SdkConfig,
    iam_dir: &Path,
    account_id: &str,
    issuer: &str,
    tenant_bucket: &str,
) -> Result<Identities> {
    let iam = aws_sdk_iam::Client::new(sdk);
    let role_path = iam_dir.join("langflow-role.json");
    let role: RoleDefinition = serde_json::from_str(
        &std::fs::read_to_string(&role_path)
            .with_context(|| format!("cannot read {}", role_path.display()))?,
    )
    .with_context(|| format!("{} is not a role definition", role_path.display()))?;
    let trust_path = iam_dir.join(&role.trust_policy_template);
    let host_path = oidc::provider_host_path(issuer);
    let trust_text = render_trust_policy(
        &std::fs::read_to_string(&trust_path)
            .with_context(|| format!("cannot read {}", trust_path.display()))?,
        account_id,
        host_path,
    );
    let trust_policy: Value = serde_json::from_str(&trust_text)
        .with_context(|| format!("{} does not render to JSON", trust_path.display()))?;

    let provider_arn = format!("arn:aws:iam::{account_id}:oidc-provider/{host_path}");
    match iam
        .create_open_id_connect_provider()
        .url(issuer)
        .client_id_list(STS_AUDIENCE)
        .thumbprint_list("9e99a48a9960b14926bb7f3b02e22da2b0ab7280")
        .send()
        .await
    {
        Ok(_) => {}
        Err(e) if is_conflict(&e) => {}
        Err(e) => {
            return Err(aws_sdk_iam::Error::from(e))
                .context("cannot create the OIDC provider in the emulator")
        }
    }

    let policies: Vec<(String, String)> = role
        .inline_policies
        .iter()
        .map(|(name, doc)| {
            (
                name.clone(),
                render(&doc.to_string(), account_id, tenant_bucket),
            )
        })
        .collect();
    let role_arn = ensure_role(&iam, &role.role_name, &trust_text, &policies).await?;

    let developer_arn = match iam.create_user().user_name(DEVELOPER_USER).send().await {
        Ok(out) => out.user().map(|u| u.arn().to_string()),
        Err(e) if is_conflict(&e) => None,
        Err(e) => {
            return Err(aws_sdk_iam::Error::from(e)).context("cannot create the developer user")
        }
    }
    .unwrap_or_else(|| format!("arn:aws:iam::{account_id}:user/{DEVELOPER_USER}"));
    let key = iam
        .create_access_key()
        .user_name(DEVELOPER_USER)
        .send()
        .await
        .map_err(aws_sdk_iam::Error::from)
        .context("cannot create the developer's access key")?;
    let key = key.access_key().context("no access key in the answer")?;

    let local_path = iam_dir.join("langflow-local-role.json");
    let local: LocalRoleDefinition = serde_json::from_str(
        &std::fs::read_to_string(&local_path)
            .with_context(|| format!("cannot read {}", local_path.display()))?,
    )
    .with_context(|| format!("{} is not a local role definition", local_path.display()))?;
    anyhow::ensure!(
        local.inline_policies_from == "langflow-role.json",
        "{}: InlinePoliciesFrom must name langflow-role.json",
        local_path.display()
    );
    let local_trust = render(&local.trust_policy.to_string(), account_id, tenant_bucket);
    let local_role_arn = ensure_role(&iam, &local.role_name, &local_trust, &policies).await?;
    // The developer's side of the assume-role: their own policy must allow it too.
    let assume = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": local_role_arn}]
    });
    iam.put_user_policy()
        .user_name(DEVELOPER_USER)
        .policy_name("assume-langflow-local-role")
        .policy_document(assume.to_string())
        .send()
        .await
        .map_err(aws_sdk_iam::Error::from)
        .context("cannot give the developer user sts:AssumeRole on the local role")?;

    Ok(Identities {
        account_id: account_id.to_string(),
        issuer: issuer.to_string(),
        provider_arn,
        role_arn,
        local_role_arn,
        developer_arn,
        developer_access_key_id: key.access_key_id().to_string(),
        developer_secret_access_key: key.secret_access_key().to_string(),
        trust_policy,
    })
}

async fn ensure_role(
    iam: &aws_sdk_iam::Client,
    name: &str,
    trust: &str,
    policies: &[(String, String)],
) -> Result<String> {
    let arn = match iam
        .create_role()
        .role_name(name)
        .assume_role_policy_document(trust)
        .send()
        .await
    {
        Ok(out) => out.role().map(|r| r.arn().to_string()),
        Err(e) if is_conflict(&e) => {
            iam.update_assume_role_policy()
                .role_name(name)
                .policy_document(trust)
                .send()
                .await
                .map_err(aws_sdk_iam::Error::from)
                .with_context(|| format!("cannot update the trust policy of {name}"))?;
            None
        }
        Err(e) => {
            return Err(aws_sdk_iam::Error::from(e))
                .with_context(|| format!("cannot create role {name}"))
        }
    };
    let arn = match arn {
        Some(arn) => arn,
        None => iam
            .get_role()
            .role_name(name)
            .send()
            .await
            .map_err(aws_sdk_iam::Error::from)?
            .role()
            .map(|r| r.arn().to_string())
            .context("role without ARN")?,
    };
    for (policy_name, document) in policies {
        iam.put_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .policy_document(document)
            .send()
            .await
            .map_err(aws_sdk_iam::Error::from)
            .with_context(|| format!("cannot attach policy {policy_name} to {name}"))?;
    }
    Ok(arn)
}
