//! WHAT runs: each service's process spec, environment and readiness probe.

pub mod aws;
pub mod emulator_caps;
pub mod forkserver;
pub mod langflow;
pub mod postgres;

use anyhow::{bail, Result};

/// Names of the infrastructure services `up` starts, in start order.
pub const INFRA_SERVICES: &[&str] = &["postgres", "aws", "identity"];

/// Checks a service name given on the command line against the services of the run.
pub fn check_service_name<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Result<()> {
    let known: Vec<&str> = known.into_iter().collect();
    if known.contains(&name) {
        return Ok(());
    }
    bail!(
        "unknown service '{name}'; known services: {}",
        known.join(", ")
    )
}
