//! Managed Python virtual environments under the cache directory, keyed by name and version and
//! reused across runs. A venv counts as installed only when its marker file holds exactly the
//! requirements it was built for; an interrupted install is redone. A lock file serialises
//! concurrent installs of the same venv (parallel tests, two shells).

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use nix::fcntl::{Flock, FlockArg};

use crate::progress::Step;

const MARKER: &str = ".installed";

/// A Python venv holding pinned requirements.
#[derive(Debug, Clone)]
pub struct Venv {
    dir: PathBuf,
    requirements: Vec<String>,
}

impl Venv {
    /// A venv named `name` under `venv_root`, for the given pinned requirements.
    pub fn new(venv_root: &Path, name: &str, requirements: &[&str]) -> Self {
        Self {
            dir: venv_root.join(name),
            requirements: requirements.iter().map(|r| r.to_string()).collect(),
        }
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
        self.requirements.join(" ")
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
        let lock_path = self.dir.with_extension("lock");
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("cannot open {}", lock_path.display()))?;
        let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
            .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", lock_path.display()))?;
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
        step.set_message("creating venv");
        let out = Command::new(python)
            .args(["-m", "venv"])
            .arg(&self.dir)
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
        let mut child = Command::new(self.bin("pip"))
            .args([
                "install",
                "--disable-pip-version-check",
                "--progress-bar",
                "off",
            ])
            .args(&self.requirements)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run pip")?;
        let stderr = child.stderr.take().expect("piped");
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        });
        let mut collected = 0usize;
        let mut tail: Vec<String> = Vec::new();
        for line in BufReader::new(child.stdout.take().expect("piped")).lines() {
            let line = line?;
            if let Some(package) = line.strip_prefix("Collecting ") {
                collected += 1;
                step.set_message(format!("{collected} packages collected: {package}"));
            } else if line.starts_with("Installing collected packages") {
                step.set_message(format!("installing {collected} packages"));
            }
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
        let status = child.wait()?;
        let errors = stderr_reader.join().unwrap_or_default();
        if !status.success() {
            let last = errors
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("");
            bail!(
                "pip install {} failed ({status}): {last}; check that the package registry is reachable",
                self.marker_text()
            );
        }
        std::fs::write(self.dir.join(MARKER), self.marker_text())?;
        Ok(collected)
    }
}
