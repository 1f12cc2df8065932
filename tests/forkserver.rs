//! Tenants forked from one warm Langflow (`[langflow] start = "fork"`), on real Postgres, the real
//! emulator and real Langflow 1.13 workers:
//! - each worker runs with its own settings, secret key, database role and `search_path` (shown
//!   from the outside: tokens, Postgres sessions, where data lands), none of them inherited from
//!   the fork server, whose own environment has no tenant setting;
//! - a killed worker is re-forked by the same server (no re-import); killing the server stops its
//!   workers, and the supervisor brings everything back; `down` leaves nothing behind;
//! - the server shares the start-up work that is not the tenant's (route analysis, the modules a
//!   worker would import): a worker imports next to nothing after the fork;
//! - the fork server refuses what it cannot prove safe (threads after its import; a worker
//!   environment differing in a variable the import read), and the runtime then spawns.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::Running;
use harness::config::{Config, StartMode};
use harness::e2e::client::{Auth, TenantClient};
use harness::runtime::native::NativeRuntime;
use harness::runtime::{Liveness, ProcessSpec, Runtime, StopSignal};
use harness::services::forkserver;
use harness::stack::{GatewayCommand, Stack};
use harness::tenancy::Tenancy;

const TENANTS: &str = "tenants:
  - prefix: acme
    users:
      - username: admin@acme.com
        password: \"acme-Password-1\"
        superuser: true
  - prefix: widgetco
    users:
      - username: admin@widgetco.com
        password: \"widgetco-Password-1\"
        superuser: true
";

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn proc_environ_has(pid: i32, name: &str) -> bool {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    let prefix = format!("{name}=");
    environ
        .split(|b| *b == 0)
        .any(|var| var.starts_with(prefix.as_bytes()))
}

/// Local ports of `pid`'s TCP connections to `remote_port` on 127.0.0.1 (from /proc).
fn connections_to(pid: i32, remote_port: u16) -> BTreeSet<u16> {
    let inodes: BTreeSet<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|entries| {
            entries
                .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
                .filter_map(|target| {
                    let target = target.display().to_string();
                    Some(
                        target
                            .strip_prefix("socket:[")?
                            .strip_suffix(']')?
                            .to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let table = std::fs::read_to_string(format!("/proc/{pid}/net/tcp")).unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = u16::from_str_radix(fields.get(1)?.split(':').nth(1)?, 16).ok()?;
            let remote = u16::from_str_radix(fields.get(2)?.split(':').nth(1)?, 16).ok()?;
            (remote == remote_port && inodes.contains(*fields.get(9)?)).then_some(local)
        })
        .collect()
}

/// Most modules a worker may import after the fork (measured with Langflow 1.13: 6 — three lfx
/// modules, two of its Extension namespace and one FastAPI module, loaded while it starts).
const MAX_IMPORTS_AFTER_FORK: usize = 20;

/// How many modules the worker logging to `log` said it imported after the fork.
fn modules_imported_after_fork(log: &std::path::Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap();
    let line = text
        .lines()
        .rev()
        .find(|l| l.starts_with("serving ") && l.contains("after the fork"))
        .unwrap_or_else(|| panic!("{} has no 'serving ... after the fork' line", log.display()));
    let (_, rest) = line.split_once("; ").unwrap();
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

async fn whoami_status(url: &str, token: &str) -> u16 {
    TenantClient::new(url)
        .get("api/v1/users/whoami", &Auth::Bearer(token))
        .await
        .unwrap()
        .status
}

async fn wait_serving(port: u16, within: Duration) -> f64 {
    let started = Instant::now();
    while harness::services::langflow::probe(port).await.is_err() {
        assert!(
            started.elapsed() < within,
            "the instance on port {port} did not serve again within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    started.elapsed().as_secs_f64()
}

/// Waits until the state file records a running `name` other than `old_pid`; returns its record.
async fn wait_replaced(stack: &Stack, name: &str, old_pid: i32) -> harness::state::ServiceRecord {
    let started = Instant::now();
    loop {
        let state = stack.files().read_state().unwrap().unwrap();
        if let Some(record) = state.services.get(name) {
            if record.process.pid != old_pid
                && stack.runtime().liveness(&record.process) == Liveness::Running
            {
                return record.clone();
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "{name} was not restarted"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn forked_tenants_are_isolated_reforked_and_die_with_their_server() {
    let dir = tempfile::Builder::new()
        .prefix("lfi-fork-")
        .tempdir()
        .unwrap();
    let mut config =
        Config::isolated_with_tenants(&common::repo_root(), dir.path(), TENANTS).unwrap();
    config.langflow.start = StartMode::Fork;
    config.langflow.login_rate_limit_per_minute = 100;
    let stack = Running(
        Stack::new(config)
            .with_runtime(std::sync::Arc::new(NativeRuntime))
            .with_gateway_command(GatewayCommand::standalone(env!(
                "CARGO_BIN_EXE_langflow-infra-gateway"
            ))),
    );
    let up = stack.up().await.unwrap();
    let state = stack.files().read_state().unwrap().unwrap();
    let server = state
        .services
        .get(forkserver::SERVICE)
        .expect("the run has a fork server")
        .clone();
    // The server analysed Langflow's routes before forking (each worker reads the result).
    let server_log = std::fs::read_to_string(&server.log).unwrap();
    let routes: usize = server_log
        .split_once(" routes analysed")
        .and_then(|(before, _)| before.rsplit('(').next()?.parse().ok())
        .unwrap_or_else(|| panic!("no route analysis in the fork server's log:\n{server_log}"));
    assert!(routes > 100, "{routes} routes analysed");
    let secrets = stack.files().read_secrets().unwrap();
    let tenancy = Tenancy::for_running_stack(stack.config(), stack.files()).unwrap();
    let schemas = tenancy.schema_list().await.unwrap();
    let pg_port = state.services["postgres"].port;
    let (db, connection) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={pg_port} user=postgres password={} dbname={}",
            common::postgres_password(&stack),
            stack.config().postgres.database
        ),
        tokio_postgres::NoTls,
    )
    .await
    .unwrap();
    tokio::spawn(connection);

    // The server itself carries no tenant setting.
    for name in [
        "LANGFLOW_SECRET_KEY",
        "LANGFLOW_DATABASE_URL",
        "LANGFLOW_ROOT_PATH",
    ] {
        assert!(
            !proc_environ_has(server.process.pid, name),
            "server has {name}"
        );
    }
    let mut tokens = Vec::new();
    for schema in &schemas {
        let name = harness::services::langflow::service_name(&schema.prefix);
        let record = &state.services[&name];
        // A worker of the fork server, not a process of its own.
        assert_eq!(
            record.process.fork_server.as_deref(),
            Some(forkserver::socket_for(stack.config()).unwrap().as_path())
        );
        assert_eq!(
            parent_of(record.process.pid),
            Some(server.process.pid),
            "{name}"
        );
        // Its secret key is its tenant's, as applied in the worker.
        let key = stack
            .runtime()
            .env_var(&record.process, "LANGFLOW_SECRET_KEY")
            .unwrap();
        assert_eq!(key, secrets.tenants[&schema.schema].secret_key, "{name}");
        // What the server shared reached the worker: it imported next to nothing after the fork
        // (a stale module list would show here as hundreds).
        let imported = modules_imported_after_fork(&record.log);
        assert!(
            imported <= MAX_IMPORTS_AFTER_FORK,
            "{name} imported {imported} modules after the fork"
        );
        let endpoint = up
            .tenants
            .iter()
            .find(|t| t.prefix == schema.prefix)
            .unwrap();
        let password = format!("{}-Password-1", schema.prefix);
        let client = TenantClient::new(&endpoint.url);
        let token = client
            .token(&format!("admin@{}.com", schema.prefix), &password)
            .await
            .unwrap();
        let user_id = client.user_id(&token).await.unwrap();
        // Data lands in its own schema: its Postgres role's search_path is in force.
        let flow_name = format!("fork-test-{}", schema.prefix);
        client.create_flow(&token, &flow_name).await.unwrap();
        for other in &schemas {
            let count: i64 = db
                .query_one(
                    &format!(
                        "SELECT count(*) FROM {}.flow WHERE name = $1",
                        harness::sql::quote_ident(&other.schema)
                    ),
                    &[&flow_name],
                )
                .await
                .unwrap()
                .get(0);
            assert_eq!(
                count,
                i64::from(other.schema == schema.schema),
                "{flow_name} in {}",
                other.schema
            );
        }
        // Its database sessions are its tenant role's.
        let ports: Vec<i32> = connections_to(record.process.pid, pg_port)
            .into_iter()
            .map(i32::from)
            .collect();
        assert!(!ports.is_empty(), "{name} holds no connection to Postgres");
        let roles: Vec<String> = db
            .query(
                "SELECT DISTINCT usename::text FROM pg_stat_activity WHERE client_port = ANY($1)",
                &[&ports],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let role = tenancy.tenant_target(&schema.schema).unwrap().user;
        assert_eq!(roles, vec![role], "{name}'s sessions");
        tokens.push((schema.clone(), endpoint.url.clone(), user_id));
    }
    // Tokens are checked with the worker's own key only.
    for (schema, url, user_id) in &tokens {
        for (other, _, _) in &tokens {
            let forged = harness::e2e::jwt::forge_access_token(
                user_id,
                &secrets.tenants[&other.schema].secret_key,
            );
            let expected = if other.schema == schema.schema {
                200
            } else {
                401
            };
            assert_eq!(
                whoami_status(url, &forged).await,
                expected,
                "{}'s worker with a token signed by {}'s key",
                schema.prefix,
                other.prefix
            );
        }
    }

    // A killed worker is re-forked by the same server (no new import); the other is untouched.
    let acme = harness::services::langflow::service_name("acme");
    let widgetco = &state.services[&harness::services::langflow::service_name("widgetco")];
    let before = state.services[&acme].clone();
    stack.runtime().kill(&before.process).unwrap();
    let after = wait_replaced(&stack, &acme, before.process.pid).await;
    wait_serving(after.port, Duration::from_secs(120)).await;
    assert_eq!(parent_of(after.process.pid), Some(server.process.pid));
    assert_eq!(stack.runtime().liveness(&server.process), Liveness::Running);
    assert_eq!(
        stack.runtime().liveness(&widgetco.process),
        Liveness::Running
    );

    // Killing the server stops its workers; the supervisor brings all back, forked again.
    stack.runtime().kill(&server.process).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while [&after.process, &widgetco.process]
        .iter()
        .any(|p| stack.runtime().liveness(p) == Liveness::Running)
    {
        assert!(
            Instant::now() < deadline,
            "workers outlived their fork server"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let new_server = wait_replaced(&stack, forkserver::SERVICE, server.process.pid).await;
    for name in [
        &acme,
        &harness::services::langflow::service_name("widgetco"),
    ] {
        let old = if *name == acme {
            after.process.pid
        } else {
            widgetco.process.pid
        };
        let record = wait_replaced(&stack, name, old).await;
        wait_serving(record.port, Duration::from_secs(240)).await;
        assert_eq!(
            parent_of(record.process.pid),
            Some(new_server.process.pid),
            "{name}"
        );
    }

    let marker = stack.run_marker();
    stack.down(true).unwrap();
    assert!(NativeRuntime.leftovers(&marker).is_empty());
}

/// The fork server's proof at work: threads after the import make every fork refused; a worker
/// environment differing in a variable the import read is refused too; the runtime then starts
/// the service as its own process and its log says why.
#[tokio::test(flavor = "multi_thread")]
async fn what_the_fork_server_cannot_prove_safe_is_spawned() {
    let dir = tempfile::Builder::new()
        .prefix("lfi-fork-")
        .tempdir()
        .unwrap();
    let config = Config::isolated(&common::repo_root(), &dir.path().join("state")).unwrap();
    std::fs::create_dir_all(&config.state_dir).unwrap();
    let venv = harness::services::langflow::ensure_venv(&config)
        .await
        .unwrap();
    let marker = harness::runtime::run_marker(&config);
    let socket = forkserver::socket_for(&config).unwrap();
    let runtime = NativeRuntime;

    let start_server = |threads: &str| {
        let mut spec = forkserver::spec(&config, &venv, &socket).unwrap();
        spec.env
            .insert("OPENBLAS_NUM_THREADS".into(), threads.into());
        runtime.start(&spec, &marker).unwrap().0
    };
    // BLAS threads started by the import: fork is refused outright.
    let unsafe_server = start_server("4");
    let ping = forkserver::wait_ready(&socket, forkserver::READY_TIMEOUT, || true)
        .await
        .unwrap();
    assert!(
        ping.hazards.iter().any(|h| h.contains("threads")),
        "{:?}",
        ping.hazards
    );
    runtime
        .stop(&unsafe_server, Duration::from_secs(10))
        .unwrap();

    // A safe server; a worker whose LANGFLOW_LOG_LEVELS (read while importing) differs.
    let server = start_server("1");
    let ping = forkserver::wait_ready(&socket, forkserver::READY_TIMEOUT, || true)
        .await
        .unwrap();
    assert!(ping.hazards.is_empty(), "{:?}", ping.hazards);
    let log = dir.path().join("worker.log");
    let spec = ProcessSpec {
        name: "worker".into(),
        program: "/bin/sleep".into(),
        args: vec!["300".into()],
        env: [
            (
                "LANGFLOW_LOG_LEVELS".to_string(),
                "sqlalchemy=DEBUG".to_string(),
            ),
            ("OPENBLAS_NUM_THREADS".to_string(), "1".to_string()),
        ]
        .into(),
        cwd: dir.path().to_path_buf(),
        log: log.clone(),
        run_as: None,
        stop_signal: StopSignal::Term,
        port: harness::net::free_ports(1).unwrap()[0],
        container: None,
        fork_server: Some(socket.clone()),
    };
    let (worker, _) = runtime.start(&spec, &marker).unwrap();
    assert_eq!(worker.fork_server, None, "started as its own process");
    assert_eq!(parent_of(worker.pid), Some(std::process::id() as i32));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("LANGFLOW_LOG_LEVELS") && text.contains("started as its own process"),
        "{text}"
    );
    runtime.stop(&worker, Duration::from_secs(5)).unwrap();
    runtime.stop(&server, Duration::from_secs(10)).unwrap();
    assert!(NativeRuntime.leftovers(&marker).is_empty());
}
