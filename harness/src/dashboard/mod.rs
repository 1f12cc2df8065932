//! The dashboard: the running stack in a browser — services, tenants, logs, plots, reports and
//! actions, live over server-sent events. One harness host process per run (`up` starts it, the
//! supervisor restarts it), listening on 127.0.0.1 only; it reads what the CLI reads (the state
//! file, the services' logs, Postgres, the emulator) and acts through the same harness calls.
//!
//! The page is plain HTML, CSS and JavaScript embedded in the binary (no build step, no library,
//! no CDN: ~30 KB, charts drawn as SVG by the page itself). The token model is in [`auth`].
//! Everything that may block (engine calls, the state lock, `docker exec`) runs off the async
//! threads, so the pages stay live while a container is slow to answer.

pub mod actions;
pub mod auth;
pub mod collect;

use std::convert::Infallible;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::{anyhow, Context, Result};
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;

use crate::stack::dashboard::{read_token, DashboardInput};
use crate::stack::Stack;
use auth::{Guard, Refusal};

const INDEX_HTML: &str = include_str!("assets/index.html");
const APP_JS: &str = include_str!("assets/app.js");
const APP_CSS: &str = include_str!("assets/app.css");
/// Log lines a snapshot carries (what the page shows at most).
const SNAPSHOT_LOG_LINES: usize = 800;
/// Largest request body an action accepts.
const MAX_BODY: usize = 16 * 1024;

type Body = BoxBody<Bytes, Infallible>;

/// What the dashboard process shares between its collectors and its requests.
pub struct Hub {
    /// The run it shows.
    pub stack: Stack,
    /// The token checks.
    pub guard: Guard,
    /// Latest services status (JSON).
    pub services: RwLock<Value>,
    /// Latest tenants (JSON).
    pub tenants: RwLock<Value>,
    /// Plot series and recent lines.
    pub history: Mutex<collect::History>,
    /// The current or last action job (the e2e run).
    pub job: Mutex<Option<Value>>,
    events: broadcast::Sender<Arc<String>>,
    watchers: AtomicUsize,
}

impl Hub {
    /// Sends an event to every open page.
    pub fn publish(&self, event: &str, data: &impl Serialize) {
        if self.events.receiver_count() == 0 {
            return;
        }
        if let Ok(data) = serde_json::to_string(data) {
            let _ = self
                .events
                .send(Arc::new(format!("event: {event}\ndata: {data}\n\n")));
        }
    }

    /// Whether a page follows the events now.
    pub fn watched(&self) -> bool {
        self.watchers.load(Ordering::Relaxed) > 0
    }

    /// The kept reports, each with how many screenshots it may show.
    fn reports(&self) -> Vec<Value> {
        crate::run_reports::list(&self.stack.config().state_dir)
            .into_iter()
            .map(|report| {
                let screenshots = self.screenshots(&report).len();
                let mut value = serde_json::to_value(&report).unwrap_or(Value::Null);
                value["screenshots"] = json!(screenshots);
                value
            })
            .collect()
    }

    /// The screenshots of `report` the dashboard serves: PNG files its evidence names that lie
    /// in this checkout's `target/` or state dir (evidence can quote a tenant's answer: a path
    /// elsewhere is never read).
    fn screenshots(&self, report: &crate::run_reports::RunReport) -> Vec<std::path::PathBuf> {
        let config = self.stack.config();
        let allowed: Vec<std::path::PathBuf> =
            [config.root.join("target"), config.state_dir.clone()]
                .iter()
                .filter_map(|dir| dir.canonicalize().ok())
                .collect();
        crate::run_reports::screenshots(report)
            .into_iter()
            .filter_map(|path| path.canonicalize().ok())
            .filter(|path| {
                path.extension().is_some_and(|e| e == "png")
                    && allowed.iter().any(|dir| path.starts_with(dir))
            })
            .collect()
    }

    /// Everything a page needs to draw itself at once.
    fn snapshot(&self) -> Value {
        let reports = self.reports();
        let history = self.history.lock().expect("history");
        json!({
            "state_dir": self.stack.config().state_dir,
            "routing": self.stack.config().gateway.routing,
            "services": *self.services.read().expect("services"),
            "tenants": *self.tenants.read().expect("tenants"),
            "logs": history.logs.iter().skip(history.logs.len().saturating_sub(SNAPSHOT_LOG_LINES)).collect::<Vec<_>>(),
            "requests": history.requests,
            "plots": history.plots(),
            "reports": reports,
            "job": *self.job.lock().expect("job"),
        })
    }
}

/// Counts an open event stream while it lives.
struct Watching(Arc<Hub>);

impl Drop for Watching {
    fn drop(&mut self) {
        self.0.watchers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Runs the dashboard described by the input file at `input` until the run's state is gone.
pub async fn serve(input: &Path) -> Result<()> {
    let text = std::fs::read_to_string(input)
        .with_context(|| format!("cannot read dashboard input {}", input.display()))?;
    let DashboardInput {
        mut config,
        root,
        servers,
        port,
    } = serde_json::from_str(&text).context("dashboard input is not valid")?;
    config.root = root;
    let token = read_token(&config.state_dir)?.ok_or_else(|| {
        anyhow!("the run has no dashboard token; restart it with `cargo xtask up`")
    })?;
    let stack = Stack::of_recorded_run(config, servers)?;
    let (events, _) = broadcast::channel(1024);
    let hub = Arc::new(Hub {
        stack,
        guard: Guard::new(token, port),
        services: RwLock::new(Value::Null),
        tenants: RwLock::new(Value::Null),
        history: Mutex::new(collect::History::default()),
        job: Mutex::new(None),
        events,
        watchers: AtomicUsize::new(0),
    });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .with_context(|| format!("cannot listen on 127.0.0.1:{port}"))?;
    println!("dashboard listening on 127.0.0.1:{port}");
    // The collectors make blocking calls (engine, /proc, docker exec): they run on threads of
    // their own, never on the threads that serve the pages.
    {
        let hub = hub.clone();
        std::thread::Builder::new()
            .name("dashboard-status".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the dashboard's collectors");
                runtime.block_on(async {
                    tokio::join!(
                        collect::services_loop(hub.clone()),
                        collect::tenants_loop(hub.clone()),
                        collect::reports_loop(hub)
                    )
                });
            })
            .context("cannot start the dashboard's collectors")?;
    }
    {
        let hub = hub.clone();
        std::thread::Builder::new()
            .name("dashboard-logs".into())
            .spawn(move || collect::logs_loop(hub))
            .context("cannot start the dashboard's log follower")?;
    }
    let state_path = hub.stack.files().state_path();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {
                if !state_path.exists() {
                    println!("dashboard: the run's state is gone; exiting");
                    return Ok(());
                }
                continue;
            }
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let hub = hub.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let hub = hub.clone();
                async move { Ok::<_, Infallible>(handle(hub, request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A response with the dashboard's common headers (no caching, no framing, own resources only).
fn respond(status: StatusCode, content_type: &str, body: Body) -> Response<Body> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_str(content_type).expect("static content type"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data: blob:; frame-ancestors 'none'; form-action 'none'; base-uri 'none'",
        ),
    );
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    response
}

fn text(status: StatusCode, message: &str) -> Response<Body> {
    respond(
        status,
        "text/plain; charset=utf-8",
        full(format!("{message}\n")),
    )
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    respond(
        status,
        "application/json",
        full(serde_json::to_vec(value).unwrap_or_default()),
    )
}

fn refused(refusal: Refusal) -> Response<Body> {
    match refusal {
        Refusal::ForeignHost => text(
            StatusCode::FORBIDDEN,
            "this dashboard answers only at 127.0.0.1 or localhost on its own port",
        ),
        Refusal::NoToken => text(
            StatusCode::UNAUTHORIZED,
            "the run's token is missing: open the dashboard URL `cargo xtask up` printed (`cargo xtask status` shows it again)",
        ),
        Refusal::Forbidden(why) => text(StatusCode::FORBIDDEN, why),
    }
}

async fn handle(hub: Arc<Hub>, request: Request<Incoming>) -> Response<Body> {
    if let Err(refusal) = hub.guard.check_host(request.headers()) {
        return refused(refusal);
    }
    let path = request.uri().path().to_string();
    let method = request.method().clone();
    if method == Method::POST {
        if let Err(refusal) = hub.guard.check_change(request.headers()) {
            return refused(refusal);
        }
        return action(hub, &path, request).await;
    }
    // The page itself is static and holds no data.
    match (&method, path.as_str()) {
        (&Method::GET, "/health") => return text(StatusCode::OK, "ok"),
        (&Method::GET, "/") => {
            return respond(StatusCode::OK, "text/html; charset=utf-8", full(INDEX_HTML))
        }
        (&Method::GET, "/app.js") => {
            return respond(
                StatusCode::OK,
                "text/javascript; charset=utf-8",
                full(APP_JS),
            )
        }
        (&Method::GET, "/app.css") => {
            return respond(StatusCode::OK, "text/css; charset=utf-8", full(APP_CSS))
        }
        _ => {}
    }
    if let Err(refusal) = hub.guard.check_read(request.headers()) {
        return refused(refusal);
    }
    match (method, path.as_str()) {
        (Method::GET, "/api/snapshot") => {
            let hub = hub.clone();
            match tokio::task::spawn_blocking(move || hub.snapshot()).await {
                Ok(snapshot) => json_response(StatusCode::OK, &snapshot),
                Err(_) => text(StatusCode::INTERNAL_SERVER_ERROR, "snapshot failed"),
            }
        }
        (Method::GET, "/api/events") => events(hub).await,
        (Method::GET, "/api/screenshot") => screenshot(&hub, request.uri().query()),
        _ => text(StatusCode::NOT_FOUND, "no such page"),
    }
}

/// The value of `name` in a query string (percent-decoded).
fn query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The event stream: a `hello` with the snapshot, then every published event.
async fn events(hub: Arc<Hub>) -> Response<Body> {
    hub.watchers.fetch_add(1, Ordering::Relaxed);
    let watching = Watching(hub.clone());
    let receiver = hub.events.subscribe();
    let snapshot = {
        let hub = hub.clone();
        tokio::task::spawn_blocking(move || hub.snapshot())
            .await
            .unwrap_or(Value::Null)
    };
    let first = format!(
        "event: hello\ndata: {}\n\n",
        serde_json::to_string(&snapshot).unwrap_or_default()
    );
    let stream = futures::stream::once(async move { Ok(first) }).chain(futures::stream::unfold(
        (receiver, watching),
        |(mut receiver, watching)| async move {
            let frame =
                match tokio::time::timeout(std::time::Duration::from_secs(15), receiver.recv())
                    .await
                {
                    Ok(Ok(frame)) => frame.as_str().to_string(),
                    // A slow page missed events: it reloads its snapshot.
                    Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                        "event: lagged\ndata: {}\n\n".to_string()
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    // Keeps idle connections open, and finds closed ones, every 15 s.
                    Err(_) => ": ping\n\n".to_string(),
                };
            Some((Ok(frame), (receiver, watching)))
        },
    ));
    let body =
        StreamBody::new(stream.map(|chunk: Result<String, Infallible>| {
            chunk.map(|text| Frame::data(Bytes::from(text)))
        }));
    respond(StatusCode::OK, "text/event-stream", BodyExt::boxed(body))
}

/// A screenshot a kept report names (`?report=<kind>&n=<index>`); nothing else is served.
fn screenshot(hub: &Hub, query: Option<&str>) -> Response<Body> {
    let kind = query_value(query, "report").unwrap_or_default();
    let index: usize = query_value(query, "n")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX);
    let reports = crate::run_reports::list(&hub.stack.config().state_dir);
    let Some(path) = reports
        .iter()
        .find(|r| r.kind == kind)
        .and_then(|r| hub.screenshots(r).into_iter().nth(index))
    else {
        return text(StatusCode::NOT_FOUND, "no such screenshot");
    };
    match std::fs::read(&path) {
        Ok(png) => respond(StatusCode::OK, "image/png", full(png)),
        Err(_) => text(StatusCode::NOT_FOUND, "the screenshot file is gone"),
    }
}

/// Runs an action; its result (or its error, one line) as JSON.
async fn action(hub: Arc<Hub>, path: &str, request: Request<Incoming>) -> Response<Body> {
    let body = match http_body_util::Limited::new(request.into_body(), MAX_BODY)
        .collect()
        .await
    {
        Ok(collected) => collected.to_bytes(),
        Err(_) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "the request body is too large",
            )
        }
    };
    fn input<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
        serde_json::from_slice(body)
            .map_err(|e| anyhow!("the action's JSON body is not valid: {e}"))
    }
    let outcome = match path {
        "/api/actions/restart" => match input(&body) {
            Ok(i) => actions::restart(&hub, i).await,
            Err(e) => Err(e),
        },
        "/api/actions/reset-password" => match input(&body) {
            Ok(i) => actions::reset_password(&hub, i).await,
            Err(e) => Err(e),
        },
        "/api/actions/export" => match input(&body) {
            Ok(i) => actions::export(&hub, i).await,
            Err(e) => Err(e),
        },
        "/api/actions/e2e" => actions::start_e2e(&hub),
        _ => return text(StatusCode::NOT_FOUND, "no such action"),
    };
    match outcome {
        Ok(value) => {
            println!("dashboard: {path} done");
            json_response(StatusCode::OK, &json!({"ok": true, "result": value}))
        }
        Err(e) => {
            println!("dashboard: {path} failed");
            json_response(
                StatusCode::UNPROCESSABLE_ENTITY,
                &json!({"ok": false, "error": format!("{e:#}")}),
            )
        }
    }
}
