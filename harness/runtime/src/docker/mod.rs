//! The Docker engine, through its API (bollard): the connection every docker feature of the
//! harness shares, the labels it puts on what it creates, and the project's images
//! ([`images`]). The harness never runs the `docker` CLI.

pub mod images;

use std::time::Duration;

use anyhow::{anyhow, Result};
use bollard::Docker;

/// Label naming the project on everything the harness creates (images, containers, networks,
/// volumes); its value is [`PROJECT`] or a more specific run name.
pub const LABEL_PROJECT: &str = "dev.langflow-infra.project";
/// Value of [`LABEL_PROJECT`] on the images the harness builds.
pub const PROJECT: &str = "langflow-infra";
/// Label naming the service an image or container is for (`base`, `postgres`, `aws`, `langflow`).
pub const LABEL_SERVICE: &str = "dev.langflow-infra.service";
/// Label on a built image: sha256 of everything its build consumed (context files, injected
/// files, build arguments, base image id). A build with the same digest is skipped.
pub const LABEL_INPUTS_DIGEST: &str = "dev.langflow-infra.inputs-digest";
/// Label on a built image: how it was made (`bootstrap`, `dockerfile`).
pub const LABEL_SOURCE: &str = "dev.langflow-infra.source";

/// The engine's socket when `DOCKER_HOST` is not set.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// How long the engine may take to answer the version check and the ping.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects to the Docker engine: `DOCKER_HOST` when set, else [`DEFAULT_SOCKET`]; negotiates the
/// API version (engine 20.10 speaks 1.41) and pings it. The error is one line naming where it
/// looked and the fix.
pub async fn connect() -> Result<Docker> {
    let host = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|h| !h.trim().is_empty());
    let place = match &host {
        Some(h) => format!("DOCKER_HOST={h}"),
        None => format!("{DEFAULT_SOCKET} (DOCKER_HOST is not set)"),
    };
    let fail = |what: String| {
        anyhow!(
            "cannot reach the Docker engine at {place}: {what}; start the engine (e.g. `service docker start`) \
             or set DOCKER_HOST to a running one (unix:///path/to/docker.sock or tcp://host:port)"
        )
    };
    let docker = match &host {
        Some(h) => Docker::connect_with_host(h),
        None => Docker::connect_with_unix_defaults(),
    }
    .map_err(|e| fail(one_line(&e)))?;
    let docker = tokio::time::timeout(CONNECT_TIMEOUT, docker.negotiate_version())
        .await
        .map_err(|_| fail(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| fail(one_line(&e)))?;
    tokio::time::timeout(CONNECT_TIMEOUT, docker.ping())
        .await
        .map_err(|_| fail(format!("no answer within {}s", CONNECT_TIMEOUT.as_secs())))?
        .map_err(|e| fail(one_line(&e)))?;
    Ok(docker)
}

/// Whether an engine error is a 404 (no such image, container, network, volume).
pub fn is_not_found(error: &bollard::errors::Error) -> bool {
    matches!(
        error,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// An error and its causes on one line.
pub(crate) fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text.replace('\n', " ")
}
