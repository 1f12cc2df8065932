//! langflow-infra harness, **core** layer: the configuration (`harness.toml` + environment), the
//! state directory and its 0600 files, loopback networking, generated secrets, progress display,
//! tables, managed Python venvs, and the small types every layer above shares (tenant routing,
//! recorded processes).
//!
//! May not depend on any other harness crate, nor on Docker, Postgres or the AWS SDK.

pub mod assets;
pub mod config;
pub mod net;
pub mod process;
pub mod progress;
pub mod routing;
pub mod run_reports;
pub mod secret;
pub mod sql;
pub mod state;
pub mod tables;
pub mod venv;
