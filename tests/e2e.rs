//! The isolation suite run for real: on a clean two-tenant stack every check passes (and, over
//! HTTP only with `--target`, the local-only checks are skipped with their reason); on a stack
//! deliberately broken by sharing one secret key the suite reports exactly the forged-token checks.

mod common;

use std::path::PathBuf;

use harness::config::Config;
use harness::e2e::local::{run, LocalOptions};
use harness::e2e::{run_against_target, Outcome};
use harness::runtime::native::NativeRuntime;
use harness::stack::{Fault, GatewayCommand, Stack};

fn gateway() -> GatewayCommand {
    GatewayCommand::standalone(env!("CARGO_BIN_EXE_langflow-infra-gateway"))
}

const EVERY_CHECK: [&str; 46] = [
    "routing/health -",
    "routing/unknown-tenant -",
    "routing acme",
    "cookies acme",
    "routing widgetco",
    "cookies widgetco",
    "login acme→widgetco",
    "token-replay acme→widgetco",
    "forged-token acme→widgetco",
    "data/flows acme→widgetco",
    "data/variables acme→widgetco",
    "database acme→widgetco",
    "files acme→widgetco",
    "users acme→widgetco",
    "login widgetco→acme",
    "token-replay widgetco→acme",
    "forged-token widgetco→acme",
    "data/flows widgetco→acme",
    "data/variables widgetco→acme",
    "database widgetco→acme",
    "files widgetco→acme",
    "users widgetco→acme",
    "concurrency acme+widgetco",
    "credentials/irsa -",
    "credentials/irsa-wrong-sa -",
    "credentials/irsa-wrong-namespace -",
    "credentials/irsa-wrong-aud -",
    "credentials/irsa-missing-provider -",
    "credentials/irsa-expired -",
    "credentials/irsa-foreign-key -",
    "credentials/profile -",
    "credentials/profile-region-typo -",
    "credentials/assume-role -",
    "credentials/precedence-env-over-web-identity -",
    "components/loaded acme",
    "components/bedrock-irsa acme",
    "components/s3-irsa acme",
    "components/s3-assume-role acme",
    "components/bedrock-assume-role acme",
    "components/bedrock-least-privilege acme",
    "components/loaded widgetco",
    "components/bedrock-irsa widgetco",
    "components/s3-irsa widgetco",
    "components/s3-assume-role widgetco",
    "components/bedrock-assume-role widgetco",
    "components/bedrock-least-privilege widgetco",
];

/// A kept e2e stack, stopped and removed even when an assertion fails.
struct KeptStack {
    stack: Stack,
    dir: PathBuf,
}

impl Drop for KeptStack {
    fn drop(&mut self) {
        let marker = self.stack.run_marker();
        let _ = self.stack.down(true);
        assert!(NativeRuntime::processes_of_run(&marker).is_empty());
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn clean_stack_passes_every_check_locally_and_over_http() {
    let options = LocalOptions {
        keep: true,
        concurrency: 60,
        fault: None,
        probe: Some(harness::credentials::scenarios::ProbeCommand {
            program: env!("CARGO_BIN_EXE_langflow-infra-creds-probe").into(),
            args: Vec::new(),
        }),
        runtime: Some("native".into()),
        // The browser suite has its own test (browser.rs).
        suite: harness::e2e::Suite::Isolation,
        routing: None,
        artifacts: None,
        image: None,
        tasks: None,
        workers: None,
        deploy: None,
    };
    let local = run(&common::repo_root(), &gateway(), &options)
        .await
        .unwrap();
    let state_dir = local.kept_state_dir.clone().unwrap();
    let _kept = KeptStack {
        stack: Stack::new(Config::isolated(&common::repo_root(), &state_dir).unwrap()),
        dir: state_dir.parent().unwrap().to_path_buf(),
    };
    let names: Vec<String> = local
        .report
        .results
        .iter()
        .map(|r| format!("{} {}", r.check, r.pair))
        .collect();
    assert_eq!(names, EVERY_CHECK);
    assert!(
        local
            .report
            .results
            .iter()
            .all(|r| r.outcome == Outcome::Pass),
        "{:#?}",
        local.report.results
    );
    let junit = harness::e2e::junit::render(&local.report);
    assert!(
        junit.contains("tests=\"46\" failures=\"0\" skipped=\"0\""),
        "{junit}"
    );

    // The same stack as a "deployed" target: HTTP-level checks only, the rest skipped with a reason.
    let creds = local.kept_credentials.clone().unwrap();
    let target = run_against_target(&local.report.target, &creds, 20)
        .await
        .unwrap();
    let skipped: Vec<String> = target
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Skip)
        .map(|r| format!("{} {}", r.check, r.pair))
        .collect();
    assert_eq!(
        skipped,
        [
            "forged-token acme→widgetco",
            "database acme→widgetco",
            "forged-token widgetco→acme",
            "database widgetco→acme",
            "credentials -"
        ],
        "{:#?}",
        target.results
    );
    assert!(target
        .results
        .iter()
        .filter(|r| r.outcome == Outcome::Skip)
        .all(|r| r.evidence.as_deref().unwrap().contains("local runs only")));
    assert_eq!(target.failures(), 0, "{:#?}", target.results);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_secret_key_is_caught_by_exactly_the_forged_token_checks() {
    let options = LocalOptions {
        keep: false,
        concurrency: 20,
        fault: Some(Fault::SharedSecretKey),
        probe: None,
        runtime: Some("native".into()),
        // The browser suite has its own test (browser.rs).
        suite: harness::e2e::Suite::Isolation,
        routing: None,
        artifacts: None,
        image: None,
        tasks: None,
        workers: None,
        deploy: None,
    };
    let local = run(&common::repo_root(), &gateway(), &options)
        .await
        .unwrap();
    assert_eq!(
        local.report.failed_checks(),
        ["forged-token acme→widgetco", "forged-token widgetco→acme"],
        "{:#?}",
        local.report.results
    );
    let evidence = local
        .report
        .results
        .iter()
        .find(|r| r.outcome == Outcome::Fail)
        .and_then(|r| r.evidence.clone())
        .unwrap();
    assert!(evidence.contains("was accepted"), "{evidence}");
}

#[tokio::test]
async fn target_credentials_file_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("creds.json");
    std::fs::write(
        &file,
        r#"{"tenants": [{"prefix": "a", "username": "u", "password": "p"}]}"#,
    )
    .unwrap();
    let err = run_against_target("http://127.0.0.1:9", &file, 1)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("needs at least two"), "{err:#}");
    std::fs::write(&file, "{\"tenant\": []}").unwrap();
    let err = run_against_target("http://127.0.0.1:9", &file, 1)
        .await
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("is not a credentials file"),
        "{err:#}"
    );
    let err = run_against_target("127.0.0.1:9", &file, 1)
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("not an http(s) URL"), "{err:#}");
}
