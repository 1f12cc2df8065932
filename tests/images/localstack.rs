//! LocalStack as the run's emulator (`[aws] emulator = "localstack"`, docker runtime): it starts,
//! answers its own health endpoint, takes the harness's provisioning (bucket, OIDC provider,
//! roles, developer user), and the probed capability matrix makes the credential checks whose
//! premise it lacks come out as skipped — never passed — while ministack, probed by the same
//! script, enforces them. LocalStack natively is refused with the fix, leaving nothing behind.

#[path = "../common/mod.rs"]
mod common;

use std::sync::Arc;

use common::Running;
use harness::config::{Config, Emulator};
use harness::credentials::{self, check, scenarios::ProbeCommand};
use harness::runtime::docker::DockerRuntime;
use harness::services::emulator_caps;
use harness::stack::{GatewayCommand, Stack};

fn probe() -> ProbeCommand {
    ProbeCommand {
        program: common::xtask_binary(),
        args: vec!["creds-probe".into()],
    }
}

fn gateway() -> GatewayCommand {
    common::cli_servers()
}

fn config(dir: &std::path::Path, emulator: Emulator) -> Config {
    let mut config = Config::isolated(&common::repo_root(), &dir.join("state")).unwrap();
    config.aws.emulator = emulator;
    config
}

#[tokio::test(flavor = "multi_thread")]
async fn localstack_is_provisioned_and_what_it_does_not_enforce_is_skipped_not_passed() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), Emulator::Localstack);
    let marker = harness::runtime::run_marker(&config);
    let runtime = DockerRuntime::connect(&config, &marker)
        .expect("this test needs the Docker engine (`.ci/run` has one)");
    runtime
        .check_images()
        .expect("the LocalStack image (`cargo xtask images build --only localstack`)");
    let stack = Running(
        Stack::new(config)
            .with_runtime(Arc::new(runtime))
            .infra_only()
            .with_gateway_command(gateway()),
    );
    let up = stack.up().await.unwrap();
    let aws = up.status.service("aws").unwrap().clone();
    let identity_port = up
        .status
        .service(credentials::IDENTITY_SERVICE)
        .unwrap()
        .port;

    // LocalStack itself answers, and the run records which emulator it has.
    let health: serde_json::Value = reqwest::get(format!("{}/_localstack/health", aws.url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        health["services"]["s3"].as_str().map(|s| s != "disabled"),
        Some(true),
        "{health}"
    );
    let state = stack.files().read_state().unwrap().unwrap();
    assert_eq!(state.emulator, Some(Emulator::Localstack));

    // Provisioning took: the tenant bucket and the IAM identities exist in LocalStack.
    let s3 = harness::services::aws::s3_client(aws.port, &stack.config().aws.region).await;
    s3.head_bucket()
        .bucket(&stack.config().aws.tenant_bucket)
        .send()
        .await
        .expect("the tenant bucket in LocalStack");
    let ids = credentials::read_identities(stack.config()).unwrap();
    assert!(
        ids.role_arn.ends_with(":role/LangflowRole"),
        "{}",
        ids.role_arn
    );

    // The matrix is what the probe found: the APIs work, the IAM premises are not enforced.
    let caps = emulator_caps::probe(stack.config(), aws.port, dir.path())
        .await
        .unwrap();
    assert_eq!(caps.emulator, Emulator::Localstack);
    for id in ["s3", "secretsmanager", "sts-web-identity", "cloudformation"] {
        assert!(caps.get(id).unwrap().supported, "{id}: {:?}", caps.get(id));
    }
    for id in ["iam-trust-policies", "iam-permission-policies"] {
        assert!(!caps.get(id).unwrap().supported, "{id}: {:?}", caps.get(id));
    }
    assert_eq!(
        caps.skip_reason("credentials/irsa-wrong-sa").as_deref(),
        Some("localstack does not enforce IAM trust policies")
    );

    // The credential chain: IRSA and the other positives pass, the denials that only the
    // emulator's trust policy could make are skipped (not passed), the ones the harness's own
    // identity server makes still pass, and nothing fails.
    let report = check::run(
        stack.config(),
        aws.port,
        identity_port,
        probe(),
        true,
        Some(caps.clone()),
    )
    .await
    .unwrap();
    let outcome = |name: &str| -> Vec<(bool, Option<String>)> {
        report
            .results
            .iter()
            .filter(|r| r.scenario == name)
            .map(|r| (r.passed, r.skipped.clone()))
            .collect()
    };
    assert_eq!(report.failed, 0, "{}", check::render_table(&report));
    for skipped in ["irsa-wrong-sa", "irsa-wrong-namespace"] {
        for (passed, reason) in outcome(skipped) {
            assert!(!passed, "{skipped} must not count as passed");
            assert_eq!(
                reason.as_deref(),
                Some("localstack does not enforce IAM trust policies")
            );
        }
    }
    for judged in [
        "irsa",
        "irsa-wrong-aud",
        "irsa-expired",
        "profile",
        "assume-role",
    ] {
        let runs = outcome(judged);
        assert_eq!(runs.len(), 2, "{judged} under both SDKs");
        assert!(
            runs.iter()
                .all(|(passed, skipped)| *passed && skipped.is_none()),
            "{judged}: {runs:?}\n{}",
            check::render_table(&report)
        );
    }
    assert_eq!(report.skipped, 4, "{}", check::render_table(&report));
}

#[tokio::test(flavor = "multi_thread")]
async fn ministack_probed_by_the_same_script_enforces_those_premises() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Running(
        Stack::new(config(dir.path(), Emulator::Ministack))
            .infra_only()
            .with_gateway_command(gateway()),
    );
    let up = stack.up().await.unwrap();
    let port = up.status.service("aws").unwrap().port;
    let caps = emulator_caps::probe(stack.config(), port, dir.path())
        .await
        .unwrap();
    let missing: Vec<_> = caps
        .capabilities
        .iter()
        .filter(|c| !c.supported)
        .map(|c| format!("{}: {}", c.id, c.evidence))
        .collect();
    assert!(missing.is_empty(), "{missing:?}");
    assert_eq!(caps.unsupported_checks(), Vec::new());
}

#[tokio::test(flavor = "multi_thread")]
async fn localstack_natively_is_refused_with_the_fix_and_nothing_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let stack = Stack::new(config(dir.path(), Emulator::Localstack))
        .infra_only()
        .with_gateway_command(gateway());
    let error = format!("{:#}", stack.up().await.unwrap_err());
    assert!(error.contains("--runtime docker"), "{error}");
    // Refused before anything was made: not even the state directory.
    assert!(
        !stack.config().state_dir.exists(),
        "{} was created",
        stack.config().state_dir.display()
    );
    assert!(stack.status().await.unwrap().is_none());
}
