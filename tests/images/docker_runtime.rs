//! The docker runtime with real containers (Postgres and the emulator from the runtime's
//! images): up publishes on 127.0.0.1 only and `status` shows containers; data (a table, a
//! tenant file) survives `down`/`up` in the run's volumes and goes with `down --volumes`; a killed
//! container is seen as crashed with the engine's exit reason and `up` repairs only it; containers
//! of a run whose state file was lost are swept by the next `up`. (The full stack with Langflow
//! containers is exercised by `cargo xtask e2e --runtime docker` in CI.)

#[path = "../common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bollard::query_parameters::{ListContainersOptionsBuilder, ListVolumesOptionsBuilder};
use harness::config::Config;
use harness::runtime::docker::{DockerRuntime, RUN_LABEL};
use harness::services::{aws, postgres::PgTarget};
use harness::stack::{ServiceState, Stack, UpOutcome};

fn docker_stack(dir: &Path) -> Stack {
    let config = Config::isolated(&common::repo_root(), &dir.join("state")).unwrap();
    let marker = harness::runtime::run_marker(&config);
    let runtime = DockerRuntime::connect(&config, &marker)
        .expect("these tests need the Docker engine (`.ci/run` has one)");
    runtime
        .check_images()
        .expect("the runtime's images (`cargo xtask images build`)");
    Stack::new(config)
        .with_runtime(Arc::new(runtime))
        .infra_only()
}

/// Containers and volumes carrying the run's label.
async fn labelled(stack: &Stack) -> (usize, usize) {
    let docker = harness::docker::connect().await.unwrap();
    let filter = HashMap::from([(
        "label".to_string(),
        vec![format!("{RUN_LABEL}={}", stack.run_marker())],
    )]);
    let containers = docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(&filter)
                .build(),
        ))
        .await
        .unwrap()
        .len();
    let volumes = docker
        .list_volumes(Some(
            ListVolumesOptionsBuilder::new().filters(&filter).build(),
        ))
        .await
        .unwrap()
        .volumes
        .unwrap_or_default()
        .len();
    (containers, volumes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_keep_data_in_volumes_repair_and_sweep() {
    let dir = tempfile::tempdir().unwrap();
    let stack = common::Running(docker_stack(dir.path()));
    let first = stack.up().await.expect("up on docker");
    assert_eq!(first.status.runtime, "docker");
    assert!(first.status.healthy(), "{:#?}", first.status);
    for name in ["postgres", "aws"] {
        let service = first.status.service(name).unwrap();
        let container = service.container.as_ref().expect("a container");
        assert!(container.image.contains("postgres") || container.image.contains("ministack"));
        assert_eq!(service.pid, 0);
        assert!(service.url.contains("127.0.0.1:"), "{}", service.url);
    }
    let pg_port = first.status.service("postgres").unwrap().port;
    let db = PgTarget::superuser(pg_port, &common::postgres_password(&stack), "langflow");
    db.connect()
        .await
        .unwrap()
        .batch_execute("CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')")
        .await
        .unwrap();
    let config = stack.config().clone();
    let s3 = aws::s3_client(
        first.status.service("aws").unwrap().port,
        &config.aws.region,
    )
    .await;
    s3.put_object()
        .bucket(&config.aws.tenant_bucket)
        .key("tenants/t-000000/file.txt")
        .body(b"tenant file".to_vec().into())
        .send()
        .await
        .unwrap();

    // down keeps the volumes; up finds the row and the file again.
    stack.down(false).unwrap();
    assert_eq!(
        labelled(&stack).await,
        (0, 2),
        "down leaves exactly the two volumes"
    );
    let second = stack.up().await.expect("second up");
    let pg_port = second.status.service("postgres").unwrap().port;
    let db = PgTarget::superuser(pg_port, &common::postgres_password(&stack), "langflow");
    let row = db
        .connect()
        .await
        .unwrap()
        .query_one("SELECT v FROM kept", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "still here");
    let aws_port = second.status.service("aws").unwrap().port;
    let s3 = aws::s3_client(aws_port, &config.aws.region).await;
    let body = s3
        .get_object()
        .bucket(&config.aws.tenant_bucket)
        .key("tenants/t-000000/file.txt")
        .send()
        .await
        .expect("the tenant file survived down/up")
        .body
        .collect()
        .await
        .unwrap()
        .into_bytes();
    assert_eq!(body.as_ref(), b"tenant file");

    // A killed container: crashed with the engine's reason; up repairs only it, same port.
    let state = stack.files().read_state().unwrap().unwrap();
    let aws_id = state.services["aws"].process.container.clone().unwrap().id;
    harness::docker::connect()
        .await
        .unwrap()
        .kill_container(
            &aws_id,
            None::<bollard::query_parameters::KillContainerOptions>,
        )
        .await
        .unwrap();
    let mut status = stack.status().await.unwrap().unwrap();
    for _ in 0..50 {
        if status.service("aws").unwrap().state == ServiceState::Crashed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        status = stack.status().await.unwrap().unwrap();
    }
    let crashed = status.service("aws").unwrap();
    assert_eq!(crashed.state, ServiceState::Crashed);
    assert!(
        crashed
            .detail
            .as_deref()
            .unwrap_or("")
            .contains("code 137 (SIGKILL)"),
        "{crashed:#?}"
    );
    let postgres_before = status.service("postgres").unwrap().container.clone();
    let repaired = stack.up().await.expect("repair");
    assert_eq!(repaired.outcome, UpOutcome::Repaired);
    assert_eq!(repaired.repaired, ["aws"]);
    assert!(repaired.status.healthy(), "{:#?}", repaired.status);
    assert_eq!(repaired.status.service("aws").unwrap().port, aws_port);
    assert_eq!(repaired.status.service("aws").unwrap().restarts, 1);
    assert_eq!(
        repaired.status.service("postgres").unwrap().container,
        postgres_before,
        "postgres was touched by the repair"
    );

    // The state file is lost while the containers run: the next up sweeps them by label first.
    std::fs::remove_file(stack.files().state_path()).unwrap();
    let fresh = stack.up().await.expect("up after a lost state file");
    assert_eq!(fresh.outcome, UpOutcome::Started);
    assert_eq!(
        labelled(&stack).await.0,
        2,
        "stale containers were not swept"
    );

    // down --volumes: nothing of the run is left on the engine.
    stack.down(true).unwrap();
    assert_eq!(labelled(&stack).await, (0, 0));
}
