//! The foundation slice end to end, with real processes: Postgres from the system binaries and the
//! ministack emulator. Each test has its own state directory and free ports, so they run in
//! parallel without colliding.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use harness::config::Config;
use harness::runtime::native::NativeRuntime;
use harness::runtime::{Liveness, Runtime};
use harness::services::{aws, postgres::PgTarget};
use harness::stack::{ServiceState, Stack, UpOutcome};

/// A state directory Postgres's OS user can reach (tempdirs live in /tmp).
fn isolated_stack() -> (tempfile::TempDir, Stack) {
    let dir = tempfile::Builder::new()
        .prefix("lfi-test-")
        .tempdir()
        .unwrap();
    let config = Config::isolated(&common::repo_root(), &dir.path().join("state")).unwrap();
    (dir, Stack::new(config).infra_only())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_status_query_s3_then_down_leaves_no_process() {
    let (_dir, stack) = isolated_stack();
    let report = stack.up().await.expect("up");
    assert_eq!(report.outcome, UpOutcome::Started);
    let status = stack.status().await.unwrap().expect("state after up");
    assert!(status.healthy(), "{status:#?}");
    let names: Vec<&str> = status.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["postgres", "aws"]);

    // A real SQL query over tokio-postgres, on the database `up` created.
    let pg = status
        .services
        .iter()
        .find(|s| s.name == "postgres")
        .unwrap();
    let target = PgTarget::superuser(pg.port, &common::postgres_password(&stack), "langflow");
    let client = target.connect().await.unwrap();
    let row = client
        .query_one(
            "SELECT current_database(), current_setting('listen_addresses'), $1::int + 1",
            &[&41i32],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "langflow");
    assert_eq!(row.get::<_, String>(1), "127.0.0.1");
    assert_eq!(row.get::<_, i32>(2), 42);
    drop(client);

    // An S3 put/get through aws-sdk-s3 against the emulator, in the bucket `up` created.
    let aws_port = status
        .services
        .iter()
        .find(|s| s.name == "aws")
        .unwrap()
        .port;
    let config = stack.config();
    let s3 = aws::s3_client(aws_port, &config.aws.region).await;
    let body = format!("hello from {}", std::process::id());
    s3.put_object()
        .bucket(&config.aws.tenant_bucket)
        .key("tenants/t-000000/probe.txt")
        .body(body.clone().into_bytes().into())
        .send()
        .await
        .unwrap();
    let got = s3
        .get_object()
        .bucket(&config.aws.tenant_bucket)
        .key("tenants/t-000000/probe.txt")
        .send()
        .await
        .unwrap();
    let bytes = got.body.collect().await.unwrap().into_bytes();
    assert_eq!(bytes.as_ref(), body.as_bytes());

    // State file is private.
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(stack.files().state_path())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    let state = stack.files().read_state().unwrap().unwrap();
    let processes: Vec<_> = state.services.values().map(|r| r.process.clone()).collect();
    let marker = stack.run_marker();
    assert!(NativeRuntime::processes_of_run(&marker).len() >= 2);

    let down = stack.down(false).unwrap();
    assert_eq!(down.stopped.len(), 2);
    for process in &processes {
        assert_eq!(
            NativeRuntime.liveness(process),
            Liveness::Exited,
            "pid {} survived down",
            process.pid
        );
    }
    assert!(
        NativeRuntime::processes_of_run(&marker).is_empty(),
        "a process of the run survived down"
    );
    assert!(stack.status().await.unwrap().is_none());
    // Data and its password survive a plain down.
    assert!(stack
        .config()
        .state_dir
        .join("postgres/data/PG_VERSION")
        .is_file());
    assert!(stack
        .files()
        .read_secrets()
        .unwrap()
        .postgres_password
        .is_some());

    // A second down is a no-op.
    let again = stack.down(true).unwrap();
    assert!(again.stopped.is_empty());
    assert!(!stack.config().state_dir.join("postgres").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_up_reports_running_and_a_crash_is_detected_and_cleaned() {
    let (_dir, stack) = isolated_stack();
    let first = stack.up().await.unwrap();
    let pids: Vec<i32> = first.status.services.iter().map(|s| s.pid).collect();

    let second = stack.up().await.unwrap();
    assert_eq!(second.outcome, UpOutcome::AlreadyRunning);
    let again: Vec<i32> = second.status.services.iter().map(|s| s.pid).collect();
    assert_eq!(pids, again, "a second up must not start duplicates");

    // Kill the emulator behind the harness's back: status reports it crashed.
    let aws_pid = first
        .status
        .services
        .iter()
        .find(|s| s.name == "aws")
        .unwrap()
        .pid;
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(aws_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let mut crashed = false;
    for _ in 0..50 {
        let status = stack.status().await.unwrap().unwrap();
        let aws = status.services.iter().find(|s| s.name == "aws").unwrap();
        if aws.state == ServiceState::Crashed {
            assert!(aws.detail.as_deref().unwrap().contains("exited"));
            assert!(!status.healthy());
            crashed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        crashed,
        "status never reported the killed emulator as crashed"
    );

    // The next up repairs only what is down: the emulator restarts on its port, Postgres keeps
    // running untouched.
    let third = stack.up().await.unwrap();
    assert_eq!(third.outcome, UpOutcome::Repaired);
    assert_eq!(third.repaired, vec!["aws".to_string()]);
    assert!(third.status.healthy(), "{:#?}", third.status);
    let old_pg = pids[0];
    let pg = third.status.service("postgres").unwrap();
    assert_eq!(pg.pid, old_pg, "postgres was restarted by a repair");
    assert_eq!(pg.restarts, 0);
    let aws = third.status.service("aws").unwrap();
    assert_ne!(aws.pid, aws_pid);
    assert_eq!(aws.restarts, 1);
    assert_eq!(
        aws.port,
        first.status.service("aws").unwrap().port,
        "repair keeps the port"
    );
    stack.down(true).unwrap();
    assert!(NativeRuntime::processes_of_run(&stack.run_marker()).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_port_in_use_fails_cleanly() {
    let (_dir, stack) = isolated_stack();
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let mut config = stack.config().clone();
    config.ports.aws = port;
    let stack = Stack::new(config).infra_only();
    let err = format!("{:#}", stack.up().await.unwrap_err());
    assert!(
        err.contains(&format!("port {port} for aws is in use")),
        "{err}"
    );
    // Nothing half-started: Postgres (started in parallel) was stopped and no state is left.
    assert!(stack.files().read_state().unwrap().is_none());
    assert!(NativeRuntime::processes_of_run(&stack.run_marker()).is_empty());
    stack.down(true).unwrap();
}

#[tokio::test]
async fn missing_postgres_binaries_name_the_package() {
    let (dir, stack) = isolated_stack();
    let mut config = stack.config().clone();
    config.postgres.bin_dir = dir.path().join("no-such-bin").display().to_string();
    let stack = Stack::new(config).infra_only();
    let err = format!("{:#}", stack.up().await.unwrap_err());
    assert!(err.contains("apt-get install postgresql"), "{err}");
    assert!(stack.files().read_state().unwrap().is_none());
    assert!(NativeRuntime::processes_of_run(&stack.run_marker()).is_empty());
}

#[tokio::test]
async fn corrupt_state_is_refused_by_up_and_cleared_by_down() {
    let (_dir, stack) = isolated_stack();
    stack.files().ensure_dir().unwrap();
    std::fs::write(
        stack.files().state_path(),
        "{\"version\": 1, \"services\": [",
    )
    .unwrap();
    let err = format!("{:#}", stack.up().await.unwrap_err());
    assert!(err.contains("state.json is corrupt"), "{err}");
    assert!(err.contains("cargo xtask down"), "{err}");
    let report = stack.down(false).unwrap();
    assert!(report.state_was_corrupt);
    assert!(!stack.files().state_path().exists());
}

#[tokio::test]
async fn logs_of_unknown_service_lists_known_ones() {
    let (_dir, stack) = isolated_stack();
    let err = stack.log_path("postgres").unwrap_err().to_string();
    assert!(err.contains("nothing is running"), "{err}");
    let mut state = harness::state::RunState::default();
    state.services.insert(
        "postgres".into(),
        harness::state::ServiceRecord {
            process: harness::runtime::RunningProcess {
                runtime: "native".into(),
                pid: 1,
                start_ticks: 0,
                stop_signal: harness::runtime::StopSignal::Int,
                container: None,
                fork_server: None,
            },
            port: 1,
            url: String::new(),
            log: PathBuf::from("/dev/null"),
            probe: harness::state::Probe::Postgres,
            tier: 0,
            restarts: 0,
            last_exit: None,
        },
    );
    stack.files().ensure_dir().unwrap();
    stack.files().write_state(&state).unwrap();
    let err = stack.log_path("redis").unwrap_err().to_string();
    assert_eq!(err, "unknown service 'redis'; known services: postgres");
}

/// Port of a running service of the stack.
async fn service_port(stack: &Stack, name: &str) -> u16 {
    stack
        .status()
        .await
        .unwrap()
        .expect("a running stack")
        .service(name)
        .unwrap_or_else(|| panic!("no service {name}"))
        .port
}

async fn get_object(stack: &Stack, key: &str) -> Option<Vec<u8>> {
    let config = stack.config();
    let s3 = aws::s3_client(service_port(stack, "aws").await, &config.aws.region).await;
    let got = s3
        .get_object()
        .bucket(&config.aws.tenant_bucket)
        .key(key)
        .send()
        .await
        .ok()?;
    Some(got.body.collect().await.unwrap().into_bytes().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_files_survive_down_up_and_an_emulator_crash_and_go_with_volumes() {
    let (_dir, stack) = isolated_stack();
    let stack = common::Running(stack);
    stack.up().await.expect("up");
    let config = stack.config().clone();
    let key = "tenants/t-000000/user/report.pdf";
    let body = format!("tenant file {}", uuid_like());
    let s3 = aws::s3_client(service_port(&stack, "aws").await, &config.aws.region).await;
    s3.put_object()
        .bucket(&config.aws.tenant_bucket)
        .key(key)
        .body(body.clone().into_bytes().into())
        .send()
        .await
        .unwrap();

    // down + up: the object is still there (as the Postgres rows referencing it are).
    stack.down(false).unwrap();
    stack.up().await.expect("second up");
    assert_eq!(
        get_object(&stack, key).await.as_deref(),
        Some(body.as_bytes()),
        "tenant file lost across down/up"
    );

    // kill -9 of the emulator (no clean shutdown), then up: still there.
    let state = stack.files().read_state().unwrap().unwrap();
    let aws_pid = state.services["aws"].process.pid;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(aws_pid),
        nix::sys::signal::SIGKILL,
    )
    .unwrap();
    let crashed = stack.status().await.unwrap().unwrap();
    let waited = std::time::Instant::now();
    let mut crashed = crashed;
    while crashed.service("aws").unwrap().state != ServiceState::Crashed {
        assert!(waited.elapsed() < Duration::from_secs(10), "kill not seen");
        tokio::time::sleep(Duration::from_millis(100)).await;
        crashed = stack.status().await.unwrap().unwrap();
    }
    stack.up().await.expect("up after the emulator crashed");
    assert_eq!(
        get_object(&stack, key).await.as_deref(),
        Some(body.as_bytes()),
        "tenant file lost when the emulator crashed"
    );

    // down --volumes drops the files with the database.
    stack.down(true).unwrap();
    assert!(!harness::services::aws::data_dir(&config).exists());
    stack.up().await.expect("up after down --volumes");
    assert_eq!(
        get_object(&stack, key).await,
        None,
        "file survived --volumes"
    );
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    )
}
