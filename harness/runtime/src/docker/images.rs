//! The images the docker runtime runs. Per service the configured public image (`[docker.images]`
//! in `harness.toml`: official Postgres, `ministackorg/ministack`, `langflowai/langflow`) is used
//! when it is present or can be pulled; otherwise an equivalent built from `compose/images/<name>/`
//! and tagged `langflow-infra/<name>:<version>`.
//!
//! Builds go through the engine API (legacy builder), in order base → postgres, aws, langflow.
//! The base `langflow-infra/debian:bookworm` is the public Debian image when it can be pulled, else
//! bootstrapped here: `debootstrap --variant=minbase bookworm` from a Debian mirror, trimmed and
//! imported as a tar stream. The host's CA bundle goes into the build context as `host-ca.crt` (pip
//! and uv behind a TLS-intercepting proxy need it); the Dockerfiles use it in a build stage only.
//! A build is skipped when the inputs digest label on the existing image equals the new one.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bollard::models::ImageInspect;
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CreateImageOptionsBuilder, ListImagesOptionsBuilder,
    RemoveImageOptionsBuilder,
};
use bollard::Docker;
use futures::StreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::{
    is_not_found, one_line, LABEL_INPUTS_DIGEST, LABEL_PROJECT, LABEL_SERVICE, LABEL_SOURCE,
    PROJECT,
};
use harness_core::config::Config;
use harness_core::progress::{self, Step};

/// Tag of the base every local image is built `FROM`.
pub const BASE_TAG: &str = "langflow-infra/debian:bookworm";
/// The services with images, in build order.
pub const SERVICES: [&str; 6] = [
    "base",
    "postgres",
    "aws",
    LOCALSTACK,
    "langflow",
    MULTI_TENANT,
];
/// LocalStack, the emulator of `[aws] emulator = "localstack"` (`compose/images/localstack/`):
/// the public `localstack/localstack:<version>`, or built here from the `localstack-core`
/// package on Debian 13 (its dependencies need Python 3.13; Debian 12 has 3.11).
pub const LOCALSTACK: &str = "localstack";
/// The reference multi-tenant image (`compose/images/langflow-multi-tenant/`): the deployed shape,
/// one container serving every tenant, built `FROM` the local Langflow image. It has no public
/// counterpart: its public and local references are the same local tag.
pub const MULTI_TENANT: &str = "langflow-multi-tenant";
/// Repository prefix of every image the harness builds (the only ones `remove` touches).
pub const LOCAL_PREFIX: &str = "langflow-infra/";
/// The Debian release the base is made from.
const SUITE: &str = "bookworm";
/// Mirror used when the host's apt sources name none for `bookworm` over plain http.
const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
const DEFAULT_SECURITY_MIRROR: &str = "http://deb.debian.org/debian-security";
/// Bumped whenever the bootstrap recipe (packages, trimming, image config) changes, so the
/// base is made again.
const BOOTSTRAP_RECIPE: &str = "debootstrap --variant=minbase bookworm; trimmed like -slim; v1";
/// A pull must get a first answer from the engine within this (without a registry it fails at
/// once); after that it may run as long as progress keeps coming.
const PULL_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
const PULL_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// Engine requests that stream for a long time (builds, imports, pulls).
const LONG_REQUEST_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// Lines of build output shown with a failure.
const TAIL_LINES: usize = 20;

/// One service's image: the public one users would pick and the local equivalent the harness
/// builds.
#[derive(Debug, Clone, Serialize)]
pub struct ImageSpec {
    /// `base`, `postgres`, `aws` or `langflow`.
    pub service: &'static str,
    /// The configured public image (`postgres:15`, …).
    pub public: String,
    /// The local build's tag, `langflow-infra/<name>:<version>`.
    pub local: String,
    /// Build context in the repository: `compose/images/<name>`.
    pub context_dir: PathBuf,
}

/// The image of every service, in build order.
pub fn image_specs(config: &Config) -> Vec<ImageSpec> {
    let images = config
        .docker
        .images
        .with_defaults(&config.aws, &config.langflow);
    let dir = config.root.join("compose").join("images");
    vec![
        ImageSpec {
            service: "base",
            public: images.base,
            local: BASE_TAG.to_string(),
            context_dir: dir.join("base"),
        },
        ImageSpec {
            service: "postgres",
            local: format!(
                "langflow-infra/postgres:{}",
                postgres_major(&images.postgres)
            ),
            public: images.postgres,
            context_dir: dir.join("postgres"),
        },
        ImageSpec {
            service: "aws",
            public: images.aws,
            local: format!("langflow-infra/ministack:{}", config.aws.ministack_version),
            context_dir: dir.join("ministack"),
        },
        ImageSpec {
            service: LOCALSTACK,
            public: images.localstack,
            local: format!(
                "langflow-infra/localstack:{}",
                config.aws.localstack_version
            ),
            context_dir: dir.join(LOCALSTACK),
        },
        ImageSpec {
            service: "langflow",
            public: images.langflow,
            local: langflow_local_tag(config),
            context_dir: dir.join("langflow"),
        },
        ImageSpec {
            service: MULTI_TENANT,
            public: multi_tenant_tag(config),
            local: multi_tenant_tag(config),
            context_dir: dir.join(MULTI_TENANT),
        },
    ]
}

/// The local Langflow image, `langflow-infra/langflow:<version>`.
fn langflow_local_tag(config: &Config) -> String {
    format!("langflow-infra/langflow:{}", config.langflow.version)
}

/// The reference multi-tenant image, `langflow-infra/langflow-multi-tenant:<version>`.
pub fn multi_tenant_tag(config: &Config) -> String {
    format!("{LOCAL_PREFIX}{MULTI_TENANT}:{}", config.langflow.version)
}

/// The image of one service (`ministack` is accepted for `aws`, `debian` for `base`).
pub fn image_spec(config: &Config, service: &str) -> Result<ImageSpec> {
    let name = canonical_service(service)?;
    Ok(image_specs(config)
        .into_iter()
        .find(|s| s.service == name)
        .expect("every canonical service has a spec"))
}

fn canonical_service(service: &str) -> Result<&'static str> {
    Ok(match service {
        "base" | "debian" => "base",
        "postgres" => "postgres",
        "aws" | "ministack" => "aws",
        "localstack" => LOCALSTACK,
        "langflow" => "langflow",
        "langflow-multi-tenant" | "multi-tenant" => MULTI_TENANT,
        other => bail!(
            "no image for service {other:?}; the services are {}",
            SERVICES.join(", ")
        ),
    })
}

/// Major version of the Postgres image (`postgres:15` → 15, `postgres:15.4-bookworm` → 15);
/// 15 when the tag names none.
fn postgres_major(public: &str) -> String {
    let (_, tag) = split_reference(public);
    let digits: String = tag
        .unwrap_or("")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    if digits.is_empty() {
        "15".into()
    } else {
        digits
    }
}

/// `repo[:tag]` → (repo, tag); a digest reference (`repo@sha256:…`) is kept whole.
fn split_reference(reference: &str) -> (&str, Option<&str>) {
    if reference.contains('@') {
        return (reference, None);
    }
    let name_start = reference.rfind('/').map_or(0, |i| i + 1);
    match reference[name_start..].rfind(':') {
        Some(i) => (
            &reference[..name_start + i],
            Some(&reference[name_start + i + 1..]),
        ),
        None => (reference, None),
    }
}

/// The image a service runs: the configured public image when present locally; else pulled, if
/// a registry answers; else the local build when present; else an error naming both and the
/// command that builds it.
pub async fn resolve(docker: &Docker, config: &Config, service: &str) -> Result<String> {
    let spec = image_spec(config, service)?;
    wait_for_running_build(config).await?;
    if inspect(docker, &spec.public).await?.is_some() {
        return Ok(spec.public);
    }
    if pull(docker, &spec.public, true).await.is_ok() {
        return Ok(spec.public);
    }
    if inspect(docker, &spec.local).await?.is_some() {
        return Ok(spec.local);
    }
    bail!(
        "image for {} not available: {} cannot be pulled and {} is not built; run `cargo xtask images build`",
        spec.service,
        spec.public,
        spec.local
    )
}

/// Waits while an image build of this cache (another `images build`, e.g. one CI started in the
/// background while it compiles and runs the native tests) is under way, so that an image is
/// never picked half-way through its rebuild: the build holds `images/build.lock` exclusively;
/// this takes it shared for a moment. Returns at once when no build runs.
pub async fn wait_for_running_build(config: &Config) -> Result<()> {
    let path = config.cache_dir.join("images").join("build.lock");
    if !path.exists() {
        return Ok(()); // no build ever ran in this cache
    }
    let open =
        || std::fs::File::open(&path).with_context(|| format!("cannot open {}", path.display()));
    let waiting = format!(
        "waiting for the image build under way to finish ({})",
        path.display()
    );
    lock_file(&path, open, LockMode::Shared, Some(waiting))
        .await
        .map(drop)
}

/// An image given by reference (`up --image`): present, or pulled when a registry answers.
/// Waits for an image build under way first ([`wait_for_running_build`]).
pub async fn resolve_reference(
    docker: &Docker,
    config: &Config,
    reference: &str,
) -> Result<String> {
    wait_for_running_build(config).await?;
    if inspect(docker, reference).await?.is_some() {
        return Ok(reference.to_string());
    }
    pull(docker, reference, true).await.map_err(|e| {
        anyhow!(
            "image {reference} is neither present nor pullable ({e:#}); build it first (for the reference image: `cargo xtask images build --only langflow-multi-tenant`)"
        )
    })?;
    Ok(reference.to_string())
}

/// The image's details, or `None` when the engine does not have it.
async fn inspect(docker: &Docker, reference: &str) -> Result<Option<ImageInspect>> {
    match docker.inspect_image(reference).await {
        Ok(image) => Ok(Some(image)),
        Err(e) if is_not_found(&e) => Ok(None),
        Err(e) => Err(anyhow!(
            "cannot inspect image {reference}: {}",
            one_line(&e)
        )),
    }
}

fn label<'a>(image: &'a ImageInspect, name: &str) -> Option<&'a str> {
    image
        .config
        .as_ref()?
        .labels
        .as_ref()?
        .get(name)
        .map(String::as_str)
}

fn image_size(image: &ImageInspect) -> u64 {
    image.size.unwrap_or(0).max(0) as u64
}

/// Pulls `reference`. The registry must answer within [`PULL_ANSWER_TIMEOUT`] (without one the
/// engine fails at once), and then keep making progress.
async fn pull(docker: &Docker, reference: &str, show: bool) -> Result<()> {
    let (name, tag) = split_reference(reference);
    let mut options = CreateImageOptionsBuilder::default().from_image(name);
    if let Some(tag) = tag {
        options = options.tag(tag);
    }
    let docker = docker.clone().with_timeout(LONG_REQUEST_TIMEOUT);
    let mut stream = docker.create_image(Some(options.build()), None, None);
    match tokio::time::timeout(PULL_ANSWER_TIMEOUT, stream.next()).await {
        Err(_) => bail!(
            "pulling {reference}: no answer within {}s",
            PULL_ANSWER_TIMEOUT.as_secs()
        ),
        Ok(Some(Err(e))) => bail!("pulling {reference}: {}", one_line(&e)),
        Ok(_) => {}
    }
    // The registry answered: this is a real pull, which may take a while.
    let step = show.then(|| Step::start(format!("pulling {reference}")));
    let result = async {
        loop {
            match tokio::time::timeout(PULL_IDLE_TIMEOUT, stream.next()).await {
                Err(_) => bail!(
                    "pulling {reference}: no progress for {}s",
                    PULL_IDLE_TIMEOUT.as_secs()
                ),
                Ok(None) => break,
                Ok(Some(Err(e))) => bail!("pulling {reference}: {}", one_line(&e)),
                Ok(Some(Ok(info))) => {
                    if let (Some(step), Some(status)) = (&step, info.status) {
                        step.set_message(status);
                    }
                }
            }
        }
        if inspect(&docker, reference).await?.is_none() {
            bail!("pulling {reference} ended without the image");
        }
        Ok(())
    }
    .await;
    if let Some(step) = step {
        match &result {
            Ok(()) => step.finish("pulled"),
            Err(_) => step.fail(),
        }
    }
    result
}

/// What one image build did.
#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    /// `base`, `postgres`, `aws` or `langflow`.
    pub service: String,
    /// The tag built (`langflow-infra/<name>:<version>`).
    pub tag: String,
    /// Nothing to do: the image's inputs digest was unchanged.
    pub skipped: bool,
    /// Wall time of the build (or of the check, when skipped).
    pub secs: f64,
    /// Image size in bytes.
    pub size_bytes: u64,
    /// How it was made: `bootstrap` (debootstrap + import) or `dockerfile`.
    pub source: String,
    /// The inputs digest the image carries.
    pub inputs_digest: String,
}

/// Builds the local images of `which` (all when empty; `base` is built first when a requested
/// image needs it and it is missing): base, then postgres, aws, langflow (and localstack) at the
/// same time, then langflow-multi-tenant. With
/// `offline_base` the base is bootstrapped from Debian packages without trying to pull the public
/// Debian image. Each build is skipped when its inputs digest is unchanged. `progress` shows a
/// spinner and the Dockerfile step lines (plain lines in CI).
pub async fn build(
    docker: &Docker,
    config: &Config,
    which: &[&str],
    offline_base: bool,
    progress: bool,
) -> Result<Vec<BuildReport>> {
    let mut wanted = Vec::new();
    for name in which {
        wanted.push(canonical_service(name)?);
    }
    if wanted.is_empty() {
        // Every image, but only the configured emulator's (`--only localstack` / `--only aws`
        // builds the other).
        let unused = match config.aws.emulator {
            harness_core::config::Emulator::Ministack => LOCALSTACK,
            harness_core::config::Emulator::Localstack => "aws",
        };
        wanted = SERVICES.iter().copied().filter(|s| *s != unused).collect();
    }
    // The multi-tenant image is built FROM the local Langflow image.
    if wanted.contains(&MULTI_TENANT)
        && !wanted.contains(&"langflow")
        && inspect(docker, &langflow_local_tag(config))
            .await?
            .is_none()
    {
        wanted.push("langflow");
    }
    let work_dir = config.cache_dir.join("images");
    std::fs::create_dir_all(&work_dir)
        .with_context(|| format!("cannot create {}", work_dir.display()))?;
    let _lock = lock(&work_dir.join("build.lock"), progress).await?;
    let docker = docker.clone().with_timeout(LONG_REQUEST_TIMEOUT);
    let specs = image_specs(config);
    let ui = Ui { progress };
    let mut reports = Vec::new();

    let base_spec = &specs[0];
    let needs_base = wanted.iter().any(|s| *s != "base");
    let base = inspect(&docker, BASE_TAG).await?;
    if wanted.contains(&"base") || (needs_base && base.is_none()) {
        reports.push(build_base(&docker, config, base_spec, offline_base, &work_dir, &ui).await?);
    }
    if !needs_base {
        return Ok(reports);
    }
    let base_id = inspect(&docker, BASE_TAG)
        .await?
        .and_then(|b| b.id)
        .ok_or_else(|| anyhow!("{BASE_TAG} is missing after its build"))?;

    let ca = host_ca_bundle(config)?;
    // Every image on the base is independent of the others: they build at the same time (their
    // downloads, apt and pip steps overlap), then the multi-tenant image on the new Langflow image.
    let mut on_base = Vec::new();
    let mut on_langflow = None;
    for spec in specs.iter().filter(|s| s.service != "base") {
        if !wanted.contains(&spec.service) {
            continue;
        }
        if spec.service == MULTI_TENANT {
            on_langflow = Some(spec);
        } else {
            on_base.push(dockerfile_build(config, spec, &base_id, &ca.1)?);
        }
    }
    let results = futures::future::join_all(
        on_base
            .iter()
            .map(|build| build.run(&docker, &work_dir, &ui)),
    )
    .await;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(report) => reports.push(report),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if let Some(spec) = on_langflow {
        let langflow = langflow_local_tag(config);
        // Its base is the Langflow image: a new Langflow image rebuilds it.
        let from_id = inspect(&docker, &langflow)
            .await?
            .and_then(|i| i.id)
            .ok_or_else(|| {
                anyhow!("{langflow} is missing; build it first: cargo xtask images build --only langflow")
            })?;
        let build = dockerfile_build(config, spec, &from_id, &ca.1)?;
        reports.push(build.run(&docker, &work_dir, &ui).await?);
    }
    Ok(reports)
}

/// The Dockerfile build of `spec` on the image `from_id`: its build arguments and the files the
/// harness injects into its context (the host's CA bundle, constraints, the fork server).
fn dockerfile_build<'a>(
    config: &Config,
    spec: &'a ImageSpec,
    from_id: &str,
    ca_bundle: &[u8],
) -> Result<DockerfileBuild<'a>> {
    let mut args = BTreeMap::from([("BASE".to_string(), BASE_TAG.to_string())]);
    let mut injected: Vec<(String, Vec<u8>)> = Vec::new();
    match spec.service {
        "postgres" => {
            args.insert("PG_MAJOR".into(), postgres_major(&spec.public));
        }
        "aws" => {
            args.insert(
                "MINISTACK_VERSION".into(),
                config.aws.ministack_version.clone(),
            );
            injected.push(("host-ca.crt".into(), ca_bundle.to_vec()));
        }
        LOCALSTACK => {
            args.insert(
                "LOCALSTACK_VERSION".into(),
                config.aws.localstack_version.clone(),
            );
            injected.push(("host-ca.crt".into(), ca_bundle.to_vec()));
            injected.push(("constraints.txt".into(), localstack_constraints(config)?));
        }
        "langflow" => {
            let version = &config.langflow.version;
            args.insert("LANGFLOW_VERSION".into(), version.clone());
            args.insert("UV_VERSION".into(), harness_core::venv::UV_VERSION.into());
            injected.push(("host-ca.crt".into(), ca_bundle.to_vec()));
            injected.push(("constraints.txt".into(), langflow_constraints(config)?));
        }
        MULTI_TENANT => {
            args.insert("LANGFLOW_IMAGE".into(), langflow_local_tag(config));
            // The same fork server the native runtime uses (one source, in harness/python/).
            injected.push((
                "langflow_forkserver.py".into(),
                harness_core::assets::FORKSERVER_SCRIPT.as_bytes().to_vec(),
            ));
        }
        _ => unreachable!("base is built on its own"),
    }
    Ok(DockerfileBuild {
        spec,
        args,
        injected,
        base_id: from_id.to_string(),
        source: "dockerfile",
    })
}

/// The pinned constraints for the configured Langflow version (`harness/constraints/`); empty
/// (no pins beyond the version itself) when the repository has none for it.
fn langflow_constraints(config: &Config) -> Result<Vec<u8>> {
    let path = config
        .root
        .join("harness")
        .join("constraints")
        .join(format!("langflow-{}.txt", config.langflow.version));
    match std::fs::read(&path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            progress::println(format!(
                "note: {} does not exist; langflow {} is installed without pinned dependencies",
                path.display(),
                config.langflow.version
            ));
            Ok(Vec::new())
        }
        Err(e) => Err(anyhow!("cannot read {}: {e}", path.display())),
    }
}

/// The pinned dependencies of `localstack-core` (`harness/constraints/localstack-<version>.txt`):
/// the package's own requirements leave them open, and today's releases of several (cbor2,
/// pyOpenSSL) break it. Missing → an error naming the file and how to make it.
fn localstack_constraints(config: &Config) -> Result<Vec<u8>> {
    let version = &config.aws.localstack_version;
    let path = config
        .root
        .join("harness")
        .join("constraints")
        .join(format!("localstack-{version}.txt"));
    std::fs::read(&path).map_err(|e| {
        anyhow!(
            "cannot read {} ({e}): localstack-core {version} needs pinned dependencies; resolve them as of its release date (uv pip compile --exclude-newer <date>) into that file",
            path.display()
        )
    })
}

/// Progress output of a build run.
struct Ui {
    progress: bool,
}

impl Ui {
    fn quiet(&self) -> bool {
        !self.progress || std::env::var_os("LANGFLOW_INFRA_QUIET").is_some()
    }

    fn step(&self, label: String) -> Option<Step> {
        (!self.quiet()).then(|| Step::start(label))
    }

    fn line(&self, line: String) {
        if !self.quiet() {
            progress::println(line);
        }
    }
}

/// The base: the public Debian image when it is present or can be pulled (and `offline` is not
/// set), else bootstrapped from Debian packages.
async fn build_base(
    docker: &Docker,
    config: &Config,
    spec: &ImageSpec,
    offline: bool,
    work_dir: &Path,
    ui: &Ui,
) -> Result<BuildReport> {
    if !offline {
        let public = match inspect(docker, &spec.public).await? {
            Some(image) => Some(image),
            None => match pull(docker, &spec.public, ui.progress).await {
                Ok(()) => inspect(docker, &spec.public).await?,
                Err(e) => {
                    ui.line(format!(
                        "note: {} cannot be pulled ({}); {BASE_TAG} is made from Debian packages instead",
                        spec.public,
                        first_line(&e.to_string())
                    ));
                    None
                }
            },
        };
        if let Some(public) = public {
            let build = DockerfileBuild {
                spec,
                args: BTreeMap::from([("DEBIAN".to_string(), spec.public.clone())]),
                injected: Vec::new(),
                base_id: public.id.unwrap_or_default(),
                source: "dockerfile",
            };
            return build.run(docker, work_dir, ui).await;
        }
    }
    bootstrap_base(docker, config, work_dir, ui).await
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

fn sha256_hex(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_le_bytes());
        hasher.update(part);
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A report for an image that was already up to date.
fn skipped_report(
    service: &str,
    tag: &str,
    image: &ImageInspect,
    started: Instant,
    digest: &str,
    ui: &Ui,
) -> BuildReport {
    let source = label(image, LABEL_SOURCE)
        .unwrap_or("dockerfile")
        .to_string();
    ui.line(format!(
        "ok   {service}: {tag} is up to date (inputs unchanged, {})",
        harness_core::tables::megabytes(Some(image_size(image)))
    ));
    BuildReport {
        service: service.to_string(),
        tag: tag.to_string(),
        skipped: true,
        secs: started.elapsed().as_secs_f64(),
        size_bytes: image_size(image),
        source,
        inputs_digest: digest.to_string(),
    }
}

/// A Dockerfile build of one image.
struct DockerfileBuild<'a> {
    spec: &'a ImageSpec,
    args: BTreeMap<String, String>,
    injected: Vec<(String, Vec<u8>)>,
    base_id: String,
    source: &'static str,
}

impl DockerfileBuild<'_> {
    async fn run(&self, docker: &Docker, work_dir: &Path, ui: &Ui) -> Result<BuildReport> {
        let started = Instant::now();
        let spec = self.spec;
        let files = context_files(&spec.context_dir)?;
        let digest = self.digest(&files);
        let previous = inspect(docker, &spec.local).await?;
        if let Some(image) = &previous {
            if label(image, LABEL_INPUTS_DIGEST) == Some(digest.as_str()) {
                return Ok(skipped_report(
                    spec.service,
                    &spec.local,
                    image,
                    started,
                    &digest,
                    ui,
                ));
            }
        }
        let context = self.context_tar(&files)?;
        // Only the digest is added here: the legacy builder turns each label into one more step,
        // which for a large image costs a walk of its whole tree on some storage drivers. The
        // Dockerfiles carry the project, service and source labels themselves.
        let labels = HashMap::from([(LABEL_INPUTS_DIGEST.to_string(), digest.clone())]);
        let args: HashMap<String, String> = self.args.clone().into_iter().collect();
        let options = BuildImageOptionsBuilder::default()
            .dockerfile("Dockerfile")
            .t(&spec.local)
            .rm(true)
            .forcerm(true)
            .buildargs(&args)
            .labels(&labels)
            .build();
        let log_path = work_dir.join(format!("{}.log", spec.service));
        let mut log = BuildLog::create(&log_path)?;
        let step = ui.step(format!("{}: building {}", spec.service, spec.local));
        let mut stream = docker.build_image(
            options,
            None,
            Some(bollard::body_full(bytes::Bytes::from(context))),
        );
        // Final image of each earlier stage (the line " ---> <id>" before a later `FROM`): build
        // stages are removed after a successful build, so their caches and the CA bundle they
        // hold do not linger as dangling images.
        let mut last_id: Option<String> = None;
        let mut stage_images: Vec<String> = Vec::new();
        let mut failure: Option<String> = None;
        while let Some(item) = stream.next().await {
            match item {
                Ok(info) => {
                    let text = strip_ansi(&info.stream.or(info.status).unwrap_or_default());
                    for line in text.lines() {
                        log.push(line);
                        let trimmed = line.trim();
                        if let Some(id) = trimmed.strip_prefix("---> ") {
                            if id.len() == 12 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                                last_id = Some(id.to_string());
                            }
                        }
                        if trimmed.starts_with("Step ") && trimmed.contains(" : ") {
                            if is_later_from(trimmed) {
                                stage_images.extend(last_id.take());
                            }
                            ui.line(format!("     {}: {}", spec.service, truncate(trimmed, 110)));
                        }
                        if let (Some(step), false) = (&step, trimmed.is_empty()) {
                            step.set_message(truncate(trimmed, 100));
                        }
                    }
                }
                Err(e) => {
                    let message = match e {
                        bollard::errors::Error::DockerStreamError { error } => error,
                        other => one_line(&other),
                    };
                    log.push(&message);
                    failure = Some(message);
                    break;
                }
            }
        }
        log.flush();
        if let Some(message) = failure {
            if let Some(step) = step {
                step.fail();
            }
            bail!(
                "building {} failed: {}\n{}\n(full build log: {}; nothing was tagged)",
                spec.local,
                first_line(message.trim()),
                log.tail(),
                log_path.display()
            );
        }
        let image = inspect(docker, &spec.local).await?.ok_or_else(|| {
            anyhow!(
                "building {} ended without the image (full build log: {})",
                spec.local,
                log_path.display()
            )
        })?;
        if label(&image, LABEL_INPUTS_DIGEST) != Some(digest.as_str()) {
            bail!(
                "building {} ended without the new image (full build log: {})",
                spec.local,
                log_path.display()
            );
        }
        for id in stage_images {
            remove_quietly(docker, &id).await;
        }
        let size = replace_previous(docker, &image, previous, step).await;
        Ok(BuildReport {
            service: spec.service.to_string(),
            tag: spec.local.clone(),
            skipped: false,
            secs: started.elapsed().as_secs_f64(),
            size_bytes: size,
            source: self.source.to_string(),
            inputs_digest: digest,
        })
    }

    /// sha256 over the context files, the injected files, the build arguments and the base
    /// image's id.
    fn digest(&self, files: &[(String, Vec<u8>, u32)]) -> String {
        let mut parts: Vec<&[u8]> = Vec::new();
        let modes: Vec<[u8; 4]> = files.iter().map(|(_, _, m)| m.to_le_bytes()).collect();
        for ((name, bytes, _), mode) in files.iter().zip(&modes) {
            parts.extend([b"file".as_slice(), name.as_bytes(), bytes, mode]);
        }
        for (name, bytes) in &self.injected {
            parts.extend([b"injected".as_slice(), name.as_bytes(), bytes]);
        }
        for (name, value) in &self.args {
            parts.extend([b"arg".as_slice(), name.as_bytes(), value.as_bytes()]);
        }
        parts.extend([b"base".as_slice(), self.base_id.as_bytes()]);
        sha256_hex(&parts)
    }

    /// The build context: the context directory's files plus the injected ones, as a tar.
    fn context_tar(&self, files: &[(String, Vec<u8>, u32)]) -> Result<Vec<u8>> {
        let mut tar = tar::Builder::new(Vec::new());
        let entries = files
            .iter()
            .map(|(name, bytes, mode)| (name.as_str(), bytes.as_slice(), *mode))
            .chain(
                self.injected
                    .iter()
                    .map(|(name, bytes)| (name.as_str(), bytes.as_slice(), 0o644)),
            );
        for (name, bytes, mode) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(mode);
            header.set_mtime(0);
            header.set_uid(0);
            header.set_gid(0);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, bytes)
                .with_context(|| format!("cannot add {name} to the build context"))?;
        }
        Ok(tar.into_inner()?)
    }
}

/// Whether a `Step k/N : FROM …` line starts a later stage (k > 1).
fn is_later_from(step_line: &str) -> bool {
    let Some((counter, instruction)) = step_line.split_once(" : ") else {
        return false;
    };
    let number = counter
        .trim_start_matches("Step ")
        .split('/')
        .next()
        .and_then(|n| n.parse::<u32>().ok())
        .unwrap_or(0);
    number > 1
        && instruction
            .trim_start()
            .to_ascii_uppercase()
            .starts_with("FROM ")
}

/// The context directory's files (recursively), as (relative path, contents, mode), sorted.
fn context_files(dir: &Path) -> Result<Vec<(String, Vec<u8>, u32)>> {
    use std::os::unix::fs::PermissionsExt;
    if !dir.join("Dockerfile").is_file() {
        bail!(
            "{} is missing: the image's build context must hold a Dockerfile",
            dir.join("Dockerfile").display()
        );
    }
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current)
            .with_context(|| format!("cannot read {}", current.display()))?
        {
            let entry = entry?;
            let path = entry.path();
            let meta = std::fs::metadata(&path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            if meta.is_dir() {
                pending.push(path);
            } else if meta.is_file() {
                let name = path
                    .strip_prefix(dir)
                    .expect("under the context dir")
                    .to_string_lossy()
                    .into_owned();
                let bytes = std::fs::read(&path)
                    .with_context(|| format!("cannot read {}", path.display()))?;
                let mode = if meta.permissions().mode() & 0o111 != 0 {
                    0o755
                } else {
                    0o644
                };
                files.push((name, bytes, mode));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

/// `text` without terminal colour sequences (the legacy builder wraps a step's stderr in them).
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Removes an image if nothing uses it; errors are ignored (it stays, dangling).
/// The end of a successful build of `image`: the image it replaced (`previous`, unless the build
/// reused it) is removed, the step finishes with the size, which is returned.
async fn replace_previous(
    docker: &Docker,
    image: &ImageInspect,
    previous: Option<ImageInspect>,
    step: Option<Step>,
) -> u64 {
    if let Some(old_id) = previous.and_then(|p| p.id) {
        if image.id.as_deref() != Some(old_id.as_str()) {
            remove_quietly(docker, &old_id).await;
        }
    }
    let size = image_size(image);
    if let Some(step) = step {
        step.finish(harness_core::tables::megabytes(Some(size)));
    }
    size
}

async fn remove_quietly(docker: &Docker, id: &str) {
    let options = RemoveImageOptionsBuilder::default()
        .force(false)
        .noprune(false)
        .build();
    let _ = docker.remove_image(id, Some(options), None).await;
}

/// A build's output: written to a log file as it comes, the last lines kept for errors.
struct BuildLog {
    file: Option<std::io::BufWriter<std::fs::File>>,
    tail: std::collections::VecDeque<String>,
}

impl BuildLog {
    fn create(path: &Path) -> Result<Self> {
        let file = std::fs::File::create(path)
            .with_context(|| format!("cannot write {}", path.display()))?;
        Ok(Self {
            file: Some(std::io::BufWriter::new(file)),
            tail: std::collections::VecDeque::new(),
        })
    }

    fn push(&mut self, line: &str) {
        if let Some(file) = &mut self.file {
            if writeln!(file, "{line}").is_err() {
                self.file = None;
            }
        }
        let trimmed = line.trim_end();
        // The legacy builder's bookkeeping lines say nothing about a failure.
        if trimmed.is_empty()
            || trimmed.trim_start().starts_with("---> ")
            || trimmed.starts_with("Removing intermediate container")
        {
            return;
        }
        self.tail.push_back(trimmed.to_string());
        if self.tail.len() > TAIL_LINES {
            self.tail.pop_front();
        }
    }

    fn flush(&mut self) {
        if let Some(file) = &mut self.file {
            let _ = file.flush();
        }
    }

    fn tail(&self) -> String {
        self.tail
            .iter()
            .map(|l| format!("  | {l}"))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// An exclusive lock on `path` held until dropped: one image build at a time per machine.
async fn lock(path: &Path, progress: bool) -> Result<nix::fcntl::Flock<std::fs::File>> {
    let open = || {
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open {}", path.display()))
    };
    let waiting = progress.then(|| "waiting for another image build to finish".to_string());
    lock_file(path, open, LockMode::Exclusive, waiting).await
}

/// How [`lock_file`] takes a lock: to build (exclusive) or to wait for a build (shared).
#[derive(Clone, Copy)]
enum LockMode {
    Exclusive,
    Shared,
}

/// Takes the lock of the file `open` opens (`path` names it in errors): at once when it is free;
/// otherwise says `waiting` (when given) and blocks on it off the async threads.
async fn lock_file(
    path: &Path,
    open: impl Fn() -> Result<std::fs::File>,
    mode: LockMode,
    waiting: Option<String>,
) -> Result<nix::fcntl::Flock<std::fs::File>> {
    use nix::fcntl::{Flock, FlockArg};
    let (now, blocking) = match mode {
        LockMode::Exclusive => (FlockArg::LockExclusiveNonblock, FlockArg::LockExclusive),
        LockMode::Shared => (FlockArg::LockSharedNonblock, FlockArg::LockShared),
    };
    match Flock::lock(open()?, now) {
        Ok(lock) => return Ok(lock),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
            if let Some(waiting) = waiting {
                progress::println(waiting);
            }
        }
        Err((_, e)) => bail!("cannot lock {}: {e}", path.display()),
    }
    let file = open()?;
    let display = path.display().to_string();
    tokio::task::spawn_blocking(move || {
        Flock::lock(file, blocking).map_err(|(_, e)| anyhow!("cannot lock {display}: {e}"))
    })
    .await?
}

/// The CA bundle passed into builds as `host-ca.crt`: `[docker] ca_bundle`, else PIP_CERT /
/// SSL_CERT_FILE / REQUESTS_CA_BUNDLE, /etc/pip.conf's `cert`, /etc/ssl/certs/ca-certificates.crt;
/// empty when none exists (the Dockerfiles then use the tools' own CA lists).
pub fn host_ca_bundle(config: &Config) -> Result<(Option<PathBuf>, Vec<u8>)> {
    let configured = config.docker.ca_bundle.trim();
    if !configured.is_empty() {
        let path = PathBuf::from(configured);
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "cannot read the CA bundle {} ([docker] ca_bundle in harness.toml)",
                path.display()
            )
        })?;
        return Ok((Some(path), bytes));
    }
    let mut candidates: Vec<PathBuf> = ["PIP_CERT", "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"]
        .iter()
        .filter_map(|v| std::env::var_os(v).filter(|p| !p.is_empty()))
        .map(PathBuf::from)
        .collect();
    if let Ok(text) = std::fs::read_to_string("/etc/pip.conf") {
        candidates.extend(pip_conf_cert(&text));
    }
    candidates.push(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"));
    for path in candidates {
        if let Ok(bytes) = std::fs::read(&path) {
            return Ok((Some(path), bytes));
        }
    }
    Ok((None, Vec::new()))
}

/// The `cert = …` of a pip configuration file.
fn pip_conf_cert(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "cert" && !value.trim().is_empty()).then(|| PathBuf::from(value.trim()))
    })
}

/// Debian mirrors for the bootstrapped base: (main, security).
fn debian_mirrors(config: &Config) -> (String, Option<String>) {
    let (host_main, host_security) = host_apt_mirrors();
    let configured = config.docker.debian_mirror.trim().trim_end_matches('/');
    if !configured.is_empty() {
        return (configured.to_string(), host_security);
    }
    match host_main {
        Some(main) => (main, host_security),
        None => (
            DEFAULT_MIRROR.to_string(),
            host_security.or_else(|| Some(DEFAULT_SECURITY_MIRROR.to_string())),
        ),
    }
}

/// The host's plain-http apt sources for `bookworm` and `bookworm-security`, from
/// /etc/apt/sources.list and /etc/apt/sources.list.d/*.list|*.sources.
fn host_apt_mirrors() -> (Option<String>, Option<String>) {
    let mut entries = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        entries.extend(parse_one_line_sources(&text));
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue;
            };
            match path.extension().and_then(|e| e.to_str()) {
                Some("list") => entries.extend(parse_one_line_sources(&text)),
                Some("sources") => entries.extend(parse_deb822_sources(&text)),
                _ => {}
            }
        }
    }
    let find = |suite: &str| {
        entries
            .iter()
            .find(|(uri, suites)| uri.starts_with("http://") && suites.iter().any(|s| s == suite))
            .map(|(uri, _)| uri.trim_end_matches('/').to_string())
    };
    (find(SUITE), find(&format!("{SUITE}-security")))
}

/// `deb [options] uri suite components…` lines → (uri, [suite]).
fn parse_one_line_sources(text: &str) -> Vec<(String, Vec<String>)> {
    let mut entries = Vec::new();
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        let Some(rest) = line.strip_prefix("deb ") else {
            continue;
        };
        let rest = rest.trim_start();
        let rest = match rest.strip_prefix('[') {
            Some(options) => options.split_once(']').map_or("", |(_, r)| r),
            None => rest,
        };
        let mut words = rest.split_whitespace();
        if let (Some(uri), Some(suite)) = (words.next(), words.next()) {
            entries.push((uri.to_string(), vec![suite.to_string()]));
        }
    }
    entries
}

/// deb822 stanzas (`Types: deb`, `URIs:`, `Suites:`, `Enabled:`) → (uri, suites) per URI.
fn parse_deb822_sources(text: &str) -> Vec<(String, Vec<String>)> {
    let mut entries = Vec::new();
    for stanza in text.split("\n\n") {
        let mut fields: HashMap<String, String> = HashMap::new();
        for line in stanza.lines() {
            if line.trim_start().starts_with('#') {
                continue;
            }
            if let Some((key, value)) = line.split_once(':') {
                if !line.starts_with(char::is_whitespace) {
                    fields.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
                }
            }
        }
        let types = fields.get("types").map_or("", String::as_str);
        let enabled = fields
            .get("enabled")
            .is_none_or(|v| !v.eq_ignore_ascii_case("no"));
        if !enabled || !types.split_whitespace().any(|t| t == "deb") {
            continue;
        }
        let suites: Vec<String> = fields
            .get("suites")
            .map(|s| s.split_whitespace().map(String::from).collect())
            .unwrap_or_default();
        for uri in fields
            .get("uris")
            .map(|u| u.split_whitespace().map(String::from).collect::<Vec<_>>())
            .unwrap_or_default()
        {
            entries.push((uri, suites.clone()));
        }
    }
    entries
}

/// Where debootstrap is, if installed.
fn find_debootstrap() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join("debootstrap"))
        .find(|p| p.is_file())
}

/// The base made from Debian packages: debootstrap (minbase) into a temp dir, trimmed, streamed
/// as a tar into the engine's image import.
async fn bootstrap_base(
    docker: &Docker,
    config: &Config,
    work_dir: &Path,
    ui: &Ui,
) -> Result<BuildReport> {
    let started = Instant::now();
    let digest = sha256_hex(&[b"bootstrap", BOOTSTRAP_RECIPE.as_bytes()]);
    let previous = inspect(docker, BASE_TAG).await?;
    if let Some(image) = &previous {
        if label(image, LABEL_INPUTS_DIGEST) == Some(digest.as_str()) {
            return Ok(skipped_report(
                "base", BASE_TAG, image, started, &digest, ui,
            ));
        }
    }
    let Some(debootstrap) = find_debootstrap() else {
        bail!(
            "debootstrap is not installed; it makes the base image {BASE_TAG} from Debian packages when \
             no registry can be reached: apt-get install debootstrap"
        );
    };
    if !nix::unistd::geteuid().is_root() {
        bail!(
            "bootstrapping the base image {BASE_TAG} needs root (debootstrap creates device nodes and chroots); \
             run `cargo xtask images build` as root once"
        );
    }
    let (mirror, security) = debian_mirrors(config);
    let step = ui.step(format!("base: bootstrapping {BASE_TAG} from {mirror}"));
    let result = async {
        let tmp = tempfile::Builder::new()
            .prefix("rootfs-")
            .tempdir_in(work_dir)
            .with_context(|| format!("cannot create a temp dir in {}", work_dir.display()))?;
        let rootfs = tmp.path().join("rootfs");
        let log_path = work_dir.join("base.log");
        run_debootstrap(&debootstrap, &rootfs, &mirror, &log_path, step.as_ref()).await?;
        let sources = {
            let mut text =
                format!("deb {mirror} {SUITE} main\ndeb {mirror} {SUITE}-updates main\n");
            if let Some(security) = &security {
                text.push_str(&format!("deb {security} {SUITE}-security main\n"));
            }
            text
        };
        if let Some(step) = &step {
            step.set_message("trimming the root filesystem");
        }
        let trim_root = rootfs.clone();
        tokio::task::spawn_blocking(move || trim_rootfs(&trim_root, &sources)).await??;
        if let Some(step) = &step {
            step.set_message("importing into the engine");
        }
        import_rootfs(docker, &rootfs, &mirror, &digest).await?;
        if let Err(e) = tmp.close() {
            ui.line(format!(
                "note: could not remove the bootstrap temp dir: {e}"
            ));
        }
        Ok::<_, anyhow::Error>(())
    }
    .await;
    if let Err(e) = result {
        if let Some(step) = step {
            step.fail();
        }
        return Err(e);
    }
    let image = inspect(docker, BASE_TAG)
        .await?
        .ok_or_else(|| anyhow!("importing {BASE_TAG} ended without the image"))?;
    let size = replace_previous(docker, &image, previous, step).await;
    Ok(BuildReport {
        service: "base".into(),
        tag: BASE_TAG.into(),
        skipped: false,
        secs: started.elapsed().as_secs_f64(),
        size_bytes: size,
        source: "bootstrap".into(),
        inputs_digest: digest,
    })
}

/// Runs `debootstrap --variant=minbase bookworm <rootfs> <mirror>`, its output into `log_path`
/// and the spinner; on failure the error carries its last lines.
async fn run_debootstrap(
    program: &Path,
    rootfs: &Path,
    mirror: &str,
    log_path: &Path,
    step: Option<&Step>,
) -> Result<()> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(program)
        .args(["--variant=minbase", SUITE])
        .arg(rootfs)
        .arg(mirror)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    for reader in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Unpin + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = tx.clone();
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(reader).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    let mut log = BuildLog::create(log_path)?;
    while let Some(line) = rx.recv().await {
        if let Some(step) = step {
            if let Some(info) = line.strip_prefix("I: ") {
                step.set_message(truncate(info, 100));
            }
        }
        log.push(&line);
    }
    log.flush();
    let status = child.wait().await?;
    if !status.success() {
        bail!(
            "debootstrap --variant=minbase {SUITE} from {mirror} failed ({status})\n{}\n(full log: {}; check that the \
             mirror is reachable or set [docker] debian_mirror in harness.toml)",
            log.tail(),
            log_path.display()
        );
    }
    Ok(())
}

/// Trims a fresh debootstrap tree like Debian's -slim images: apt sources for the image, no
/// docs / man pages / translations now or in later installs, no apt lists or package caches,
/// no host files (resolv.conf, hostname).
fn trim_rootfs(root: &Path, sources: &str) -> Result<()> {
    let write = |rel: &str, text: &str| -> Result<()> {
        let path = root.join(rel);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))
    };
    write("etc/apt/sources.list", sources)?;
    write(
        "etc/dpkg/dpkg.cfg.d/langflow-infra-slim",
        "# Like Debian's slim images: no documentation or translations in installed packages.\n\
         path-exclude /usr/share/doc/*\n\
         path-include /usr/share/doc/*/copyright\n\
         path-exclude /usr/share/man/*\n\
         path-exclude /usr/share/info/*\n\
         path-exclude /usr/share/locale/*\n\
         path-include /usr/share/locale/locale.alias\n",
    )?;
    write(
        "etc/apt/apt.conf.d/langflow-infra-clean",
        "# Keep no downloaded packages in image layers.\n\
         DPkg::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         APT::Update::Post-Invoke { \"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true\"; };\n\
         Dir::Cache::pkgcache \"\";\n\
         Dir::Cache::srcpkgcache \"\";\n\
         Acquire::Languages \"none\";\n",
    )?;
    write("etc/resolv.conf", "")?;
    write("etc/hostname", "")?;
    // Contents removed, directories kept.
    for dir in [
        "usr/share/man",
        "usr/share/info",
        "var/lib/apt/lists",
        "var/cache/apt/archives",
        "var/log",
        "tmp",
    ] {
        clear_dir(&root.join(dir), &[])?;
    }
    clear_dir(&root.join("usr/share/locale"), &["locale.alias"])?;
    // Documentation except the copyright notices.
    if let Ok(entries) = std::fs::read_dir(root.join("usr/share/doc")) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                clear_dir(&entry.path(), &["copyright"])?;
            }
        }
    }
    for cache in [
        "var/cache/apt/pkgcache.bin",
        "var/cache/apt/srcpkgcache.bin",
    ] {
        let _ = std::fs::remove_file(root.join(cache));
    }
    Ok(())
}

/// Removes everything in `dir` except the names in `keep`; a missing dir is fine.
fn clear_dir(dir: &Path, keep: &[&str]) -> Result<()> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if keep.iter().any(|k| name == **k) {
            continue;
        }
        let path = entry.path();
        let result = if entry.file_type().is_ok_and(|t| t.is_dir()) {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        result.with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Streams `rootfs` as a tar into the engine's image import, tagged [`BASE_TAG`].
async fn import_rootfs(docker: &Docker, rootfs: &Path, mirror: &str, digest: &str) -> Result<()> {
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(16);
    let root = rootfs.to_path_buf();
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buffer: Vec::with_capacity(ChannelWriter::CHUNK),
        };
        let result = tar_rootfs(&root, &mut out).and_then(|()| out.flush());
        if let Err(e) = &result {
            let _ = tx.blocking_send(Err(std::io::Error::new(e.kind(), e.to_string())));
        }
        result
    });
    let body = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let (repo, tag) = split_reference(BASE_TAG);
    let options = CreateImageOptionsBuilder::default()
        .from_src("-")
        .repo(repo)
        .tag(tag.unwrap_or("latest"))
        .message(&format!(
            "langflow-infra: debootstrap --variant=minbase {SUITE} {mirror}"
        ))
        .changes(vec![
            format!("LABEL {LABEL_PROJECT}={PROJECT}"),
            format!("LABEL {LABEL_SERVICE}=base"),
            format!("LABEL {LABEL_SOURCE}=bootstrap"),
            format!("LABEL {LABEL_INPUTS_DIGEST}={digest}"),
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_string(),
            "CMD [\"bash\"]".to_string(),
        ])
        .build();
    let mut stream = docker.create_image(Some(options), Some(bollard::body_try_stream(body)), None);
    let mut engine_error = None;
    while let Some(item) = stream.next().await {
        if let Err(e) = item {
            engine_error = Some(one_line(&e));
            break;
        }
    }
    drop(stream);
    let written = writer.await?;
    if let Err(e) = written {
        bail!("cannot stream the bootstrapped root filesystem: {e}");
    }
    if let Some(e) = engine_error {
        bail!("importing {BASE_TAG} failed: {e}");
    }
    Ok(())
}

/// A `Write` that sends chunks into a channel (the import request's body).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>,
    buffer: Vec<u8>,
}

impl ChannelWriter {
    const CHUNK: usize = 1 << 20;

    fn send(&mut self) -> std::io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buffer, Vec::with_capacity(Self::CHUNK));
        self.tx
            .blocking_send(Ok(bytes::Bytes::from(chunk)))
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::BrokenPipe,
                    "the engine stopped reading the import",
                )
            })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(data);
        if self.buffer.len() >= Self::CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Writes the tree under `root` as a tar (owners, modes, symlinks, device nodes kept; the
/// contents of dev/, proc/, sys/ left out: the engine provides them).
fn tar_rootfs(root: &Path, out: &mut impl Write) -> std::io::Result<()> {
    use std::os::unix::fs::FileTypeExt;
    let mut tar = tar::Builder::new(out);
    tar.follow_symlinks(false);
    tar.mode(tar::HeaderMode::Complete);
    let skip_contents = [Path::new("dev"), Path::new("proc"), Path::new("sys")];
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let full = root.join(&rel);
        let meta = std::fs::symlink_metadata(&full)?;
        if meta.file_type().is_socket() {
            continue;
        }
        if !rel.as_os_str().is_empty() {
            tar.append_path_with_name(&full, &rel)?;
        }
        if meta.is_dir() && !skip_contents.contains(&rel.as_path()) {
            let mut names: Vec<_> = std::fs::read_dir(&full)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<std::io::Result<_>>()?;
            names.sort();
            for name in names.into_iter().rev() {
                pending.push(rel.join(name));
            }
        }
    }
    tar.finish()
}

/// One row of `images list`.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRow {
    /// `base`, `postgres`, `aws` or `langflow`.
    pub service: String,
    /// The image reference.
    pub reference: String,
    /// `public` (configured) or `local` (built by the harness).
    pub kind: String,
    /// Whether the engine has it.
    pub present: bool,
    /// Size in bytes, when present.
    pub size_bytes: Option<u64>,
    /// Creation time (RFC 3339), when present.
    pub created: Option<String>,
    /// The inputs digest label of a local build.
    pub inputs_digest: Option<String>,
    /// Whether [`resolve`] picks this one without pulling: the public image when present, else
    /// the local build when present. (`resolve` also tries to pull a missing public image.)
    pub selected: bool,
}

/// The public and local image of every service, present or not.
pub async fn list(docker: &Docker, config: &Config) -> Result<Vec<ImageRow>> {
    let mut rows = Vec::new();
    for spec in image_specs(config) {
        let mut public_present = false;
        for (kind, reference) in [("public", &spec.public), ("local", &spec.local)] {
            let summary = summary(docker, reference).await?;
            let present = summary.is_some();
            if kind == "public" {
                public_present = present;
            }
            rows.push(ImageRow {
                service: spec.service.to_string(),
                reference: reference.clone(),
                kind: kind.to_string(),
                present,
                size_bytes: summary.as_ref().map(|s| s.size.max(0) as u64),
                created: summary.as_ref().and_then(|s| {
                    chrono::DateTime::from_timestamp(s.created, 0).map(|t| t.to_rfc3339())
                }),
                inputs_digest: summary
                    .as_ref()
                    .and_then(|s| s.labels.get(LABEL_INPUTS_DIGEST).cloned()),
                selected: present && (kind == "public" || !public_present),
            });
        }
    }
    Ok(rows)
}

/// The engine's summary of one tagged image.
async fn summary(
    docker: &Docker,
    reference: &str,
) -> Result<Option<bollard::models::ImageSummary>> {
    let filters = HashMap::from([("reference", vec![reference])]);
    let options = ListImagesOptionsBuilder::default()
        .filters(&filters)
        .build();
    let images = docker
        .list_images(Some(options))
        .await
        .map_err(|e| anyhow!("cannot list images: {}", one_line(&e)))?;
    let normalized = if split_reference(reference).1.is_some() || reference.contains('@') {
        reference.to_string()
    } else {
        format!("{reference}:latest")
    };
    Ok(images.into_iter().find(|i| {
        i.repo_tags
            .iter()
            .any(|t| t == &normalized || t == reference)
    }))
}

/// What `remove` did with one local image.
#[derive(Debug, Clone, Serialize)]
pub struct RemovedImage {
    /// `base`, `postgres`, `aws` or `langflow`.
    pub service: String,
    /// The local tag.
    pub tag: String,
    /// Whether it was removed now.
    pub removed: bool,
    /// `removed`, `not present`, or why it could not be removed.
    pub detail: String,
}

impl RemovedImage {
    /// Removed, or nothing to remove.
    pub fn ok(&self) -> bool {
        self.removed || self.detail == "not present"
    }
}

/// Removes the local builds (`langflow-infra/*` tags only; public images are never touched) of
/// `which` (all when empty), children before the base. An image a container still uses is kept
/// and reported.
pub async fn remove(docker: &Docker, config: &Config, which: &[&str]) -> Result<Vec<RemovedImage>> {
    let mut wanted = Vec::new();
    for name in which {
        wanted.push(canonical_service(name)?);
    }
    let mut results = Vec::new();
    for spec in image_specs(config).into_iter().rev() {
        if !wanted.is_empty() && !wanted.contains(&spec.service) {
            continue;
        }
        if !spec.local.starts_with(LOCAL_PREFIX) {
            bail!(
                "refusing to remove {}: not a {LOCAL_PREFIX}* image",
                spec.local
            );
        }
        let (removed, detail) = if inspect(docker, &spec.local).await?.is_none() {
            (false, "not present".to_string())
        } else {
            let options = RemoveImageOptionsBuilder::default()
                .force(false)
                .noprune(false)
                .build();
            match docker.remove_image(&spec.local, Some(options), None).await {
                Ok(_) => (true, "removed".to_string()),
                Err(bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    message,
                }) => (
                    false,
                    format!("in use: {message}; stop what uses it first (cargo xtask down)"),
                ),
                Err(e) => (false, one_line(&e)),
            }
        };
        results.push(RemovedImage {
            service: spec.service.to_string(),
            tag: spec.local,
            removed,
            detail,
        });
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_at_the_tag() {
        assert_eq!(split_reference("postgres:15"), ("postgres", Some("15")));
        assert_eq!(
            split_reference("localhost:5000/x/y:1.2"),
            ("localhost:5000/x/y", Some("1.2"))
        );
        assert_eq!(
            split_reference("localhost:5000/x"),
            ("localhost:5000/x", None)
        );
        assert_eq!(split_reference("a@sha256:00"), ("a@sha256:00", None));
        assert_eq!(postgres_major("postgres:15.4-bookworm"), "15");
        assert_eq!(postgres_major("postgres"), "15");
        assert_eq!(postgres_major("postgres:16"), "16");
    }

    #[test]
    fn specs_follow_the_configuration() {
        let mut config = Config {
            root: PathBuf::from("/repo"),
            ..Config::default()
        };
        config.aws.ministack_version = "9.9.9".into();
        let specs = image_specs(&config);
        let names: Vec<_> = specs.iter().map(|s| s.service).collect();
        assert_eq!(names, SERVICES);
        assert_eq!(specs[0].local, BASE_TAG);
        assert_eq!(specs[1].public, "postgres:15");
        assert_eq!(specs[1].local, "langflow-infra/postgres:15");
        assert_eq!(specs[2].public, "ministackorg/ministack:9.9.9");
        assert_eq!(specs[2].local, "langflow-infra/ministack:9.9.9");
        assert_eq!(
            specs[2].context_dir,
            Path::new("/repo/compose/images/ministack")
        );
        assert_eq!(specs[3].public, "localstack/localstack:4.14.0");
        assert_eq!(specs[3].local, "langflow-infra/localstack:4.14.0");
        assert_eq!(specs[4].local, "langflow-infra/langflow:1.13.0");
        assert_eq!(
            specs[5].local,
            "langflow-infra/langflow-multi-tenant:1.13.0"
        );
        assert_eq!(specs[5].public, specs[5].local);
        assert_eq!(
            image_spec(&config, "multi-tenant").unwrap().service,
            MULTI_TENANT
        );
        assert!(specs.iter().all(|s| s.local.starts_with(LOCAL_PREFIX)));
        assert!(image_spec(&config, "ministack").is_ok());
        assert!(image_spec(&config, "redis").is_err());
    }

    #[test]
    fn apt_sources_name_the_mirror() {
        let deb822 = "Types: deb\n# comment\nURIs: http://deb.debian.org/debian\nSuites: bookworm bookworm-updates\n\
                      Components: main\n\nTypes: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
                      Types: deb\nEnabled: no\nURIs: http://off.example/debian\nSuites: bookworm\n";
        assert_eq!(
            parse_deb822_sources(deb822),
            vec![(
                "http://deb.debian.org/debian".to_string(),
                vec!["bookworm".to_string(), "bookworm-updates".to_string()]
            )]
        );
        let one_line =
            "# x\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n\
                        deb-src http://m.example/debian bookworm main\n";
        assert_eq!(
            parse_one_line_sources(one_line),
            vec![(
                "http://m.example/debian".to_string(),
                vec!["bookworm".to_string()]
            )]
        );
        assert_eq!(
            pip_conf_cert("[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n"),
            Some(PathBuf::from("/etc/ssl/certs/ca-certificates.crt"))
        );
    }

    #[test]
    fn colour_sequences_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[91merror\u{1b}[0m: x"), "error: x");
    }

    #[test]
    fn later_stages_are_recognised() {
        assert!(is_later_from("Step 6/12 : FROM ${BASE}"));
        assert!(!is_later_from("Step 1/12 : FROM ${BASE} AS build"));
        assert!(!is_later_from("Step 7/12 : RUN set -eux"));
    }
}
