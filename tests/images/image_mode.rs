//! Image mode for real (needs the images: `cargo xtask images build`): the reference multi-tenant
//! image run as the Fargate task with two tasks behind the gateway passes the whole isolation
//! suite, including the checks that the tasks agree; the same image told to share one signing key
//! fails exactly the forged-token checks; a stock Langflow image, which the TaskDefinition gives no
//! database URL and no signing key, is refused before anything starts, naming both variables.

#[path = "../common/mod.rs"]
mod common;

use harness::config::Config;
use harness::e2e::local::{run, LocalOptions};
use harness::e2e::{CheckResult, Outcome};
use harness::stack::image::ImageRequest;
use harness::stack::{Fault, GatewayCommand, Stack};

const REFERENCE_IMAGE: &str = "langflow-infra/langflow-multi-tenant:1.13.0";
const STOCK_IMAGE: &str = "langflow-infra/langflow:1.13.0";

fn gateway() -> GatewayCommand {
    common::cli_servers()
}

fn options(fault: Option<Fault>) -> LocalOptions {
    LocalOptions {
        keep: false,
        concurrency: 20,
        fault,
        probe: None,
        runtime: Some("docker".into()),
        suite: harness::e2e::Suite::Isolation,
        routing: None,
        artifacts: None,
        image: Some(REFERENCE_IMAGE.into()),
        tasks: Some(2),
        workers: None,
        deploy: None,
    }
}

fn rows(results: &[CheckResult], outcome: Outcome) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| format!("{} {}", r.check, r.pair))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reference_image_passes_as_two_tasks_and_a_shared_key_fails_exactly_forged_token() {
    let root = common::repo_root();
    let clean = run(&root, &gateway(), &options(None)).await.unwrap();
    let failed = rows(&clean.report.results, Outcome::Fail);
    assert!(failed.is_empty(), "{failed:?}\n{:#?}", clean.report.results);
    let passed = rows(&clean.report.results, Outcome::Pass);
    for expected in [
        "tasks/token acme",
        "tasks/data acme",
        "tasks/token widgetco",
        "tasks/data widgetco",
        "forged-token acme→widgetco",
        "forged-token widgetco→acme",
        "database acme→widgetco",
        "files widgetco→acme",
        "users acme→widgetco",
    ] {
        assert!(
            passed.iter().any(|p| p == expected),
            "{expected} missing from {passed:?}"
        );
    }
    assert!(
        rows(&clean.report.results, Outcome::Skip).is_empty(),
        "nothing is skipped in image mode: {:?}",
        rows(&clean.report.results, Outcome::Skip)
    );

    let broken = run(&root, &gateway(), &options(Some(Fault::SharedSecretKey)))
        .await
        .unwrap();
    let mut failed = rows(&broken.report.results, Outcome::Fail);
    failed.sort();
    assert_eq!(
        failed,
        ["forged-token acme→widgetco", "forged-token widgetco→acme"],
        "{:#?}",
        broken.report.results
    );
    let evidence = broken
        .report
        .results
        .iter()
        .find(|r| r.outcome == Outcome::Fail)
        .and_then(|r| r.evidence.clone())
        .unwrap_or_default();
    assert!(evidence.contains("share a signing key"), "{evidence}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stock_langflow_image_is_refused_naming_what_the_task_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let config =
        Config::isolated_with_tenants(&common::repo_root(), dir.path(), "tenants: []\n").unwrap();
    let (stack, _) = Stack::open(config, Some("docker"), true).unwrap();
    let stack = stack
        .with_gateway_command(gateway())
        .with_image(ImageRequest {
            image: STOCK_IMAGE.into(),
            tasks: Some(2),
            min_tasks: 1,
            workers: None,
            fault_env: Default::default(),
            deploy: None,
        });
    let error = format!("{:#}", stack.up().await.unwrap_err());
    assert!(error.contains("LANGFLOW_DATABASE_URL"), "{error}");
    assert!(error.contains("SQLite"), "{error}");
    assert!(error.contains("LANGFLOW_SECRET_KEY"), "{error}");
    // Refused before any task started, and everything the attempt started is gone.
    assert!(stack.files().read_state().unwrap().is_none());
    let leftovers = stack.runtime().leftovers(&stack.run_marker());
    assert!(leftovers.is_empty(), "{leftovers:?}");
    stack.down(true).unwrap();
}
