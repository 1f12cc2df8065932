//! The AWS credential chain as Langflow's components meet it: IRSA on EKS (a web identity token
//! from the cluster's OIDC issuer, exchanged for `LangflowRole`), a developer's AWS CLI profile,
//! and assume-role into `LangflowLocalRole` — each resolved through the real SDK default chains
//! (aws-config and boto3) against the emulator, with its trust policies enforced.
//!
//! - [`oidc`]: signing key, discovery document, JWKS, projected-service-account tokens.
//! - [`identity_server`]: the issuer endpoints plus the STS gate in front of the emulator.
//! - [`iam_setup`]: OIDC provider, roles, developer user created from `iam/`.
//! - [`scenarios`] / [`probe`] / [`region`]: the checks `cargo xtask creds check` and the e2e
//!   `credentials` suite run.

pub mod check;
pub mod iam_setup;
pub mod identity_server;
pub mod oidc;
pub mod probe;
pub mod region;
pub mod scenarios;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use harness_core::config::Config;

/// Kubernetes namespace of the Langflow deployment (as in `k8s/`).
pub const K8S_NAMESPACE: &str = "langflow";
/// Service account the deployment runs as (as in `k8s/`).
pub const SERVICE_ACCOUNT: &str = "langflow-sa";
/// Name of the identity service in the run state.
pub const IDENTITY_SERVICE: &str = "identity";
/// File (in the identity directory) holding the pod's projected service-account token. It has a
/// directory of its own, so containers get exactly that directory (read-only), never the
/// signing key next to it, and see each refresh (written by rename).
pub const PROJECTED_TOKEN_FILE: &str = "projected/token";
/// File (in the identity directory) describing the emulator's identities (0600: holds a key).
pub const IDENTITIES_FILE: &str = "identities.json";
/// Lifetime of the projected token the identity server keeps fresh.
const PROJECTED_TOKEN_TTL_SECS: i64 = 24 * 3600;

/// The identity directory of a run: `<state>/identity`.
pub fn identity_dir(config: &Config) -> PathBuf {
    config.state_dir.join("identity")
}

/// Writes a fresh `langflow/langflow-sa` token for `issuer` to `path` (0600).
pub fn write_projected_token(key: &oidc::SigningKey, issuer: &str, path: &Path) -> Result<()> {
    let claims = oidc::TokenClaims::service_account(
        issuer,
        K8S_NAMESPACE,
        SERVICE_ACCOUNT,
        oidc::STS_AUDIENCE,
        PROJECTED_TOKEN_TTL_SECS,
    );
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
    }
    harness_core::state::write_private(path, key.sign(&claims)?.as_bytes())
}

/// Reads the identities a run provisioned.
pub fn read_identities(config: &Config) -> Result<iam_setup::Identities> {
    let path = identity_dir(config).join(IDENTITIES_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {} (is the stack up with its identity service?)",
            path.display()
        )
    })?;
    serde_json::from_str(&text).with_context(|| format!("{} is not valid", path.display()))
}
