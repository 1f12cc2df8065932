//! What the dashboard shows, gathered in the background so a page load is served from memory:
//! the services' status (as `cargo xtask status` judges it), the tenants (schema, users, Alembic
//! revision, rows, S3 objects), every service's new log lines and the gateway's request log, and
//! the series the plots draw (memory per service, latency and errors per tenant).
//!
//! Services are probed every 5 s (a watched page also gets a crash and its recovery within a
//! second, from the processes alone); tenants are queried every 5 s only while a page watches.
//! Nothing is on the gateway's data path, so an open dashboard leaves tenant latency as it is.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::{json, Value};

use super::Hub;
use crate::services::langflow::prefix_of_service;
use crate::stack::image::ImageMode;
use crate::stack::{ServiceState, StackStatus};

/// Log lines kept for a page load.
const LOG_LINES: usize = 2000;
/// Gateway requests kept for a page load.
const REQUESTS: usize = 500;
/// Points per memory series (at one per 5 s: 20 minutes).
const MEMORY_POINTS: usize = 240;
/// Width of one latency bucket.
const BUCKET_SECS: u64 = 10;
/// Buckets per tenant (10 minutes).
const BUCKETS: usize = 60;

/// Milliseconds since the epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

/// One log line of one service.
#[derive(Debug, Clone, Serialize)]
pub struct LogLine {
    /// Sequence number (for the page to keep order across events).
    pub seq: u64,
    /// Service it came from.
    pub service: String,
    /// Tenant prefix it concerns, when known (its instance, or the gateway's `tenant=`).
    pub tenant: Option<String>,
    /// `error`, `warn`, `info` or `debug`, guessed from the line.
    pub level: &'static str,
    /// The line.
    pub text: String,
}

/// One request as the gateway's access log records it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RequestLine {
    /// Time as logged.
    pub time: String,
    /// Method.
    pub method: String,
    /// Path (the gateway never logs query strings).
    pub path: String,
    /// Tenant prefix, or `-`.
    pub tenant: String,
    /// Status code.
    pub status: u16,
    /// Milliseconds.
    pub ms: f64,
}

/// Requests of one tenant in one bucket.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Bucket {
    /// Bucket start (ms since the epoch).
    pub t: u64,
    /// Requests.
    pub n: u32,
    /// Requests answered 5xx.
    pub errors: u32,
    /// Sum of milliseconds.
    pub sum_ms: f64,
    /// Slowest request.
    pub max_ms: f64,
}

/// The series the plots draw and the recent lines, under one lock each.
#[derive(Default)]
pub struct History {
    /// Memory per service: (ms since the epoch, RSS bytes, USS bytes when known).
    pub memory: BTreeMap<String, VecDeque<(u64, u64, Option<u64>)>>,
    /// Latency / error buckets per tenant.
    pub latency: BTreeMap<String, VecDeque<Bucket>>,
    /// Recent log lines.
    pub logs: VecDeque<LogLine>,
    /// Recent gateway requests.
    pub requests: VecDeque<RequestLine>,
    /// Next log sequence number.
    pub seq: u64,
}

impl History {
    /// The plots' data as JSON.
    pub fn plots(&self) -> Value {
        json!({ "memory": self.memory, "latency": self.latency })
    }

    fn add_request(&mut self, request: &RequestLine, at_ms: u64) {
        self.requests.push_back(request.clone());
        while self.requests.len() > REQUESTS {
            self.requests.pop_front();
        }
        if request.tenant == "-" {
            return;
        }
        let start = at_ms / 1000 / BUCKET_SECS * BUCKET_SECS * 1000;
        let buckets = self.latency.entry(request.tenant.clone()).or_default();
        if buckets.back().is_none_or(|b| b.t != start) {
            buckets.push_back(Bucket {
                t: start,
                ..Default::default()
            });
        }
        let bucket = buckets.back_mut().expect("pushed");
        bucket.n += 1;
        if request.status >= 500 {
            bucket.errors += 1;
        }
        bucket.sum_ms += request.ms;
        bucket.max_ms = bucket.max_ms.max(request.ms);
        while buckets.len() > BUCKETS {
            buckets.pop_front();
        }
    }
}

/// Reads a gateway access-log line (`<time> <METHOD> <path> tenant=<t> status=<n> ms=<f>`).
pub fn parse_request(line: &str) -> Option<RequestLine> {
    let mut parts = line.split_whitespace();
    let time = parts.next()?.to_string();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let tenant = parts.next()?.strip_prefix("tenant=")?.to_string();
    let status = parts.next()?.strip_prefix("status=")?.parse().ok()?;
    let ms = parts.next()?.strip_prefix("ms=")?.parse().ok()?;
    if !method.bytes().all(|b| b.is_ascii_uppercase()) || !path.starts_with('/') {
        return None;
    }
    Some(RequestLine {
        time,
        method,
        path,
        tenant,
        status,
        ms,
    })
}

/// The level a log line is at, guessed from the words services use (uvicorn, Langflow,
/// Postgres, supervisord, the harness).
pub fn level_of(line: &str) -> &'static str {
    let upper = line.to_ascii_uppercase();
    if ["ERROR", "CRITICAL", "FATAL", "PANIC", "TRACEBACK"]
        .iter()
        .any(|w| upper.contains(w))
    {
        "error"
    } else if upper.contains("WARN") {
        "warn"
    } else if upper.contains("DEBUG") {
        "debug"
    } else {
        "info"
    }
}

/// Where the log tailer is in each service's log.
#[derive(Default)]
pub struct Tails {
    offsets: HashMap<String, (PathBuf, u64)>,
}

/// Samples the services' status (`Stack::status`: liveness, memory and each service's probe)
/// every 5 s. While a page watches, it also looks every second at the processes alone (no probe:
/// nothing is sent to the services) and samples at once when one changed (killed, restarted), then
/// every second until everything is healthy again — so a crash and its recovery show within a
/// second while healthy tenants are probed no more often than by an unwatched dashboard.
pub async fn services_loop(hub: std::sync::Arc<Hub>) {
    let mut containers_seen: HashMap<String, u64> = HashMap::new();
    let mut last_sample: Option<std::time::Instant> = None;
    let mut last_processes = Vec::new();
    let mut all_healthy = false;
    loop {
        let processes = processes(&hub);
        let due = last_sample.is_none_or(|t| t.elapsed() >= Duration::from_secs(5))
            || (hub.watched() && (!all_healthy || processes != last_processes));
        if !due {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        }
        last_sample = Some(std::time::Instant::now());
        if let Ok(Some(status)) = hub.stack.status().await {
            all_healthy = status.healthy();
            let rows = service_rows(&status, &processes, &mut containers_seen);
            let plots = {
                let mut history = hub.history.lock().expect("history");
                let now = now_ms();
                for service in &status.services {
                    if let Some(rss) = service.rss_bytes {
                        let series = history.memory.entry(service.name.clone()).or_default();
                        series.push_back((now, rss, service.memory.map(|m| m.uss)));
                        while series.len() > MEMORY_POINTS {
                            series.pop_front();
                        }
                    }
                }
                history.plots()
            };
            let value = json!({
                "runtime": status.runtime,
                "emulator": status.emulator.name(),
                "healthy": all_healthy,
                "services": rows,
                "at": now_ms(),
            });
            *hub.services.write().expect("services") = value.clone();
            hub.publish("services", &value);
            hub.publish("plots", &plots);
        }
        last_processes = processes;
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// One recorded service's process as the state file and the runtime tell it, without asking
/// the service anything: what a kill or a restart changes.
#[derive(Debug, Clone, PartialEq)]
struct Process {
    name: String,
    /// `pid/start ticks`, or the container id.
    id: String,
    running: bool,
    /// Forked by the fork server.
    forked: bool,
    /// Start time in clock ticks since boot (native processes; 0 for a container).
    start_ticks: u64,
}

/// Every recorded service's [`Process`].
fn processes(hub: &Hub) -> Vec<Process> {
    let Ok(Some(state)) = hub.stack.files().read_state() else {
        return Vec::new();
    };
    state
        .services
        .iter()
        .map(|(name, record)| {
            let process = &record.process;
            Process {
                name: name.clone(),
                id: match &process.container {
                    Some(c) => c.id.clone(),
                    None => format!("{}/{}", process.pid, process.start_ticks),
                },
                running: hub.stack.runtime().liveness(process) == crate::runtime::Liveness::Running,
                forked: process.fork_server.is_some(),
                start_ticks: if process.container.is_some() {
                    0
                } else {
                    process.start_ticks
                },
            }
        })
        .collect()
}

/// One row per service, with its uptime (natively from its recorded start; a container's since
/// the dashboard first saw it) and whether the fork server forked it.
fn service_rows(
    status: &StackStatus,
    processes: &[Process],
    containers_seen: &mut HashMap<String, u64>,
) -> Vec<Value> {
    let now = now_ms();
    let boot = boot_clock();
    status
        .services
        .iter()
        .map(|s| {
            let process = processes.iter().find(|p| p.name == s.name);
            let up_since = match (&s.container, process) {
                (Some(c), _) => Some(*containers_seen.entry(c.id.clone()).or_insert(now)),
                (None, Some(p)) if p.start_ticks > 0 => {
                    boot.map(|(btime_ms, hz)| btime_ms + p.start_ticks * 1000 / hz)
                }
                _ => None,
            };
            let running = s.state != ServiceState::Crashed;
            let forked = process.is_some_and(|p| p.forked);
            json!({
                "name": s.name,
                "tenant": prefix_of_service(&s.name),
                "state": s.state,
                "detail": s.detail,
                "runtime": if forked {
                    format!("{} (forked)", s.runtime)
                } else {
                    s.runtime.clone()
                },
                "pid": (s.pid > 0).then_some(s.pid),
                "container": s.container.as_ref().map(|c| json!({
                    "id": crate::process::short_id(&c.id),
                    "image": c.image,
                })),
                "port": (s.port > 0).then_some(s.port),
                "url": s.url,
                "rss": s.rss_bytes,
                "pss": s.memory.map(|m| m.pss),
                "uss": s.memory.map(|m| m.uss),
                "restarts": s.restarts,
                "last_exit": s.last_exit,
                "uptime_secs": up_since
                    .filter(|_| running)
                    .map(|at| now.saturating_sub(at) / 1000),
            })
        })
        .collect()
}

/// The boot time (ms since the epoch, from /proc/stat) and the clock ticks per second, which
/// turn a recorded start time in ticks since boot into a time.
fn boot_clock() -> Option<(u64, u64)> {
    let boot = std::fs::read_to_string("/proc/stat").ok()?;
    let btime: u64 = boot
        .lines()
        .find_map(|l| l.strip_prefix("btime "))?
        .trim()
        .parse()
        .ok()?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|hz| *hz > 0)
        .unwrap_or(100) as u64;
    Some((btime * 1000, hz))
}

/// Publishes the kept reports whenever a command writes one (checked every 2 s).
pub async fn reports_loop(hub: std::sync::Arc<Hub>) {
    let dir = crate::run_reports::reports_dir(&hub.stack.config().state_dir);
    let mut last = None;
    loop {
        let newest = std::fs::read_dir(&dir).ok().map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok()?.modified().ok())
                .max()
        });
        if newest != last {
            if last.is_some() {
                hub.publish("reports", &hub.reports());
            }
            last = newest;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Gathers the tenants every 5 s while a page watches (once at start otherwise).
pub async fn tenants_loop(hub: std::sync::Arc<Hub>) {
    let mut first = true;
    loop {
        if first || hub.watched() {
            first = false;
            let value = match tenants(&hub).await {
                Ok(rows) => json!({"tenants": rows, "at": now_ms()}),
                Err(e) => json!({"tenants": [], "error": format!("{e:#}"), "at": now_ms()}),
            };
            *hub.tenants.write().expect("tenants") = value.clone();
            hub.publish("tenants", &value);
        }
        tokio::time::sleep(Duration::from_secs(5)).await;
    }
}

/// The run's tenants, each with its counts.
async fn tenants(hub: &Hub) -> anyhow::Result<Vec<Value>> {
    let config = hub.stack.config();
    let state = hub.stack.running_state()?;
    let gateway = state
        .services
        .get(crate::stack::GATEWAY_SERVICE)
        .map(|g| g.url.clone());
    if ImageMode::read(&config.state_dir)?.is_some() {
        return image_tenants(hub, gateway.as_deref());
    }
    let tenancy = crate::tenancy::Tenancy::for_running_stack(config, hub.stack.files())?;
    let schemas = tenancy.schema_list().await?;
    let password = hub
        .stack
        .files()
        .read_secrets()?
        .postgres_password
        .unwrap_or_default();
    let postgres = crate::stack::Stack::service_port(&state, "postgres")?;
    let target = crate::services::postgres::PgTarget::superuser(
        postgres,
        &password,
        &config.postgres.database,
    );
    let names: Vec<String> = schemas.iter().map(|s| s.schema.clone()).collect();
    let rows = row_totals(&target, &names).await.unwrap_or_default();
    let objects = match crate::stack::Stack::service_port(&state, "aws") {
        Ok(port) => {
            let s3 = crate::services::aws::s3_client(port, &config.aws.region).await;
            Some(s3)
        }
        Err(_) => None,
    };
    let mut out = Vec::new();
    for schema in &schemas {
        let (count, bytes) = match &objects {
            Some(s3) => match crate::bundle::objects::list_keys(
                s3,
                &config.aws.tenant_bucket,
                &crate::bundle::objects::tenant_prefix(&schema.schema),
            )
            .await
            {
                Ok(keys) => (
                    Some(keys.len()),
                    Some(keys.iter().map(|(_, size)| *size as u64).sum::<u64>()),
                ),
                Err(_) => (None, None),
            },
            None => (None, None),
        };
        let url = gateway
            .as_ref()
            .map(|g| config.gateway.routing.tenant_url(g, &schema.prefix));
        out.push(json!({
            "prefix": schema.prefix,
            "schema": schema.schema,
            "url": url,
            "users": schema.users,
            "revision": schema.revision,
            "rows": rows.get(&schema.schema),
            "objects": count,
            "object_bytes": bytes,
            "instance": format!("langflow-{}", schema.prefix),
        }));
    }
    Ok(out)
}

/// Image mode: the tenants as the image's own tenant manager lists them (`schema-list --json`);
/// rows and objects are the image's business (its database and storage prefix are its own).
fn image_tenants(hub: &Hub, gateway: Option<&str>) -> anyhow::Result<Vec<Value>> {
    let run = hub
        .stack
        .tenantmgr(&["schema-list".to_string(), "--json".to_string()])?;
    if !run.success {
        anyhow::bail!(
            "the image's tenant manager failed: {}",
            run.stderr.lines().last().unwrap_or("no output")
        );
    }
    let listed: Vec<Value> = serde_json::from_str(run.stdout.trim()).map_err(|e| {
        anyhow::anyhow!("the image's `tenantmgr schema-list --json` printed no JSON list: {e}")
    })?;
    let routing = hub.stack.config().gateway.routing;
    Ok(listed
        .into_iter()
        .map(|t| {
            // What the image prints is input: a prefix outside the naming rules gets no URL.
            let prefix = t["prefix"].as_str().unwrap_or_default().to_string();
            let valid = crate::tenancy::naming::validate_prefix(&prefix).is_ok();
            json!({
                "prefix": prefix,
                "schema": t["schema"],
                "url": gateway.filter(|_| valid).map(|g| routing.tenant_url(g, &prefix)),
                "users": t["users"],
                "revision": t["revision"],
                "rows": null,
                "objects": null,
                "object_bytes": null,
                "instance": "every task",
            })
        })
        .collect())
}

/// Rows in every table of each schema, in one round trip.
async fn row_totals(
    target: &crate::services::postgres::PgTarget,
    schemas: &[String],
) -> anyhow::Result<HashMap<String, i64>> {
    if schemas.is_empty() {
        return Ok(HashMap::new());
    }
    let client = target.connect().await?;
    let tables = client
        .query(
            "SELECT table_schema::text, table_name::text FROM information_schema.tables \
             WHERE table_schema = ANY($1) AND table_type = 'BASE TABLE'",
            &[&schemas],
        )
        .await?;
    if tables.is_empty() {
        return Ok(HashMap::new());
    }
    let parts: Vec<String> = tables
        .iter()
        .map(|row| {
            let (schema, table): (String, String) = (row.get(0), row.get(1));
            format!(
                "SELECT {} AS s, count(*) AS n FROM {}.{}",
                crate::sql::quote_literal(&schema),
                crate::sql::quote_ident(&schema),
                crate::sql::quote_ident(&table)
            )
        })
        .collect();
    let sql = format!(
        "SELECT s, sum(n)::bigint FROM ({}) AS counts GROUP BY s",
        parts.join(" UNION ALL ")
    );
    Ok(client
        .query(&sql, &[])
        .await?
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect())
}

/// Follows every service's log (on a thread of its own: reading a container's log is an engine
/// call): new complete lines become `logs` events, the gateway's access lines also `requests`
/// events and latency buckets.
pub fn logs_loop(hub: std::sync::Arc<Hub>) {
    let tails = Mutex::new(Tails::default());
    let mut tick: u64 = 0;
    loop {
        tick += 1;
        if let Ok(Some(state)) = hub.stack.files().read_state() {
            let mut lines = Vec::new();
            let mut requests = Vec::new();
            let mut records: Vec<_> = state.services.iter().collect();
            records.sort_by_key(|(name, r)| (r.tier, (*name).clone()));
            for (name, record) in records {
                // The engine's logs are read whole: every second is enough.
                let container = record.process.container.is_some();
                if container && !tick.is_multiple_of(4) {
                    continue;
                }
                let new = {
                    let mut tails = tails.lock().expect("tails");
                    new_text(&hub, &mut tails, name, record)
                };
                for text in new.lines().filter(|l| !l.trim().is_empty()) {
                    let request = (name == crate::stack::GATEWAY_SERVICE)
                        .then(|| parse_request(text))
                        .flatten();
                    let tenant = request
                        .as_ref()
                        .map(|r| r.tenant.clone())
                        .filter(|t| t != "-")
                        .or_else(|| prefix_of_service(name).map(str::to_string));
                    let level = match &request {
                        Some(r) if r.status >= 500 => "error",
                        Some(r) if r.status >= 400 => "warn",
                        Some(_) => "info",
                        None => level_of(text),
                    };
                    lines.push((name.clone(), tenant, level, truncate(text, 2000)));
                    if let Some(request) = request {
                        requests.push(request);
                    }
                }
            }
            if !lines.is_empty() {
                let batch: Vec<LogLine> = {
                    let mut history = hub.history.lock().expect("history");
                    let now = now_ms();
                    for request in &requests {
                        history.add_request(request, now);
                    }
                    let batch: Vec<LogLine> = lines
                        .into_iter()
                        .map(|(service, tenant, level, text)| {
                            history.seq += 1;
                            LogLine {
                                seq: history.seq,
                                service,
                                tenant,
                                level,
                                text,
                            }
                        })
                        .collect();
                    history.logs.extend(batch.iter().cloned());
                    while history.logs.len() > LOG_LINES {
                        history.logs.pop_front();
                    }
                    batch
                };
                hub.publish("logs", &batch);
                if !requests.is_empty() {
                    hub.publish("requests", &requests);
                }
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// At most `max` characters of `text`.
fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// The complete lines added to a service's log since the last call. A log file is followed by
/// offset (a new file — another inode — or one that shrank is read from its start); a container's
/// stdout and stderr each by their own offset, keyed by the container. A first look starts at the
/// last 64 KiB, without the partial line it starts in.
fn new_text(
    hub: &Hub,
    tails: &mut Tails,
    name: &str,
    record: &crate::state::ServiceRecord,
) -> String {
    if let Some(container) = &record.process.container {
        let Ok((out, err)) = hub
            .stack
            .runtime()
            .read_log_streams(&record.process, &record.log)
        else {
            return String::new();
        };
        let mut text = String::new();
        for (stream, content) in [("out", out), ("err", err)] {
            let key = format!("{name}/{}/{stream}", container.id);
            let previous = tails.offsets.get(&key).map(|(_, o)| *o);
            text.push_str(&follow(content.as_bytes(), previous, |offset| {
                tails.offsets.insert(key.clone(), (PathBuf::new(), offset));
            }));
        }
        return text;
    }
    let Ok(mut file) = std::fs::File::open(&record.log) else {
        return String::new();
    };
    let Ok(meta) = file.metadata() else {
        return String::new();
    };
    use std::os::unix::fs::MetadataExt;
    let key = format!("{name}/{}", meta.ino());
    let len = meta.len();
    let previous = match tails.offsets.get(&key) {
        Some((path, offset)) if *path == record.log && *offset <= len => Some(*offset),
        Some(_) => Some(0),
        None => None,
    };
    let start = previous.unwrap_or(len.saturating_sub(FIRST_LOOK));
    let mut chunk = Vec::new();
    if file.seek(SeekFrom::Start(start)).is_err()
        || file.take(MAX_CHUNK).read_to_end(&mut chunk).is_err()
    {
        return String::new();
    }
    let (begin, end) = complete_lines(&chunk, previous.is_none() && start > 0);
    tails
        .offsets
        .insert(key, (record.log.clone(), start + end as u64));
    String::from_utf8_lossy(&chunk[begin..end]).into_owned()
}

/// The range of `chunk` to show: up to its last newline (all of it when one line fills
/// [`MAX_CHUNK`], so a follower never stalls), from after its first newline when the chunk starts
/// mid-line (`partial_start`).
fn complete_lines(chunk: &[u8], partial_start: bool) -> (usize, usize) {
    let mut end = chunk.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
    if end == 0 && chunk.len() as u64 >= MAX_CHUNK {
        end = chunk.len();
    }
    let begin = if partial_start {
        chunk[..end]
            .iter()
            .position(|b| *b == b'\n')
            .map_or(end, |i| i + 1)
    } else {
        0
    };
    (begin, end)
}

/// How much of a log a first look reads.
const FIRST_LOOK: u64 = 64 * 1024;
/// The most one read takes from a log file.
const MAX_CHUNK: u64 = 4 * 1024 * 1024;

/// The complete lines of an in-memory log `bytes` after `offset` (`None`: a first look — the
/// last [`FIRST_LOOK`] bytes without their partial first line); calls `advance` with the new
/// offset.
fn follow(bytes: &[u8], offset: Option<u64>, mut advance: impl FnMut(u64)) -> String {
    let len = bytes.len() as u64;
    let start = match offset {
        Some(offset) if offset <= len => offset,
        Some(_) => 0,
        None => len.saturating_sub(FIRST_LOOK),
    };
    let chunk = &bytes[start as usize..];
    let (begin, end) = complete_lines(chunk, offset.is_none() && start > 0);
    advance(start + end as u64);
    String::from_utf8_lossy(&chunk[begin..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_lines_parse_and_other_lines_do_not() {
        let line = "2026-12-07T10:00:00.123Z GET /tenant/acme/api/v1/flows/ tenant=acme status=200 ms=12.5";
        assert_eq!(
            parse_request(line),
            Some(RequestLine {
                time: "2026-12-07T10:00:00.123Z".into(),
                method: "GET".into(),
                path: "/tenant/acme/api/v1/flows/".into(),
                tenant: "acme".into(),
                status: 200,
                ms: 12.5,
            })
        );
        assert_eq!(parse_request("gateway listening on 127.0.0.1:1234"), None);
        assert_eq!(
            parse_request("2026-12-07T10:00:00Z GET /x redirect status=301"),
            None
        );
    }

    #[test]
    fn a_follower_shows_complete_lines_once() {
        let mut offset = None;
        let mut shown = String::new();
        for text in ["a\nb", "a\nb\nc\n", "a\nb\nc\nd\n"] {
            shown.push_str(&follow(text.as_bytes(), offset, |o| offset = Some(o)));
        }
        assert_eq!(shown, "a\nb\nc\nd\n");
        // A log that shrank (a new container, a truncated file) is read from its start.
        let again = follow(b"x\n", offset, |o| offset = Some(o));
        assert_eq!(again, "x\n");
        // A first look into a long log drops the partial line it starts in.
        let long = format!("{}\nlast\n", "y".repeat(FIRST_LOOK as usize));
        assert_eq!(follow(long.as_bytes(), None, |_| {}), "last\n");
        // One line longer than a read is taken whole, so the follower moves on.
        let huge = vec![b'z'; MAX_CHUNK as usize];
        assert_eq!(complete_lines(&huge, false), (0, huge.len()));
    }

    #[test]
    fn levels_are_guessed_from_common_words() {
        assert_eq!(level_of("ERROR:    Exception in ASGI application"), "error");
        assert_eq!(level_of("Traceback (most recent call last):"), "error");
        assert_eq!(level_of("2026 WARNING: low disk"), "warn");
        assert_eq!(level_of("INFO:     127.0.0.1 - GET /health_check"), "info");
    }

    #[test]
    fn requests_fill_ten_second_buckets_per_tenant() {
        let mut history = History::default();
        let request = |tenant: &str, status: u16, ms: f64| RequestLine {
            time: String::new(),
            method: "GET".into(),
            path: "/".into(),
            tenant: tenant.into(),
            status,
            ms,
        };
        history.add_request(&request("acme", 200, 10.0), 1_000_000);
        history.add_request(&request("acme", 502, 30.0), 1_005_000);
        history.add_request(&request("acme", 200, 5.0), 1_010_000);
        history.add_request(&request("-", 404, 1.0), 1_010_000);
        let acme = &history.latency["acme"];
        assert_eq!(acme.len(), 2);
        assert_eq!((acme[0].n, acme[0].errors, acme[0].max_ms), (2, 1, 30.0));
        assert_eq!((acme[1].n, acme[1].errors), (1, 0));
        assert_eq!(history.requests.len(), 4);
        assert!(!history.latency.contains_key("-"));
    }
}
