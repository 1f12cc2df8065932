//! Helpers shared by the integration tests. Each test binary uses a subset of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use harness::stack::Stack;

/// The repository root (harness.toml, aws/, fixtures/).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("harness lives in the workspace")
        .to_path_buf()
}

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
