//! Managed Python virtual environments under the cache directory, keyed by name and version and
//! reused across runs. A venv counts as installed only when its marker file holds exactly the
//! requirements it was built for; an interrupted install is redone. A lock file serialises
//! concurrent installs of the same venv (parallel tests, two shells).
//!
//! Installs go through uv (PyPI, pinned, itself bootstrapped once into its own venv with pip):
//! it resolves Langflow's ~340 packages in seconds where pip backtracks for many minutes, and a
//! committed constraints file pins every transitive version.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::progress::Step;

const MARKER: &str = ".installed";
/// Pinned uv version used to install every venv.
pub const UV_VERSION: &str = "0.13.9";

/// A Python venv holding pinned requirements.
#[derive(Debug, Clone)]
pub struct Venv {
    dir: PathBuf,
    requirements: Vec<String>,
    constraints: Option<&'static str>,
}

impl Venv {
    /// A venv named `name` under `venv_root`, for the given pinned requirements.
    pub fn new(venv_root: &Path, name: &str, requirements: &[&str]) -> Self {
        Self {
            dir: venv_root.join(name),
            requirements: requirements.iter().map(|r| r.to_string()).collect(),
            constraints: None,
        }
    }

    /// Pins transitive dependencies with a constraints file's contents (`pkg==version` lines).
    pub fn with_constraints(mut self, constraints: &'static str) -> Self {
        self.constraints = Some(constraints);
        self
    }

    /// The venv directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Path of an executable inside the venv's `bin/`.
    pub fn bin(&self, program: &str) -> PathBuf {
        self.dir.join("bin").join(program)
    }

    fn marker_text(&self) -> String {
        let mut text = self.requirements.join(" ");
        if let Some(constraints) = self.constraints {
            // A changed constraints file means a different venv.
            let digest = constraints.bytes().fold(0xcbf29ce484222325u64, |h, b| {
                (h ^ b as u64).wrapping_mul(0x100000001b3)
            });
            text.push_str(&format!(" (constraints {digest:016x})"));
        }
        text
    }

    /// Whether the venv is installed with exactly these requirements.
    pub fn is_installed(&self) -> bool {
        std::fs::read_to_string(self.dir.join(MARKER))
            .map(|m| m.trim() == self.marker_text())
            .unwrap_or(false)
    }

    /// Creates and installs the venv unless it is already installed, showing progress.
    pub fn ensure(&self, python: &str) -> Result<()> {
        if self.is_installed() {
            return Ok(());
        }
        let parent = self.dir.parent().expect("venv dir has a parent");
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create {}", parent.display()))?;
        let _lock = lock_beside(&self.dir)?;
        if self.is_installed() {
            return Ok(()); // another process installed it while we waited
        }
        let step = Step::start(format!("installing {}", self.marker_text()));
        match self.install(python, &step) {
            Ok(count) => {
                step.finish(format!("into {} ({count} packages)", self.dir.display()));
                Ok(())
            }
            Err(e) => {
                step.fail();
                Err(e)
            }
        }
    }

    fn install(&self, python: &str, step: &Step) -> Result<usize> {
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir)
                .with_context(|| format!("cannot remove incomplete venv {}", self.dir.display()))?;
        }
        let uv = ensure_uv(
            self.dir.parent().expect("venv dir has a parent"),
            python,
            step,
        )?;
        step.set_message("creating venv");
        let out = Command::new(&uv)
            .args(["venv", "--quiet", "--python", python])
            .arg(&self.dir)
            .output()
            .context("cannot run uv")?;
        if !out.status.success() {
            bail!(
                "`uv venv --python {python}` failed: {}; install Python 3 or set LANGFLOW_INFRA_PYTHON",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let mut command = Command::new(&uv);
        command
            .args(["pip", "install", "--python"])
            .arg(self.bin("python"))
            .args(&self.requirements);
        if let Some(constraints) = self.constraints {
            let path = self.dir.join("constraints.txt");
            std::fs::write(&path, constraints)?;
            command.arg("--constraint").arg(path);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run uv pip install")?;
        let stdout = child.stdout.take().expect("piped");
        let stdout_reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .collect::<Vec<_>>()
        });
        // uv reports on stderr: "Resolved N packages", "Downloading x", "Prepared", " + pkg==v".
        let mut installed = 0usize;
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(child.stderr.take().expect("piped")).lines() {
            let line = line?;
            let trimmed = line.trim();
            if trimmed.starts_with("+ ") {
                installed += 1;
            } else if trimmed.starts_with("Resolved")
                || trimmed.starts_with("Downloading")
                || trimmed.starts_with("Prepared")
                || trimmed.starts_with("Installed")
            {
                step.set_message(trimmed.to_string());
            }
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
        let status = child.wait()?;
        let _ = stdout_reader.join();
        if !status.success() {
            let last = tail
                .iter()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map(String::as_str)
                .unwrap_or("");
            bail!(
                "installing {} failed ({status}): {last}; check that the package registry (PyPI) is reachable",
                self.marker_text()
            );
        }
        std::fs::write(self.dir.join(MARKER), self.marker_text())?;
        Ok(installed)
    }
}

/// The pinned uv, installed once with pip into `<venv_root>/uv-<version>`; returns its binary.
fn ensure_uv(venv_root: &Path, python: &str, step: &Step) -> Result<PathBuf> {
    let dir = venv_root.join(format!("uv-{UV_VERSION}"));
    let uv = dir.join("bin").join("uv");
    let marker = dir.join(MARKER);
    let _lock = lock_beside(&dir)?;
    if marker.exists() && uv.exists() {
        return Ok(uv);
    }
    step.set_message(format!("bootstrapping uv {UV_VERSION}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    let out = Command::new(python)
        .args(["-m", "venv"])
        .arg(&dir)
        .output()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot run `{python}` ({e}); install Python 3 (apt-get install python3 python3-venv) \
                 or set LANGFLOW_INFRA_PYTHON"
            )
        })?;
    if !out.status.success() {
        bail!(
            "`{python} -m venv` failed: {}; install python3-venv (apt-get install python3-venv)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let out = Command::new(dir.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check"])
        .arg(format!("uv=={UV_VERSION}"))
        .output()
        .context("cannot run pip")?;
    if !out.status.success() {
        bail!(
            "pip install uv=={UV_VERSION} failed: {}; check that PyPI is reachable",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
    }
    std::fs::write(&marker, UV_VERSION)?;
    Ok(uv)
}

/// An exclusive lock on `<dir>.lock` (next to `dir`), held until dropped.
fn lock_beside(dir: &Path) -> Result<Flock<std::fs::File>> {
    let name = dir
        .file_name()
        .expect("venv dir has a name")
        .to_string_lossy();
    let lock_path = dir.with_file_name(format!("{name}.lock"));
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .with_context(|| format!("cannot open {}", lock_path.display()))?;
    Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", lock_path.display()))
}
