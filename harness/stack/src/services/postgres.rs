//! Postgres from the system's binaries: initdb into the state directory, one server on a
//! 127.0.0.1 port with no Unix socket, scram-sha-256 auth with a generated superuser password,
//! run as an unprivileged OS user when the harness runs as root.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use tokio_postgres::{Client, NoTls};

use harness_core::config::Config;
use harness_core::net;
use harness_core::secret;
use harness_core::sql::quote_ident;
use harness_runtime::runtime::{ContainerSpec, Placement, ProcessSpec, StopSignal};

/// Superuser name created by initdb.
pub const SUPERUSER: &str = "postgres";

/// The apt package that provides the server binaries.
const APT_PACKAGE: &str = "postgresql";

/// Where the server binaries are, checked to contain `initdb` and `postgres`.
pub fn find_bin_dir(config: &Config) -> Result<PathBuf> {
    let has_binaries = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if !config.postgres.bin_dir.is_empty() {
        let dir = PathBuf::from(&config.postgres.bin_dir);
        if has_binaries(&dir) {
            return Ok(dir);
        }
        bail!(
            "postgres.bin_dir = {} has no initdb/postgres; point it at a PostgreSQL bin directory or \
             install the server (apt-get install {APT_PACKAGE})",
            dir.display()
        );
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if let Ok(real) = std::fs::canonicalize(dir.join("initdb")) {
                candidates.extend(real.parent().map(Path::to_path_buf));
            }
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        if out.status.success() {
            candidates.push(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
        }
    }
    if let Ok(entries) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<(u32, PathBuf)> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path().join("bin"))))
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        candidates.extend(versions.into_iter().map(|(_, dir)| dir));
    }
    candidates.into_iter().find(|d| has_binaries(d)).ok_or_else(|| {
        anyhow::anyhow!(
            "PostgreSQL server binaries (initdb, postgres) not found on PATH, via pg_config or in \
             /usr/lib/postgresql/*/bin; install them with `apt-get install {APT_PACKAGE}` or set postgres.bin_dir"
        )
    })
}

/// The OS user postgres runs as: `None` when the harness is not root (it runs as the caller).
pub fn run_as_user(config: &Config) -> Result<Option<(u32, u32)>> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = &config.postgres.os_user;
    match nix::unistd::User::from_name(name)? {
        Some(user) => Ok(Some((user.uid.as_raw(), user.gid.as_raw()))),
        None => bail!(
            "running as root and OS user '{name}' (postgres.os_user) does not exist; postgres refuses to \
             run as root: install the server (apt-get install {APT_PACKAGE}) which creates it, or set \
             postgres.os_user to an unprivileged user"
        ),
    }
}

/// Checks that `uid` can reach `dir` through all of its ancestors.
fn check_traversable(dir: &Path, uid: u32, user: &str) -> Result<()> {
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.permissions().mode();
        let reachable = if meta.uid() == uid {
            mode & 0o100 != 0
        } else {
            mode & 0o001 != 0
        };
        if !reachable {
            bail!(
                "postgres runs as OS user '{user}', which cannot enter {} (mode {:o}); put the state \
                 directory elsewhere (LANGFLOW_INFRA_STATE_DIR=/tmp/...) or `chmod o+x {}`",
                ancestor.display(),
                mode & 0o777,
                ancestor.display()
            );
        }
    }
    Ok(())
}

/// Directories of the Postgres service inside the state directory.
#[derive(Debug, Clone)]
pub struct PostgresDirs {
    /// `<state>/postgres`, owned by the postgres OS user.
    pub root: PathBuf,
    /// The cluster's data directory.
    pub data: PathBuf,
}

impl PostgresDirs {
    /// Directories for `config`.
    pub fn new(config: &Config) -> Self {
        let root = config.state_dir.join("postgres");
        Self {
            data: root.join("data"),
            root,
        }
    }

    /// Whether a cluster was already initialised here.
    pub fn initialised(&self) -> bool {
        self.data.join("PG_VERSION").is_file()
    }
}

/// Runs initdb unless the data directory is already initialised; returns the superuser password
/// (generated for a new cluster, `known_password` for an existing one).
pub fn prepare_cluster(
    config: &Config,
    bin_dir: &Path,
    run_as: Option<(u32, u32)>,
    known_password: Option<String>,
) -> Result<String> {
    let dirs = PostgresDirs::new(config);
    if dirs.initialised() {
        clear_stale_lock(&dirs.data)?;
        return known_password.ok_or_else(|| {
            anyhow::anyhow!(
                "Postgres data in {} has no recorded password (secrets.json is missing); run \
                 `cargo xtask down --volumes` to start from a fresh cluster",
                dirs.data.display()
            )
        });
    }
    if dirs.data.exists() {
        std::fs::remove_dir_all(&dirs.data)
            .with_context(|| format!("cannot remove half-initialised {}", dirs.data.display()))?;
    }
    std::fs::create_dir_all(&dirs.root)
        .with_context(|| format!("cannot create {}", dirs.root.display()))?;
    std::fs::set_permissions(&dirs.root, std::fs::Permissions::from_mode(0o700))?;
    if let Some((uid, gid)) = run_as {
        check_traversable(&dirs.root, uid, &config.postgres.os_user)?;
        nix::unistd::chown(
            &dirs.root,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )?;
    }
    let password = secret::password(24);
    let pwfile = dirs.root.join("pwfile");
    secret::write_secret_file(&pwfile, password.as_bytes())?;
    if let Some((uid, gid)) = run_as {
        nix::unistd::chown(
            &pwfile,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
        )?;
    }
    let mut initdb = Command::new(bin_dir.join("initdb"));
    initdb
        .arg("-D")
        .arg(&dirs.data)
        .args([
            "-U",
            SUPERUSER,
            "--auth=scram-sha-256",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])
        .arg(format!("--pwfile={}", pwfile.display()))
        .current_dir(&dirs.root);
    if let Some((uid, gid)) = run_as {
        use std::os::unix::process::CommandExt;
        initdb.uid(uid).gid(gid);
    }
    let out = initdb.output().context("cannot run initdb")?;
    let _ = std::fs::remove_file(&pwfile);
    if !out.status.success() {
        let _ = std::fs::remove_dir_all(&dirs.data);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        bail!("initdb failed for {}: {last}", dirs.data.display());
    }
    Ok(password)
}

/// The server process for a prepared cluster on `port`.
pub fn process_spec(
    config: &Config,
    bin_dir: &Path,
    run_as: Option<(u32, u32)>,
    port: u16,
) -> ProcessSpec {
    let dirs = PostgresDirs::new(config);
    let settings = ["listen_addresses=127.0.0.1", "unix_socket_directories="]
        .iter()
        .chain(SERVER_SETTINGS)
        .map(|s| s.to_string());
    let mut args = vec![
        "-D".to_string(),
        dirs.data.display().to_string(),
        "-p".into(),
        port.to_string(),
    ];
    for setting in settings {
        args.push("-c".into());
        args.push(setting);
    }
    ProcessSpec {
        name: "postgres".into(),
        program: bin_dir.join("postgres"),
        args,
        env: BTreeMap::from([("LC_ALL".to_string(), "C".to_string())]),
        cwd: dirs.root.clone(),
        log: config.log_dir().join("postgres.log"),
        run_as,
        stop_signal: StopSignal::Int,
        port,
        container: None,
        fork_server: None,
    }
}

/// The server of a run placed by `placement`, on host port `port`: natively the system's binaries
/// on a cluster initialised in the state directory (initdb on first use), in containers the
/// Postgres image with its data in the run's volume. Returns the superuser password (the known
/// one, or a new one for a new cluster) and the spec.
pub async fn server_spec(
    config: &Config,
    placement: &Placement,
    known_password: Option<String>,
    port: u16,
) -> Result<(String, ProcessSpec)> {
    if placement.containers {
        let password = known_password.unwrap_or_else(|| secret::password(24));
        return Ok((password.clone(), container_spec(config, &password, port)));
    }
    let bin_dir = find_bin_dir(config)?;
    let run_as = run_as_user(config)?;
    let password = {
        let (config, bin_dir) = (config.clone(), bin_dir.clone());
        tokio::task::spawn_blocking(move || {
            prepare_cluster(&config, &bin_dir, run_as, known_password)
        })
        .await??
    };
    Ok((password, process_spec(config, &bin_dir, run_as, port)))
}

/// Removes `postmaster.pid` when the postmaster it names is gone. A postmaster killed with -9
/// whose parent has not collected it yet (a zombie: the `up --foreground` still running, a test
/// process) passes Postgres's own `kill(pid, 0)` check, and the restart then refuses to start
/// ("Is another postmaster running?") for as long as the zombie stays.
fn clear_stale_lock(data: &Path) -> Result<()> {
    let lock = data.join("postmaster.pid");
    let Ok(text) = std::fs::read_to_string(&lock) else {
        return Ok(());
    };
    let Some(pid) = text
        .lines()
        .next()
        .and_then(|l| l.trim().parse::<i32>().ok())
    else {
        return Ok(());
    };
    let state = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let rest = &stat[stat.rfind(')')? + 2..];
            rest.chars().next()
        });
    if matches!(state, None | Some('Z')) {
        std::fs::remove_file(&lock)
            .with_context(|| format!("cannot remove the stale {}", lock.display()))?;
    }
    Ok(())
}

/// Port Postgres listens on inside its container.
pub const CONTAINER_PORT: u16 = 5432;

/// Server settings for a disposable development cluster hosting every tenant's Langflow pool.
const SERVER_SETTINGS: &[&str] = &[
    "max_connections=300",
    // Durability against OS crashes is not worth the latency here.
    "fsync=off",
    "synchronous_commit=off",
    "full_page_writes=off",
];

/// Postgres in a container (the official image's contract: POSTGRES_PASSWORD/USER/DB, data in
/// /var/lib/postgresql/data) with its data in the run's `pgdata` volume, published on `port`
/// (0 = any) of 127.0.0.1.
pub fn container_spec(config: &Config, password: &str, port: u16) -> ProcessSpec {
    let mut command = vec!["postgres".to_string()];
    for setting in SERVER_SETTINGS {
        command.push("-c".into());
        command.push(setting.to_string());
    }
    ProcessSpec {
        name: "postgres".into(),
        program: "postgres".into(),
        args: Vec::new(),
        env: BTreeMap::new(),
        cwd: config.state_dir.clone(),
        log: config.log_dir().join("postgres.log"),
        run_as: None,
        stop_signal: StopSignal::Int,
        port,
        container: Some(ContainerSpec {
            image: "postgres".into(),
            command,
            env: BTreeMap::from([
                ("POSTGRES_USER".to_string(), SUPERUSER.to_string()),
                ("POSTGRES_PASSWORD".to_string(), password.to_string()),
                ("POSTGRES_DB".to_string(), config.postgres.database.clone()),
                ("LC_ALL".to_string(), "C.UTF-8".to_string()),
            ]),
            container_port: CONTAINER_PORT,
            binds: Vec::new(),
            volumes: vec![("pgdata".into(), "/var/lib/postgresql/data".into())],
            user: None,
        }),
        fork_server: None,
    }
}

/// Connection parameters for a database on the harness's server.
#[derive(Debug, Clone)]
pub struct PgTarget {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Login role.
    pub user: String,
    /// Its password.
    pub password: String,
    /// Database name.
    pub database: String,
}

impl PgTarget {
    /// The superuser on `database`.
    pub fn superuser(port: u16, password: &str, database: &str) -> Self {
        Self {
            port,
            user: SUPERUSER.into(),
            password: password.into(),
            database: database.into(),
        }
    }

    /// Opens a connection (the connection task runs in the background).
    pub async fn connect(&self) -> Result<Client> {
        let mut pg = tokio_postgres::Config::new();
        pg.host("127.0.0.1")
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(&self.database)
            .connect_timeout(Duration::from_secs(3));
        let (client, connection) = pg.connect(NoTls).await.with_context(|| {
            format!(
                "cannot connect to Postgres at 127.0.0.1:{} as {} (is the stack up? `cargo xtask status`)",
                self.port, self.user
            )
        })?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        Ok(client)
    }

    /// A `postgresql://` URL for this target, with the password (for child process env only).
    pub fn url_with_password(&self) -> String {
        self.url_with_password_via(&Placement::native())
    }

    /// The URL a service placed by `placement` uses (in containers: the `postgres` container on
    /// the run's network).
    pub fn url_with_password_via(&self, placement: &Placement) -> String {
        let (host, port) = placement.peer("postgres", self.port, CONTAINER_PORT);
        format!(
            "postgresql://{}:{}@{host}:{port}/{}",
            self.user, self.password, self.database
        )
    }
}

/// Waits until the server accepts the superuser and answers a query.
pub async fn wait_ready(
    port: u16,
    password: &str,
    timeout: Duration,
    alive: impl FnMut() -> bool,
) -> Result<()> {
    let target = PgTarget::superuser(port, password, "postgres");
    net::wait_until(
        "postgres",
        timeout,
        Duration::from_millis(150),
        alive,
        || {
            let target = target.clone();
            async move {
                let client = target.connect().await?;
                client.simple_query("SELECT 1").await?;
                Ok(true)
            }
        },
    )
    .await
}

/// Creates `database` unless it exists.
pub async fn ensure_database(port: u16, password: &str, database: &str) -> Result<()> {
    let client = PgTarget::superuser(port, password, "postgres")
        .connect()
        .await?;
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&database])
        .await?
        .is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE {}", quote_ident(database)))
            .await
            .with_context(|| format!("cannot create database {database}"))?;
    }
    Ok(())
}

/// Liveness probe used by `status`: connect and `SELECT 1`.
pub async fn probe(port: u16, password: &str, database: &str) -> Result<()> {
    let client = PgTarget::superuser(port, password, database)
        .connect()
        .await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}
