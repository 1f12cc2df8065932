//! `e2e --suite replicas` for real (needs the images: `cargo xtask images build`): the project's
//! `aws/` with the reference image at 2 tasks × 2 workers passes every check; fault fixtures
//! written here (fixtures/cfn-replicas, names unlike aws/'s) fail exactly their checks, with
//! evidence: a stock Langflow with no shared key (`replicas/token`, `replicas/variables`), and
//! the reference image behind a target group checking `/health` (`replicas/health`), keeping
//! files on each task's disk (`replicas/files`), or streaming a build's events from the process
//! that holds its job behind a round-robin target group (`replicas/build`). One suite at a time:
//! each runs four Langflow processes per tenant.

#[path = "../common/mod.rs"]
mod common;

use harness::deploy::ParamArg;
use harness::e2e::local::{run, LocalOptions};
use harness::e2e::{CheckResult, Outcome, Suite};

const REFERENCE_IMAGE: &str = "langflow-infra/langflow-multi-tenant:1.13.0";
const STOCK_IMAGE: &str = "langflow-infra/langflow:1.13.0";
const CHECKS: [&str; 6] = [
    "replicas/cold-start",
    "replicas/token",
    "replicas/files",
    "replicas/build",
    "replicas/variables",
    "replicas/health",
];

/// One replicas stack at a time (each holds 2 tasks × 2 workers per tenant).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(dir: &str, stage: &str, params: &[&str], image: &str) -> LocalOptions {
    let root = common::repo_root();
    let config = harness::config::Config::isolated_with_tenants(
        &root,
        tempfile::tempdir().unwrap().path(),
        "tenants: []\n",
    )
    .unwrap();
    let params: Vec<ParamArg> = params.iter().map(|p| p.parse().unwrap()).collect();
    let plan = harness::deploy::plan(&root.join(dir), stage, &params, &config.aws.region).unwrap();
    LocalOptions {
        keep: false,
        concurrency: 10,
        fault: None,
        probe: None,
        runtime: Some("docker".into()),
        suite: Suite::Replicas,
        routing: None,
        artifacts: None,
        image: Some(image.into()),
        tasks: Some(2),
        workers: Some(2),
        deploy: Some(plan),
    }
}

fn named(results: &[CheckResult], outcome: Outcome) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| r.check.clone())
        .collect()
}

fn evidence<'a>(results: &'a [CheckResult], check: &str) -> &'a str {
    results
        .iter()
        .find(|r| r.check == check)
        .and_then(|r| r.evidence.as_deref())
        .unwrap_or_default()
}

/// Runs the suite and returns its results (every check present, each with evidence).
async fn suite(options: LocalOptions) -> Vec<CheckResult> {
    let _one = ONE_AT_A_TIME.lock().await;
    let report = run(&common::repo_root(), &common::cli_servers(), &options)
        .await
        .unwrap()
        .report;
    let ran: Vec<&str> = report.results.iter().map(|r| r.check.as_str()).collect();
    assert_eq!(ran, CHECKS, "{:#?}", report.results);
    for r in &report.results {
        assert!(
            r.evidence.as_deref().is_some_and(|e| !e.is_empty()),
            "{} has no evidence",
            r.check
        );
    }
    report.results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_reference_image_and_aws_pass_at_two_tasks_by_two_workers() {
    let results = suite(options("aws", "dev", &[], REFERENCE_IMAGE)).await;
    let failed = named(&results, Outcome::Fail);
    assert!(failed.is_empty(), "{failed:?}\n{results:#?}");
    assert!(
        evidence(&results, "replicas/token").contains("task 2: bearer 4/4, cookie 4/4"),
        "{}",
        evidence(&results, "replicas/token")
    );
    assert!(evidence(&results, "replicas/build").contains("event delivery direct"));
    assert!(evidence(&results, "replicas/variables").contains("every task replaced"));
    assert!(evidence(&results, "replicas/health").contains("task 2 unhealthy"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stock_langflow_without_a_shared_key_fails_token_and_variables() {
    let results = suite(options(
        "fixtures/cfn-replicas/stock-no-key",
        "dev",
        &[],
        STOCK_IMAGE,
    ))
    .await;
    let mut failed = named(&results, Outcome::Fail);
    failed.sort();
    assert_eq!(
        failed,
        ["replicas/token", "replicas/variables"],
        "{results:#?}"
    );
    let token = evidence(&results, "replicas/token");
    assert!(token.contains("refused by other tasks"), "{token}");
    let variables = evidence(&results, "replicas/variables");
    assert!(variables.contains("cannot be decrypted"), "{variables}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_target_group_checking_health_fails_exactly_the_health_check() {
    let results = suite(options(
        "fixtures/cfn-replicas/reference-faults",
        "health",
        &[],
        REFERENCE_IMAGE,
    ))
    .await;
    assert_eq!(
        named(&results, Outcome::Fail),
        ["replicas/health"],
        "{results:#?}"
    );
    let health = evidence(&results, "replicas/health");
    assert!(health.contains("GET /health stays healthy"), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn files_on_each_tasks_disk_fail_exactly_the_files_check() {
    let results = suite(options(
        "fixtures/cfn-replicas/reference-faults",
        "files",
        &[],
        REFERENCE_IMAGE,
    ))
    .await;
    assert_eq!(
        named(&results, Outcome::Fail),
        ["replicas/files"],
        "{results:#?}"
    );
    let files = evidence(&results, "replicas/files");
    assert!(files.contains("storage local"), "{files}");
    assert!(files.contains("HTTP 404"), "{files}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn streamed_build_events_behind_round_robin_fail_exactly_the_build_check() {
    let results = suite(options(
        "fixtures/cfn-replicas/reference-faults",
        "events",
        &[],
        REFERENCE_IMAGE,
    ))
    .await;
    assert_eq!(
        named(&results, Outcome::Fail),
        ["replicas/build"],
        "{results:#?}"
    );
    let build = evidence(&results, "replicas/build");
    assert!(build.contains("Job not found"), "{build}");
    // The control: the job is there, in the process that started it.
    assert!(build.contains("asked directly"), "{build}");
}
