//! The Rust side of a credential scenario: resolve credentials through aws-config's default chain
//! exactly as an application would (from this process's environment and files), report which
//! provider won, and call `sts:GetCallerIdentity`. Runs in its own process per scenario (the
//! chain reads process-wide environment variables), as `langflow-infra-creds-probe` or the CLI's
//! hidden `creds-probe` command; prints one JSON object ([`ProbeOutput`]).

use aws_config::BehaviorVersion;
use aws_credential_types::credential_feature::AwsCredentialFeature;
use aws_credential_types::provider::ProvideCredentials;
use serde::{Deserialize, Serialize};

/// What one probe found, in the same shape for the Rust and the Python probe.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProbeOutput {
    /// Which provider of the chain produced credentials: `environment`, `profile`,
    /// `assume-role`, `web-identity` (or the SDK's own name when unmapped).
    pub provider: Option<String>,
    /// The SDK's own name for it (aws-config provider name / botocore `method`).
    pub sdk_provider: Option<String>,
    /// `GetCallerIdentity` ARN.
    pub arn: Option<String>,
    /// AWS error code when resolution or the call failed.
    pub error_code: Option<String>,
    /// The error, one line.
    pub error: Option<String>,
}

/// Error codes the scenarios expect, found in an SDK error's text.
const KNOWN_CODES: &[&str] = &[
    "InvalidIdentityToken",
    "ExpiredTokenException",
    "ExpiredToken",
    "AccessDenied",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
];

fn code_in(text: &str) -> Option<String> {
    KNOWN_CODES
        .iter()
        .find(|c| text.contains(*c))
        .map(|c| c.to_string())
}

fn provider_of(credentials: &aws_credential_types::Credentials) -> (String, String) {
    let features = credentials
        .get_property::<Vec<AwsCredentialFeature>>()
        .cloned()
        .unwrap_or_default();
    let debug = format!("{credentials:?}");
    let sdk_name = debug
        .split("provider_name: \"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or("unknown")
        .to_string();
    let has = |f: AwsCredentialFeature| features.contains(&f);
    let provider = if has(AwsCredentialFeature::CredentialsProfileStsWebIdToken)
        || has(AwsCredentialFeature::CredentialsEnvVarsStsWebIdToken)
        || has(AwsCredentialFeature::CredentialsStsAssumeRoleWebId)
        || sdk_name.contains("WebIdentity")
    {
        "web-identity"
    } else if has(AwsCredentialFeature::CredentialsStsAssumeRole)
        || has(AwsCredentialFeature::CredentialsProfileSourceProfile)
        || sdk_name.contains("AssumeRole")
    {
        "assume-role"
    } else if has(AwsCredentialFeature::CredentialsProfile) || sdk_name.contains("Profile") {
        "profile"
    } else if has(AwsCredentialFeature::CredentialsEnvVars) || sdk_name == "EnvironmentVariable" {
        "environment"
    } else {
        sdk_name.as_str()
    };
    (provider.to_string(), sdk_name)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Resolves credentials through the default chain and calls `GetCallerIdentity`.
pub async fn run() -> ProbeOutput {
    let config = aws_config::load_defaults(BehaviorVersion::latest()).await;
    let mut output = ProbeOutput::default();
    let Some(chain) = config.credentials_provider() else {
        output.error = Some("no credentials provider configured".into());
        return output;
    };
    match chain.provide_credentials().await {
        Ok(credentials) => {
            let (provider, sdk_name) = provider_of(&credentials);
            output.provider = Some(provider);
            output.sdk_provider = Some(sdk_name);
        }
        Err(e) => {
            let text = one_line(&aws_smithy_types_display(&e));
            output.error_code = code_in(&text);
            output.error = Some(text);
            return output;
        }
    }
    let sts = aws_sdk_sts::Client::new(&config);
    match sts.get_caller_identity().send().await {
        Ok(identity) => output.arn = identity.arn().map(str::to_string),
        Err(e) => {
            let text = one_line(&aws_smithy_types_display(&e));
            output.error_code = code_in(&text);
            output.error = Some(text);
        }
    }
    output
}

/// An error with its whole source chain, on one line.
fn aws_smithy_types_display(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Runs the probe and prints its JSON on stdout (the probe binaries' whole job).
pub fn main_blocking() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let output = runtime.block_on(run());
    println!(
        "{}",
        serde_json::to_string(&output).unwrap_or_else(|_| "{}".into())
    );
    std::process::ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_are_named_from_the_sdk_features() {
        let mut creds = aws_credential_types::Credentials::new("a", "b", None, None, "Environment");
        creds
            .get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .push(AwsCredentialFeature::CredentialsEnvVars);
        assert_eq!(provider_of(&creds).0, "environment");
        let mut creds = aws_credential_types::Credentials::new("a", "b", None, None, "X");
        creds
            .get_property_mut_or_default::<Vec<AwsCredentialFeature>>()
            .push(AwsCredentialFeature::CredentialsProfileStsWebIdToken);
        assert_eq!(provider_of(&creds).0, "web-identity");
        assert_eq!(
            code_in("service error: AccessDenied: Not authorized"),
            Some("AccessDenied".into())
        );
    }
}
