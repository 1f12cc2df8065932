//! The dashboard in real headless Chromium on a real stack (Postgres, the emulator, two Langflow
//! tenants, the gateway, the supervisor): every service listed; a tenant killed with the
//! runtime's kill turns unhealthy and healthy again on the open page, without a reload; a new
//! gateway request appears in the followed log; the reset-password and export actions work and
//! show their result; a cross-site form POST (and any POST without the token) is refused with 403
//! and changes nothing; nothing but 127.0.0.1 on its own port reaches it. Needs Debian's
//! `chromium` (`.ci/run` installs it).

mod common;

use std::time::Duration;

use common::Running;
use harness::browser::Chromium;
use harness::config::Config;
use harness::e2e::client::TenantClient;
use harness::stack::{GatewayCommand, ServiceState, Stack};

/// Every address the kernel has a listening TCP socket on for `port` (from /proc/net/tcp{,6}).
fn listening_addresses(port: u16) -> Vec<String> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // local_address is field 1 (ADDR:PORT in hex), st is field 3 (0A = LISTEN).
            let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
                continue;
            };
            let Some((addr, hex_port)) = local.split_once(':') else {
                continue;
            };
            if *state == "0A" && u16::from_str_radix(hex_port, 16).ok() == Some(port) {
                found.push(addr.to_string());
            }
        }
    }
    found
}

/// A one-page HTTP server on 127.0.0.1 (reached as `evil.localhost`): a form that posts itself
/// to `action` as soon as it loads, like a malicious site would.
async fn cross_site_page(action: String) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            let action = action.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                let page = format!(
                    "<!doctype html><form id=f method=POST action=\"{action}\">\
                     <input name=service value=gateway></form>\
                     <script>document.getElementById('f').submit()</script>"
                );
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                    page.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// The gateway's (pid, restarts) as the state file records them.
fn gateway_identity(stack: &Stack) -> (i32, u32) {
    let state = stack.running_state().unwrap();
    let gateway = &state.services["gateway"];
    (gateway.process.pid, gateway.restarts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_dashboard_shows_the_stack_live_and_refuses_what_is_not_its_own() {
    let chromium = harness::browser::find_chromium()
        .unwrap()
        .expect("Chromium is needed: apt-get install chromium (or set LANGFLOW_INFRA_CHROMIUM)");
    let dir = tempfile::Builder::new()
        .prefix("lfi-dashboard-")
        .tempdir()
        .unwrap();
    let mut config =
        Config::isolated_with_tenants(&common::repo_root(), dir.path(), common::TWO_TENANTS)
            .unwrap();
    config.langflow.login_rate_limit_per_minute = 100;
    let gateway = GatewayCommand::standalone(env!("CARGO_BIN_EXE_langflow-infra-gateway"));
    let stack = Running(Stack::new(config).with_gateway_command(gateway));
    let report = stack.up().await.unwrap();
    let url = report.dashboard.clone().expect("up names the dashboard");
    let state = stack.running_state().unwrap();
    let port = state.services["dashboard"].port;
    assert_eq!(
        url,
        format!(
            "http://127.0.0.1:{port}/#token={}",
            harness::stack::dashboard::read_token(&stack.config().state_dir)
                .unwrap()
                .unwrap()
        )
    );
    let token_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(harness::stack::dashboard::token_path(
            &stack.config().state_dir,
        ))
        .unwrap()
        .permissions()
        .mode()
            & 0o777
    };
    assert_eq!(token_mode, 0o600, "the token file is private");
    let acme_url = report
        .tenants
        .iter()
        .find(|t| t.prefix == "acme")
        .unwrap()
        .url
        .clone();
    let old_password = report
        .provisioned
        .credentials
        .iter()
        .find(|c| c.username == "admin@acme.com")
        .unwrap()
        .password
        .clone();

    // Reachable on 127.0.0.1 only: every listening socket on its port is bound to 127.0.0.1
    // (0100007F), none to a wildcard or another interface.
    let listening = listening_addresses(port);
    assert!(!listening.is_empty(), "nothing listens on {port}");
    assert!(
        listening.iter().all(|a| a == "0100007F"),
        "the dashboard listens beyond 127.0.0.1: {listening:?}"
    );
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let token = url.rsplit("#token=").next().unwrap().to_string();
    // Reads need the token header: 401 without it (and no cookie is ever set).
    let answer = http
        .get(format!("http://127.0.0.1:{port}/api/snapshot"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 401);
    let answer = http
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200, "the static page needs no token");
    assert!(answer.headers().get("set-cookie").is_none());
    let answer = http
        .get(format!("http://127.0.0.1:{port}/api/snapshot"))
        .header("x-dashboard-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    // A name that resolves to 127.0.0.1 is still not the dashboard's (DNS rebinding).
    let answer = http
        .get(format!("http://127.0.0.1:{port}/api/snapshot"))
        .header("host", format!("rebound.example:{port}"))
        .header("x-dashboard-token", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);

    // The page.
    let browser = Chromium::launch(&chromium).await.unwrap();
    let tab = browser.tab().await.unwrap();
    tab.goto(&url).await.unwrap();
    tab.wait_for(
        "the first snapshot",
        "document.body.dataset.ready === '1'",
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    assert_eq!(
        tab.url().await.unwrap(),
        format!("http://127.0.0.1:{port}/#services"),
        "the token leaves the address bar"
    );
    tab.eval::<bool>("(window.__sameDocument = true)")
        .await
        .unwrap();

    // Services: every service of the run is listed, with the state status judges.
    let status = stack.status().await.unwrap().unwrap();
    let names: Vec<String> = status.services.iter().map(|s| s.name.clone()).collect();
    let listed: Vec<String> = tab
        .eval("Array.from(document.querySelectorAll('#services-table [data-service]')).map(r => r.dataset.service)")
        .await
        .unwrap();
    let mut sorted = (names.clone(), listed.clone());
    sorted.0.sort();
    sorted.1.sort();
    assert_eq!(sorted.0, sorted.1, "the services page lists every service");
    for expected in [
        "postgres",
        "aws",
        "gateway",
        "langflow-acme",
        "langflow-widgetco",
        "supervisor",
        "dashboard",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} in {names:?}"
        );
    }
    tab.screenshot(&common::repo_root().join("target/dashboard/services.png"))
        .await
        .unwrap();

    // A tenant killed with the runtime's kill: not healthy, then healthy again after the
    // supervisor's restart, on the same page.
    let acme = &stack.running_state().unwrap().services["langflow-acme"];
    stack.runtime().kill(&acme.process).unwrap();
    let row = "document.querySelector('#services-table [data-service=\"langflow-acme\"]')";
    tab.wait_for(
        "langflow-acme shown not healthy",
        &format!("{row} && {row}.dataset.state !== 'healthy'"),
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    tab.wait_for(
        "langflow-acme shown healthy again",
        &format!("{row} && {row}.dataset.state === 'healthy' && {row}.children[2].textContent.startsWith('1')"),
        Duration::from_secs(240),
    )
    .await
    .unwrap();
    assert!(
        tab.eval::<bool>("window.__sameDocument === true")
            .await
            .unwrap(),
        "the page reloaded"
    );
    assert_eq!(
        stack
            .status()
            .await
            .unwrap()
            .unwrap()
            .service("langflow-acme")
            .unwrap()
            .state,
        ServiceState::Healthy
    );

    // Logs: a new gateway request appears in the followed, merged log and the request table.
    tab.eval::<bool>("(location.hash = '#logs', true)")
        .await
        .unwrap();
    let probe = format!("dashboard-probe-{}", harness::secret::hex(4));
    let answer = http.get(format!("{acme_url}{probe}")).send().await.unwrap();
    assert!(answer.status().as_u16() > 0);
    tab.wait_for(
        "the request in the followed log",
        &format!("document.getElementById('log-view').textContent.includes('{probe}')"),
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    tab.wait_for(
        "the request in the gateway's request table",
        &format!("Array.from(document.querySelectorAll('#requests-table [data-path]')).some(r => r.dataset.path.includes('{probe}') && r.children[3].textContent === 'acme')"),
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    // The tenant filter keeps acme's lines and hides widgetco's instance.
    tab.eval::<bool>("(document.getElementById('log-tenant').value = 'widgetco', document.getElementById('log-tenant').dispatchEvent(new Event('input')), true)")
        .await
        .unwrap();
    assert!(
        !tab.eval::<bool>(&format!(
            "document.getElementById('log-view').textContent.includes('{probe}')"
        ))
        .await
        .unwrap(),
        "the tenant filter hides acme's request"
    );

    // Actions: reset acme's admin password; the new one is shown once and logs in, the old no
    // longer does.
    tab.eval::<bool>("(location.hash = '#actions', true)")
        .await
        .unwrap();
    let acme_schema = report
        .tenants
        .iter()
        .find(|t| t.prefix == "acme")
        .unwrap()
        .schema
        .clone();
    tab.wait_for(
        "acme in the reset form",
        &format!("Array.from(document.getElementById('reset-tenant').options).some(o => o.value === '{acme_schema}')"),
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    tab.eval::<bool>(&format!(
        "(document.getElementById('reset-tenant').value = '{acme_schema}', true)"
    ))
    .await
    .unwrap();
    tab.type_into("#reset-username", "admin@acme.com")
        .await
        .unwrap();
    tab.click("#reset-button").await.unwrap();
    tab.wait_for(
        "the new password",
        "document.getElementById('action-result').textContent.includes('new password')",
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    let shown: String = tab
        .eval("document.getElementById('action-result').textContent.trim().split('\\n').pop()")
        .await
        .unwrap();
    assert_eq!(
        shown.len(),
        16,
        "a generated 16-character password: {shown:?}"
    );
    let client = TenantClient::new(&acme_url);
    assert_eq!(
        client.login("admin@acme.com", &shown).await.unwrap().status,
        200
    );
    assert_eq!(
        client
            .login("admin@acme.com", &old_password)
            .await
            .unwrap()
            .status,
        401
    );
    let dashboard_log =
        std::fs::read_to_string(&stack.running_state().unwrap().services["dashboard"].log).unwrap();
    assert!(
        !dashboard_log.contains(&shown),
        "the password is not logged"
    );

    // Export: the bundle is written and named in the result.
    tab.eval::<bool>(&format!(
        "(document.getElementById('export-tenant').value = '{acme_schema}', true)"
    ))
    .await
    .unwrap();
    tab.click("#export-button").await.unwrap();
    tab.wait_for(
        "the export's result",
        "document.getElementById('action-result').textContent.startsWith('exported to ')",
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    let result: String = tab
        .eval("document.getElementById('action-result').textContent")
        .await
        .unwrap();
    let bundle = result
        .strip_prefix("exported to ")
        .and_then(|r| r.split(" (").next())
        .unwrap();
    assert!(std::path::Path::new(bundle).is_file(), "{bundle} exists");

    // The e2e suite on this stack: its rows appear while it runs, its result lands on Reports.
    tab.click("#e2e-button").await.unwrap();
    tab.wait_for(
        "the e2e run's end",
        "document.getElementById('e2e-status').dataset.finished === '1'",
        Duration::from_secs(180),
    )
    .await
    .unwrap();
    let (status, rows): (String, usize) = tab
        .eval("[document.getElementById('e2e-status').textContent, document.querySelectorAll('#e2e-table tbody tr').length]")
        .await
        .unwrap();
    assert_eq!(
        status, "passed",
        "the isolation suite on the dashboard's stack"
    );
    assert!(rows >= 10, "the suite's rows are shown: {rows}");
    tab.screenshot(&common::repo_root().join("target/dashboard/actions.png"))
        .await
        .unwrap();
    tab.eval::<bool>("(location.hash = '#reports', true)")
        .await
        .unwrap();
    tab.wait_for(
        "the e2e result on Reports",
        "document.querySelector('#reports-list [data-report=\"e2e-isolation\"]') !== null",
        Duration::from_secs(15),
    )
    .await
    .unwrap();
    for page in ["tenants", "logs", "plots"] {
        tab.eval::<bool>(&format!("(location.hash = '#{page}', true)"))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tab.screenshot(&common::repo_root().join(format!("target/dashboard/{page}.png")))
            .await
            .unwrap();
    }

    // Tenants: both, with the Alembic revision and rows their schemas hold.
    let tenants: Vec<(String, String, String)> = tab
        .eval("Array.from(document.querySelectorAll('#tenants-table [data-tenant]')).map(r => [r.dataset.tenant, r.children[4].textContent, r.children[5].textContent])")
        .await
        .unwrap();
    assert_eq!(tenants.len(), 2, "{tenants:?}");
    for (prefix, revision, rows) in &tenants {
        assert!(
            revision.len() >= 12 && revision.bytes().all(|b| b.is_ascii_hexdigit()),
            "{prefix}: revision {revision:?}"
        );
        assert!(rows.parse::<u64>().unwrap() > 0, "{prefix}: rows {rows:?}");
    }

    // A cross-site form POST (from evil.localhost): 403, and the gateway is not restarted.
    let before = gateway_identity(&stack);
    let restart_url = format!("http://127.0.0.1:{port}/api/actions/restart");
    let evil = cross_site_page(restart_url.clone()).await;
    let attacker = browser.tab().await.unwrap();
    attacker
        .goto(&format!("http://evil.localhost:{evil}/"))
        .await
        .unwrap();
    attacker
        .wait_for(
            "the dashboard's refusal",
            "location.port !== '' && document.body && document.body.innerText.includes('X-Dashboard-Token')",
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert_eq!(attacker.url().await.unwrap(), restart_url);
    // The same POST as JSON but without the token header: 403 too.
    let answer = http
        .post(&restart_url)
        .header("content-type", "application/json")
        .body(r#"{"service":"gateway"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 403);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        gateway_identity(&stack),
        before,
        "a refused request changed nothing"
    );
    // With the token the same request is accepted (the refusals above were the token's).
    let answer = http
        .post(&restart_url)
        .header("x-dashboard-token", &token)
        .header("content-type", "application/json")
        .body(r#"{"service":"gateway"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let (pid, restarts) = gateway_identity(&stack);
    assert!(
        pid != before.0 && restarts == before.1 + 1,
        "the gateway was restarted"
    );

    attacker.close().await;
    tab.close().await;
    browser.close().await;
    drop(stack);
}
