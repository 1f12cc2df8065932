//! The native runtime's side of the Langflow fork server's socket protocol: `ping`, `fork <name>`
//! (the forked child reads its JSON request itself, so a tenant's settings never pass through the
//! server) and the environment a worker recorded. The server itself — its program, its spec,
//! when it runs — is a service of the stack (`services::forkserver`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};

/// What the server says about itself.
#[derive(Debug, Clone, Deserialize, Serialize)]
pub struct Ping {
    /// Its pid.
    pub pid: i32,
    /// Seconds the import took.
    pub import_seconds: f64,
    /// Why forking is unsafe; empty = safe.
    pub hazards: Vec<String>,
    /// The variables the import read (and the worker environment must match, except those the
    /// worker recomputes).
    #[serde(default)]
    pub import_env: Vec<String>,
}

/// One worker to fork.
#[derive(Debug, Clone, Serialize)]
pub struct ForkRequest<'a> {
    /// Service name (for the server's log; one word).
    #[serde(skip)]
    pub name: &'a str,
    /// The worker's complete environment.
    pub env: &'a BTreeMap<String, String>,
    /// Working directory.
    pub cwd: &'a Path,
    /// Log file (stdout + stderr, appended, 0600).
    pub log: &'a Path,
    /// Address uvicorn listens on.
    pub host: &'a str,
    /// Port uvicorn listens on.
    pub port: u16,
}

/// The server answered, and refused (a hazard after its import, or a worker environment that
/// differs from its own in a variable the import read): the caller should spawn instead.
#[derive(Debug, Clone)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the fork server refused: {}", self.0)
    }
}

impl std::error::Error for Refused {}

/// Sends `lines` (each followed by a newline) and reads one reply line.
fn call(socket: &Path, lines: &[&[u8]]) -> Result<serde_json::Value> {
    let mut stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot reach the fork server at {}", socket.display()))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = Vec::new();
    for line in lines {
        request.extend_from_slice(line);
        request.push(b'\n');
    }
    stream.write_all(&request)?;
    let mut reply = String::new();
    BufReader::new(stream)
        .read_line(&mut reply)
        .context("the fork server did not answer")?;
    let value: serde_json::Value =
        serde_json::from_str(&reply).context("the fork server's answer is not JSON")?;
    if value["ok"] != true {
        let reason = value["error"].as_str().unwrap_or("no reason given");
        return Err(Refused(reason.to_string()).into());
    }
    Ok(value)
}

/// Asks the server how it is.
pub fn ping(socket: &Path) -> Result<Ping> {
    let value = call(socket, &[b"ping"])?;
    serde_json::from_value(value).context("unexpected ping answer")
}

/// Forks a worker; returns its pid. The request goes to the forked child itself (the server
/// reads only the header line), so the tenant's settings never enter the server's memory.
pub fn fork(socket: &Path, request: &ForkRequest) -> Result<i32> {
    if request.name.is_empty() || request.name.contains(char::is_whitespace) {
        bail!("a worker's name must be one word: {:?}", request.name);
    }
    let header = format!("fork {}", request.name);
    let mut body = serde_json::to_value(request)?;
    body["record_env"] = true.into();
    let body = serde_json::to_vec(&body)?;
    let reply = call(socket, &[header.as_bytes(), &body])?;
    reply["pid"]
        .as_i64()
        .map(|pid| pid as i32)
        .ok_or_else(|| anyhow!("the fork server answered no pid"))
}

/// The environment worker `pid` applied before it built its app, as it recorded it (0600, beside
/// the server's socket).
pub fn environ(socket: &Path, pid: i32) -> Result<BTreeMap<String, String>> {
    let path = socket
        .parent()
        .context("socket path has no parent")?
        .join("environ")
        .join(format!("{pid}.json"));
    let text = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
    serde_json::from_slice(&text).context("unexpected environment record")
}
