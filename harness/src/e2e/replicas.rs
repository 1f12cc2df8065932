//! `e2e --suite replicas`: what breaks when Langflow runs as N tasks × W workers, shown live on
//! the deployed service (image mode / `--deploy`). The service runs as its task definition says —
//! tasks from `DesiredCount` (or `--tasks`), workers from `LANGFLOW_WORKERS` (or `--workers`) —
//! behind the gateway, sticky only when the target group is. Every check has a positive control
//! (the same request where it must succeed) and prints its evidence, passing or failing:
//!
//! - `replicas/cold-start`: the service's first start on an empty tenant (a multi-tenant image:
//!   a tenant added while every task runs, so every task's workers start on it at once; a stock
//!   Langflow: the tasks' own start on the empty database) leaves exactly one superuser, no
//!   duplicate starter projects or folders, Alembic at the image's head, and no crash restart.
//! - `replicas/token`: a login through task 1; its token and its session cookie work on every
//!   task, on fresh connections (each worker).
//! - `replicas/files`: a file uploaded through task 1 reads back through every task.
//! - `replicas/build`: a flow built as the deployment's UI builds it (its event delivery)
//!   through the gateway, its events followed to the end from every task.
//! - `replicas/variables`: a Credential variable written through task 1 is decrypted by a build
//!   through every task, and again after every task has been replaced.
//! - `replicas/health`: with Postgres stopped the target group's health path turns unhealthy on
//!   every task within the target group's thresholds, and healthy again after it returns.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use super::client::{Answer, Auth, TenantClient};
use super::local::{
    finish, image_schema_add, open_stack, printed, run_tenantmgr, served_everywhere, task_urls,
    LocalOptions, LocalRun,
};
use super::{err, CheckResult, E2eReport, Outcome};
use crate::services::postgres::PgTarget;
use crate::stack::deploy::{Deployment, HealthCheck};
use crate::stack::image::ImageMode;
use crate::stack::{GatewayCommand, Stack, GATEWAY_SERVICE};
use crate::tenancy::Tenancy;

/// The tenant the suite adds to a multi-tenant image (its cold start).
pub const TENANT: &str = "replicas";
/// The user the suite adds to that tenant.
const USERNAME: &str = "replicas@example.com";
/// An ALB's health check timeout for HTTP targets (`HealthCheckTimeoutSeconds` default).
const HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one build may take (an offline one-component flow builds in well under a second).
const BUILD_TIMEOUT: Duration = Duration::from_secs(60);
/// Fresh connections per task and worker: enough to reach every worker of a task whether its
/// requests are spread round-robin (a router) or by whichever process accepts (one socket).
const TRIES_PER_WORKER: usize = 2;
/// Log lines of a process manager that mean a worker or task crashed (supervisord, uvicorn's
/// and gunicorn's multi-process supervisors).
const CRASH_MARKS: [&str; 5] = [
    "not expected",
    "Child process died",
    "died unexpectedly",
    "WORKER TIMEOUT",
    "was sent SIGKILL",
];

/// A check's outcome with its evidence: `Ok` pass, `Err` fail.
type Shown = std::result::Result<String, String>;

/// The Langflow the suite drives: where it is served, who logs in, where its tables are.
struct App {
    /// Its path on a task and on the gateway (`/tenant/replicas/`, or the root path).
    path: String,
    /// A user of it.
    username: String,
    /// Its password.
    password: String,
    /// The superuser on the database holding its tables.
    db: PgTarget,
    /// The schema holding its tables.
    schema: String,
}

/// A running replicas run: the stack, what it runs, and the app.
struct Replicas<'a> {
    stack: &'a Stack,
    deployment: Deployment,
    /// Each task's base URL (`http://127.0.0.1:<port>`), the target group's targets.
    tasks: Vec<String>,
    /// The gateway's base URL (the load balancer).
    gateway: String,
    /// Workers per task.
    workers: usize,
    /// What runs (tasks, stickiness).
    mode: ImageMode,
    app: App,
    /// How the cold start went, for its check's evidence.
    cold_start: String,
    /// The login through task 1 the checks share (Langflow limits logins per client and minute).
    session: tokio::sync::OnceCell<(String, Option<String>)>,
    /// An API key made through task 1: Langflow looks it up in the database, so it works on
    /// every task whatever their signing keys (the checks other than `token` use it, so a key
    /// mismatch shows once, in `replicas/token`).
    api_key: tokio::sync::OnceCell<String>,
}

/// Brings up the deployed service as an isolated stack, runs the replicas suite on it and tears
/// it down (unless `keep`).
pub async fn run(
    root: &std::path::Path,
    gateway: &GatewayCommand,
    options: &LocalOptions,
) -> Result<LocalRun> {
    if options.image.is_none() && options.deploy.is_none() {
        bail!("--suite replicas runs the deployed service's tasks: add --deploy [STAGE] (or --image IMAGE)");
    }
    let dir = tempfile::Builder::new()
        .prefix("lfi-replicas-")
        .tempdir()
        .context("cannot create a temp dir for the replicas stack")?;
    let (stack, _) = open_stack(root, gateway, options, dir.path(), "tenants: []\n")?;
    let up_started = Instant::now();
    let outcome = async {
        let up = stack.up().await?;
        let up_secs = up_started.elapsed().as_secs_f64();
        let setup_started = Instant::now();
        let suite = Replicas::prepare(&stack, &up, up_started).await?;
        let setup_secs = setup_started.elapsed().as_secs_f64();
        let checks_started = Instant::now();
        let results = suite.checks().await;
        Ok::<_, anyhow::Error>((
            E2eReport {
                target: suite.gateway.clone(),
                results,
                up_secs,
                setup_secs,
                checks_secs: checks_started.elapsed().as_secs_f64(),
                down_secs: 0.0,
                emulator: None,
            },
            suite.credentials(),
        ))
    }
    .await;
    finish(&stack, dir, options.keep, outcome)
}

impl<'a> Replicas<'a> {
    /// After `up`: the tasks, the app (a new tenant of a multi-tenant image — its cold start —
    /// or the stock Langflow's own superuser) and its database.
    async fn prepare(
        stack: &'a Stack,
        up: &crate::stack::UpReport,
        up_started: Instant,
    ) -> Result<Replicas<'a>> {
        let state_dir = &stack.config().state_dir;
        let mode = ImageMode::read(state_dir)?.context("the stack is not in image mode")?;
        let deployment = Deployment::read(state_dir)?.context("the run has no deployment")?;
        let tasks = task_urls(stack, &mode)?;
        let gateway_port = up
            .status
            .service(GATEWAY_SERVICE)
            .map(|s| s.port)
            .context("the gateway is not running")?;
        let workers = mode.workers_in(&deployment.env);
        let admin = Tenancy::for_running_stack(stack.config(), stack.files())?
            .admin_target()
            .clone();
        crate::progress::println(format!(
            "replicas: {} task(s) × {workers} worker(s) of {}, gateway {} (target group {}, health check {})",
            tasks.len(),
            mode.image,
            if mode.sticky { "sticky" } else { "round-robin" },
            deployment.service,
            deployment.health.path
        ));
        let (app, cold_start) = if mode.multi_tenant {
            // The cold start: a tenant added while every task runs; each task's controller
            // starts its workers on the empty tenant at the same moment.
            let added = Instant::now();
            let schema = image_schema_add(stack, TENANT)?;
            let schema_add_secs = added.elapsed().as_secs_f64();
            let path = format!("/tenant/{TENANT}/");
            served_everywhere(stack, &tasks, &path).await?;
            let cold = format!(
                "tenant {TENANT} added through task 1 (schema-add {schema_add_secs:.1} s); all {} task(s) × {workers} worker(s) served it {:.1} s after",
                tasks.len(),
                added.elapsed().as_secs_f64()
            );
            let out = run_tenantmgr(
                stack,
                vec![
                    "user-add".into(),
                    "--schema".into(),
                    schema.clone(),
                    "--username".into(),
                    USERNAME.into(),
                ],
            )?;
            let password = printed(&out, "Password")
                .context("tenantmgr user-add printed no 'Password:' line")?;
            let db = database_of_schema(&admin, &schema).await?;
            (
                App {
                    path,
                    username: USERNAME.into(),
                    password,
                    db,
                    schema,
                },
                cold,
            )
        } else {
            // A stock Langflow: the tasks started together on the empty database (`up`).
            let env = &deployment.env;
            let (Some(username), Some(password)) = (
                env.get("LANGFLOW_SUPERUSER").filter(|v| !v.is_empty()),
                env.get("LANGFLOW_SUPERUSER_PASSWORD")
                    .filter(|v| !v.is_empty()),
            ) else {
                bail!(
                    "{} gives no LANGFLOW_SUPERUSER and LANGFLOW_SUPERUSER_PASSWORD: the replicas suite logs in to a stock Langflow as its superuser; add both to the task definition",
                    deployment.service
                );
            };
            let root_path = env
                .get("LANGFLOW_ROOT_PATH")
                .map(|p| p.trim_end_matches('/').to_string())
                .unwrap_or_default();
            let (db, schema) = langflow_tables(&admin).await?;
            (
                App {
                    path: format!("{root_path}/"),
                    username: username.clone(),
                    password: password.clone(),
                    db,
                    schema,
                },
                format!(
                    "{} task(s) × {workers} worker(s) started together on the empty database; all healthy {:.1} s after up began",
                    tasks.len(),
                    up_started.elapsed().as_secs_f64()
                ),
            )
        };
        Ok(Replicas {
            stack,
            deployment,
            tasks,
            gateway: format!("http://127.0.0.1:{gateway_port}"),
            workers,
            mode,
            app,
            cold_start,
            session: tokio::sync::OnceCell::new(),
            api_key: tokio::sync::OnceCell::new(),
        })
    }

    /// The credentials a kept stack's user needs (`--keep`).
    fn credentials(&self) -> Value {
        json!({"app": self.app.path, "username": self.app.username, "password": self.app.password})
    }

    /// Fresh connections per task: each worker is reached.
    fn tries(&self) -> usize {
        TRIES_PER_WORKER * self.workers
    }

    /// A client of the app on `base` (a task or the gateway), with its own connection pool.
    fn client(&self, base: &str) -> TenantClient {
        TenantClient::new(&format!("{base}{}", self.app.path))
    }

    /// Runs every check, in an order where none disturbs the next.
    async fn checks(&self) -> Vec<CheckResult> {
        let mut results = Vec::new();
        check(&mut results, "replicas/cold-start", self.cold_start_check()).await;
        check(&mut results, "replicas/token", self.token_check()).await;
        check(&mut results, "replicas/files", self.files_check()).await;
        check(&mut results, "replicas/build", self.build_check()).await;
        check(&mut results, "replicas/variables", self.variables_check()).await;
        check(&mut results, "replicas/health", self.health_check()).await;
        results
    }

    /// The suite's login through task 1 (made once): its token and session cookie.
    async fn login(&self) -> std::result::Result<(String, Option<String>), String> {
        self.session
            .get_or_try_init(|| async {
                let (token, answer) = self.login_on(&self.tasks[0], "task 1").await?;
                Ok((token, session_cookie(&answer)))
            })
            .await
            .cloned()
    }

    /// The suite's API key (made once, through task 1).
    async fn api_key(&self) -> std::result::Result<String, String> {
        self.api_key
            .get_or_try_init(|| async {
                let (token, _) = self.login().await?;
                self.client(&self.tasks[0])
                    .create_api_key(&token, &format!("replicas-{}", crate::secret::hex(4)))
                    .await
                    .map_err(|e| format!("control: cannot make an API key through task 1: {e:#}"))
            })
            .await
            .cloned()
    }

    /// Logs in through `base` (named `what` in errors): the token and the login's answer.
    async fn login_on(
        &self,
        base: &str,
        what: &str,
    ) -> std::result::Result<(String, Answer), String> {
        let answer = self
            .client(base)
            .login(&self.app.username, &self.app.password)
            .await
            .map_err(|e| format!("control: cannot log in through {what}: {e:#}"))?;
        let token = answer.json()["access_token"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| {
                format!(
                    "control: {} cannot log in through {what}: {}",
                    self.app.username,
                    answer.evidence()
                )
            })?;
        Ok((token, answer))
    }

    async fn cold_start_check(&self) -> Shown {
        let db = self.app.db.connect().await.map_err(err)?;
        let schema = crate::sql::quote_ident(&self.app.schema);
        let mut problems = Vec::new();
        let superusers: Vec<String> = db
            .query(
                &format!(
                    "SELECT username FROM {schema}.\"user\" WHERE is_superuser ORDER BY username"
                ),
                &[],
            )
            .await
            .map_err(|e| format!("cannot read the users of {}: {e}", self.app.schema))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if superusers.len() != 1 {
            problems.push(format!(
                "{} superusers ({}), expected exactly one",
                superusers.len(),
                superusers.join(", ")
            ));
        }
        let folders = duplicates(
            &db,
            &format!("SELECT name, count(*) FROM {schema}.folder GROUP BY user_id, name HAVING count(*) > 1"),
        )
        .await?;
        if !folders.is_empty() {
            problems.push(format!("duplicate folders: {}", folders.join(", ")));
        }
        let flows = duplicates(
            &db,
            &format!(
                "SELECT f.name, count(*) FROM {schema}.flow f GROUP BY f.user_id, f.folder_id, f.name HAVING count(*) > 1"
            ),
        )
        .await?;
        if !flows.is_empty() {
            problems.push(format!(
                "duplicate flows (starter projects): {}",
                flows.join(", ")
            ));
        }
        let starters: i64 = db
            .query_one(&format!("SELECT count(*) FROM {schema}.flow"), &[])
            .await
            .map_err(|e| e.to_string())?
            .get(0);
        let versions: Vec<String> = db
            .query(
                &format!("SELECT version_num FROM {schema}.alembic_version"),
                &[],
            )
            .await
            .map_err(|e| format!("cannot read {}.alembic_version: {e}", self.app.schema))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let heads = self.alembic_heads().map_err(err)?;
        if versions.len() != 1 || !heads.contains(&versions[0]) {
            problems.push(format!(
                "Alembic at {versions:?}, the image's head is {heads:?}"
            ));
        }
        let crashes = self.crashes();
        if !crashes.is_empty() {
            problems.push(format!("crashes: {}", crashes.join(" | ")));
        }
        let seen = format!(
            "{}; superusers [{}], {} flow(s) with no duplicate, Alembic {}",
            self.cold_start,
            superusers.join(", "),
            starters,
            versions.join(",")
        );
        if problems.is_empty() {
            Ok(seen)
        } else {
            Err(format!("{}; {seen}", problems.join("; ")))
        }
    }

    /// The image's Alembic heads, asked of task 1 (Langflow's own migration scripts).
    fn alembic_heads(&self) -> Result<Vec<String>> {
        const SCRIPT: &str = include_str!("../../python/alembic_revisions.py");
        let done = self
            .stack
            .exec_in_task(1, vec!["python".into(), "-c".into(), SCRIPT.into()])?;
        if !done.success {
            bail!(
                "cannot read the image's Alembic revisions ({}): {}",
                done.status,
                done.stderr.trim()
            );
        }
        let parsed: Value = serde_json::from_str(done.stdout.trim())
            .context("the image's Alembic revisions were not JSON")?;
        Ok(parsed["heads"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|h| h.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default())
    }

    /// Restarts (the harness's records) and crash lines (the tasks' logs) of every task.
    fn crashes(&self) -> Vec<String> {
        let mut found = Vec::new();
        let Ok(state) = self.stack.running_state() else {
            return vec!["the stack's state cannot be read".into()];
        };
        for i in 1..=self.tasks.len() {
            let name = crate::stack::image::task_service(i);
            if let Some(record) = state.services.get(&name) {
                if record.restarts > 0 {
                    found.push(format!(
                        "{name} restarted {} time(s) (last: {})",
                        record.restarts,
                        record.last_exit.as_deref().unwrap_or("?")
                    ));
                }
            }
            let log = self.stack.log_text(&name).unwrap_or_default();
            for line in log
                .lines()
                .filter(|l| CRASH_MARKS.iter().any(|m| l.contains(m)))
                .take(3)
            {
                found.push(format!("{name}: {}", line.trim()));
            }
        }
        found
    }

    async fn token_check(&self) -> Shown {
        let (token, cookie) = self.login().await?;
        let cookie = cookie.ok_or("control: the login through task 1 set no session cookie")?;
        let tries = self.tries();
        let mut seen = Vec::new();
        let mut refused = Vec::new();
        for (i, url) in self.tasks.iter().enumerate() {
            let (mut bearer, mut session) = (0, 0);
            for _ in 0..tries {
                let client = self.client(url);
                for (auth, count) in [
                    (Auth::Bearer(&token), &mut bearer),
                    (Auth::Cookie(&cookie), &mut session),
                ] {
                    let answer = client
                        .get("api/v1/users/whoami", &auth)
                        .await
                        .map_err(err)?;
                    if answer.status == 200 {
                        *count += 1;
                    } else if refused.len() < 2 {
                        refused.push(format!("task {}: {}", i + 1, answer.evidence()));
                    }
                }
            }
            // Control: the token is a real one (the task that issued it takes it at least once).
            if i == 0 && bearer == 0 {
                return Err(format!(
                    "control: task 1, which issued the token, accepted it {bearer}/{tries} (bearer) and {session}/{tries} (cookie): {}",
                    refused.join("; ")
                ));
            }
            seen.push(format!(
                "task {}: bearer {bearer}/{tries}, cookie {session}/{tries}",
                i + 1
            ));
        }
        let seen = seen.join(", ");
        if refused.is_empty() {
            Ok(format!(
                "a login through task 1 works everywhere ({seen}, fresh connections)"
            ))
        } else {
            Err(format!(
                "a token issued by task 1 is refused by other tasks ({seen}): {}",
                refused.join("; ")
            ))
        }
    }

    async fn files_check(&self) -> Shown {
        let key = self.api_key().await?;
        let content = format!("replicas file {}", crate::secret::hex(8));
        let name = format!("replicas-{}.txt", crate::secret::hex(4));
        let uploaded = self
            .client(&self.tasks[0])
            .upload_file_with(&Auth::ApiKey(&key), &name, content.as_bytes(), "text/plain")
            .await
            .map_err(|e| format!("control: cannot upload through task 1: {e:#}"))?;
        let id = uploaded["id"].as_str().unwrap_or_default().to_string();
        let tries = self.tries();
        let mut seen = Vec::new();
        let mut missing = Vec::new();
        for (i, url) in self.tasks.iter().enumerate() {
            let mut read = 0;
            for _ in 0..tries {
                let answer = self
                    .client(url)
                    .get(&format!("api/v2/files/{id}"), &Auth::ApiKey(&key))
                    .await
                    .map_err(err)?;
                if answer.status == 200 && answer.body == content {
                    read += 1;
                } else if missing.len() < 2 {
                    missing.push(format!("task {}: {}", i + 1, answer.evidence()));
                }
            }
            if i == 0 && read == 0 {
                return Err(format!(
                    "control: task 1, which stored it, never read it back: {}",
                    missing.join("; ")
                ));
            }
            seen.push(format!("task {}: {read}/{tries}", i + 1));
        }
        let storage = self
            .deployment
            .env
            .get("LANGFLOW_STORAGE_TYPE")
            .map(String::as_str)
            .unwrap_or("local (default)");
        let seen = seen.join(", ");
        if missing.is_empty() {
            Ok(format!(
                "{name} uploaded through task 1 reads back everywhere ({seen}; storage {storage})"
            ))
        } else {
            Err(format!(
                "{name} uploaded through task 1 is not read through other tasks ({seen}; storage {storage}): {}",
                missing.join("; ")
            ))
        }
    }

    async fn build_check(&self) -> Shown {
        let key = self.api_key().await?;
        let config = self
            .client(&self.gateway)
            .get("api/v1/config", &Auth::ApiKey(&key))
            .await
            .map_err(err)?;
        let delivery = config.json()["event_delivery"]
            .as_str()
            .unwrap_or("streaming")
            .to_string();
        let marker = format!("replicas-build-{}", crate::secret::hex(6));
        let flow = self
            .text_flow(&key, &marker)
            .await
            .map_err(|e| format!("control: cannot create a flow: {e:#}"))?;
        // As the UI builds: through the load balancer, with the deployment's event delivery;
        // each build from a fresh connection (a new client), its stickiness cookie kept.
        let builds = self.tries() * self.tasks.len();
        let (mut followed, mut lost, mut controls) = (0, Vec::new(), 0);
        let mut unfollowed: Option<String> = None;
        for _ in 0..builds {
            let gateway = self.client(&self.gateway);
            let started = gateway
                .post_json_within(
                    &format!("api/v1/build/{flow}/flow?event_delivery={delivery}"),
                    &json!({}),
                    &Auth::ApiKey(&key),
                    BUILD_TIMEOUT,
                )
                .await
                .map_err(err)?;
            let events = if delivery == "direct" {
                Events::parse(&started.body)
            } else {
                let Some(job) = started.json()["job_id"].as_str().map(String::from) else {
                    lost.push(format!("the build started no job: {}", started.evidence()));
                    continue;
                };
                controls += 1;
                let sticky = cookie(&started, crate::gateway::STICKY_COOKIE);
                let answer = self
                    .client(&self.gateway)
                    .get_within(
                        &format!("api/v1/build/{job}/events?event_delivery={delivery}"),
                        &Auth::ApiKeyAndCookie(&key, sticky.as_deref()),
                        BUILD_TIMEOUT,
                    )
                    .await
                    .map_err(err)?;
                if answer.status != 200 {
                    if lost.len() < 2 {
                        lost.push(format!("job {job}: {}", answer.evidence()));
                    }
                    unfollowed.get_or_insert(job);
                    continue;
                }
                Events::parse(&answer.body)
            };
            if events.ended() && events.contains(&marker) {
                followed += 1;
            } else if lost.len() < 2 {
                lost.push(
                    events
                        .error()
                        .unwrap_or_else(|| format!("events {}", events.summary())),
                );
            }
        }
        let how = format!(
            "event delivery {delivery}, gateway {}",
            if self.mode.sticky {
                "sticky"
            } else {
                "round-robin"
            }
        );
        if delivery != "direct" && controls == 0 {
            return Err(format!(
                "control: no build started a job ({how}): {}",
                lost.join("; ")
            ));
        }
        if followed == builds {
            Ok(format!(
                "{followed}/{builds} builds through the gateway followed to their end ({how}{})",
                if delivery == "direct" {
                    ": events arrive in the build's own response, no job to follow on another task or worker"
                } else {
                    ""
                }
            ))
        } else if followed == 0 && delivery == "direct" {
            Err(format!(
                "control: no direct build finished ({how}): {}",
                lost.join("; ")
            ))
        } else {
            // Control: a job the gateway could not follow is there, in one process: asked of
            // every task directly (fresh connections, so each worker), one of them serves it.
            let owner = match &unfollowed {
                Some(job) => self.job_owner(&key, job, &delivery).await,
                None => None,
            };
            let Some(owner) = owner.filter(|_| unfollowed.is_some()) else {
                return Err(format!(
                    "control: {} of {builds} builds could not be followed, and no task serves the job's events directly ({how}): {}",
                    builds - followed,
                    lost.join("; ")
                ));
            };
            Err(format!(
                "{} of {builds} builds through the gateway could not be followed to their end ({how}: the job lives in the process that started it; {owner}): {}",
                builds - followed,
                lost.join("; ")
            ))
        }
    }

    /// Which task serves `job`'s events when asked directly: `job … served by task N`.
    async fn job_owner(&self, key: &str, job: &str, delivery: &str) -> Option<String> {
        for (i, url) in self.tasks.iter().enumerate() {
            for _ in 0..self.tries() {
                let answer = self
                    .client(url)
                    .get_within(
                        &format!("api/v1/build/{job}/events?event_delivery={delivery}"),
                        &Auth::ApiKey(key),
                        BUILD_TIMEOUT,
                    )
                    .await
                    .ok()?;
                if answer.status == 200 && Events::parse(&answer.body).ended() {
                    return Some(format!(
                        "job {job}'s events are served by task {} asked directly",
                        i + 1
                    ));
                }
            }
        }
        None
    }

    async fn variables_check(&self) -> Shown {
        let (token, _) = self.login().await?;
        let name = format!("REPLICAS_SECRET_{}", crate::secret::hex(4).to_uppercase());
        let value = format!("replicas-secret-{}", crate::secret::hex(12));
        self.client(&self.tasks[0])
            .create_variable(&token, &name, &value)
            .await
            .map_err(|e| {
                format!("control: cannot write a Credential variable through task 1: {e:#}")
            })?;
        let before = self.decrypted_everywhere(&name, "").await?;
        let replaced = Instant::now();
        self.stack.replace_tasks().await.map_err(err)?;
        served_everywhere(self.stack, &self.tasks_now().map_err(err)?, &self.app.path)
            .await
            .map_err(err)?;
        let replaced_secs = replaced.elapsed().as_secs_f64();
        let after = self
            .decrypted_everywhere(&name, " after every task was replaced")
            .await?;
        Ok(format!(
            "Credential {name} written through task 1 decrypts on every task ({before}); every task replaced ({replaced_secs:.0} s): {after}"
        ))
    }

    /// The current tasks' base URLs (a replaced task listens on a new port).
    fn tasks_now(&self) -> Result<Vec<String>> {
        task_urls(self.stack, &self.mode)
    }

    /// Asks every task (fresh connections) whether it can decrypt Credential variable `name`:
    /// Langflow answers a Credential's value as null but its `has_value` only when the stored
    /// ciphertext decrypts with the task's key to something non-blank. Each task is asked with
    /// a login of its own, so a token another task refuses (`replicas/token`) does not hide
    /// what this one can decrypt.
    async fn decrypted_everywhere(&self, name: &str, when: &str) -> Shown {
        let tasks = self.tasks_now().map_err(err)?;
        let tries = self.tries();
        let mut seen = Vec::new();
        let mut wrong = Vec::new();
        for (i, url) in tasks.iter().enumerate() {
            let (token, _) = self.login_on(url, &format!("task {}{when}", i + 1)).await?;
            let (mut read, mut refused) = (0, 0);
            for _ in 0..tries {
                let answer = self
                    .client(url)
                    .get("api/v1/variables/", &Auth::Bearer(&token))
                    .await
                    .map_err(err)?;
                let listed = answer
                    .json()
                    .as_array()
                    .and_then(|items| items.iter().find(|v| v["name"] == name).cloned());
                let problem = match listed {
                    Some(v) if v["has_value"] == true => {
                        read += 1;
                        None
                    }
                    Some(v) => Some(format!(
                        "task {}: has_value {} for {} {name} (its ciphertext does not decrypt with this task's LANGFLOW_SECRET_KEY)",
                        i + 1,
                        v["has_value"],
                        v["type"].as_str().unwrap_or("?"),
                    )),
                    None if answer.status == 401 || answer.status == 403 => {
                        refused += 1;
                        None
                    }
                    None if answer.status != 200 => Some(format!("task {}: {}", i + 1, answer.evidence())),
                    None => Some(format!("task {}: {name} is not listed", i + 1)),
                };
                if let Some(problem) = problem.filter(|_| wrong.len() < 2) {
                    wrong.push(problem);
                }
            }
            if i == 0 && read == 0 && when.is_empty() {
                return Err(format!(
                    "control: task 1, which stored it, cannot decrypt it: {}",
                    wrong.join("; ")
                ));
            }
            if read == 0 && refused == tries {
                wrong.push(format!(
                    "task {}: its own login's token was refused on every connection",
                    i + 1
                ));
            }
            seen.push(format!(
                "task {}: {read}/{tries}{}",
                i + 1,
                if refused > 0 {
                    format!(" ({refused} token refused by another worker)")
                } else {
                    String::new()
                }
            ));
        }
        let seen = seen.join(", ");
        if wrong.is_empty() {
            Ok(seen)
        } else {
            Err(format!(
                "the Credential variable written through task 1 cannot be decrypted{when} ({seen}): {}",
                wrong.join("; ")
            ))
        }
    }

    /// A one-component offline flow: a Text Input whose text is `text` (its output).
    async fn text_flow(&self, key: &str, text: &str) -> Result<String> {
        let client = self.client(&self.gateway);
        let all = client.get("api/v1/all", &Auth::ApiKey(key)).await?;
        let component = all
            .json()
            .as_object()
            .and_then(|categories| {
                categories
                    .values()
                    .find_map(|c| c.get("TextInput").cloned())
            })
            .with_context(|| format!("no TextInput component in api/v1/all: {}", all.evidence()))?;
        let mut node = component;
        let field = &mut node["template"]["input_value"];
        if !field.is_object() {
            bail!("the TextInput component has no input_value field");
        }
        field["value"] = json!(text);
        let id = format!("TextInput-{}", crate::secret::hex(3));
        let data = json!({
            "nodes": [{
                "id": id,
                "type": "genericNode",
                "position": {"x": 0, "y": 0},
                "data": {"id": id, "type": "TextInput", "node": node},
            }],
            "edges": [],
        });
        client
            .create_flow_with(
                &Auth::ApiKey(key),
                &format!("replicas-{}", crate::secret::hex(4)),
                &data,
            )
            .await
    }

    async fn health_check(&self) -> Shown {
        let health = self.deployment.health.clone();
        let tasks = self.tasks_now().map_err(err)?;
        // Control: every task is healthy before the fault.
        for (i, url) in tasks.iter().enumerate() {
            let status = probe(url, &health.path).await;
            if !status.is_some_and(|s| health.matches(s)) {
                return Err(format!(
                    "control: task {} answers GET {} with {} before Postgres is stopped (matcher {})",
                    i + 1,
                    health.path,
                    shown(status),
                    health.matcher
                ));
            }
        }
        let state = self.stack.running_state().map_err(err)?;
        let postgres = state
            .services
            .get("postgres")
            .ok_or("the run has no postgres service")?
            .process
            .clone();
        let down = {
            // The state lock keeps the supervisor from starting Postgres again meanwhile.
            let _lock = self.stack.files().lock().map_err(err)?;
            self.stack
                .runtime()
                .stop(&postgres, Duration::from_secs(10))
                .map_err(err)?;
            watch(&tasks, &health, false).await
        };
        // Postgres back (the repair `up` does; tasks are left alone).
        self.stack.up().await.map_err(err)?;
        let up = watch(&tasks, &health, true).await;
        let window = format!(
            "interval {} s, unhealthy after {}, healthy after {}",
            health.interval_secs, health.unhealthy, health.healthy
        );
        match (down, up) {
            (Ok(down), Ok(up)) => Ok(format!(
                "GET {} with Postgres stopped: {down}; back: {up} ({window})",
                health.path
            )),
            (Err(down), up) => Err(format!(
                "GET {} stays healthy with Postgres stopped: {down}; the load balancer keeps sending requests to tasks that cannot serve them ({window}){}",
                health.path,
                up.err().map(|e| format!("; after: {e}")).unwrap_or_default()
            )),
            (Ok(down), Err(up)) => Err(format!(
                "GET {} turned unhealthy ({down}) but not healthy again after Postgres returned: {up} ({window})",
                health.path
            )),
        }
    }
}

/// Runs one check and records it with its evidence, passing or failing.
async fn check(
    results: &mut Vec<CheckResult>,
    name: &str,
    run: impl std::future::Future<Output = Shown>,
) {
    let started = Instant::now();
    let (outcome, evidence) = match run.await {
        Ok(evidence) => (Outcome::Pass, evidence),
        Err(evidence) => (Outcome::Fail, evidence),
    };
    crate::progress::println(format!(
        "{:<5} {name}: {evidence}",
        if outcome == Outcome::Pass {
            "pass"
        } else {
            "FAIL"
        }
    ));
    results.push(CheckResult {
        check: name.into(),
        pair: TENANT.into(),
        outcome,
        ms: started.elapsed().as_secs_f64() * 1000.0,
        evidence: Some(evidence),
    });
}

/// The login's session cookie (`access_token_lf…=<token>`) as a browser sends it back.
fn session_cookie(login: &Answer) -> Option<String> {
    cookie(login, "access_token_lf")
}

/// The first cookie `answer` sets whose name starts with `prefix`, as `name=value` (what a
/// browser sends back).
fn cookie(answer: &Answer, prefix: &str) -> Option<String> {
    answer.set_cookies.iter().find_map(|c| {
        let pair = c.split(';').next()?.trim();
        pair.starts_with(prefix).then(|| pair.to_string())
    })
}

/// `name (count)` of each row of a duplicate query.
async fn duplicates(
    db: &tokio_postgres::Client,
    sql: &str,
) -> std::result::Result<Vec<String>, String> {
    Ok(db
        .query(sql, &[])
        .await
        .map_err(|e| format!("{sql}: {e}"))?
        .iter()
        .map(|r| format!("{} ×{}", r.get::<_, String>(0), r.get::<_, i64>(1)))
        .collect())
}

/// The database holding `schema` (a tenant's), as the superuser.
async fn database_of_schema(admin: &PgTarget, schema: &str) -> Result<PgTarget> {
    for database in databases(admin).await? {
        let target = PgTarget {
            database: database.clone(),
            ..admin.clone()
        };
        let db = target.connect().await?;
        if db
            .query_opt("SELECT 1 FROM pg_namespace WHERE nspname = $1", &[&schema])
            .await?
            .is_some()
        {
            return Ok(target);
        }
    }
    bail!("no database of the stack holds schema {schema}")
}

/// Where a stock Langflow keeps its tables: the one schema of the stack's databases with
/// Langflow's `alembic_version` and `user` tables.
async fn langflow_tables(admin: &PgTarget) -> Result<(PgTarget, String)> {
    let mut found = Vec::new();
    for database in databases(admin).await? {
        let target = PgTarget {
            database: database.clone(),
            ..admin.clone()
        };
        let db = target.connect().await?;
        for row in db
            .query(
                "SELECT a.table_schema FROM information_schema.tables a JOIN information_schema.tables u \
                 ON u.table_schema = a.table_schema AND u.table_name = 'user' WHERE a.table_name = 'alembic_version'",
                &[],
            )
            .await?
        {
            found.push((target.clone(), row.get::<_, String>(0)));
        }
    }
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => bail!("no database of the stack holds Langflow's tables: did the tasks reach the stack's Postgres (LANGFLOW_DATABASE_URL)?"),
        _ => bail!(
            "Langflow's tables are in several places ({}): the replicas suite needs one",
            found
                .iter()
                .map(|(t, s)| format!("{}.{s}", t.database))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The stack's databases (not templates).
async fn databases(admin: &PgTarget) -> Result<Vec<String>> {
    let db = admin.connect().await?;
    Ok(db
        .query(
            "SELECT datname FROM pg_database WHERE NOT datistemplate ORDER BY datname",
            &[],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

/// One health check as the target group makes it: the status, or `None` (no answer in time).
async fn probe(url: &str, path: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(HEALTH_CHECK_TIMEOUT)
        .build()
        .ok()?;
    client
        .get(format!("{url}{path}"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}

fn shown(status: Option<u16>) -> String {
    status.map_or("no answer".into(), |s| s.to_string())
}

/// Watches every task's health path until each has answered `healthy` (inside the matcher) or
/// unhealthy (outside it, or no answer) the target group's threshold of times in a row. Checks
/// are made a second apart at most (the target group's interval keeps its clock: a task must
/// turn within one interval plus its threshold's checks). `Ok` with each task's time, or `Err`
/// naming the tasks that did not turn and what they answered.
async fn watch(tasks: &[String], health: &HealthCheck, healthy: bool) -> Shown {
    let threshold = if healthy {
        health.healthy
    } else {
        health.unhealthy
    }
    .clamp(1, 10) as usize;
    let interval = Duration::from_secs(health.interval_secs.max(1));
    let step = interval.min(Duration::from_secs(1));
    let deadline = interval + step * threshold as u32 + HEALTH_CHECK_TIMEOUT;
    let started = Instant::now();
    let mut streak = vec![0usize; tasks.len()];
    let mut turned: Vec<Option<f64>> = vec![None; tasks.len()];
    let mut last: Vec<Option<u16>> = vec![None; tasks.len()];
    while turned.iter().any(Option::is_none) && started.elapsed() < deadline {
        let answers =
            futures::future::join_all(tasks.iter().map(|url| probe(url, &health.path))).await;
        for (i, status) in answers.into_iter().enumerate() {
            if turned[i].is_some() {
                continue;
            }
            last[i] = status;
            let good = status.is_some_and(|s| health.matches(s));
            if good == healthy {
                streak[i] += 1;
                if streak[i] >= threshold {
                    turned[i] = Some(started.elapsed().as_secs_f64());
                }
            } else {
                streak[i] = 0;
            }
        }
        tokio::time::sleep(step).await;
    }
    let word = if healthy { "healthy" } else { "unhealthy" };
    let lines: Vec<String> = turned
        .iter()
        .zip(&last)
        .enumerate()
        .map(|(i, (t, status))| match t {
            Some(t) => format!("task {} {word} after {t:.1} s ({})", i + 1, shown(*status)),
            None => format!(
                "task {} not {word} within {:.0} s (still {})",
                i + 1,
                deadline.as_secs_f64(),
                shown(*status)
            ),
        })
        .collect();
    if turned.iter().all(Option::is_some) {
        Ok(lines.join(", "))
    } else {
        Err(lines.join(", "))
    }
}

/// The events of a build (Langflow's NDJSON: one `{"event": …, "data": …}` per line).
struct Events {
    names: Vec<String>,
    values: Vec<Value>,
}

impl Events {
    fn parse(body: &str) -> Self {
        let values: Vec<Value> = body
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l.trim()).ok())
            .filter(|v| v.get("event").is_some())
            .collect();
        let names = values
            .iter()
            .filter_map(|v| v["event"].as_str().map(String::from))
            .collect();
        Self { names, values }
    }

    /// Whether the build finished (`end`) without an `error` event.
    fn ended(&self) -> bool {
        self.names.iter().any(|n| n == "end") && self.error().is_none()
    }

    /// The first error event's message.
    fn error(&self) -> Option<String> {
        self.values
            .iter()
            .find(|v| v["event"] == "error" || v["data"]["build_data"]["valid"] == false)
            .map(|v| {
                let text = v["data"].to_string();
                text.chars().take(240).collect()
            })
    }

    /// Whether any event carries `text` (the flow's output).
    fn contains(&self, text: &str) -> bool {
        self.values.iter().any(|v| v.to_string().contains(text))
    }

    fn summary(&self) -> String {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for n in &self.names {
            *counts.entry(n).or_default() += 1;
        }
        counts
            .iter()
            .map(|(n, c)| format!("{n}×{c}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}
