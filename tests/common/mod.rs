//! Helpers shared by the integration tests (of tests/ and tests/images/). Each test binary uses a
//! subset of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use harness::stack::Stack;

/// The repository root (harness.toml, aws/, fixtures/): the nearest folder above this test
/// package that holds `harness.toml` (tests/ and tests/images/ both use these helpers).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|dir| dir.join("harness.toml").is_file())
        .expect("the test package lives in the repository")
        .to_path_buf()
}

/// A tenants file with acme and widgetco, one superuser each (`admin@<prefix>.com`).
pub const TWO_TENANTS: &str = "tenants:
  - prefix: acme
    users:
      - username: admin@acme.com
        superuser: true
  - prefix: widgetco
    users:
      - username: admin@widgetco.com
        superuser: true
";

/// The Postgres superuser password a stack generated (from its secrets file).
pub fn postgres_password(stack: &Stack) -> String {
    stack
        .files()
        .read_secrets()
        .unwrap()
        .postgres_password
        .unwrap()
}

/// A stack that is stopped (volumes dropped) when the test ends, also when an assertion fails,
/// so a failing test leaves no processes behind.
pub struct Running(pub Stack);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.down(true);
    }
}

impl std::ops::Deref for Running {
    type Target = Stack;
    fn deref(&self) -> &Stack {
        &self.0
    }
}

/// The `cargo xtask` binary, built if needed (same profile and target dir as the running test; a
/// no-op after `cargo build --workspace`, whose features are the same).
pub fn xtask_binary() -> PathBuf {
    let target_dir = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let status = std::process::Command::new(env!("CARGO"))
        .args(["build", "--quiet", "-p", "xtask"])
        .current_dir(repo_root())
        .status()
        .expect("cargo runs");
    assert!(status.success(), "cargo build -p xtask failed");
    target_dir.join("xtask")
}

/// The harness's servers as `cargo xtask` runs them (its hidden `gateway-serve`,
/// `identity-serve` and `supervise` commands), for suites outside the package that builds the
/// standalone server binary.
pub fn cli_servers() -> harness::stack::GatewayCommand {
    harness::stack::GatewayCommand::cli(xtask_binary())
}
