//! The browser suite in real headless Chromium against real Langflow behind the gateway, in both
//! routing shapes: with path routing (tenants share one origin) exactly the same-origin checks
//! fail, with the evidence and a screenshot; with host routing (`<prefix>.localhost`, one origin
//! per tenant) every check passes. Needs Debian's `chromium` (`.ci/run` installs it).

mod common;

use harness::e2e::local::{run, LocalOptions};
use harness::e2e::{CheckResult, Outcome, Suite};
use harness::gateway::Routing;
use harness::stack::GatewayCommand;

fn options(routing: Routing, artifacts: &std::path::Path) -> LocalOptions {
    LocalOptions {
        keep: false,
        concurrency: 10,
        fault: None,
        probe: None,
        runtime: Some("native".into()),
        suite: Suite::Browser,
        routing: Some(routing),
        artifacts: Some(artifacts.to_path_buf()),
        image: None,
        tasks: None,
        workers: None,
        deploy: None,
    }
}

fn names(results: &[CheckResult], outcome: Outcome) -> Vec<String> {
    results
        .iter()
        .filter(|r| r.outcome == outcome)
        .map(|r| format!("{} {}", r.check, r.pair))
        .collect()
}

/// Every check of the suite for acme and widgetco, in report order.
const EVERY_CHECK: [&str; 12] = [
    "browser/ui-login acme",
    "browser/ui-login widgetco",
    "browser/two-tenants widgetco→acme",
    "browser/two-tenants acme→widgetco",
    "browser/requests acme",
    "browser/requests widgetco",
    "browser/same-origin acme→widgetco",
    "browser/same-origin widgetco→acme",
    "browser/upload acme",
    "browser/upload widgetco",
    "browser/logout acme→widgetco",
    "browser/time -",
];

/// The suite's own seconds, from its `browser/time` row.
fn suite_secs(results: &[CheckResult]) -> f64 {
    results
        .iter()
        .find(|r| r.check == "browser/time")
        .map(|r| r.ms / 1000.0)
        .expect("a browser/time row")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn path_routing_shares_one_origin_and_host_routing_gives_each_tenant_its_own() {
    assert!(
        harness::browser::find_chromium().unwrap().is_some(),
        "Chromium is needed: apt-get install chromium (or set LANGFLOW_INFRA_CHROMIUM)"
    );
    let gateway = GatewayCommand::standalone(env!("CARGO_BIN_EXE_langflow-infra-gateway"));
    let artifacts = tempfile::tempdir().unwrap();

    // Path routing: the deploy's shape. Everything holds except the shared origin.
    let path_dir = artifacts.path().join("path");
    let path = run(
        &common::repo_root(),
        &gateway,
        &options(Routing::Path, &path_dir),
    )
    .await
    .unwrap();
    let results = &path.report.results;
    let all: Vec<String> = results
        .iter()
        .map(|r| format!("{} {}", r.check, r.pair))
        .collect();
    assert_eq!(all, EVERY_CHECK, "{results:#?}");
    assert_eq!(
        names(results, Outcome::Fail),
        [
            "browser/same-origin acme→widgetco",
            "browser/same-origin widgetco→acme"
        ],
        "{results:#?}"
    );
    let evidence = results
        .iter()
        .find(|r| r.check == "browser/same-origin" && r.pair == "acme→widgetco")
        .and_then(|r| r.evidence.clone())
        .unwrap();
    assert!(
        evidence.contains("script on widgetco's page")
            && evidence.contains("read acme's flow")
            && evidence.contains("share the origin"),
        "{evidence}"
    );
    // The failure kept a real screenshot of widgetco's tab.
    let shot = path_dir.join("browser-same-origin-acme-to-widgetco.png");
    assert!(evidence.contains(&shot.display().to_string()), "{evidence}");
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 5_000,
        "{} bytes",
        png.len()
    );
    // The suite's time is reported (browser/time), not asserted: speed targets live in benches.
    println!("browser suite, path routing: {:.1} s", suite_secs(results));

    // Host routing: each tenant its own origin; the same checks now all pass.
    let host_dir = artifacts.path().join("host");
    let host = run(
        &common::repo_root(),
        &gateway,
        &options(Routing::Host, &host_dir),
    )
    .await
    .unwrap();
    let results = &host.report.results;
    let all: Vec<String> = results
        .iter()
        .map(|r| format!("{} {}", r.check, r.pair))
        .collect();
    assert_eq!(all, EVERY_CHECK, "{results:#?}");
    assert!(names(results, Outcome::Fail).is_empty(), "{results:#?}");
    assert!(host.report.target.starts_with("http://127.0.0.1:"));
    let requests = results
        .iter()
        .find(|r| r.check == "browser/requests" && r.pair == "acme")
        .and_then(|r| r.evidence.clone())
        .unwrap();
    assert!(requests.contains("acme.localhost:"), "{requests}");
    println!("browser suite, host routing: {:.1} s", suite_secs(results));
    assert!(!host_dir.exists() || std::fs::read_dir(&host_dir).unwrap().next().is_none());
}
