//! Run state on disk: `state.json` (what is running: pids, ports, URLs) and `secrets.json`
//! (generated credentials that must outlive a `down` as long as the data they protect does).
//!
//! Both files are written atomically (temp file + rename) with mode 0600. A lock file serialises
//! commands that change the state (`up`, `down`, tenant changes) across shells.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::process::RunningProcess;

/// Current state file format version.
pub const STATE_VERSION: u32 = 1;

/// What one `up` started and where to reach it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct RunState {
    /// Format version of this file.
    pub version: u32,
    /// Runtime that started the services (`native`).
    pub runtime: String,
    /// The AWS emulator of the run (`ministack`, `localstack`); absent in older state files
    /// (ministack). Commands on a running stack use this one, whatever is configured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub emulator: Option<crate::config::Emulator>,
    /// Unix time (seconds) the run started.
    pub started_at: u64,
    /// Services by name, in start order of their names.
    pub services: BTreeMap<String, ServiceRecord>,
}

/// One running service: its process and how to reach it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRecord {
    /// The process the runtime started.
    pub process: RunningProcess,
    /// Port it listens on (127.0.0.1).
    pub port: u16,
    /// URL a client uses (no credentials in it).
    pub url: String,
    /// Log file (stdout + stderr).
    pub log: PathBuf,
    /// How `status` checks it answers.
    pub probe: Probe,
    /// Stop tier: higher tiers stop first (0 infrastructure, 1 gateway, 2 tenant instances).
    pub tier: u8,
    /// How often the harness restarted it after it had stopped (repair, supervisor).
    #[serde(default)]
    pub restarts: u32,
    /// Why it stopped the last time it was restarted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_exit: Option<String>,
}

/// How `status` checks that a service answers.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Probe {
    /// Connect to Postgres as the superuser and run `SELECT 1`.
    Postgres,
    /// Alive is healthy (a service with no endpoint: the supervisor).
    Alive,
    /// `GET url` answers 2xx.
    Http {
        /// URL to fetch.
        url: String,
        /// PEM certificate to trust for an `https://` URL (the gateway's self-signed one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<PathBuf>,
    },
}

/// Generated secrets that belong to the run's data (kept across `down`, dropped by `down --volumes`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Secrets {
    /// Password of the Postgres superuser `postgres`.
    pub postgres_password: Option<String>,
    /// Per-tenant secrets, by schema id.
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantSecrets>,
    /// Image mode: the RDS master user's password (its secret in the emulator is made from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_db_password: Option<String>,
    /// Image mode: the Fargate stack's `TenantKeySeed` (kept, as the stack retains the secret:
    /// a new seed would change every tenant's keys and role passwords).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_key_seed: Option<String>,
}

/// Secrets of one tenant: what its Langflow instance needs to start. User passwords are never
/// stored (only their bcrypt hashes, in the tenant's `user` table).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TenantSecrets {
    /// Password of the tenant's Postgres login role.
    pub role_password: String,
    /// The instance's `LANGFLOW_SECRET_KEY` (urlsafe base64 of 32 random bytes), never shared.
    pub secret_key: String,
    /// Password of the tenant's operator superuser (Langflow requires one at start when
    /// auto-login is off; see `tenancy::OPERATOR_USERNAME`).
    pub operator_password: String,
}

/// Paths of the state files inside a state directory.
#[derive(Debug, Clone)]
pub struct StateFiles {
    dir: PathBuf,
}

impl StateFiles {
    /// State files under `dir` (created on first write).
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
        }
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of `state.json`.
    pub fn state_path(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    /// Path of `secrets.json`.
    pub fn secrets_path(&self) -> PathBuf {
        self.dir.join("secrets.json")
    }

    /// Creates the state directory (mode 0755: the Postgres OS user must traverse it; files are 0600).
    pub fn ensure_dir(&self) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(&self.dir)
            .with_context(|| format!("cannot create state directory {}", self.dir.display()))
    }

    /// Takes the exclusive lock for commands that change the run (blocks while another holds it).
    pub fn lock(&self) -> Result<Flock<File>> {
        self.lock_with(FlockArg::LockExclusive)?
            .map_err(|e| anyhow::anyhow!("cannot lock {}: {e}", self.dir.join("lock").display()))
    }

    /// Takes the lock only if nobody holds it (`Ok(None)` when busy).
    pub fn try_lock(&self) -> Result<Option<Flock<File>>> {
        match self.lock_with(FlockArg::LockExclusiveNonblock)? {
            Ok(lock) => Ok(Some(lock)),
            Err(nix::errno::Errno::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(anyhow::anyhow!(
                "cannot lock {}: {e}",
                self.dir.join("lock").display()
            )),
        }
    }

    fn lock_with(
        &self,
        mode: FlockArg,
    ) -> Result<std::result::Result<Flock<File>, nix::errno::Errno>> {
        self.ensure_dir()?;
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot open lock file {}", path.display()))?;
        Ok(Flock::lock(file, mode).map_err(|(_, e)| e))
    }

    /// Reads `state.json`; `Ok(None)` when nothing is running. A corrupt file is an error naming
    /// the file and the way out.
    pub fn read_state(&self) -> Result<Option<RunState>> {
        read_json(&self.state_path(), "run state")
    }

    /// Writes `state.json` atomically with mode 0600.
    pub fn write_state(&self, state: &RunState) -> Result<()> {
        write_json_0600(&self.state_path(), state)
    }

    /// Removes `state.json` (no error when absent).
    pub fn remove_state(&self) -> Result<()> {
        remove_if_exists(&self.state_path())
    }

    /// Reads `secrets.json`, or empty secrets when absent.
    pub fn read_secrets(&self) -> Result<Secrets> {
        Ok(read_json(&self.secrets_path(), "secrets")?.unwrap_or_default())
    }

    /// Writes `secrets.json` atomically with mode 0600.
    pub fn write_secrets(&self, secrets: &Secrets) -> Result<()> {
        write_json_0600(&self.secrets_path(), secrets)
    }
}

/// Reads a JSON record of the state dir; `Ok(None)` when the file does not exist. A corrupt
/// file is an error naming it, `what` it is, and the way out.
pub fn read_json<T: DeserializeOwned>(path: &Path, what: &str) -> Result<Option<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    serde_json::from_str(&text).map(Some).map_err(|e| {
        anyhow::anyhow!(
            "{} is corrupt ({what}: {e}); run `cargo xtask down` to stop what that run left and reset it",
            path.display()
        )
    })
}

/// Writes `value` as pretty JSON to `path` through a 0600 temp file and a rename.
pub fn write_json_0600<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    write_private(path, &serde_json::to_vec_pretty(value)?)
}

/// Writes `bytes` to `path` (mode 0600) through a temp file and a rename, so readers never see
/// a half-written file.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// Creates a directory only its owner can enter (0700), for data that must stay private
/// (tenant files, emulator data).
pub fn create_private_dir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Removes a file, ignoring "not found".
pub fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn state_round_trips_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles::new(dir.path());
        files.ensure_dir().unwrap();
        assert!(files.read_state().unwrap().is_none());
        let state = RunState {
            version: STATE_VERSION,
            runtime: "native".into(),
            ..Default::default()
        };
        files.write_state(&state).unwrap();
        let mode = std::fs::metadata(files.state_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(files.read_state().unwrap().unwrap().runtime, "native");
    }

    #[test]
    fn corrupt_state_names_file_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let files = StateFiles::new(dir.path());
        std::fs::write(files.state_path(), "{not json").unwrap();
        let err = files.read_state().unwrap_err().to_string();
        assert!(err.contains("state.json is corrupt"), "{err}");
        assert!(err.contains("cargo xtask down"), "{err}");
    }
}
