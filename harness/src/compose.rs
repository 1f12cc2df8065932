//! `compose/docker-compose.yml` for people who use docker-compose instead of the harness:
//! Postgres, the AWS emulator (plus a one-shot job creating the tenant bucket) and the reference
//! multi-tenant image, with health checks and `depends_on: service_healthy`, every port published
//! on 127.0.0.1 only. Rendered from the harness's own service definitions (the container forms of
//! `services::postgres` and `services::aws`, the image tags of `docker::images`, the environment
//! the Fargate TaskDefinition gives the image), so `cargo xtask compose render` keeps it in step;
//! a test checks the committed file equals the render.
//!
//! Stays within what docker-compose 1.29 supports (no `version:` key, no `name:`,
//! `service_completed_successfully`). Secrets are never written into the file: the Postgres
//! password and the tenant key seed come from the environment (or `compose/.env`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::config::Config;
use crate::docker::images;
use crate::runtime::{ContainerSpec, StopSignal};
use crate::services::{aws, langflow, postgres};

/// Path of the rendered file, relative to the repository root.
pub const COMPOSE_FILE: &str = "compose/docker-compose.yml";
/// Compose service names.
pub const POSTGRES: &str = "postgres";
/// The emulator.
pub const AWS: &str = "aws";
/// The one-shot job creating the tenant bucket in the emulator.
pub const AWS_INIT: &str = "aws-init";
/// The multi-tenant image.
pub const LANGFLOW: &str = "langflow";
/// Variables the user must set (or put in `compose/.env`): the Postgres superuser password and
/// the seed of every tenant's keys (at least 32 characters).
pub const REQUIRED_VARIABLES: [&str; 2] = ["POSTGRES_PASSWORD", "LANGFLOW_TENANT_KEY_SEED"];
/// Variables choosing the host ports and images (with defaults).
pub const PORT_VARIABLES: [(&str, u16); 3] = [
    ("LANGFLOW_PORT", langflow::CONTAINER_PORT),
    ("POSTGRES_PORT", postgres::CONTAINER_PORT),
    ("AWS_PORT", aws::CONTAINER_PORT),
];
/// Placeholder the Postgres spec is rendered with, replaced by the variable reference.
const PASSWORD_MARK: &str = "\u{0}postgres-password\u{0}";

/// A YAML node of the rendered file (block style; every scalar double-quoted).
enum Node {
    Str(String),
    List(Vec<Node>),
    Map(Vec<(String, Node)>),
}

fn s(value: impl Into<String>) -> Node {
    Node::Str(value.into())
}

fn map(entries: Vec<(&str, Node)>) -> Node {
    Node::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn list<I: IntoIterator<Item = String>>(items: I) -> Node {
    Node::List(items.into_iter().map(Node::Str).collect())
}

fn env_map(env: &BTreeMap<String, String>) -> Node {
    Node::Map(env.iter().map(|(k, v)| (k.clone(), s(v.clone()))).collect())
}

fn key(name: &str) -> String {
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        name.to_string()
    } else {
        serde_json::to_string(name).expect("a string serialises")
    }
}

fn emit(node: &Node, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    match node {
        Node::Str(value) => {
            // JSON's double-quoted strings are valid YAML double-quoted scalars.
            out.push_str(&serde_json::to_string(value).expect("a string serialises"));
            out.push('\n');
        }
        Node::List(items) => {
            out.push('\n');
            for item in items {
                out.push_str(&pad);
                out.push_str("- ");
                match item {
                    Node::Str(_) => emit(item, indent + 2, out),
                    _ => {
                        let mut nested = String::new();
                        emit(item, indent + 2, &mut nested);
                        out.push_str(nested.trim_start());
                    }
                }
            }
        }
        Node::Map(entries) => {
            if entries.is_empty() {
                out.push_str("{}\n");
                return;
            }
            out.push('\n');
            for (name, value) in entries {
                out.push_str(&pad);
                out.push_str(&key(name));
                out.push(':');
                match value {
                    Node::Str(_) => {
                        out.push(' ');
                        emit(value, indent + 2, out);
                    }
                    Node::Map(inner) if inner.is_empty() => out.push_str(" {}\n"),
                    _ => emit(value, indent + 2, out),
                }
            }
        }
    }
}

/// `${NAME:-default}`.
fn var_or(name: &str, default: &str) -> String {
    format!("${{{name}:-{default}}}")
}

/// `${NAME:?message}`: docker-compose refuses to start without it, naming the variable.
fn required_var(name: &str) -> String {
    format!("${{{name}:?set {name} in the environment or in compose/.env}}")
}

fn port_default(name: &str) -> u16 {
    PORT_VARIABLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, p)| *p)
        .expect("a known port variable")
}

/// `127.0.0.1:${VAR:-default}:<container port>`: published on the loopback only.
fn published(variable: &str, container_port: u16) -> Node {
    list([format!(
        "127.0.0.1:{}:{container_port}",
        var_or(variable, &port_default(variable).to_string())
    )])
}

/// `${<SERVICE>_IMAGE:-<local tag>}`: the harness's local build by default (`cargo xtask images
/// build`), any other image when the variable names one.
fn image(variable: &str, local: &str) -> Node {
    s(var_or(variable, local))
}

fn healthcheck(test: Vec<String>, interval: &str, retries: u32, start: &str) -> Node {
    map(vec![
        ("test", list(test)),
        ("interval", s(interval)),
        ("timeout", s("5s")),
        ("retries", s(retries.to_string())),
        ("start_period", s(start)),
    ])
}

fn python_get(python: &str, url: &str) -> Vec<String> {
    vec![
        "CMD".into(),
        python.into(),
        "-c".into(),
        format!("import urllib.request; urllib.request.urlopen('{url}', timeout=4)"),
    ]
}

fn named_volumes(container: &ContainerSpec) -> Node {
    list(
        container
            .volumes
            .iter()
            .map(|(name, mount)| format!("{name}:{mount}")),
    )
}

fn stop_signal(signal: StopSignal) -> String {
    match signal {
        StopSignal::Int => "SIGINT".into(),
        StopSignal::Term => "SIGTERM".into(),
    }
}

/// The environment the reference image gets: what the Fargate TaskDefinition provides
/// (`aws/apps/fargate-stack.cfn.yaml`: DB_*, LANGFLOW_HOST/PORT, storage, the key seed secret),
/// with the compose stack's endpoints; the emulator's root keys stand in for the task role.
pub fn multi_tenant_env(config: &Config) -> BTreeMap<String, String> {
    let password = required_var("POSTGRES_PASSWORD");
    [
        ("DB_HOST", POSTGRES.to_string()),
        ("DB_PORT", postgres::CONTAINER_PORT.to_string()),
        ("DB_NAME", config.postgres.database.clone()),
        ("DB_USER", postgres::SUPERUSER.to_string()),
        ("DB_PASSWORD", password),
        (
            "LANGFLOW_TENANT_KEY_SEED",
            required_var("LANGFLOW_TENANT_KEY_SEED"),
        ),
        ("LANGFLOW_HOST", "0.0.0.0".to_string()),
        ("LANGFLOW_PORT", langflow::CONTAINER_PORT.to_string()),
        ("LANGFLOW_STORAGE_TYPE", "s3".to_string()),
        (
            "LANGFLOW_OBJECT_STORAGE_BUCKET_NAME",
            config.aws.tenant_bucket.clone(),
        ),
        ("LANGFLOW_RATE_LIMIT_TRUST_PROXY", "true".to_string()),
        // One worker per tenant on a laptop unless asked for more (the Fargate template runs 2).
        ("LANGFLOW_WORKERS", var_or("LANGFLOW_WORKERS", "1")),
        ("LANGFLOW_EVENT_DELIVERY", "direct".to_string()),
        (
            "LANGFLOW_RATE_LIMIT_PER_MINUTE",
            var_or(
                "LANGFLOW_RATE_LIMIT_PER_MINUTE",
                &config.langflow.login_rate_limit_per_minute.to_string(),
            ),
        ),
        (
            "AWS_ENDPOINT_URL",
            format!("http://{AWS}:{}", aws::CONTAINER_PORT),
        ),
        ("AWS_ACCESS_KEY_ID", aws::EMULATOR_ACCESS_KEY.to_string()),
        (
            "AWS_SECRET_ACCESS_KEY",
            aws::EMULATOR_SECRET_KEY.to_string(),
        ),
        ("AWS_DEFAULT_REGION", config.aws.region.clone()),
        ("AWS_REGION", config.aws.region.clone()),
        ("AWS_EC2_METADATA_DISABLED", "true".to_string()),
        ("LFMT_FAULT", var_or("LFMT_FAULT", "")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// The script of the `aws-init` job: creates the tenant bucket (idempotent), as the Fargate
/// stack's `TenantFilesBucket` exists before any task starts.
fn bucket_script(config: &Config) -> String {
    format!(
        "import boto3, botocore.config; \
         s3 = boto3.client('s3', endpoint_url='http://{AWS}:{port}', region_name='{region}', \
         aws_access_key_id='{key}', aws_secret_access_key='{secret}', \
         config=botocore.config.Config(s3={{'addressing_style': 'path'}})); \
         names = [b['Name'] for b in s3.list_buckets().get('Buckets', [])]; \
         '{bucket}' in names or s3.create_bucket(Bucket='{bucket}'); \
         print('bucket {bucket} ready')",
        port = aws::CONTAINER_PORT,
        region = config.aws.region,
        key = aws::EMULATOR_ACCESS_KEY,
        secret = aws::EMULATOR_SECRET_KEY,
        bucket = config.aws.tenant_bucket,
    )
}

/// The compose file for `config`, as text.
pub fn render(config: &Config) -> Result<String> {
    let tag = |service: &str| images::image_spec(config, service).map(|s| s.local);
    let pg = postgres::container_spec(config, PASSWORD_MARK, 0);
    let pg_container = pg
        .container
        .as_ref()
        .context("postgres has a container form")?;
    let pg_env: BTreeMap<String, String> = pg_container
        .env
        .iter()
        .map(|(k, v)| {
            let v = if v == PASSWORD_MARK {
                required_var("POSTGRES_PASSWORD")
            } else {
                v.clone()
            };
            (k.clone(), v)
        })
        .collect();
    let emulator = aws::container_spec_with_token(config, 0, None);
    let aws_container = emulator
        .container
        .as_ref()
        .context("the emulator has a container form")?;
    // The emulator's image and health endpoint follow `[aws] emulator`; a LocalStack auth token
    // stays a reference to the user's environment, never a value in the file.
    let aws_image = tag(&aws_container.image)?;
    let aws_volume = aws_container
        .volumes
        .first()
        .map(|(name, _)| name.clone())
        .context("the emulator has a data volume")?;
    let mut aws_env = aws_container.env.clone();
    if config.aws.emulator == crate::config::Emulator::Localstack {
        aws_env.insert(
            aws::LOCALSTACK_AUTH_TOKEN.to_string(),
            var_or(aws::LOCALSTACK_AUTH_TOKEN, ""),
        );
    }

    let database = &config.postgres.database;
    let postgres_service = map(vec![
        ("image", image("POSTGRES_IMAGE", &tag("postgres")?)),
        ("command", list(pg_container.command.clone())),
        ("environment", env_map(&pg_env)),
        ("volumes", named_volumes(pg_container)),
        (
            "ports",
            published("POSTGRES_PORT", pg_container.container_port),
        ),
        ("stop_signal", s(stop_signal(pg.stop_signal))),
        (
            "healthcheck",
            healthcheck(
                vec![
                    "CMD".into(),
                    "pg_isready".into(),
                    "-q".into(),
                    "-h".into(),
                    "127.0.0.1".into(),
                    "-U".into(),
                    postgres::SUPERUSER.into(),
                    "-d".into(),
                    database.clone(),
                ],
                "2s",
                30,
                "10s",
            ),
        ),
    ]);
    let aws_service = map(vec![
        ("image", image("AWS_IMAGE", &aws_image)),
        ("environment", env_map(&aws_env)),
        ("volumes", named_volumes(aws_container)),
        ("ports", published("AWS_PORT", aws_container.container_port)),
        ("stop_signal", s(stop_signal(emulator.stop_signal))),
        (
            "healthcheck",
            healthcheck(
                python_get(
                    "python3",
                    &format!(
                        "http://127.0.0.1:{}{}",
                        aws_container.container_port,
                        aws::health_path(config.aws.emulator)
                    ),
                ),
                "2s",
                30,
                "5s",
            ),
        ),
    ]);
    let aws_init = map(vec![
        ("image", image("AWS_IMAGE", &aws_image)),
        ("entrypoint", list(["python3".to_string()])),
        ("command", list(["-c".to_string(), bucket_script(config)])),
        ("restart", s("no")),
        (
            "depends_on",
            map(vec![(AWS, map(vec![("condition", s("service_healthy"))]))]),
        ),
    ]);
    let langflow_service = map(vec![
        (
            "image",
            image("LANGFLOW_MT_IMAGE", &tag(images::MULTI_TENANT)?),
        ),
        ("environment", env_map(&multi_tenant_env(config))),
        ("volumes", list(["lfmtdata:/var/lib/lfmt".to_string()])),
        (
            "ports",
            published("LANGFLOW_PORT", langflow::CONTAINER_PORT),
        ),
        ("stop_signal", s("SIGTERM")),
        ("stop_grace_period", s("30s")),
        (
            "healthcheck",
            healthcheck(
                python_get(
                    "/usr/bin/python3",
                    &format!("http://127.0.0.1:{}/health", langflow::CONTAINER_PORT),
                ),
                "2s",
                60,
                "10s",
            ),
        ),
        (
            "depends_on",
            map(vec![
                (POSTGRES, map(vec![("condition", s("service_healthy"))])),
                (AWS, map(vec![("condition", s("service_healthy"))])),
                (
                    AWS_INIT,
                    map(vec![("condition", s("service_completed_successfully"))]),
                ),
            ]),
        ),
    ]);
    let document = map(vec![
        (
            "services",
            map(vec![
                (POSTGRES, postgres_service),
                (AWS, aws_service),
                (AWS_INIT, aws_init),
                (LANGFLOW, langflow_service),
            ]),
        ),
        (
            "volumes",
            map(vec![
                ("pgdata", map(vec![])),
                (aws_volume.as_str(), map(vec![])),
                ("lfmtdata", map(vec![])),
            ]),
        ),
    ]);
    let mut body = String::new();
    emit(&document, 0, &mut body);
    Ok(format!("{}{}", header(config), body.trim_start()))
}

fn header(config: &Config) -> String {
    let (emulator, file, build) = match config.aws.emulator {
        crate::config::Emulator::Ministack => (
            "ministack",
            "compose/docker-compose.yml",
            "cargo xtask images build                      ",
        ),
        crate::config::Emulator::Localstack => (
            "LocalStack",
            "compose/docker-compose.localstack.yml",
            "cargo xtask images build --only localstack    ",
        ),
    };
    let required = REQUIRED_VARIABLES.join(", ");
    let ports = PORT_VARIABLES
        .iter()
        .map(|(n, p)| format!("{n} ({p})"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "# Rendered by `cargo xtask compose render` from the harness's service definitions: do not edit by hand.\n\
         # The local stack without the harness: Postgres, the AWS emulator ({emulator}; a one-shot job creates the tenant\n\
         # bucket) and the reference multi-tenant Langflow image, every port on 127.0.0.1 only.\n\
         #\n\
         #   {build} # the images (nothing is pulled)\n\
         #   export {required}   # or put them in compose/.env\n\
         #   docker-compose -f {file} up -d\n\
         #   docker-compose -f {file} exec langflow python /app/tenantmgr.py schema-add --prefix acme\n\
         #   docker-compose -f {file} exec langflow python /app/tenantmgr.py user-add --schema <schema id> --username admin@acme.com\n\
         #   open http://127.0.0.1:7860/tenant/acme/\n\
         #\n\
         # Required: {required} (the seed: at least 32 characters; keep it: every tenant's keys and database\n\
         # role password derive from it). Optional host ports: {ports}; images: POSTGRES_IMAGE, AWS_IMAGE,\n\
         # LANGFLOW_MT_IMAGE; LANGFLOW_RATE_LIMIT_PER_MINUTE (logins per minute per client).\n"
    )
}

/// Where the compose file of the repository at `root` lives.
pub fn compose_path(root: &Path) -> PathBuf {
    root.join(COMPOSE_FILE)
}

/// The compose file for `config`'s emulator: `compose/docker-compose.yml` (ministack) or
/// `compose/docker-compose.localstack.yml`.
pub fn compose_path_for(config: &Config) -> PathBuf {
    match config.aws.emulator {
        crate::config::Emulator::Ministack => compose_path(&config.root),
        crate::config::Emulator::Localstack => config
            .root
            .join("compose")
            .join("docker-compose.localstack.yml"),
    }
}

/// What `render_to` did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RenderOutcome {
    /// The file.
    pub path: PathBuf,
    /// Whether its content changed.
    pub changed: bool,
}

/// Renders into `path` (only written when the content differs).
pub fn render_to(config: &Config, path: &Path) -> Result<RenderOutcome> {
    let text = render(config)?;
    let current = std::fs::read_to_string(path).ok();
    let changed = current.as_deref() != Some(text.as_str());
    if changed {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(RenderOutcome {
        path: path.to_path_buf(),
        changed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_config() -> Config {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("workspace root")
            .to_path_buf();
        Config::load(&root).expect("harness.toml loads")
    }

    #[test]
    fn committed_compose_files_equal_the_render() {
        for emulator in [
            crate::config::Emulator::Ministack,
            crate::config::Emulator::Localstack,
        ] {
            let mut config = repo_config();
            config.aws.emulator = emulator;
            let path = compose_path_for(&config);
            let committed = std::fs::read_to_string(&path)
                .unwrap_or_else(|_| panic!("{} is committed", path.display()));
            let rendered = render(&config).unwrap();
            assert!(
                committed == rendered,
                "{} is stale: run `cargo xtask --emulator {emulator} compose render` and commit it",
                path.display()
            );
        }
    }

    #[test]
    fn the_localstack_render_runs_localstack_and_never_holds_its_token() {
        let mut config = repo_config();
        config.aws.emulator = crate::config::Emulator::Localstack;
        // The render never reads the token (a value given to the spec is not what it uses).
        let text = render(&config).unwrap();
        let doc: serde_json::Value = serde_norway::from_str(&text).expect("valid YAML");
        let aws_service = &doc["services"][AWS];
        assert_eq!(
            aws_service["image"],
            "${AWS_IMAGE:-langflow-infra/localstack:4.14.0}"
        );
        assert_eq!(
            aws_service["environment"]["LOCALSTACK_AUTH_TOKEN"],
            "${LOCALSTACK_AUTH_TOKEN:-}"
        );
        assert!(aws_service["healthcheck"]["test"]
            .to_string()
            .contains("/_localstack/health"));
        assert_eq!(doc["services"][AWS_INIT]["image"], aws_service["image"]);
    }

    #[test]
    fn render_is_yaml_with_loopback_ports_health_checks_and_no_secret() {
        let config = repo_config();
        let text = render(&config).unwrap();
        let doc: serde_json::Value = serde_norway::from_str(&text).expect("valid YAML");
        let services = doc["services"].as_object().unwrap();
        // serde_json keeps document order when a dependency enables preserve_order: compare sorted.
        let mut names = services.keys().map(String::as_str).collect::<Vec<_>>();
        names.sort_unstable();
        assert_eq!(names, [AWS, AWS_INIT, LANGFLOW, POSTGRES]);
        for (name, service) in services {
            for port in service["ports"].as_array().into_iter().flatten() {
                assert!(
                    port.as_str().unwrap().starts_with("127.0.0.1:"),
                    "{name}: {port}"
                );
            }
            if name != AWS_INIT {
                assert!(service["healthcheck"]["test"].is_array(), "{name}");
            }
        }
        assert_eq!(
            services[LANGFLOW]["depends_on"][POSTGRES]["condition"],
            "service_healthy"
        );
        assert_eq!(
            services[LANGFLOW]["image"],
            "${LANGFLOW_MT_IMAGE:-langflow-infra/langflow-multi-tenant:1.13.0}"
        );
        assert!(services[POSTGRES]["environment"]["POSTGRES_PASSWORD"]
            .as_str()
            .unwrap()
            .starts_with("${POSTGRES_PASSWORD:?"));
        assert!(!text.contains('\u{0}'));
        assert!(!text.contains("version:"));
    }

    /// Every variable the Fargate TaskDefinition gives the container (Environment and Secrets)
    /// is in the compose service's environment too: compose runs the image as deployed.
    #[test]
    fn multi_tenant_env_covers_the_task_definition() {
        let config = repo_config();
        let path = config.root.join("aws/apps/fargate-stack.cfn.yaml");
        let template = crate::validate::template::load(&path, "fargate-stack.cfn.yaml")
            .unwrap_or_else(|f| panic!("{}", f.message));
        let container =
            &template.body["Resources"]["TaskDefinition"]["Properties"]["ContainerDefinitions"][0];
        let env = multi_tenant_env(&config);
        let mut names = Vec::new();
        for section in ["Environment", "Secrets"] {
            for entry in container[section].as_array().expect(section) {
                names.push(entry["Name"].as_str().unwrap().to_string());
            }
        }
        assert!(names.contains(&"LANGFLOW_TENANT_KEY_SEED".to_string()));
        for name in names {
            assert!(env.contains_key(&name), "compose lacks {name}");
        }
    }
}
