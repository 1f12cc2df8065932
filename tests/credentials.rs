//! The credential chain against the real emulator (IAM enforced) and the harness's identity
//! server: every scenario under aws-config and boto3, the explanations of denials, and a broken
//! trust policy that the IRSA scenario must catch.

mod common;

use common::Running;
use harness::config::Config;
use harness::credentials::{self, check, scenarios::ProbeCommand};
use harness::stack::{GatewayCommand, Stack};

fn root() -> std::path::PathBuf {
    common::repo_root()
}

fn probe() -> ProbeCommand {
    ProbeCommand {
        program: env!("CARGO_BIN_EXE_langflow-infra-creds-probe").into(),
        args: Vec::new(),
    }
}

/// An isolated infra stack with the identity service, stopped even when an assertion fails.
fn stack(dir: &std::path::Path) -> Running {
    let config = Config::isolated(&root(), &dir.join("state")).unwrap();
    Running(
        Stack::new(config)
            .infra_only()
            .with_gateway_command(GatewayCommand::standalone(env!(
                "CARGO_BIN_EXE_langflow-infra-gateway"
            ))),
    )
}

fn ports(up: &harness::stack::UpReport) -> (u16, u16) {
    (
        up.status.service("aws").unwrap().port,
        up.status
            .service(credentials::IDENTITY_SERVICE)
            .unwrap()
            .port,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn every_scenario_behaves_under_both_sdks_and_denials_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path());
    let up = stack.up().await.unwrap();
    let (aws_port, identity_port) = ports(&up);

    // The issuer serves a discovery document whose JWKS verifies the projected token.
    let identities = credentials::read_identities(stack.config()).unwrap();
    let discovery: serde_json::Value = reqwest::get(format!(
        "{}/.well-known/openid-configuration",
        identities.issuer
    ))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert_eq!(discovery["issuer"], identities.issuer);
    let jwks: serde_json::Value = reqwest::get(discovery["jwks_uri"].as_str().unwrap())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token_file =
        credentials::identity_dir(stack.config()).join(credentials::PROJECTED_TOKEN_FILE);
    let token = std::fs::read_to_string(&token_file).unwrap();
    credentials::oidc::verify_signature(&token, &jwks).unwrap();
    let (_, claims) = credentials::oidc::decode_unverified(&token).unwrap();
    assert_eq!(claims["sub"], "system:serviceaccount:langflow:langflow-sa");
    assert_eq!(claims["aud"], "sts.amazonaws.com");

    let report = check::run(stack.config(), aws_port, identity_port, probe(), true, None)
        .await
        .unwrap();
    let failures: Vec<String> = report
        .results
        .iter()
        .filter(|r| !r.passed)
        .map(|r| format!("{} [{:?}]: {:?}", r.scenario, r.sdk, r.explanation))
        .collect();
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(report.results.len(), 22, "11 scenarios × 2 SDKs");

    let result = |name: &str, sdk: &str| {
        report
            .results
            .iter()
            .find(|r| r.scenario == name && format!("{:?}", r.sdk).eq_ignore_ascii_case(sdk))
            .unwrap_or_else(|| panic!("no result for {name}/{sdk}"))
    };
    for sdk in ["rust", "python"] {
        let irsa = result("irsa", sdk).observed.clone().unwrap();
        assert_eq!(irsa.provider.as_deref(), Some("web-identity"));
        assert!(irsa
            .arn
            .unwrap()
            .starts_with("arn:aws:sts::000000000000:assumed-role/LangflowRole/"));
        let winner = result("precedence-env-over-web-identity", sdk)
            .observed
            .clone()
            .unwrap();
        assert_eq!(winner.provider.as_deref(), Some("environment"));
        let assumed = result("assume-role", sdk).observed.clone().unwrap();
        assert!(assumed
            .arn
            .unwrap()
            .contains(":assumed-role/LangflowLocalRole/"));
    }
    let explains = |name: &str, needle: &str| {
        let r = result(name, "rust");
        assert!(
            r.explanation.iter().any(|line| line.contains(needle)),
            "{name}: {:?} should mention {needle:?}",
            r.explanation
        );
    };
    explains(
        "irsa-wrong-sa",
        "the token's sub is \"system:serviceaccount:langflow:default-sa\"",
    );
    explains(
        "irsa-wrong-namespace",
        "system:serviceaccount:default:langflow-sa",
    );
    explains("irsa-wrong-aud", "token aud is \"langflow\"");
    explains("irsa-missing-provider", "has no IAM OIDC provider");
    explains("irsa-expired", "token expired");
    explains("irsa-foreign-key", "signature does not verify");
    explains("profile-region-typo", "did you mean \"us-east-1\"");

    assert!(stack.down(true).is_ok());
}

/// A trust policy that names the wrong namespace (a classic IRSA deploy bug) must turn the IRSA
/// scenario red, with the failing condition named: the suite can fail.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_trust_policy_fails_the_irsa_scenario() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack(dir.path());
    let up = stack.up().await.unwrap();
    let (aws_port, identity_port) = ports(&up);
    let identities = credentials::read_identities(stack.config()).unwrap();
    let broken = identities.trust_policy.to_string().replace(
        "system:serviceaccount:langflow:",
        "system:serviceaccount:langflow-prod:",
    );
    let sdk = harness::services::aws::sdk_config(aws_port, &stack.config().aws.region).await;
    aws_sdk_iam::Client::new(&sdk)
        .update_assume_role_policy()
        .role_name("LangflowRole")
        .policy_document(broken)
        .send()
        .await
        .unwrap();

    let report = check::run(
        stack.config(),
        aws_port,
        identity_port,
        probe(),
        false,
        None,
    )
    .await
    .unwrap();
    let irsa = report
        .results
        .iter()
        .find(|r| r.scenario == "irsa")
        .unwrap();
    assert!(!irsa.passed, "IRSA must fail against a broken trust policy");
    assert_eq!(
        irsa.observed.as_ref().unwrap().error_code.as_deref(),
        Some("AccessDenied")
    );
    assert!(
        irsa.explanation.iter().any(|l| l
            .contains("system:serviceaccount:langflow-prod:langflow-sa")
            && l.contains("the token's sub is \"system:serviceaccount:langflow:langflow-sa\"")),
        "{:?}",
        irsa.explanation
    );
    // The other scenarios do not depend on LangflowRole's trust and stay green.
    assert!(report
        .results
        .iter()
        .filter(|r| !r.scenario.starts_with("irsa") && !r.scenario.starts_with("precedence"))
        .all(|r| r.passed));
    assert!(stack.down(true).is_ok());
}
