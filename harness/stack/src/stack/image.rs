//! Image mode (`up --image IMAGE [--tasks N]`, `up --deploy`): the deployed image run as the
//! Fargate service runs it. The template set (`--deploy --dir`, or the project's `aws/` at stage
//! dev) is deployed into the emulator and realised ([`super::deploy`]); each task is a container
//! of the image with exactly the environment the deployed task definition gives it (`Secrets`
//! read from the emulator's Secrets Manager), its task role's credentials, and the emulator's AWS
//! endpoint and region. Nothing else is added: what the image needs and the task does not give is
//! refused as a finding before any task starts. The gateway plays the load balancer: `/tenant/*`
//! and `/health` round-robin over the tasks, sticky when the target group is; a task is ready when
//! it passes the target group's health check. Tenants are managed with the image's own tool
//! inside a task.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

use super::tenants::INSTANCE_TIER;
use super::{finish_step, Stack};
use crate::gateway::Routes;
use crate::services::{aws, postgres};
use harness_cfn::taskdef::{self, TaskShape};
use harness_core::net;
use harness_core::progress::Step;
use harness_core::state::{Probe, RunState, ServiceRecord};
use harness_runtime::runtime::docker::DockerRuntime;
use harness_runtime::runtime::{CompletedRun, ContainerSpec, ProcessSpec, StopSignal};

/// The file in the state directory that says the run is in image mode.
const MODE_FILE: &str = "image-mode.json";
/// The templates a plain `up --image` deploys (the project's), and at which stage.
pub const DEFAULT_TEMPLATES: &str = "aws";
/// The stage of a plain `up --image`.
pub const DEFAULT_STAGE: &str = "dev";
/// How long a task may take to answer its health check (image start + Langflow import).
const TASK_READY_TIMEOUT: Duration = Duration::from_secs(240);
/// How long one tenant-manager command may run (schema-add migrates a schema: ~30-60 s).
pub const TENANTMGR_TIMEOUT: Duration = Duration::from_secs(300);
/// The tenant manager of an image that does not name one in its labels.
pub const DEFAULT_TENANTMGR: &str = "python /app/tenantmgr.py";

/// What `up --image` was asked for.
#[derive(Debug, Clone)]
pub struct ImageRequest {
    /// The image (`repo:tag`), present locally or pullable.
    pub image: String,
    /// Tasks to run; `None` = the service's `DesiredCount`.
    pub tasks: Option<usize>,
    /// At least this many tasks (e2e runs two, to check that tasks agree).
    pub min_tasks: usize,
    /// Extra variables for the tasks, for tests only (the reference image's `LFMT_FAULT`).
    pub fault_env: BTreeMap<String, String>,
    /// Workers per task (`LANGFLOW_WORKERS` given to every task, as an ECS container override
    /// would); `None` = what the task definition says.
    pub workers: Option<usize>,
    /// `up --deploy`: the template set's plan, deployed into the emulator and realised (the
    /// task, its database users, its target group) instead of rendering the project's template.
    /// `image` may then be empty: the task definition's own image is used when it is here.
    pub deploy: Option<harness_cfn::deploy::Plan>,
}

/// The running image mode, as recorded in the state directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ImageMode {
    /// The image the tasks run.
    pub image: String,
    /// The user the image runs as (its `USER`; empty = root): the projected token is its own.
    #[serde(default)]
    pub user: String,
    /// How many tasks run.
    pub tasks: usize,
    /// The service the tasks run (`<stack>/<logical id>`).
    pub template: PathBuf,
    /// The command that manages tenants inside a task.
    pub tenantmgr: Vec<String>,
    /// The target group's health check path.
    pub health_path: String,
    /// Whether the gateway keeps a client on one task.
    pub sticky: bool,
    /// Extra variables given for tests.
    #[serde(default)]
    pub fault_env: BTreeMap<String, String>,
    /// The target group's health check (`up --deploy`): readiness follows its matcher and
    /// thresholds.
    #[serde(default)]
    pub health: Option<super::deploy::HealthCheck>,
    /// Whether the task comes from a deployment (`deployment.json`; always, since image mode
    /// deploys).
    #[serde(default)]
    pub deployed: bool,
    /// `LANGFLOW_WORKERS` given to every task over the task definition's (`--workers`).
    #[serde(default)]
    pub workers: Option<usize>,
    /// Whether the image manages tenants itself (it names its tenant manager in a label): one
    /// task serves many tenants at `/tenant/<prefix>/`; otherwise it is one Langflow.
    #[serde(default)]
    pub multi_tenant: bool,
    /// What the image contract warns about (the task runs, but breaks as each line says).
    #[serde(default)]
    pub warnings: Vec<String>,
}

impl ImageMode {
    fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(MODE_FILE)
    }

    /// The image mode of the run in `state_dir`, if it is in image mode.
    pub fn read(state_dir: &Path) -> Result<Option<Self>> {
        harness_core::state::read_json(&Self::path(state_dir), "image-mode record")
    }

    fn write(&self, state_dir: &Path) -> Result<()> {
        harness_core::state::write_json_0600(&Self::path(state_dir), self)
    }

    /// Forgets image mode (`down`, or an `up` without `--image`).
    pub fn remove(state_dir: &Path) -> Result<()> {
        harness_core::state::remove_if_exists(&Self::path(state_dir))
    }

    /// The tasks' service names: `task-1` …
    pub fn task_names(&self) -> Vec<String> {
        (1..=self.tasks).map(task_service).collect()
    }

    /// Workers per task: `--workers`, else the task's `LANGFLOW_WORKERS` (`env`, the deployed
    /// environment), else 1.
    pub fn workers_in(&self, env: &BTreeMap<String, String>) -> usize {
        self.workers
            .or_else(|| env.get(taskdef::WORKERS_VARIABLE)?.trim().parse().ok())
            .unwrap_or(1)
            .max(1)
    }
}

/// Service name of task `index` (1-based).
pub fn task_service(index: usize) -> String {
    format!("task-{index}")
}

/// Whether `name` is a task of image mode.
pub fn is_task(name: &str) -> bool {
    name.strip_prefix("task-")
        .is_some_and(|n| n.parse::<usize>().is_ok())
}

/// The values `up --image` gives the task: the rendered TaskDefinition and the resolved secrets.
struct RenderedTask {
    shape: TaskShape,
    env: BTreeMap<String, String>,
    /// The container definition's `Command` (empty: the image's own).
    command: Vec<String>,
}

impl Stack {
    /// The docker runtime of this run, for what only it can do (labels, exec).
    fn docker(&self) -> Result<DockerRuntime> {
        if self.runtime.name() != "docker" {
            bail!("image mode runs the image in containers; use --runtime docker");
        }
        DockerRuntime::connect(&self.config, &self.run_marker())
    }

    /// What the platform injects into a task (Fargate's task role / EKS's IRSA), with the
    /// emulator as AWS.
    fn platform_env(
        &self,
        state: &Arc<Mutex<RunState>>,
        env: &mut BTreeMap<String, String>,
    ) -> Result<()> {
        let snapshot = state.lock().expect("state lock").clone();
        let aws_port = Stack::service_port(&snapshot, "aws")?;
        let (aws_host, aws_inner) =
            self.runtime
                .placement()
                .peer("aws", aws_port, aws::CONTAINER_PORT);
        let region = self.config.aws.region.clone();
        env.insert("AWS_REGION".into(), region.clone());
        env.insert("AWS_DEFAULT_REGION".into(), region.clone());
        env.insert(
            "AWS_ENDPOINT_URL".into(),
            format!("http://{aws_host}:{aws_inner}"),
        );
        env.insert("AWS_EC2_METADATA_DISABLED".into(), "true".into());
        match self.instance_identity(state)? {
            Some(identity) => {
                env.insert("AWS_ROLE_ARN".into(), identity.role_arn);
                env.insert(
                    "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                    identity.token_file.display().to_string(),
                );
                env.insert("AWS_ROLE_SESSION_NAME".into(), "langflow-task".into());
                env.insert("AWS_ENDPOINT_URL_STS".into(), identity.sts_url);
            }
            None => {
                env.insert("AWS_ACCESS_KEY_ID".into(), aws::EMULATOR_ACCESS_KEY.into());
                env.insert(
                    "AWS_SECRET_ACCESS_KEY".into(),
                    aws::EMULATOR_SECRET_KEY.into(),
                );
            }
        }
        Ok(())
    }

    /// The deployed task (`up --deploy`) with what the platform injects: its task role's
    /// credentials when the task definition names one, else the platform identity.
    async fn deployed_task(
        &self,
        state: &Arc<Mutex<RunState>>,
        deployment: &super::deploy::Deployment,
    ) -> Result<RenderedTask> {
        let mut env = deployment.env.clone();
        self.platform_env(state, &mut env)?;
        if let Some(role) = &deployment.task_role_arn {
            let snapshot = state.lock().expect("state lock").clone();
            let aws_port = Stack::service_port(&snapshot, "aws")?;
            for name in [
                "AWS_ROLE_ARN",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
                "AWS_ROLE_SESSION_NAME",
            ] {
                env.remove(name);
            }
            env.extend(
                super::deploy::task_role_credentials(aws_port, &self.config.aws.region, role)
                    .await?,
            );
        }
        Ok(RenderedTask {
            shape: deployment.shape(),
            env,
            command: deployment.command.clone(),
        })
    }

    fn task_spec(
        &self,
        name: &str,
        rendered: &RenderedTask,
        mode: &ImageMode,
    ) -> Result<ProcessSpec> {
        let mut env = rendered.env.clone();
        env.extend(mode.fault_env.clone());
        if let Some(workers) = mode.workers {
            env.insert(taskdef::WORKERS_VARIABLE.into(), workers.to_string());
        }
        let mut binds = Vec::new();
        if let Some(token) = env.get("AWS_WEB_IDENTITY_TOKEN_FILE").cloned() {
            // As the kubelet does, the pod's projected token belongs to the pod's user: a copy of
            // the run's token for this task, owned by the image's user.
            let dir = self.config.state_dir.join("tasks").join(name);
            let copy = dir.join("token");
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
            std::fs::copy(&token, &copy).with_context(|| {
                format!("cannot copy the projected token to {}", copy.display())
            })?;
            if let Some((uid, gid)) = numeric_user(&mode.user) {
                let owner = |path: &Path| {
                    nix::unistd::chown(path, Some(uid.into()), Some(gid.into()))
                        .with_context(|| format!("cannot give {} to uid {uid}", path.display()))
                };
                owner(&dir)?;
                owner(&copy)?;
            }
            env.insert(
                "AWS_WEB_IDENTITY_TOKEN_FILE".into(),
                copy.display().to_string(),
            );
            binds.push((dir, true));
        }
        Ok(ProcessSpec {
            name: name.to_string(),
            program: PathBuf::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: self.config.state_dir.clone(),
            log: self.config.log_dir().join(format!("{name}.log")),
            run_as: None,
            stop_signal: StopSignal::Term,
            port: 0,
            container: Some(ContainerSpec {
                image: mode.image.clone(),
                command: rendered.command.clone(),
                env,
                container_port: rendered.shape.container_port,
                binds,
                volumes: Vec::new(),
                user: None,
            }),
            fork_server: None,
        })
    }

    /// Starts one task and waits for its health check.
    async fn start_task(
        &self,
        state: &Arc<Mutex<RunState>>,
        name: &str,
        rendered: &RenderedTask,
        mode: &ImageMode,
    ) -> Result<(String, f64)> {
        let step = Step::start(name);
        let result: Result<(String, f64)> = async {
            let t0 = Instant::now();
            let spec = self.task_spec(name, rendered, mode)?;
            let (process, port) = self.start_spec(&spec).await?;
            let url = format!("http://127.0.0.1:{port}");
            let record = ServiceRecord {
                process: process.clone(),
                port,
                url: url.clone(),
                log: spec.log.clone(),
                probe: Probe::Http {
                    url: format!("{url}{}", mode.health_path),
                    ca_file: None,
                },
                tier: INSTANCE_TIER,
                restarts: 0,
                last_exit: None,
            };
            self.record(state, name, record.clone())?;
            step.set_message(format!("waiting for {url}{}", mode.health_path));
            match &mode.health {
                Some(health) => {
                    target_health(name, &url, health, self.alive_fn(&process))
                        .await
                        .map_err(|e| self.with_log_tail(e, &process, &spec.log))?;
                }
                None => net::wait_until(
                    name,
                    TASK_READY_TIMEOUT,
                    Duration::from_millis(500),
                    self.alive_fn(&process),
                    || {
                        let record = record.clone();
                        async move { Ok(super::probe(&record, None, "").await.is_ok()) }
                    },
                )
                .await
                .map_err(|e| self.with_log_tail(e, &process, &spec.log))?,
            }
            Ok((name.to_string(), t0.elapsed().as_secs_f64()))
        }
        .await;
        finish_step(step, &result);
        result
    }

    /// Image mode's tier: checks the image's contract against the task, starts the tasks, then the
    /// gateway in front of them.
    pub(super) async fn start_image_tasks(
        &self,
        state: &Arc<Mutex<RunState>>,
        request: &ImageRequest,
    ) -> Result<Vec<(String, f64)>> {
        let docker = self.docker()?;
        // The template set deployed and realised first (`--deploy`'s, or the project's `aws/`
        // at stage dev for a plain `--image`): the task definition names the image when --image
        // does not.
        let plan = match &request.deploy {
            Some(plan) => plan.clone(),
            None => harness_cfn::deploy::plan(
                &self.config.root.join(DEFAULT_TEMPLATES),
                DEFAULT_STAGE,
                &[],
                &self.config.aws.region,
            )?,
        };
        let given = Some(request.image.as_str()).filter(|i| !i.is_empty());
        let deployment = self.deploy_and_realise(state, &plan, given).await?;
        deployment.write(&self.config.state_dir)?;
        // --image, else harness.toml's [deploy] images entry for the URI, else the URI itself.
        let image_name = given
            .map(String::from)
            .or_else(|| self.config.deploy.local_image(&deployment.image_uri))
            .unwrap_or_else(|| deployment.image_uri.clone());
        let image = image_name.clone();
        // Present or pulled, then its contract (labels) and user.
        let (labels, image_user) = tokio::task::spawn_blocking(move || {
            docker.image_for(&image).map_err(|e| {
                anyhow!("{e:#}\nthe task's image {image} is not here: pass --image LOCAL_IMAGE (e.g. langflow-infra/langflow-multi-tenant:1.13.0), or map its repository in harness.toml: [deploy] images = {{ \"<repository>\" = \"LOCAL_IMAGE\" }}")
            })?;
            docker.image_labels(&image)
        })
        .await??;
        let template = PathBuf::from(&deployment.service);
        let rendered = self.deployed_task(state, &deployment).await?;
        let findings = taskdef::contract_findings(
            &rendered.shape,
            labels.get(taskdef::REQUIRES_ENV_LABEL).map(String::as_str),
        );
        if findings.iter().any(|f| f.blocking) {
            let lines: Vec<String> = findings.iter().map(|f| format!("  - {f}")).collect();
            bail!(
                "{} cannot run as {} gives it ({} finding{}):\n{}\nfix the TaskDefinition's Environment/Secrets (or the image), then run `up` again",
                image_name,
                template.display(),
                findings.len(),
                if findings.len() == 1 { "" } else { "s" },
                lines.join("\n")
            );
        }
        let warnings: Vec<String> = findings.iter().map(|f| f.to_string()).collect();
        for warning in &warnings {
            harness_core::progress::println(format!("warning: {image_name}: {warning}"));
        }
        if let Some(workers) = request.workers {
            check_workers(workers, &image_name, labels.get(taskdef::MAX_WORKERS_LABEL))?;
        }
        let tasks = request
            .tasks
            .unwrap_or(rendered.shape.desired_count as usize)
            .max(request.min_tasks)
            .max(1);
        let tenantmgr = labels
            .get(taskdef::TENANTMGR_LABEL)
            .map(String::as_str)
            .unwrap_or(DEFAULT_TENANTMGR)
            .split_whitespace()
            .map(String::from)
            .collect();
        let mode = ImageMode {
            image: image_name.clone(),
            user: image_user,
            tasks,
            template,
            tenantmgr,
            health_path: rendered.shape.health_path.clone(),
            sticky: rendered.shape.sticky,
            fault_env: request.fault_env.clone(),
            health: Some(deployment.health.clone()),
            deployed: true,
            workers: request.workers,
            multi_tenant: labels.contains_key(taskdef::TENANTMGR_LABEL),
            warnings,
        };
        mode.write(&self.config.state_dir)?;
        let started = mode
            .task_names()
            .into_iter()
            .map(|name| {
                let (rendered, mode) = (&rendered, &mode);
                async move { self.start_task(state, &name, rendered, mode).await }
            })
            .collect::<Vec<_>>();
        let mut ready = futures::future::try_join_all(started).await?;
        self.write_pool_routes(state, &mode)?;
        let gateway_port = net::resolve_port("gateway", self.config.ports.gateway)?;
        ready.push(self.start_gateway(state, gateway_port).await?);
        Ok(ready)
    }

    /// The gateway's routes for image mode: every task, as the target group's targets.
    fn write_pool_routes(&self, state: &Arc<Mutex<RunState>>, mode: &ImageMode) -> Result<()> {
        let snapshot = state.lock().expect("state lock").clone();
        let pool = mode
            .task_names()
            .iter()
            .map(|name| Stack::service_port(&snapshot, name))
            .collect::<Result<Vec<u16>>>()?;
        Routes {
            routing: crate::gateway::Routing::Path,
            pool,
            sticky: mode.sticky,
            ..Routes::default()
        }
        .write(&self.routes_path())
    }

    /// Starts a crashed task again (`up` repair and the supervisor), as ECS replaces a task.
    pub(super) async fn restart_task(
        &self,
        state: &Arc<Mutex<RunState>>,
        name: &str,
    ) -> Result<(String, f64)> {
        let mode = ImageMode::read(&self.config.state_dir)?
            .ok_or_else(|| anyhow!("{name} is a task but the run is not in image mode"))?;
        let deployment = super::deploy::Deployment::read(&self.config.state_dir)?
            .ok_or_else(|| anyhow!("{name} is a task but the run has no deployment record"))?;
        let rendered = self.deployed_task(state, &deployment).await?;
        let started = self.start_task(state, name, &rendered, &mode).await?;
        // The engine gave the new container a new port: the target group follows it.
        self.write_pool_routes(state, &mode)?;
        Ok(started)
    }

    /// Replaces every task at once, as a new ECS deployment of the same task definition does
    /// (`e2e --suite replicas`: what was written through the old tasks must read back through
    /// the new ones). Under the state lock (the supervisor keeps off); a deliberate replacement
    /// is not counted as a restart. Returns when every new task passes its health check.
    pub async fn replace_tasks(&self) -> Result<Vec<(String, f64)>> {
        let mode = ImageMode::read(&self.config.state_dir)?
            .ok_or_else(|| anyhow!("the stack is not in image mode"))?;
        let deployment = super::deploy::Deployment::read(&self.config.state_dir)?
            .ok_or_else(|| anyhow!("the run has no deployment record"))?;
        let _lock = self.files.lock()?;
        let snapshot = self.running_state()?;
        for name in mode.task_names() {
            if let Some(record) = snapshot.services.get(&name) {
                self.runtime.stop(&record.process, super::STOP_GRACE)?;
            }
        }
        let state = Arc::new(Mutex::new(snapshot));
        let rendered = self.deployed_task(&state, &deployment).await?;
        let started = mode
            .task_names()
            .into_iter()
            .map(|name| {
                let (state, rendered, mode) = (&state, &rendered, &mode);
                async move { self.start_task(state, &name, rendered, mode).await }
            })
            .collect::<Vec<_>>();
        let ready = futures::future::try_join_all(started).await?;
        self.write_pool_routes(&state, &mode)?;
        Ok(ready)
    }

    /// Runs `command` in task `index` (1-based), as `docker exec` / ECS Exec would.
    pub fn exec_in_task(&self, index: usize, command: Vec<String>) -> Result<CompletedRun> {
        let state = self.running_state()?;
        let name = task_service(index);
        let task = state
            .services
            .get(&name)
            .and_then(|r| r.process.container.clone())
            .ok_or_else(|| anyhow!("{name} is not running"))?;
        self.docker()?.exec_in(&task.id, command, TENANTMGR_TIMEOUT)
    }

    /// Runs the image's tenant manager (`tenantmgr` + `args`) in the first task, as `docker exec`
    /// / ECS Exec would.
    pub fn tenantmgr(&self, args: &[String]) -> Result<CompletedRun> {
        let mode = ImageMode::read(&self.config.state_dir)?.ok_or_else(|| {
            anyhow!("the stack is not in image mode; start it with `cargo xtask up --image IMAGE`")
        })?;
        let state = self.running_state()?;
        let docker = self.docker()?;
        let task = mode
            .task_names()
            .into_iter()
            .find_map(|name| state.services.get(&name)?.process.container.clone())
            .ok_or_else(|| anyhow!("no task of {} is running", mode.image))?;
        let mut command = mode.tenantmgr.clone();
        command.extend(args.iter().cloned());
        docker.exec_in(&task.id, command, TENANTMGR_TIMEOUT)
    }
}

/// How far apart the local target group checks a starting task at most (AWS's interval is
/// 5–300 s; the thresholds are kept, the wait between checks is capped to keep `up` quick).
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How often a task that does not answer yet is tried (it is not counted against it).
const START_POLL: Duration = Duration::from_millis(250);

/// Waits until the task at `url` passes its target group's health check: `healthy` answers in a
/// row inside the matcher (checked at most [`MAX_CHECK_INTERVAL`] apart: passing is made quick).
/// Failing keeps AWS's clock: a task is unhealthy once `unhealthy` answers in a row are outside
/// the matcher *and* they span what the load balancer would take, `(unhealthy − 1) × interval`
/// — so a task answering 503 for its first seconds is starting, as on AWS, while one that keeps
/// answering a redirect (not followed) or an error is refused, naming the path and the status. A
/// task that never answers fails after the start timeout.
async fn target_health(
    name: &str,
    url: &str,
    health: &super::deploy::HealthCheck,
    mut alive: impl FnMut() -> bool,
) -> Result<()> {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(5))
        .build()?;
    let target = format!("{url}{}", health.path);
    let aws_interval = Duration::from_secs(health.interval_secs.max(1));
    let interval = aws_interval.min(MAX_CHECK_INTERVAL);
    let unhealthy = health.unhealthy.clamp(1, 10);
    let failing_for = aws_interval * (unhealthy - 1);
    let started = Instant::now();
    let (mut good, mut bad) = (0u32, 0u32);
    let mut first_bad: Option<Instant> = None;
    loop {
        if !alive() {
            bail!(
                "{name} exited before it passed the target group's health check (GET {})",
                health.path
            );
        }
        match client.get(&target).send().await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                if health.matches(status) {
                    good += 1;
                    (bad, first_bad) = (0, None);
                    if good >= health.healthy.clamp(1, 10) {
                        return Ok(());
                    }
                } else {
                    good = 0;
                    bad += 1;
                    let since = *first_bad.get_or_insert_with(Instant::now);
                    if bad >= unhealthy && since.elapsed() >= failing_for {
                        let location = answer
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .and_then(|l| l.to_str().ok())
                            .map(|l| format!(" (Location: {l})"))
                            .unwrap_or_default();
                        bail!(
                            "{name} is unhealthy: GET {} answered {status}{location} {bad} times in a row over {:.0} s, outside the target group's matcher {}; the load balancer would send it no traffic. Fix the target group's HealthCheckPath (Langflow's readiness check is /health_check) or its Matcher",
                            health.path,
                            since.elapsed().as_secs_f64(),
                            health.matcher
                        );
                    }
                }
            }
            Err(_) => {
                (good, bad, first_bad) = (0, 0, None);
            }
        }
        if started.elapsed() > TASK_READY_TIMEOUT {
            bail!(
                "{name} did not pass its health check (GET {}) within {} s",
                health.path,
                TASK_READY_TIMEOUT.as_secs()
            );
        }
        // Checks count once the app answers; until then it is only tried, more often.
        let answered = good + bad > 0;
        tokio::time::sleep(if answered { interval } else { START_POLL }).await;
    }
}

/// `--workers N` against what the image says one task can run (its [`taskdef::MAX_WORKERS_LABEL`]):
/// one line naming both and the fix.
fn check_workers(workers: usize, image: &str, max: Option<&String>) -> Result<()> {
    if workers == 0 {
        bail!("--workers 0: a task runs at least one worker; use --workers 1 or more");
    }
    let Some(max) = max else { return Ok(()) };
    let max: usize = max.trim().parse().map_err(|_| {
        anyhow!(
            "{image} has an unreadable {} label {max:?}",
            taskdef::MAX_WORKERS_LABEL
        )
    })?;
    if workers > max {
        bail!(
            "--workers {workers}: {image} runs at most {max} workers per task ({} label); use --workers {max} or fewer, or more tasks (--tasks)",
            taskdef::MAX_WORKERS_LABEL
        );
    }
    Ok(())
}

/// `uid[:gid]` of an image's numeric `USER` (`None` for root, names, or nothing).
fn numeric_user(user: &str) -> Option<(u32, u32)> {
    let (uid, gid) = user.split_once(':').unwrap_or((user, user));
    let uid: u32 = uid.parse().ok().filter(|u| *u != 0)?;
    Some((uid, gid.parse().unwrap_or(uid)))
}

/// Creates (or updates) the RDS master user: a login role that may create roles and owns the
/// database, not a superuser (RDS's master user is not one either).
pub(super) async fn ensure_master_user(
    port: u16,
    superuser_password: &str,
    database: &str,
    user: &str,
    password: &str,
) -> Result<()> {
    let admin = postgres::PgTarget::superuser(port, superuser_password, database)
        .connect()
        .await?;
    let ident = harness_core::sql::quote_ident(user);
    let literal = harness_core::sql::quote_literal(password);
    let exists = admin
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&user])
        .await?
        .is_some();
    let verb = if exists { "ALTER" } else { "CREATE" };
    admin
        .batch_execute(&format!(
            "{verb} ROLE {ident} LOGIN CREATEROLE NOSUPERUSER PASSWORD {literal}; \
             ALTER DATABASE {} OWNER TO {ident};",
            harness_core::sql::quote_ident(database)
        ))
        .await
        .with_context(|| format!("cannot create the RDS master user {user}"))?;
    Ok(())
}

/// Creates secret `name` with `value` in the emulator, or gives it `value`; returns its ARN.
pub(super) async fn put_secret(
    sm: &aws_sdk_secretsmanager::Client,
    name: &str,
    value: &str,
) -> Result<String> {
    if let Ok(found) = sm.describe_secret().secret_id(name).send().await {
        sm.put_secret_value()
            .secret_id(name)
            .secret_string(value)
            .send()
            .await
            .map_err(aws_sdk_secretsmanager::Error::from)
            .with_context(|| format!("cannot update secret {name} in the emulator"))?;
        return found.arn().map(String::from).context("secret without ARN");
    }
    let created = sm
        .create_secret()
        .name(name)
        .secret_string(value)
        .send()
        .await
        .map_err(aws_sdk_secretsmanager::Error::from)
        .with_context(|| format!("cannot create secret {name} in the emulator"))?;
    created
        .arn()
        .map(String::from)
        .context("secret without ARN")
}

/// Reads a `Secrets` entry as ECS does: the secret's string, or one key of its JSON.
pub(super) async fn read_secret(
    sm: &aws_sdk_secretsmanager::Client,
    variable: &str,
    secret: &taskdef::SecretRef,
) -> Result<String> {
    let value = sm
        .get_secret_value()
        .secret_id(&secret.arn)
        .send()
        .await
        .map_err(aws_sdk_secretsmanager::Error::from)
        .with_context(|| {
            format!(
                "{variable}: cannot read secret {} (ECS would fail to start the task)",
                secret.arn
            )
        })?;
    let text = value
        .secret_string()
        .with_context(|| format!("{variable}: secret {} has no string value", secret.arn))?;
    match &secret.json_key {
        None => Ok(text.to_string()),
        Some(key) => {
            let json: serde_json::Value = serde_json::from_str(text).with_context(|| {
                format!(
                    "{variable}: secret {} is not JSON, but ValueFrom names key {key}",
                    secret.arn
                )
            })?;
            json[key.as_str()]
                .as_str()
                .map(String::from)
                .with_context(|| format!("{variable}: secret {} has no key {key}", secret.arn))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workers_beyond_the_images_label_are_refused_in_one_line() {
        let max = Some("8".to_string());
        assert!(check_workers(8, "img", max.as_ref()).is_ok());
        let error = check_workers(9, "img", max.as_ref())
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("--workers 9: img runs at most 8 workers per task"),
            "{error}"
        );
        assert!(error.contains("use --workers 8 or fewer"), "{error}");
        assert!(!error.contains('\n'), "one line: {error}");
        assert!(check_workers(0, "img", None).is_err());
        assert!(check_workers(64, "img", None).is_ok(), "no label, no bound");
        let unreadable = Some("eight".to_string());
        assert!(check_workers(2, "img", unreadable.as_ref()).is_err());
    }

    #[test]
    fn workers_come_from_the_override_then_the_task_definition() {
        let mode = ImageMode {
            image: "img".into(),
            user: String::new(),
            tasks: 2,
            template: PathBuf::from("s/Service"),
            tenantmgr: Vec::new(),
            health_path: "/health_check".into(),
            sticky: false,
            fault_env: BTreeMap::new(),
            health: None,
            deployed: true,
            workers: None,
            multi_tenant: true,
            warnings: Vec::new(),
        };
        let env = BTreeMap::from([("LANGFLOW_WORKERS".to_string(), "3".to_string())]);
        assert_eq!(mode.workers_in(&env), 3);
        assert_eq!(mode.workers_in(&BTreeMap::new()), 1);
        let given = ImageMode {
            workers: Some(2),
            ..mode
        };
        assert_eq!(given.workers_in(&env), 2);
    }
}
