//! compose/docker-compose.yml brought up with the machine's docker-compose (1.29 here) under a
//! unique project name, free 127.0.0.1 ports and generated secrets: the reference multi-tenant
//! image serves tenants added with its own tenantmgr (`docker-compose exec … tenantmgr.py`) after
//! it started, a login works through the published port, the e2e suite passes against it with
//! `--target`, a killed tenant worker (forked by the image's fork server) is forked again without a new
//! import while the other tenant keeps serving, and the
//! image refuses to start without a required variable. Everything goes with `down -v`.

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use harness::config::Config;
use harness::docker::images;
use harness::e2e::client::TenantClient;

/// A compose project that is taken down (volumes too) when the test ends, also on failure.
struct Project {
    name: String,
    file: PathBuf,
    env: BTreeMap<String, String>,
}

impl Project {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new("docker-compose");
        command
            .arg("-p")
            .arg(&self.name)
            .arg("-f")
            .arg(&self.file)
            .args(args)
            .envs(&self.env)
            // A developer's own compose/.env must not decide the test's ports or secrets.
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME");
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker-compose {args:?}: {e}"))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "docker-compose {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn tenantmgr(&self, args: &[&str]) -> Output {
        let mut full = vec!["exec", "-T", "langflow", "python", "/app/tenantmgr.py"];
        full.extend_from_slice(args);
        self.run(&full)
    }

    fn logs(&self) -> String {
        String::from_utf8_lossy(&self.run(&["logs", "--no-color", "--tail", "60"]).stdout)
            .into_owned()
    }
}

impl Drop for Project {
    fn drop(&mut self) {
        let _ = self.run(&["down", "-v", "--remove-orphans", "--timeout", "20"]);
    }
}

fn line_value(output: &str, label: &str) -> String {
    output
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no {label:?} line in:\n{output}"))
}

async fn status(url: &str) -> Option<u16> {
    reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

async fn wait_status(url: &str, want: u16, timeout: Duration, project: &Project) -> f64 {
    let started = Instant::now();
    loop {
        if status(url).await == Some(want) {
            return started.elapsed().as_secs_f64();
        }
        if started.elapsed() > timeout {
            panic!(
                "{url} did not answer {want} within {timeout:?}; last logs:\n{}",
                project.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn compose_file_runs_the_reference_image_end_to_end() {
    let root = common::repo_root();
    let config = Config::load(&root).unwrap();
    let docker = harness::docker::connect().await.unwrap();
    // The images are the harness's local builds; nothing is pulled by docker-compose.
    let mut env = BTreeMap::new();
    for (service, variable) in [
        ("postgres", "POSTGRES_IMAGE"),
        ("aws", "AWS_IMAGE"),
        (images::MULTI_TENANT, "LANGFLOW_MT_IMAGE"),
    ] {
        let image = images::resolve(&docker, &config, service)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        env.insert(variable.to_string(), image);
    }
    let ports = harness::net::free_ports(3).unwrap();
    env.insert("LANGFLOW_PORT".into(), ports[0].to_string());
    env.insert("POSTGRES_PORT".into(), ports[1].to_string());
    env.insert("AWS_PORT".into(), ports[2].to_string());
    env.insert("POSTGRES_PASSWORD".into(), harness::secret::password(24));
    env.insert(
        "LANGFLOW_TENANT_KEY_SEED".into(),
        harness::secret::password(48),
    );
    // Every request of the suite comes from 127.0.0.1.
    env.insert("LANGFLOW_RATE_LIMIT_PER_MINUTE".into(), "10000".into());
    let project = Project {
        name: format!("lfi-compose-{}", harness::secret::hex(4)),
        file: harness::compose::compose_path(&root),
        env,
    };
    let base = format!("http://127.0.0.1:{}", ports[0]);

    let started = Instant::now();
    project.ok(&["up", "-d"]);
    let health = wait_status(
        &format!("{base}/health"),
        200,
        Duration::from_secs(180),
        &project,
    )
    .await;
    eprintln!(
        "compose up -> /health 200 in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let _ = health;
    // Unknown tenants are 404 at the router.
    assert_eq!(status(&format!("{base}/tenant/nobody/")).await, Some(404));

    // Tenants are added after the container started: served without a restart.
    let mut schemas = BTreeMap::new();
    for prefix in ["acme", "widgetco"] {
        let out = project.tenantmgr(&["schema-add", "--prefix", prefix]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "schema-add {prefix}: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let schema = line_value(&stdout, "✅ Successfully created tenant schema:");
        assert_eq!(line_value(&stdout, "Prefix:"), prefix);
        assert_eq!(line_value(&stdout, "Schema ID:"), schema);
        harness::tenancy::naming::parse_schema_id(&schema).unwrap();
        schemas.insert(prefix, schema);
    }
    let added = Instant::now();
    // Bad input: one line on stderr, exit 1, nothing made.
    for (args, needle) in [
        (vec!["schema-add", "--prefix", "acme"], "already exists"),
        (
            vec!["schema-add", "--prefix", "bad prefix"],
            "invalid prefix",
        ),
        (
            vec![
                "user-add",
                "--schema",
                "nobody-abcdef",
                "--username",
                "x@y.z",
            ],
            "unknown schema",
        ),
    ] {
        let out = project.tenantmgr(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
    let list = project.tenantmgr(&["schema-list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    let mut tenants = Vec::new();
    for (prefix, schema) in &schemas {
        let mut passwords = Vec::new();
        for username in [
            format!("admin@{prefix}.com"),
            "shared-user@example.com".into(),
        ] {
            let out = project.tenantmgr(&[
                "user-add",
                "--schema",
                schema,
                "--username",
                &username,
                "--superuser",
            ]);
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(out.status.success(), "user-add {username}: {stdout}");
            let password = line_value(&stdout, "Password:");
            assert_eq!(password.len(), 16);
            assert!(password.chars().all(|c| c.is_ascii_alphanumeric()));
            passwords.push((username, password));
        }
        tenants.push(serde_json::json!({
            "prefix": prefix,
            "username": passwords[0].0, "password": passwords[0].1,
            "shared_username": passwords[1].0, "shared_password": passwords[1].1,
        }));
    }
    for prefix in schemas.keys() {
        wait_status(
            &format!("{base}/tenant/{prefix}/health_check"),
            200,
            Duration::from_secs(300),
            &project,
        )
        .await;
    }
    eprintln!(
        "two tenants served {:.1} s after their schema-add",
        added.elapsed().as_secs_f64()
    );

    // A login through the published port, and the same credentials refused by the other tenant.
    let acme = &tenants[0];
    let (username, password) = (
        acme["username"].as_str().unwrap(),
        acme["password"].as_str().unwrap(),
    );
    let answer = TenantClient::new(&format!("{base}/tenant/acme/"))
        .login(username, password)
        .await
        .unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.body.contains("access_token"), "{}", answer.body);
    let answer = TenantClient::new(&format!("{base}/tenant/widgetco/"))
        .login(username, password)
        .await
        .unwrap();
    assert_eq!(answer.status, 401, "{}", answer.body);

    // The whole HTTP-level suite, as `cargo xtask e2e --target` runs it.
    let dir = tempfile::tempdir().unwrap();
    let credentials = dir.path().join("credentials.json");
    std::fs::write(
        &credentials,
        serde_json::to_vec(&serde_json::json!({ "tenants": tenants })).unwrap(),
    )
    .unwrap();
    let report = harness::e2e::run_against_target(&base, &credentials, 50)
        .await
        .unwrap();
    let failed: Vec<String> = report
        .results
        .iter()
        .filter(|r| r.outcome == harness::e2e::Outcome::Fail)
        .map(|r| format!("{} {}: {:?}", r.check, r.pair, r.evidence))
        .collect();
    assert!(failed.is_empty(), "e2e --target failed: {failed:#?}");
    let passed = report
        .results
        .iter()
        .filter(|r| r.outcome == harness::e2e::Outcome::Pass)
        .count();
    assert!(passed >= 10, "only {passed} checks passed");
    eprintln!(
        "e2e --target: {passed} passed, {} skipped",
        report.results.len() - passed
    );

    // A crashed tenant worker (forked by the image's fork server): only that tenant fails
    // meanwhile; its supervisord program notices, and it is forked again without a new import.
    let all_logs =
        || String::from_utf8_lossy(&project.run(&["logs", "--no-color"]).stdout).into_owned();
    let forked_pid = |logs: &str| -> Option<String> {
        let marker = format!("lfmt: worker {}: forked as pid ", schemas["acme"]);
        logs.lines()
            .rev()
            .find_map(|l| l.split(&marker).nth(1))
            .map(|pid| pid.trim().to_string())
    };
    let logs = all_logs();
    let pid = forked_pid(&logs).unwrap_or_else(|| panic!("acme's worker was not forked:\n{logs}"));
    let imports = |logs: &str| logs.matches("forkserver: imported Langflow").count();
    assert_eq!(imports(&logs), 1, "{logs}");
    let kill = format!("import os; os.kill({pid}, 9)");
    project.ok(&["exec", "-T", "langflow", "python3", "-c", &kill]);
    let down = status(&format!("{base}/tenant/acme/health_check")).await;
    assert!(
        matches!(down, Some(502) | Some(503)),
        "a killed worker answered {down:?}"
    );
    assert_eq!(
        status(&format!("{base}/tenant/widgetco/health_check")).await,
        Some(200)
    );
    let back = wait_status(
        &format!("{base}/tenant/acme/health_check"),
        200,
        Duration::from_secs(300),
        &project,
    )
    .await;
    eprintln!("killed worker serving again after {back:.1} s");
    let logs = all_logs();
    let again = forked_pid(&logs).expect("forked again");
    assert_ne!(again, pid, "{logs}");
    assert_eq!(imports(&logs), 1, "re-forked without a new import:\n{logs}");

    // Without a required variable the image stops at once, naming it.
    let out = project.run(&[
        "run",
        "--rm",
        "--no-deps",
        "-T",
        "-e",
        "DB_PASSWORD=",
        "langflow",
    ]);
    let stderr =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "started without DB_PASSWORD");
    assert!(stderr.contains("DB_PASSWORD is not set"), "{stderr}");
}
