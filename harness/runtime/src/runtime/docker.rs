//! The docker runtime: every managed service is a container on one user-defined network of the
//! run (services reach each other by name), with its port published on 127.0.0.1 only (an
//! ephemeral host port read back from inspect unless a fixed one is configured). Everything the
//! run creates — containers, the network, volumes — carries the run label, so `down` and the next
//! `up` find it even when the state file is lost. The engine is driven through bollard only.
//!
//! The harness's own servers (gateway, identity) stay host processes in a docker run: records
//! without a container are handed to the native runtime, and `sweep` covers both.
//!
//! The trait is synchronous (the stack calls `stop` from `down`, which also runs in `Drop`), so
//! engine calls run on a small runtime of their own and the caller waits for the answer.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::{
    ContainerCreateBody, EndpointSettings, HostConfig, NetworkCreateRequest, NetworkingConfig,
    PortBinding, VolumeCreateRequest,
};
use bollard::query_parameters::{
    CreateContainerOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
    ListVolumesOptionsBuilder, LogsOptionsBuilder, RemoveContainerOptionsBuilder,
    StatsOptionsBuilder, StopContainerOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use sha2::Digest;

use super::native::NativeRuntime;
use super::{
    CompletedRun, ContainerRef, Liveness, Placement, ProcessSpec, RunningProcess, Runtime,
    StopOutcome, StopSignal, RUN_MARKER_ENV,
};
use crate::docker::is_not_found;
use harness_core::config::Config;

/// Label carrying the run marker (the run's canonical state directory) on everything a run
/// creates.
pub const RUN_LABEL: &str = "dev.langflow-infra.run";
/// Label carrying the service name on a run's containers.
pub const SERVICE_LABEL: &str = "dev.langflow-infra.service";
/// Host name under which containers reach the harness's host servers.
pub const HOST_ALIAS: &str = "host.docker.internal";

/// Containers of one run, on the engine `DOCKER_HOST` (or the default socket) names.
pub struct DockerRuntime {
    exec: Executor,
    config: Config,
    marker: String,
    /// The run network's gateway address, once the network is known to exist (cleared by
    /// `sweep`, which removes the network).
    network_gateway: Mutex<Option<IpAddr>>,
    images: Mutex<BTreeMap<String, String>>,
}

/// A small tokio runtime of the docker runtime's own: engine calls made from synchronous code,
/// inside or outside the caller's async context.
struct Executor {
    runtime: Option<tokio::runtime::Runtime>,
    docker: Docker,
}

impl Executor {
    fn new() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("docker-runtime")
            .enable_all()
            .build()
            .context("cannot start the docker runtime's executor")?;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let _ = tx.send(engine::connect().await);
        });
        let docker = match rx.recv() {
            Ok(Ok(docker)) => docker,
            failed => {
                // Dropping a runtime inside an async context panics; let it wind down instead.
                runtime.shutdown_background();
                return Err(match failed {
                    Ok(Err(e)) => e,
                    _ => anyhow!("docker executor stopped"),
                });
            }
        };
        Ok(Self {
            runtime: Some(runtime),
            docker,
        })
    }

    /// Runs `make(docker)` on the executor and waits for its result.
    fn run<T, F, Fut>(&self, make: F) -> T
    where
        T: Send + 'static,
        F: FnOnce(Docker) -> Fut,
        Fut: Future<Output = T> + Send + 'static,
    {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let future = make(self.docker.clone());
        self.runtime
            .as_ref()
            .expect("executor runtime")
            .spawn(async move {
                let _ = tx.send(future.await);
            });
        rx.recv().expect("docker executor task dropped its result")
    }
}

impl Drop for Executor {
    fn drop(&mut self) {
        // Dropping a runtime blocks; shutdown_background is allowed inside an async context.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// Names of everything a run creates, derived from its marker.
fn run_hash(marker: &str) -> String {
    let digest = sha2::Sha256::digest(marker.as_bytes());
    digest.iter().take(5).map(|b| format!("{b:02x}")).collect()
}

/// Network of the run whose marker is `marker`.
pub fn network_name(marker: &str) -> String {
    format!("lfi-{}", run_hash(marker))
}

/// Container name of service `service` in the run `marker`.
pub fn container_name(marker: &str, service: &str) -> String {
    format!("lfi-{}-{service}", run_hash(marker))
}

/// Name of the run's volume `suffix`.
pub fn volume_name(marker: &str, suffix: &str) -> String {
    format!("lfi-{}-{suffix}", run_hash(marker))
}

fn run_filter(marker: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![format!("{RUN_LABEL}={marker}")])])
}

impl DockerRuntime {
    /// Connects to the engine (API version negotiated) for the run whose marker is `marker`.
    /// Fails with one line naming `DOCKER_HOST` / the socket when no engine answers.
    pub fn connect(config: &Config, marker: &str) -> Result<Self> {
        Ok(Self {
            exec: Executor::new()?,
            config: config.clone(),
            marker: marker.to_string(),
            network_gateway: Mutex::new(None),
            images: Mutex::new(BTreeMap::new()),
        })
    }

    /// The image a service's container runs (public image if present or pullable, else the
    /// locally built one), resolved once per run.
    pub fn image_for(&self, service: &str) -> Result<String> {
        if let Some(image) = self.images.lock().expect("images").get(service) {
            return Ok(image.clone());
        }
        let config = self.config.clone();
        let name = service.to_string();
        let image = if is_image_reference(service) {
            self.exec.run(move |docker| async move {
                engine::resolve_reference(&docker, &config, &name).await
            })?
        } else {
            self.exec
                .run(move |docker| async move { engine::resolve(&docker, &config, &name).await })?
        };
        self.images
            .lock()
            .expect("images")
            .insert(service.to_string(), image.clone());
        Ok(image)
    }

    /// The labels of image `reference` (empty when it has none) and the user it runs as
    /// (its `USER`; empty = root).
    pub fn image_labels(&self, reference: &str) -> Result<(BTreeMap<String, String>, String)> {
        let reference = reference.to_string();
        self.exec.run(move |docker| async move {
            let image = docker
                .inspect_image(&reference)
                .await
                .with_context(|| format!("cannot inspect image {reference}"))?;
            let config = image.config.unwrap_or_default();
            Ok((
                config
                    .labels
                    .map(|labels| labels.into_iter().collect())
                    .unwrap_or_default(),
                config.user.unwrap_or_default(),
            ))
        })
    }

    /// Runs `command` inside the running container `container` (as `docker exec` does) and
    /// returns its exit status and output; killed after `timeout`.
    pub fn exec_in(
        &self,
        container: &str,
        command: Vec<String>,
        timeout: Duration,
    ) -> Result<CompletedRun> {
        let container = container.to_string();
        let what = command.join(" ");
        self.exec
            .run(move |docker| async move {
                let created = docker
                    .create_exec(
                        &container,
                        bollard::exec::CreateExecOptions {
                            cmd: Some(command),
                            attach_stdout: Some(true),
                            attach_stderr: Some(true),
                            ..Default::default()
                        },
                    )
                    .await?;
                let (mut out, mut err) = (Vec::new(), Vec::new());
                let collect = async {
                    if let bollard::exec::StartExecResults::Attached { mut output, .. } =
                        docker.start_exec(&created.id, None).await?
                    {
                        while let Some(chunk) = output.next().await {
                            match chunk? {
                                bollard::container::LogOutput::StdErr { message } => {
                                    err.extend_from_slice(&message)
                                }
                                other => out.extend_from_slice(&other.into_bytes()),
                            }
                        }
                    }
                    Ok::<(), bollard::errors::Error>(())
                };
                let finished = tokio::time::timeout(timeout, collect).await;
                let status = match finished {
                    Err(_) => None,
                    Ok(result) => {
                        result?;
                        Some(docker.inspect_exec(&created.id).await?.exit_code)
                    }
                };
                Ok::<_, bollard::errors::Error>((status, out, err))
            })
            .map_err(|e| anyhow!("docker exec {what}: {}", crate::docker::one_line(&e)))
            .and_then(|(status, out, err)| {
                let Some(code) = status else {
                    bail!(
                        "docker exec {what} did not finish within {} s",
                        timeout.as_secs()
                    );
                };
                Ok(CompletedRun {
                    success: code == Some(0),
                    status: format!("exit code {}", code.unwrap_or(-1)),
                    stdout: String::from_utf8_lossy(&out).into_owned(),
                    stderr: String::from_utf8_lossy(&err).into_owned(),
                })
            })
    }

    /// Checks that every service image can be had (present, pullable or built locally).
    pub fn check_images(&self) -> Result<()> {
        let emulator = match self.config.aws.emulator {
            harness_core::config::Emulator::Ministack => "aws",
            harness_core::config::Emulator::Localstack => crate::docker::images::LOCALSTACK,
        };
        for service in ["postgres", emulator, "langflow"] {
            self.image_for(service)?;
        }
        Ok(())
    }

    /// Creates the run's network (labelled) unless it exists, and returns its gateway address:
    /// the host's address on that network, where the harness's host servers listen for
    /// containers.
    fn ensure_network(&self) -> Result<IpAddr> {
        if let Some(ip) = *self.network_gateway.lock().expect("network") {
            return Ok(ip);
        }
        let name = network_name(&self.marker);
        let marker = self.marker.clone();
        let ip = self.exec.run(move |docker| async move {
            let inspect = match docker
                .inspect_network(
                    &name,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
            {
                Ok(network) => network,
                Err(e) if is_not_found(&e) => {
                    docker
                        .create_network(NetworkCreateRequest {
                            name: name.clone(),
                            driver: Some("bridge".into()),
                            labels: Some(HashMap::from([(RUN_LABEL.to_string(), marker)])),
                            ..Default::default()
                        })
                        .await
                        .with_context(|| format!("cannot create docker network {name}"))?;
                    docker
                        .inspect_network(
                            &name,
                            None::<bollard::query_parameters::InspectNetworkOptions>,
                        )
                        .await?
                }
                Err(e) => return Err(e).context(format!("cannot inspect network {name}")),
            };
            let gateway = inspect
                .ipam
                .and_then(|ipam| ipam.config)
                .unwrap_or_default()
                .into_iter()
                .find_map(|c| c.gateway)
                .ok_or_else(|| anyhow!("docker network {name} has no gateway address"))?;
            gateway
                .parse::<IpAddr>()
                .with_context(|| format!("network {name}: gateway {gateway:?} is not an address"))
        })?;
        *self.network_gateway.lock().expect("network") = Some(ip);
        Ok(ip)
    }

    fn ensure_volume(&self, name: &str) -> Result<()> {
        let (name, marker) = (name.to_string(), self.marker.clone());
        self.exec.run(move |docker| async move {
            docker
                .create_volume(VolumeCreateRequest {
                    name: Some(name.clone()),
                    labels: Some(HashMap::from([(RUN_LABEL.to_string(), marker)])),
                    ..Default::default()
                })
                .await
                .with_context(|| format!("cannot create docker volume {name}"))?;
            Ok(())
        })
    }

    /// Removes a container by name or id, whatever its state; absent is fine.
    fn remove_container(&self, name: &str) -> Result<()> {
        let name = name.to_string();
        self.exec.run(move |docker| async move {
            match docker
                .remove_container(
                    &name,
                    Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                )
                .await
            {
                Ok(()) => Ok(()),
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(e).context(format!("cannot remove container {name}")),
            }
        })
    }

    /// Creates (not starts) the container of `spec`; returns (id, name, image).
    fn create(
        &self,
        spec: &ProcessSpec,
        name: &str,
        publish: bool,
    ) -> Result<(String, String, String)> {
        let container = spec.container.as_ref().ok_or_else(|| {
            anyhow!(
                "service {} has no container form; it runs only as a host process",
                spec.name
            )
        })?;
        let image = self.image_for(&container.image)?;
        let gateway = self.ensure_network()?;
        for (suffix, _) in &container.volumes {
            self.ensure_volume(&volume_name(&self.marker, suffix))?;
        }
        // A container of the same name is a leftover of a crashed run or a previous start.
        self.remove_container(name)?;
        let mut env: Vec<String> = container
            .env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        env.push(format!("{RUN_MARKER_ENV}={}", self.marker));
        let port_key = format!("{}/tcp", container.container_port);
        let mut binds: Vec<String> = container
            .binds
            .iter()
            .map(|(path, read_only)| {
                let path = path.display();
                if *read_only {
                    format!("{path}:{path}:ro")
                } else {
                    format!("{path}:{path}")
                }
            })
            .collect();
        binds.extend(
            container
                .volumes
                .iter()
                .map(|(suffix, target)| format!("{}:{target}", volume_name(&self.marker, suffix))),
        );
        let network = network_name(&self.marker);
        let body = ContainerCreateBody {
            image: Some(image.clone()),
            cmd: (!container.command.is_empty()).then(|| container.command.clone()),
            env: Some(env),
            user: container.user.clone(),
            labels: Some(HashMap::from([
                (RUN_LABEL.to_string(), self.marker.clone()),
                (SERVICE_LABEL.to_string(), spec.name.clone()),
            ])),
            exposed_ports: publish.then(|| vec![port_key.clone()]),
            stop_signal: Some(
                match spec.stop_signal {
                    StopSignal::Term => "SIGTERM",
                    StopSignal::Int => "SIGINT",
                }
                .to_string(),
            ),
            host_config: Some(HostConfig {
                port_bindings: publish.then(|| {
                    HashMap::from([(
                        port_key.clone(),
                        Some(vec![PortBinding {
                            host_ip: Some(harness_core::net::LOOPBACK.to_string()),
                            host_port: Some(if spec.port == 0 {
                                String::new()
                            } else {
                                spec.port.to_string()
                            }),
                        }]),
                    )])
                }),
                binds: Some(binds),
                network_mode: Some(network.clone()),
                extra_hosts: Some(vec![format!("{HOST_ALIAS}:{gateway}")]),
                // Python as PID 1 ignores SIGTERM: an init process forwards signals and reaps.
                init: Some(true),
                ..Default::default()
            }),
            networking_config: Some(NetworkingConfig {
                endpoints_config: Some(HashMap::from([(
                    network,
                    EndpointSettings {
                        aliases: Some(vec![spec.name.clone()]),
                        ..Default::default()
                    },
                )])),
            }),
            ..Default::default()
        };
        let name_owned = name.to_string();
        let id = self.exec.run(move |docker| async move {
            docker
                .create_container(
                    Some(
                        CreateContainerOptionsBuilder::new()
                            .name(&name_owned)
                            .build(),
                    ),
                    body,
                )
                .await
                .map(|r| r.id)
                .with_context(|| format!("cannot create container {name_owned}"))
        })?;
        Ok((id, name.to_string(), image))
    }

    fn start_container(&self, id: &str) -> Result<(), bollard::errors::Error> {
        let id = id.to_string();
        self.exec.run(move |docker| async move {
            docker
                .start_container(
                    &id,
                    None::<bollard::query_parameters::StartContainerOptions>,
                )
                .await
        })
    }

    fn inspect(&self, id: &str) -> Option<bollard::models::ContainerInspectResponse> {
        let id = id.to_string();
        self.exec.run(move |docker| async move {
            docker
                .inspect_container(&id, None::<InspectContainerOptions>)
                .await
                .ok()
        })
    }

    fn logs_of(&self, id: &str) -> Result<(String, String)> {
        let id = id.to_string();
        self.exec.run(move |docker| async move {
            let mut stream = docker.logs(
                &id,
                Some(LogsOptionsBuilder::new().stdout(true).stderr(true).build()),
            );
            let (mut out, mut err) = (Vec::new(), Vec::new());
            while let Some(chunk) = stream.next().await {
                match chunk? {
                    bollard::container::LogOutput::StdErr { message } => {
                        err.extend_from_slice(&message)
                    }
                    other => out.extend_from_slice(&other.into_bytes()),
                }
            }
            Ok((
                String::from_utf8_lossy(&out).into_owned(),
                String::from_utf8_lossy(&err).into_owned(),
            ))
        })
    }
}

/// Whether `image` names an image itself (`repo:tag`, `registry/repo`) rather than one of the
/// harness's services (`postgres`, `aws`, `langflow`).
pub fn is_image_reference(image: &str) -> bool {
    image.contains(':') || image.contains('/')
}

fn describe_exit(state: &bollard::models::ContainerState) -> String {
    if state.oom_killed == Some(true) {
        return "killed: out of memory (OOM)".into();
    }
    let code = state.exit_code.unwrap_or_default();
    let mut reason = match code {
        0 => "exited with code 0".to_string(),
        c if c > 128 => {
            let signal = nix::sys::signal::Signal::try_from((c - 128) as i32)
                .map(|s| s.as_str().to_string())
                .unwrap_or_else(|_| format!("signal {}", c - 128));
            format!("exited with code {c} ({signal})")
        }
        c => format!("exited with code {c}"),
    };
    if let Some(error) = state.error.as_deref().filter(|e| !e.is_empty()) {
        reason.push_str(&format!(": {error}"));
    }
    reason
}

impl Runtime for DockerRuntime {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn placement(&self) -> Placement {
        // The network is created here, before any service needs the host servers' address.
        let host_bind = self.ensure_network().ok();
        Placement {
            containers: true,
            host_alias: HOST_ALIAS.to_string(),
            host_bind,
        }
    }

    fn start(&self, spec: &ProcessSpec, _run_marker: &str) -> Result<(RunningProcess, u16)> {
        let name = container_name(&self.marker, &spec.name);
        let (id, name, image) = self.create(spec, &name, true)?;
        let port_key = format!(
            "{}/tcp",
            spec.container
                .as_ref()
                .map(|c| c.container_port)
                .unwrap_or(0)
        );
        if let Err(e) = self.start_container(&id) {
            let _ = self.remove_container(&id);
            return Err(e).context(format!("cannot start container {name}"));
        }
        let inspect = self
            .inspect(&id)
            .ok_or_else(|| anyhow!("container {name} vanished right after it started"))?;
        let port = inspect
            .network_settings
            .and_then(|n| n.ports)
            .and_then(|ports| ports.get(&port_key).cloned().flatten())
            .and_then(|bindings| bindings.into_iter().find_map(|b| b.host_port))
            .and_then(|p| p.parse::<u16>().ok());
        let port = match port {
            Some(port) => port,
            None => {
                let state = inspect.state.as_ref().map(describe_exit);
                let _ = self.remove_container(&id);
                bail!(
                    "container {name} published no port for {port_key}{}",
                    state.map(|s| format!(" ({s})")).unwrap_or_default()
                );
            }
        };
        Ok((
            RunningProcess {
                runtime: self.name().into(),
                pid: 0,
                start_ticks: 0,
                stop_signal: spec.stop_signal,
                container: Some(ContainerRef { id, name, image }),
                fork_server: None,
            },
            port,
        ))
    }

    fn run_to_completion(
        &self,
        spec: &ProcessSpec,
        _run_marker: &str,
        timeout: Duration,
    ) -> Result<CompletedRun> {
        let name = container_name(
            &self.marker,
            &format!("{}-{}", spec.name, harness_core::secret::hex(4)),
        );
        let (id, name, _) = self.create(spec, &name, false)?;
        let waited = self.start_container(&id).and_then(|()| {
            let id = id.clone();
            self.exec.run(move |docker| async move {
                let mut wait = docker
                    .wait_container(&id, None::<bollard::query_parameters::WaitContainerOptions>);
                match tokio::time::timeout(timeout, wait.next()).await {
                    Ok(_) => Ok::<bool, bollard::errors::Error>(true),
                    Err(_) => Ok(false),
                }
            })
        });
        let result = (|| {
            let finished = waited.with_context(|| format!("cannot run container {name}"))?;
            let (stdout, stderr) = self.logs_of(&id)?;
            if !finished {
                bail!(
                    "{} did not finish within {} s (killed)",
                    spec.name,
                    timeout.as_secs()
                );
            }
            let state = self
                .inspect(&id)
                .and_then(|i| i.state)
                .ok_or_else(|| anyhow!("container {name} vanished"))?;
            Ok(CompletedRun {
                success: state.exit_code == Some(0),
                status: describe_exit(&state),
                stdout,
                stderr,
            })
        })();
        let _ = self.remove_container(&id);
        result
    }

    fn liveness(&self, process: &RunningProcess) -> Liveness {
        let Some(container) = &process.container else {
            return NativeRuntime.liveness(process);
        };
        match self.inspect(&container.id).and_then(|i| i.state) {
            Some(state) if state.running == Some(true) => Liveness::Running,
            _ => Liveness::Exited,
        }
    }

    fn stop(&self, process: &RunningProcess, grace: Duration) -> Result<StopOutcome> {
        let Some(container) = &process.container else {
            return NativeRuntime.stop(process, grace);
        };
        if self.liveness(process) == Liveness::Exited {
            self.remove_container(&container.id)?;
            return Ok(StopOutcome::AlreadyExited);
        }
        let started = Instant::now();
        let id = container.id.clone();
        let secs = grace.as_secs().max(1) as i32;
        let stopped = self.exec.run(move |docker| async move {
            docker
                .stop_container(
                    &id,
                    Some(StopContainerOptionsBuilder::new().t(secs).build()),
                )
                .await
        });
        if let Err(e) = stopped {
            if !is_not_found(&e) {
                return Err(e).context(format!("cannot stop container {}", container.name));
            }
        }
        let killed = started.elapsed() >= grace;
        self.remove_container(&container.id)?;
        Ok(if killed {
            StopOutcome::Killed
        } else {
            StopOutcome::Stopped
        })
    }

    fn memory(&self, process: &RunningProcess) -> Option<super::MemoryUsage> {
        // The harness's host servers; a container's pages are the engine's to account.
        match process.container {
            None => NativeRuntime.memory(process),
            Some(_) => None,
        }
    }

    fn rss_bytes(&self, process: &RunningProcess) -> Option<u64> {
        let Some(container) = &process.container else {
            return NativeRuntime.rss_bytes(process);
        };
        let id = container.id.clone();
        self.exec.run(move |docker| async move {
            let mut stats = docker.stats(
                &id,
                Some(
                    StatsOptionsBuilder::new()
                        .stream(false)
                        .one_shot(true)
                        .build(),
                ),
            );
            let memory = stats.next().await?.ok()?.memory_stats?;
            let usage = memory.usage?;
            // What `docker stats` shows: usage without the page cache (cgroup v1 "cache",
            // v2 "inactive_file").
            let cache = memory
                .stats
                .as_ref()
                .and_then(|s| s.get("total_inactive_file").or(s.get("inactive_file")))
                .copied()
                .unwrap_or(0);
            Some(usage.saturating_sub(cache))
        })
    }

    fn env_var(&self, process: &RunningProcess, name: &str) -> Option<String> {
        let Some(container) = &process.container else {
            return NativeRuntime.env_var(process, name);
        };
        let prefix = format!("{name}=");
        self.inspect(&container.id)?
            .config?
            .env?
            .into_iter()
            .find_map(|var| var.strip_prefix(&prefix).map(str::to_string))
    }

    fn exit_reason(&self, process: &RunningProcess) -> Option<String> {
        let container = process.container.as_ref()?;
        let state = self.inspect(&container.id)?.state?;
        (state.running != Some(true)).then(|| describe_exit(&state))
    }

    fn read_log(&self, process: &RunningProcess, log: &Path) -> Result<String> {
        let Some(container) = &process.container else {
            return NativeRuntime.read_log(process, log);
        };
        match self.logs_of(&container.id) {
            Ok((out, err)) => Ok(out + &err),
            // Removed already: nothing to show.
            Err(_) => Ok(String::new()),
        }
    }

    fn read_log_streams(&self, process: &RunningProcess, log: &Path) -> Result<(String, String)> {
        let Some(container) = &process.container else {
            return NativeRuntime.read_log_streams(process, log);
        };
        Ok(self.logs_of(&container.id).unwrap_or_default())
    }

    fn sweep(&self, run_marker: &str, grace: Duration) -> usize {
        if run_marker == self.marker {
            // The network goes with the sweep: the next start creates it again.
            *self.network_gateway.lock().expect("network") = None;
        }
        let filter = run_filter(run_marker);
        let network = network_name(run_marker);
        let secs = grace.as_secs().max(1) as i32;
        self.exec.run(move |docker| async move {
            let containers = run_containers(&docker, &filter).await;
            let stops = containers.iter().filter_map(|c| c.id.clone()).map(|id| {
                let docker = docker.clone();
                async move {
                    let _ = docker
                        .stop_container(
                            &id,
                            Some(StopContainerOptionsBuilder::new().t(secs).build()),
                        )
                        .await;
                    let _ = docker
                        .remove_container(
                            &id,
                            Some(RemoveContainerOptionsBuilder::new().force(true).build()),
                        )
                        .await;
                }
            });
            futures::future::join_all(stops).await;
            let _ = docker.remove_network(&network).await;
            containers.len()
        }) + NativeRuntime::stop_run_by_marker(run_marker, grace)
    }

    fn remove_volumes(&self, run_marker: &str) -> Result<()> {
        let filter = run_filter(run_marker);
        self.exec.run(move |docker| async move {
            let volumes = docker
                .list_volumes(Some(
                    ListVolumesOptionsBuilder::new().filters(&filter).build(),
                ))
                .await
                .context("cannot list docker volumes")?
                .volumes
                .unwrap_or_default();
            for volume in volumes {
                docker
                    .remove_volume(
                        &volume.name,
                        None::<bollard::query_parameters::RemoveVolumeOptions>,
                    )
                    .await
                    .with_context(|| format!("cannot remove docker volume {}", volume.name))?;
            }
            Ok(())
        })
    }

    fn kill(&self, process: &RunningProcess) -> Result<()> {
        let Some(container) = &process.container else {
            return NativeRuntime.kill(process);
        };
        let id = container.id.clone();
        self.exec
            .run(move |docker| async move {
                docker
                    .kill_container(
                        &id,
                        Some(
                            bollard::query_parameters::KillContainerOptionsBuilder::new()
                                .signal("SIGKILL")
                                .build(),
                        ),
                    )
                    .await
            })
            .with_context(|| format!("cannot kill container {}", container.name))
    }

    fn leftovers(&self, run_marker: &str) -> Vec<String> {
        let filter = run_filter(run_marker);
        let network = network_name(run_marker);
        let mut found: Vec<String> = self.exec.run(move |docker| async move {
            let containers = run_containers(&docker, &filter).await;
            let mut found: Vec<String> = containers
                .into_iter()
                .map(|c| {
                    let name = c
                        .names
                        .and_then(|n| n.into_iter().next())
                        .unwrap_or_default();
                    format!("container {}", name.trim_start_matches('/'))
                })
                .collect();
            if docker
                .inspect_network(
                    &network,
                    None::<bollard::query_parameters::InspectNetworkOptions>,
                )
                .await
                .is_ok()
            {
                found.push(format!("network {network}"));
            }
            found
        });
        found.extend(NativeRuntime.leftovers(run_marker));
        found
    }
}

/// Every container (running or not) matching the run filter; none when the engine cannot list.
async fn run_containers(
    docker: &bollard::Docker,
    filter: &HashMap<String, Vec<String>>,
) -> Vec<bollard::models::ContainerSummary> {
    docker
        .list_containers(Some(
            ListContainersOptionsBuilder::new()
                .all(true)
                .filters(filter)
                .build(),
        ))
        .await
        .unwrap_or_default()
}

/// Engine access and image resolution (see `crate::docker`).
mod engine {
    pub use crate::docker::connect;
    pub use crate::docker::images::{resolve, resolve_reference};
}
