//! `up --deploy` for real (needs the images: `cargo xtask images build`), on template sets written
//! here that share no names with `aws/` (fixtures/cfn-variants): each deployed into the run's
//! emulator and its service run as the stacks describe, asserting what each shape predicts —
//! the reference image serves a tenant through the gateway with the database user and password
//! the templates give it (an RDS-managed master secret); a set that gives the reference image no
//! key seed is refused by its contract before any task starts; a stock Langflow whose target
//! group checks `/health/` starts but is never healthy (Langflow answers that path with a
//! redirect), naming the path and the status. Nothing is left running after a refusal.

#[path = "../common/mod.rs"]
mod common;

use harness::config::Config;
use harness::deploy::ParamArg;
use harness::stack::deploy::Deployment;
use harness::stack::image::ImageRequest;
use harness::stack::Stack;

const REFERENCE_IMAGE: &str = "langflow-infra/langflow-multi-tenant:1.13.0";
const STOCK_IMAGE: &str = "langflow-infra/langflow:1.13.0";

/// An isolated docker stack that deploys `set` with `params` and runs `image`.
fn stack_for(
    dir: &std::path::Path,
    set: &str,
    params: &[&str],
    image: &str,
    tasks: Option<usize>,
) -> Stack {
    let root = common::repo_root();
    let config = Config::isolated_with_tenants(&root, dir, "tenants: []\n").unwrap();
    let args: Vec<ParamArg> = params.iter().map(|p| p.parse().unwrap()).collect();
    let plan = harness::deploy::plan(
        &root.join("fixtures/cfn-variants").join(set),
        "dev",
        &args,
        &config.aws.region,
    )
    .unwrap();
    let (stack, _) = Stack::open(config, Some("docker"), true).unwrap();
    stack
        .with_gateway_command(common::cli_servers())
        .with_image(ImageRequest {
            image: image.into(),
            tasks,
            min_tasks: 1,
            workers: None,
            fault_env: Default::default(),
            deploy: Some(plan),
        })
}

/// Takes the stack down when dropped, so a failed assertion (a panic) leaves nothing running.
struct DownOnDrop<'a>(&'a Stack);

impl Drop for DownOnDrop<'_> {
    fn drop(&mut self) {
        let _ = self.0.down(true);
    }
}

/// What of `stack`'s run is left: containers, its network, its data volumes.
fn leftovers(stack: &Stack) -> Vec<String> {
    let mut left = stack.runtime().leftovers(&stack.run_marker());
    let volumes = std::process::Command::new("docker")
        .args(["volume", "ls", "-q", "--filter"])
        .arg(format!(
            "label=dev.langflow-infra.run={}",
            stack.run_marker()
        ))
        .output()
        .expect("docker CLI");
    left.extend(
        String::from_utf8_lossy(&volumes.stdout)
            .lines()
            .map(|v| format!("volume {v}")),
    );
    left
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_managed_secret_set_serves_a_tenant_with_the_reference_image() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack_for(dir.path(), "managed-secret", &[], REFERENCE_IMAGE, Some(1));
    let guard = DownOnDrop(&stack);
    let up = stack.up().await;
    let outcome = async {
        let up = up?;
        let deployment = Deployment::read(&stack.config().state_dir)?.expect("a deployment record");
        // The names are the set's own; the values are the local stack's.
        assert_eq!(deployment.stacks[0], "variant-a-net");
        assert!(
            deployment.service.ends_with("/App"),
            "{}",
            deployment.service
        );
        assert_eq!(deployment.container, "web");
        assert_eq!(deployment.env["DB_HOST"], "postgres");
        assert_eq!(deployment.env["DB_USER"], "lf_owner");
        assert_eq!(deployment.env["DB_NAME"], "flows");
        assert!(deployment.secret_names.contains("DB_PASSWORD"));
        assert_eq!(
            deployment.env["DB_PASSWORD"].len(),
            32,
            "the managed secret's generated password"
        );
        assert!(deployment.env["LANGFLOW_OBJECT_STORAGE_BUCKET_NAME"].contains("filestore"));
        assert_eq!(deployment.health.path, "/health_check");
        assert!(deployment.sticky);
        assert_eq!(deployment.desired_count, 2);
        let listed = deployment.not_run.join("\n");
        assert!(
            listed.contains("PublicIp"),
            "the EIP the emulator does not know: {listed}"
        );
        assert!(
            listed.contains("AWS::Logs::LogGroup Logs (service)"),
            "{listed}"
        );
        assert!(
            deployment
                .notes
                .iter()
                .any(|n| n.contains("may scale 2–6 tasks")),
            "{:?}",
            deployment.notes
        );
        // The image manages tenants with the master user the templates made; a user logs in
        // through the gateway.
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let added = stack.tenantmgr(&args(&["schema-add", "--prefix", "acme", "--json"]))?;
        anyhow::ensure!(
            added.success,
            "schema-add: {}\n{}",
            added.stdout,
            added.stderr
        );
        let made: serde_json::Value = serde_json::from_str(added.stdout.trim())?;
        let schema = made["schema"].as_str().expect("schema").to_string();
        let user = stack.tenantmgr(&args(&[
            "user-add",
            "--schema",
            &schema,
            "--username",
            "admin@acme.test",
            "--password",
            "Sup3r-secret-pw",
        ]))?;
        anyhow::ensure!(user.success, "user-add: {}\n{}", user.stdout, user.stderr);
        let gateway = up
            .status
            .service("gateway")
            .map(|s| s.port)
            .expect("gateway");
        // The image picks new tenants up from its registry within seconds.
        let client = reqwest::Client::new();
        let started = std::time::Instant::now();
        let (status, body) = loop {
            let login = client
                .post(format!(
                    "http://127.0.0.1:{gateway}/tenant/acme/api/v1/login"
                ))
                .header("content-type", "application/x-www-form-urlencoded")
                .body("username=admin%40acme.test&password=Sup3r-secret-pw")
                .send()
                .await?;
            let status = login.status().as_u16();
            let body = login.text().await?;
            if (status != 404 && status != 502) || started.elapsed().as_secs() > 120 {
                break (status, body);
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        };
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("access_token"), "{body}");
        Ok::<_, anyhow::Error>(())
    }
    .await;
    drop(guard);
    outcome.unwrap();
    assert!(leftovers(&stack).is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_set_without_the_key_seed_is_refused_by_the_reference_images_contract() {
    let dir = tempfile::tempdir().unwrap();
    let params = [
        "ImageUri=@image",
        "DbHost=@postgres.host",
        "DbUser=@postgres.user",
        "DbPass=@postgres.password",
        "SigningKey=not-used",
    ];
    let stack = stack_for(dir.path(), "plain-params", &params, REFERENCE_IMAGE, None);
    let error = format!("{:#}", stack.up().await.unwrap_err());
    assert!(error.contains("LANGFLOW_TENANT_KEY_SEED"), "{error}");
    assert!(!error.contains("DB_HOST"), "the set gives DB_HOST: {error}");
    assert!(leftovers(&stack).is_empty(), "{:?}", leftovers(&stack));
    assert!(stack.status().await.unwrap().is_none(), "no run recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_health_path_answered_with_a_redirect_is_never_healthy() {
    let dir = tempfile::tempdir().unwrap();
    let key = harness::secret::password(43);
    let signing = format!("SigningKey={key}");
    let params = [
        "ImageUri=@image",
        "DbHost=@postgres.host",
        "DbUser=@postgres.user",
        "DbPass=@postgres.password",
        "Workers=1",
        signing.as_str(),
    ];
    let stack = stack_for(dir.path(), "plain-params", &params, STOCK_IMAGE, None);
    let error = format!("{:#}", stack.up().await.unwrap_err());
    assert!(
        error.contains("task-1 is unhealthy: GET /health/ answered 307"),
        "{error}"
    );
    assert!(error.contains("HealthCheckPath"), "{error}");
    assert!(!error.contains(&key), "the signing key is not in the error");
    assert!(leftovers(&stack).is_empty(), "{:?}", leftovers(&stack));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_four_stack_set_with_its_own_secret_runs_two_tasks_not_sticky() {
    let dir = tempfile::tempdir().unwrap();
    let stack = stack_for(dir.path(), "own-secret", &[], REFERENCE_IMAGE, None);
    let guard = DownOnDrop(&stack);
    let outcome = async {
        let up = stack.up().await?;
        let deployment = Deployment::read(&stack.config().state_dir)?.expect("a deployment record");
        // Four stacks in two folders, ordered by their imports; names made from the files.
        assert_eq!(deployment.stacks.len(), 4);
        assert_eq!(
            deployment.stacks.last().map(String::as_str),
            Some("langflow-dev")
        );
        // The DB user and password come from the secret the db stack made (GenerateSecretString),
        // the signing key from its own secret; DesiredCount 2 tasks; not sticky; /health.
        assert_eq!(deployment.env["DB_USER"], "flow_owner");
        assert_eq!(deployment.env["DB_PASSWORD"].len(), 30);
        assert_eq!(deployment.env["LANGFLOW_SECRET_KEY"].len(), 43);
        assert_eq!(deployment.desired_count, 2);
        assert!(!deployment.sticky);
        assert_eq!(deployment.health.path, "/health");
        let tasks = up
            .status
            .services
            .iter()
            .filter(|s| s.name.starts_with("task-"))
            .count();
        assert_eq!(tasks, 2);
        // The image manages a tenant as the secret's user (the master user made from it).
        let added =
            stack.tenantmgr(&["schema-add".to_string(), "--prefix".into(), "acme".into()])?;
        anyhow::ensure!(
            added.success,
            "schema-add: {}\n{}",
            added.stdout,
            added.stderr
        );
        Ok::<_, anyhow::Error>(())
    }
    .await;
    drop(guard);
    outcome.unwrap();
    assert!(leftovers(&stack).is_empty());
}
