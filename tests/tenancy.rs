//! Tenancy end to end against real Postgres, real Langflow 1.13 instances and the real gateway
//! process: `up` provisions the tenants file, logins go through the gateway, tenantmgr changes are
//! seen by Langflow, and a killed instance is restarted. (Hostile input and a failed schema-add:
//! `tenancy_sql.rs`, against a throwaway Postgres container.)

mod common;

use std::time::Duration;

use common::Running;
use harness::config::Config;
use harness::e2e::client::TenantClient;
use harness::runtime::native::NativeRuntime;
use harness::services::postgres::PgTarget;
use harness::stack::{GatewayCommand, ServiceState, Stack, UpOutcome};
use harness::tenancy::{Tenancy, OPERATOR_USERNAME};

/// A stack in its own temp state dir (reachable by Postgres's OS user) with the given tenants file.
fn isolated_stack(tenants_yaml: &str) -> (tempfile::TempDir, Running) {
    let dir = tempfile::Builder::new()
        .prefix("lfi-tenancy-")
        .tempdir()
        .unwrap();
    let mut config =
        Config::isolated_with_tenants(&common::repo_root(), dir.path(), tenants_yaml).unwrap();
    // This test logs in more often than Langflow's default 5 per minute from one address.
    config.langflow.login_rate_limit_per_minute = 100;
    let gateway = GatewayCommand::standalone(env!("CARGO_BIN_EXE_langflow-infra-gateway"));
    let stack = Stack::new(config).with_gateway_command(gateway);
    (dir, Running(stack))
}

fn tenancy_of(stack: &Stack) -> Tenancy {
    Tenancy::for_running_stack(stack.config(), stack.files()).unwrap()
}

/// `POST <tenant url>api/v1/login` through the e2e suite's client; the HTTP status and, on
/// success, the access token.
async fn login(tenant_url: &str, username: &str, password: &str) -> (u16, Option<String>) {
    let answer = TenantClient::new(tenant_url)
        .login(username, password)
        .await
        .unwrap();
    let token = answer.json()["access_token"].as_str().map(String::from);
    (answer.status, token)
}

/// Waits (up to 3 minutes) until `url` answers 200.
async fn wait_for_200(url: &str) {
    let waited = std::time::Instant::now();
    loop {
        if get(url, None).await.0 == 200 {
            return;
        }
        assert!(
            waited.elapsed() < Duration::from_secs(180),
            "{url} never answered 200"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

async fn get(url: &str, token: Option<&str>) -> (u16, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_tenants_up_login_reset_add_remove_and_down() {
    let (_dir, stack) = isolated_stack(common::TWO_TENANTS);
    let report = stack.up().await.expect("up");
    assert_eq!(report.outcome, UpOutcome::Started);
    let names: Vec<&str> = report
        .status
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(
        names,
        [
            "postgres",
            "aws",
            "identity",
            // Tenants are forked from the run's fork server (`[langflow] start = "fork"`).
            "forkserver",
            "gateway",
            "langflow-acme",
            "langflow-widgetco",
            "dashboard",
            "supervisor"
        ]
    );
    assert!(report.status.healthy(), "{:#?}", report.status);

    // Each fixture user was created once, with a generated 16-character password.
    assert_eq!(report.provisioned.created.len(), 2);
    let creds = &report.provisioned.credentials;
    assert_eq!(creds.len(), 2);
    for c in creds {
        assert!(c.generated);
        assert_eq!(c.password.len(), 16);
        assert!(c.password.chars().all(|ch| ch.is_ascii_alphanumeric()));
    }
    let acme = report.tenants.iter().find(|t| t.prefix == "acme").unwrap();
    let widgetco = report
        .tenants
        .iter()
        .find(|t| t.prefix == "widgetco")
        .unwrap();
    assert_eq!(acme.users, ["admin@acme.com"]);
    assert!(acme.schema.starts_with("acme-") && acme.schema.len() == "acme-".len() + 6);
    let gateway_port = report
        .status
        .services
        .iter()
        .find(|s| s.name == "gateway")
        .unwrap()
        .port;
    assert_eq!(
        acme.url,
        format!("http://127.0.0.1:{gateway_port}/tenant/acme/")
    );
    let acme_pw = &creds
        .iter()
        .find(|c| c.schema == acme.schema)
        .unwrap()
        .password;
    let widget_pw = &creds
        .iter()
        .find(|c| c.schema == widgetco.schema)
        .unwrap()
        .password;
    // Passwords are never stored in clear.
    let secrets = std::fs::read_to_string(stack.files().secrets_path()).unwrap();
    assert!(!secrets.contains(acme_pw.as_str()) && !secrets.contains(widget_pw.as_str()));

    // Routing through the gateway.
    let gw = format!("http://127.0.0.1:{gateway_port}");
    assert_eq!(get(&format!("{gw}/health"), None).await.0, 200);
    let (status, body) = get(&format!("{gw}/tenant/nosuch/"), None).await;
    assert_eq!(status, 404);
    assert!(body.contains("unknown tenant 'nosuch'"), "{body}");
    let (status, body) = get(&format!("{}health_check", acme.url), None).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"ok\""), "{body}");
    let (status, body) = get(&acme.url, None).await;
    assert_eq!(status, 200);
    assert!(
        body.contains("/tenant/acme/"),
        "the UI must be served under its root path"
    );

    // Login through the gateway: own tenant yes, the other tenant no.
    let (status, acme_token) = login(&acme.url, "admin@acme.com", acme_pw).await;
    assert_eq!(status, 200);
    let acme_token = acme_token.unwrap();
    assert_eq!(login(&widgetco.url, "admin@acme.com", acme_pw).await.0, 401);
    assert_eq!(login(&acme.url, "admin@acme.com", widget_pw).await.0, 401);
    let (status, me) = get(
        &format!("{}api/v1/users/whoami", acme.url),
        Some(&acme_token),
    )
    .await;
    assert_eq!(status, 200, "{me}");
    assert!(me.contains("admin@acme.com"), "{me}");
    let (status, _) = get(
        &format!("{}api/v1/users/whoami", widgetco.url),
        Some(&acme_token),
    )
    .await;
    assert!(
        status == 401 || status == 403,
        "acme's token at widgetco: {status}"
    );

    // tenantmgr against the running stack.
    let tenancy = tenancy_of(&stack);
    let schemas = tenancy.schema_list().await.unwrap();
    let listed: Vec<(&str, i64)> = schemas
        .iter()
        .map(|s| (s.prefix.as_str(), s.users))
        .collect();
    assert_eq!(listed, [("acme", 2), ("widgetco", 2)]);
    assert!(schemas.iter().all(|s| s.revision.is_some()));
    let dup = format!("{:#}", tenancy.schema_add("acme").await.unwrap_err());
    assert!(dup.contains("prefix 'acme' already exists"), "{dup}");

    let bob = tenancy
        .user_add(&acme.schema, "bob", Some("first-pass-1"), false)
        .await
        .unwrap();
    assert!(!bob.generated);
    let dup = format!(
        "{:#}",
        tenancy
            .user_add(&acme.schema, "BOB", None, false)
            .await
            .unwrap_err()
    );
    assert!(dup.contains("already exists"), "{dup}");
    // The same username in another tenant is a different user.
    tenancy
        .user_add(&widgetco.schema, "bob", Some("widget-bob-1"), false)
        .await
        .unwrap();
    assert_eq!(login(&acme.url, "bob", "first-pass-1").await.0, 200);
    assert_eq!(login(&widgetco.url, "bob", "widget-bob-1").await.0, 200);
    assert_eq!(login(&widgetco.url, "bob", "first-pass-1").await.0, 401);

    // user-reset: the old password stops working, the generated one works.
    let reset = tenancy.user_reset(&acme.schema, "Bob", None).await.unwrap();
    assert!(reset.generated && reset.password.len() == 16);
    assert_eq!(reset.username, "bob");
    assert_eq!(login(&acme.url, "bob", "first-pass-1").await.0, 401);
    assert_eq!(login(&acme.url, "bob", &reset.password).await.0, 200);

    let users: Vec<(String, bool)> = tenancy
        .user_list(&acme.schema)
        .await
        .unwrap()
        .into_iter()
        .map(|u| (u.username, u.superuser))
        .collect();
    assert_eq!(
        users,
        [
            ("admin@acme.com".to_string(), true),
            ("bob".to_string(), false),
            (OPERATOR_USERNAME.to_string(), true),
        ]
    );

    // The database holds the contract: tables only in tenant schemas, roles fenced in.
    let admin = tenancy.admin_target().connect().await.unwrap();
    let count = |schema: String| {
        let admin = &admin;
        async move {
            admin
                .query_one(
                    "SELECT count(*) FROM information_schema.tables WHERE table_schema = $1",
                    &[&schema],
                )
                .await
                .unwrap()
                .get::<_, i64>(0)
        }
    };
    assert_eq!(count("public".into()).await, 0);
    assert!(count(acme.schema.clone()).await >= 60);
    let acme_role: PgTarget = tenancy.tenant_target(&acme.schema).unwrap();
    let acme_db = acme_role.connect().await.unwrap();
    let denied = acme_db
        .query(
            &format!("SELECT count(*) FROM \"{}\".\"user\"", widgetco.schema),
            &[],
        )
        .await
        .unwrap_err();
    assert!(
        denied
            .as_db_error()
            .unwrap()
            .message()
            .contains("permission denied"),
        "{denied}"
    );
    let own: i64 = acme_db
        .query_one("SELECT count(*) FROM \"user\"", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        own, 3,
        "acme's role sees acme's users through its pinned search_path"
    );

    // A tenant added to the running stack gets an instance and a route.
    let gamma = tenancy.schema_add("gamma_3").await.unwrap();
    let endpoint = stack.attach_tenant(&gamma).await.unwrap().unwrap();
    assert_eq!(endpoint.url, format!("{gw}/tenant/gamma_3/"));
    let (status, body) = get(&format!("{}health_check", endpoint.url), None).await;
    assert_eq!(status, 200, "{body}");

    // Its instance dies: that tenant answers 502, the others are unaffected.
    let status = stack.status().await.unwrap().unwrap();
    let gamma_pid = status.service("langflow-gamma_3").unwrap().pid;
    let after_kill_pids = (gamma_pid, status.service("langflow-acme").unwrap().pid);
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(gamma_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, body) = get(&format!("{}health_check", endpoint.url), None).await;
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("tenant 'gamma_3' is unavailable"), "{body}");
    assert_eq!(get(&format!("{}health_check", acme.url), None).await.0, 200);

    // The supervisor restarts it, as ECS replaces a stopped task: it serves again on its own,
    // and status shows the restart; acme was never touched.
    let acme_pid = after_kill_pids.1;
    wait_for_200(&format!("{}health_check", endpoint.url)).await;
    let after = stack.status().await.unwrap().unwrap();
    let restarted = after.service("langflow-gamma_3").unwrap();
    assert_eq!(restarted.state, ServiceState::Healthy);
    assert_eq!(restarted.restarts, 1, "{restarted:#?}");
    assert_ne!(restarted.pid, gamma_pid);
    assert!(restarted
        .detail
        .as_deref()
        .unwrap_or("")
        .contains("restarted 1×"));
    assert_eq!(after.service("langflow-acme").unwrap().pid, acme_pid);
    assert_eq!(after.service("langflow-acme").unwrap().restarts, 0);

    // schema-rm: route, schema, role and secrets are gone.
    stack.detach_tenant("gamma_3").unwrap();
    tenancy.schema_rm(&gamma.schema).await.unwrap();
    assert_eq!(
        get(&format!("{}health_check", endpoint.url), None).await.0,
        404
    );
    let role_left = admin
        .query_opt(
            "SELECT 1 FROM pg_roles WHERE rolname = $1",
            &[&gamma.schema],
        )
        .await
        .unwrap();
    assert!(role_left.is_none());
    assert!(!stack
        .files()
        .read_secrets()
        .unwrap()
        .tenants
        .contains_key(&gamma.schema));
    let prefixes: Vec<String> = tenancy
        .schema_list()
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.prefix)
        .collect();
    assert_eq!(prefixes, ["acme", "widgetco"]);
    drop(admin);
    drop(acme_db);

    // Postgres killed under the running instances: the supervisor starts it again on its port
    // and the instances reconnect by themselves (never restarted); the data is all there.
    let before = stack.status().await.unwrap().unwrap();
    let postgres_pid = before.service("postgres").unwrap().pid;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(postgres_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    wait_for_200(&format!("{}health_check", acme.url)).await;
    let (status, _) = login(&acme.url, "admin@acme.com", acme_pw).await;
    assert_eq!(status, 200, "acme's users survived the Postgres crash");
    let after = stack.status().await.unwrap().unwrap();
    assert_eq!(after.service("postgres").unwrap().restarts, 1);
    assert_ne!(after.service("postgres").unwrap().pid, postgres_pid);
    for instance in ["langflow-acme", "langflow-widgetco"] {
        assert_eq!(
            after.service(instance).unwrap().pid,
            before.service(instance).unwrap().pid,
            "{instance} was restarted instead of reconnecting"
        );
    }

    // The emulator killed: restarted, and what it kept in memory provisioned again, so acme's
    // instance (no static keys: IRSA → LangflowRole) stores a file in the bucket again.
    let aws_pid = after.service("aws").unwrap().pid;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(aws_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let waited = std::time::Instant::now();
    loop {
        let status = stack.status().await.unwrap().unwrap();
        let aws = status.service("aws").unwrap();
        if aws.restarts == 1 && aws.state == ServiceState::Healthy {
            break;
        }
        assert!(waited.elapsed() < Duration::from_secs(60), "{status:#?}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let (_, token) = login(&acme.url, "admin@acme.com", acme_pw).await;
    let uploaded = TenantClient::new(&acme.url)
        .upload_file(&token.unwrap(), "after-emulator-restart.txt", b"kept")
        .await;
    assert!(
        uploaded.is_ok(),
        "upload after the emulator restart: {uploaded:?}"
    );

    let marker = stack.run_marker();
    stack.down(true).unwrap();
    assert!(NativeRuntime::processes_of_run(&marker).is_empty());
}
