//! `state-dir-read-only` and `state-dir-full`: `cargo xtask tenant schema-add` run as a user runs
//! it while the state dir is read-only (a read-only bind mount over it) or while the disk under
//! the tenants' directory is full (a small tmpfs mounted there before `up`, filled with a
//! ballast file). Pass: the command fails with one clear line naming the cause, and nothing of
//! the tenant exists afterwards — no schema, role, secrets, instance, route or directory — while
//! the rest of the stack keeps serving. Mounting needs root (CI runs as root); elsewhere both
//! scenarios are reported as skipped with that reason.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use super::{ChaosContext, ScenarioResult};

/// Size of the tmpfs under the tenants' directory (room for the tenants' config dirs).
const TENANTS_FS_SIZE: &str = "64m";

/// A tmpfs mounted on `<state dir>/tenants` for the run; unmounted on drop.
#[derive(Debug)]
pub struct TenantsMount {
    state_dir: PathBuf,
    dir: PathBuf,
}

fn mount(args: &[&str]) -> Result<()> {
    let output = Command::new("mount")
        .args(args)
        .output()
        .context("cannot run mount")?;
    if !output.status.success() {
        bail!(
            "mount {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    Ok(())
}

fn umount(dir: &Path) {
    let _ = Command::new("umount").arg("-l").arg(dir).output();
}

impl TenantsMount {
    /// Mounts the tmpfs; `Err` holds why the disk scenarios cannot run here.
    pub fn prepare(state_dir: &Path) -> std::result::Result<Self, String> {
        if !nix::unistd::geteuid().is_root() {
            return Err(
                "needs root to mount a small filesystem under the state dir (CI runs as root)"
                    .into(),
            );
        }
        let dir = state_dir.join("tenants");
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        mount(&[
            "-t",
            "tmpfs",
            "-o",
            &format!("size={TENANTS_FS_SIZE},mode=0700"),
            "lfi-chaos-tenants",
            &dir.display().to_string(),
        ])
        .map_err(|e| format!("{e:#}"))?;
        Ok(Self {
            state_dir: state_dir.to_path_buf(),
            dir,
        })
    }
}

impl Drop for TenantsMount {
    fn drop(&mut self) {
        umount(&self.dir);
    }
}

/// Runs one disk scenario.
pub async fn run(
    context: &ChaosContext<'_>,
    scenario: &str,
    mount_point: &TenantsMount,
) -> Result<ScenarioResult> {
    let mut result = ScenarioResult::new(scenario);
    let prefix = if scenario == "state-dir-full" {
        "chaos-full"
    } else {
        "chaos-ro"
    };
    let (expected, undo): (&str, Box<dyn FnOnce()>) = if scenario == "state-dir-full" {
        let ballast = mount_point.dir.join("ballast");
        fill(&ballast)?;
        result.note(format!("{} filled", mount_point.dir.display()));
        (
            "No space left on device",
            Box::new(move || {
                let _ = std::fs::remove_file(&ballast);
            }),
        )
    } else {
        let dir = mount_point.state_dir.display().to_string();
        mount(&["--bind", &dir, &dir])?;
        if let Err(e) = mount(&["-o", "remount,bind,ro", &dir]) {
            umount(&mount_point.state_dir);
            return Err(e);
        }
        result.note(format!("{dir} mounted read-only"));
        let state_dir = mount_point.state_dir.clone();
        (
            "Read-only file system",
            Box::new(move || {
                let _ = Command::new("umount").arg(&state_dir).output();
            }),
        )
    };
    let config = context.stack.config();
    let output = tokio::task::block_in_place(|| {
        Command::new(&context.options.cli)
            .args(["tenant", "schema-add", "--prefix", prefix])
            .env("LANGFLOW_INFRA_ROOT", &config.root)
            .env("LANGFLOW_INFRA_STATE_DIR", &config.state_dir)
            .env("LANGFLOW_INFRA_TENANTS_FILE", &config.tenants_file)
            .output()
    });
    undo();
    let output = output.context("cannot run cargo xtask tenant schema-add")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    let error_line = stderr
        .lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .unwrap_or("")
        .to_string();
    if output.status.success() {
        result.fail(format!("schema-add --prefix {prefix} succeeded"));
    } else if !error_line.contains(expected) {
        result.fail(format!(
            "the error does not name the cause ({expected:?}): {:?}",
            stderr.trim()
        ));
    } else {
        result.note(format!("schema-add failed with: {error_line}"));
    }
    let half_made = leftovers_of(context, prefix).await?;
    if half_made.is_empty() {
        result.note("nothing of the tenant was left");
    } else {
        result.fail(format!("left behind: {}", half_made.join(", ")));
    }
    context.check_data(&mut result).await;
    Ok(result)
}

/// Writes zeros to `path` until the filesystem is full.
fn fill(path: &Path) -> Result<()> {
    let mut file =
        std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let block = vec![0u8; 1 << 20];
    loop {
        match file.write_all(&block) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => break,
            Err(e) => return Err(e).with_context(|| format!("cannot fill {}", path.display())),
        }
    }
    // The last partial block: fill byte by byte up to the limit.
    while file.write_all(&[0u8; 512]).is_ok() {}
    let _ = file.sync_all();
    Ok(())
}

/// Whatever of tenant `prefix` exists: schemas (any comment), roles, secrets, an instance in
/// the run state, a route, a directory under the state dir's tenants.
async fn leftovers_of(context: &ChaosContext<'_>, prefix: &str) -> Result<Vec<String>> {
    let tenancy = super::tenancy(context)?;
    let client = tenancy.admin_target().connect().await?;
    let pattern = format!("{prefix}-%");
    let mut found = Vec::new();
    for (what, sql) in [
        (
            "schema",
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE $1",
        ),
        ("role", "SELECT rolname FROM pg_roles WHERE rolname LIKE $1"),
    ] {
        for row in client.query(sql, &[&pattern]).await? {
            found.push(format!("{what} {}", row.get::<_, String>(0)));
        }
    }
    let files = context.stack.files();
    let needle = format!("{prefix}-");
    for schema in files.read_secrets()?.tenants.keys() {
        if schema.starts_with(&needle) {
            found.push(format!("secrets of {schema}"));
        }
    }
    if let Some(state) = files.read_state()? {
        let instance = crate::services::langflow::service_name(prefix);
        if state.services.contains_key(&instance) {
            found.push(format!("service {instance}"));
        }
    }
    let routes = std::fs::read_to_string(context.stack.routes_path()).unwrap_or_default();
    if routes.contains(&format!("\"{prefix}\"")) {
        found.push("a gateway route".into());
    }
    let tenants_dir = context.stack.config().state_dir.join("tenants");
    if let Ok(entries) = std::fs::read_dir(&tenants_dir) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&needle) {
                found.push(format!("directory {}", entry.path().display()));
            }
        }
    }
    Ok(found)
}
