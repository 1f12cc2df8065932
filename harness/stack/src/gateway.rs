//! The ALB emulation: one HTTP listener on 127.0.0.1 that answers `/health` itself (like the
//! target-group health path) and forwards each tenant's requests to its Langflow instance, chosen
//! like the ALB's listener rules: by path (`/tenant/<prefix>/…`, [`Routing::Path`]) or by host
//! header (`<prefix>.localhost:<port>`, [`Routing::Host`]: every tenant its own origin).
//!
//! - Routes come from a JSON file ([`Routes`]) written by the stack; it is re-read when it changes,
//!   so tenants added to a running stack become reachable without a restart.
//! - Bodies stream both ways (SSE works); `Upgrade` requests (websockets) are spliced through.
//! - Unknown tenant → 404 with a short text body; a tenant whose instance does not answer → 502
//!   for that tenant only.
//! - Optional TLS ([`serve_tls`], certificate from [`crate::gateway_tls`]) with a plain-HTTP
//!   listener that redirects to HTTPS; `X-Forwarded-Proto` tells instances which one was used.
//! - Connections: `TCP_NODELAY` on accepted and upstream sockets; keep-alive connections to each
//!   target are pooled ([`Upstreams`]), as the ALB keeps its target connections open.
//! - One access-log line per request on stdout: time, method, path (no query string: it may carry
//!   tokens), tenant, status, milliseconds; written in batches at most 100 ms after the request.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONNECTION, HOST, UPGRADE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

pub use harness_core::routing::{Routing, TENANT_DOMAIN, TENANT_PATH};

/// How long the gateway waits to connect to an instance before answering 502.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The gateway's routing table: how tenants are told apart, and tenant prefix → upstream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Routes {
    /// Path or host routing (absent in older files: path).
    #[serde(default)]
    pub routing: Routing,
    /// Upstreams by tenant prefix.
    pub tenants: BTreeMap<String, Upstream>,
    /// Image mode (`up --image`): the task ports behind the gateway, as the ALB's target group.
    /// When set, `/tenant/*` and `/health` go round-robin to these instead of `tenants`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pool: Vec<u16>,
    /// Whether the pool is sticky (lb_cookie): a client keeps the task of its first answer.
    #[serde(default)]
    pub sticky: bool,
}

impl Routes {
    /// The upstream of `prefix`, matched case-insensitively with host routing (host names are).
    fn upstream(&self, prefix: &str) -> Option<&Upstream> {
        match self.routing {
            Routing::Path => self.tenants.get(prefix),
            Routing::Host => self
                .tenants
                .iter()
                .find(|(p, _)| p.eq_ignore_ascii_case(prefix))
                .map(|(_, upstream)| upstream),
        }
    }
}

/// Where one tenant's instance listens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Upstream {
    /// Port on 127.0.0.1.
    pub port: u16,
    /// Schema id of the tenant (for the access log).
    pub schema: String,
}

impl Routes {
    /// Reads a routes file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read gateway routes {}", path.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("gateway routes {} are not valid JSON", path.display()))
    }

    /// Writes a routes file atomically (0600).
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        harness_core::state::write_json_0600(path, self)
    }
}

/// Routes re-read from their file whenever its modification time changes.
struct RouteTable {
    path: PathBuf,
    cached: Mutex<(Option<SystemTime>, Arc<Routes>)>,
    /// Pooled connections to the targets.
    upstreams: Upstreams,
}

impl RouteTable {
    fn current(&self) -> Arc<Routes> {
        let modified = std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok();
        let mut cached = self.cached.lock().expect("routes lock");
        if modified != cached.0 {
            match Routes::read(&self.path) {
                Ok(routes) => *cached = (modified, Arc::new(routes)),
                Err(e) => eprintln!("gateway: keeping previous routes: {e:#}"),
            }
        }
        cached.1.clone()
    }
}

type GatewayBody = BoxBody<Bytes, hyper::Error>;

fn text_response(status: StatusCode, text: impl Into<String>) -> Response<GatewayBody> {
    let mut response = Response::new(
        Full::new(Bytes::from(text.into()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The tenant prefix a request path addresses, if it is under `/tenant/`.
pub fn tenant_of(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(TENANT_PATH)?;
    let prefix = rest.split('/').next().unwrap_or("");
    (!prefix.is_empty()).then_some(prefix)
}

/// The tenant prefix a `Host` header addresses with host routing: `acme` for `acme.localhost`
/// or `acme.localhost:8080` (any case, optional trailing dot); `None` for other hosts.
pub fn tenant_of_host(host: &str) -> Option<&str> {
    let name = match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    let (prefix, domain) = name.split_once('.')?;
    (domain.eq_ignore_ascii_case(TENANT_DOMAIN) && !prefix.is_empty()).then_some(prefix)
}

/// TLS settings of a gateway process: where its certificate lives and the redirect port.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// Directory holding (or receiving) `cert.pem` and `key.pem`.
    pub dir: PathBuf,
    /// Plain-HTTP port redirecting to HTTPS.
    pub redirect_port: u16,
}

/// Serves the gateway on `port`: plain HTTP, or HTTPS plus the redirect listener with `tls`.
pub async fn serve_with(port: u16, routes_path: PathBuf, tls: Option<TlsOptions>) -> Result<()> {
    match tls {
        None => serve(port, routes_path).await,
        Some(tls) => serve_tls(port, tls.redirect_port, routes_path, &tls.dir).await,
    }
}

/// Serves the gateway on `127.0.0.1:port` until the process is stopped.
pub async fn serve(port: u16, routes_path: PathBuf) -> Result<()> {
    serve_on(bind(port, "gateway").await?, routes_path).await
}

/// Serves the gateway with TLS on `127.0.0.1:port` (certificate from, or generated into,
/// `tls_dir`) and the HTTP→HTTPS redirect on `127.0.0.1:redirect_port`.
pub async fn serve_tls(
    port: u16,
    redirect_port: u16,
    routes_path: PathBuf,
    tls_dir: &Path,
) -> Result<()> {
    let config = crate::gateway_tls::load_or_create(tls_dir)?;
    let listener = bind(port, "gateway").await?;
    let redirect = bind(redirect_port, "gateway HTTP redirect").await?;
    serve_tls_on(listener, redirect, routes_path, config).await
}

async fn bind(port: u16, what: &str) -> Result<TcpListener> {
    TcpListener::bind((harness_core::net::LOOPBACK, port))
        .await
        .with_context(|| format!("{what} cannot listen on 127.0.0.1:{port}"))
}

fn route_table(routes_path: PathBuf) -> Arc<RouteTable> {
    let table = Arc::new(RouteTable {
        path: routes_path,
        cached: Mutex::new((None, Arc::new(Routes::default()))),
        upstreams: Upstreams::new(),
    });
    table.current();
    table
}

/// Serves the gateway on an already bound listener.
pub async fn serve_on(listener: TcpListener, routes_path: PathBuf) -> Result<()> {
    println!(
        "gateway listening on http://{}",
        listener.local_addr().context("listener address")?
    );
    accept_loop(listener, route_table(routes_path), None).await
}

/// Serves the gateway with TLS on `listener` and redirects every plain-HTTP request on
/// `redirect` to the same path on HTTPS.
pub async fn serve_tls_on(
    listener: TcpListener,
    redirect: TcpListener,
    routes_path: PathBuf,
    config: Arc<rustls::ServerConfig>,
) -> Result<()> {
    let tls_port = listener.local_addr().context("listener address")?.port();
    println!(
        "gateway listening on https://127.0.0.1:{tls_port}, redirecting http://{} to it",
        redirect.local_addr().context("listener address")?
    );
    tokio::spawn(redirect_loop(redirect, tls_port));
    accept_loop(
        listener,
        route_table(routes_path),
        Some(tokio_rustls::TlsAcceptor::from(config)),
    )
    .await
}

/// Access-log lines not yet written: gathered here and written to stdout by
/// [`flush_access_log`] at most [`ACCESS_LOG_FLUSH`] after they were made — one write for many
/// requests instead of one per request (a write per request cost the gateway ~10% of its
/// throughput under load).
static ACCESS_LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());
/// How long an access-log line may wait before it is written.
const ACCESS_LOG_FLUSH: Duration = Duration::from_millis(100);

/// Adds one line to the access log.
fn access_log(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut pending = ACCESS_LOG.lock().expect("access log lock");
    let _ = writeln!(pending, "{line}");
}

/// Writes the pending access-log lines every [`ACCESS_LOG_FLUSH`], forever.
async fn flush_access_log() {
    use std::io::Write;
    loop {
        tokio::time::sleep(ACCESS_LOG_FLUSH).await;
        let lines = std::mem::take(&mut *ACCESS_LOG.lock().expect("access log lock"));
        if !lines.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(&lines);
            let _ = out.flush();
        }
    }
}

/// Accepts one connection and tunes its socket ([`tune_socket`]).
async fn accept(listener: &TcpListener) -> std::io::Result<(TcpStream, SocketAddr)> {
    let (stream, client) = listener.accept().await?;
    tune_socket(&stream);
    Ok((stream, client))
}

async fn accept_loop(
    listener: TcpListener,
    table: Arc<RouteTable>,
    tls: Option<tokio_rustls::TlsAcceptor>,
) -> Result<()> {
    tokio::spawn(flush_access_log());
    loop {
        let (stream, client) = match accept(&listener).await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("gateway: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let (table, tls) = (table.clone(), tls.clone());
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, client, table, "http").await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => serve_connection(stream, client, table, "https").await,
                    Err(e) => eprintln!("gateway: TLS handshake with {client} failed: {e}"),
                },
            }
        });
    }
}

async fn serve_connection<S>(
    stream: S,
    client: SocketAddr,
    table: Arc<RouteTable>,
    scheme: &'static str,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let table = table.clone();
        async move { Ok::<_, Infallible>(handle(request, client, &table, scheme).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

/// The ALB's HTTP listener when a certificate is configured: every request → 301 to HTTPS.
async fn redirect_loop(listener: TcpListener, tls_port: u16) {
    loop {
        let Ok((stream, _)) = accept(&listener).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |request: Request<Incoming>| async move {
                    let path_and_query = request
                        .uri()
                        .path_and_query()
                        .map_or("/".to_string(), |pq| pq.as_str().to_string());
                    let host = request.headers().get(HOST).and_then(|h| h.to_str().ok());
                    let location =
                        crate::gateway_tls::redirect_location(host, tls_port, &path_and_query);
                    let mut response = text_response(StatusCode::MOVED_PERMANENTLY, "");
                    if let Ok(value) = HeaderValue::from_str(&location) {
                        response
                            .headers_mut()
                            .insert(hyper::header::LOCATION, value);
                    }
                    access_log(format_args!(
                        "{} {} {} redirect status=301",
                        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
                        request.method(),
                        request.uri().path()
                    ));
                    Ok::<_, Infallible>(response)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn handle(
    request: Request<Incoming>,
    client: SocketAddr,
    table: &RouteTable,
    scheme: &'static str,
) -> Response<GatewayBody> {
    let started = Instant::now();
    let method = request.method().clone();
    let path = request.uri().path().to_string();
    let routes = table.current();
    let tenant = match routes.routing {
        Routing::Path => tenant_of(&path).map(str::to_string),
        Routing::Host => request_host(&request)
            .as_deref()
            .and_then(tenant_of_host)
            .map(str::to_ascii_lowercase),
    };
    let response = route(
        request,
        client,
        &routes,
        tenant.as_deref(),
        scheme,
        &table.upstreams,
    )
    .await;
    access_log(format_args!(
        "{} {method} {path} tenant={} status={} ms={:.1}",
        chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ"),
        tenant.as_deref().unwrap_or("-"),
        response.status().as_u16(),
        started.elapsed().as_secs_f64() * 1000.0
    ));
    response
}

/// The host a request addresses: its `Host` header, or the authority of an absolute-form target.
fn request_host<T>(request: &Request<T>) -> Option<String> {
    request
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| request.uri().authority().map(|a| a.to_string()))
}

async fn route(
    request: Request<Incoming>,
    client: SocketAddr,
    routes: &Routes,
    tenant: Option<&str>,
    scheme: &'static str,
    upstreams: &Upstreams,
) -> Response<GatewayBody> {
    let path = request.uri().path();
    if !routes.pool.is_empty() {
        return route_to_pool(request, client, routes, scheme, upstreams).await;
    }
    // With host routing a tenant's own `/health` is its instance's; the gateway's is on any
    // other host (127.0.0.1), as the ALB's rules leave the default action.
    if path == "/health" && (routes.routing == Routing::Path || tenant.is_none()) {
        return text_response(StatusCode::OK, "ok\n");
    }
    let Some(tenant) = tenant else {
        return text_response(
            StatusCode::NOT_FOUND,
            match routes.routing {
                Routing::Path => "not found; tenants are served under /tenant/<prefix>/\n",
                Routing::Host => {
                    "not found; tenants are served at http://<prefix>.localhost:<port>/\n"
                }
            },
        );
    };
    let Some(upstream) = routes.upstream(tenant) else {
        return text_response(
            StatusCode::NOT_FOUND,
            format!("unknown tenant '{tenant}'\n"),
        );
    };
    if routes.routing == Routing::Path && path == format!("{TENANT_PATH}{tenant}") {
        let query = request
            .uri()
            .query()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        let mut response = text_response(StatusCode::MOVED_PERMANENTLY, "");
        if let Ok(location) = HeaderValue::from_str(&format!("{path}/{query}")) {
            response
                .headers_mut()
                .insert(hyper::header::LOCATION, location);
        }
        return response;
    }
    match forward(request, client, upstream.port, scheme, upstreams).await {
        Ok(response) => response,
        Err(e) => text_response(
            StatusCode::BAD_GATEWAY,
            format!("tenant '{tenant}' is unavailable: {e}\n"),
        ),
    }
}

/// The cookie that keeps a client on one task when the pool is sticky (the ALB's is `AWSALB`).
pub const STICKY_COOKIE: &str = "AWSALB";

/// Next task of the round-robin.
static NEXT_TASK: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Image mode: the listener's forward action — every request to the target group (a stock
/// Langflow serves at `/`, a multi-tenant image at `/tenant/<prefix>/` and answers the rest
/// itself), round-robin over the tasks, sticky by cookie when the target group is.
async fn route_to_pool(
    request: Request<Incoming>,
    client: SocketAddr,
    routes: &Routes,
    scheme: &'static str,
    upstreams: &Upstreams,
) -> Response<GatewayBody> {
    let pinned = routes
        .sticky
        .then(|| sticky_task(&request))
        .flatten()
        .filter(|i| *i < routes.pool.len());
    let index = pinned.unwrap_or_else(|| {
        NEXT_TASK.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % routes.pool.len()
    });
    match forward(request, client, routes.pool[index], scheme, upstreams).await {
        Ok(mut response) => {
            if routes.sticky && pinned.is_none() {
                if let Ok(cookie) =
                    HeaderValue::from_str(&format!("{STICKY_COOKIE}={index}; Path=/; HttpOnly"))
                {
                    response
                        .headers_mut()
                        .append(hyper::header::SET_COOKIE, cookie);
                }
            }
            response
        }
        Err(e) => text_response(
            StatusCode::BAD_GATEWAY,
            format!("task {} is unavailable: {e}\n", index + 1),
        ),
    }
}

/// The task index a request's sticky cookie names.
fn sticky_task<T>(request: &Request<T>) -> Option<usize> {
    request
        .headers()
        .get_all(hyper::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == STICKY_COOKIE)
        .and_then(|(_, value)| value.parse().ok())
}

/// Headers that describe one hop and must not be forwarded (RFC 9110 §7.6.1).
const HOP_BY_HOP: [&str; 7] = [
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
];

fn is_upgrade<T>(message: &hyper::http::Request<T>) -> bool {
    message
        .headers()
        .get(CONNECTION)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"))
        && message.headers().contains_key(UPGRADE)
}

/// The gateway's connections to its targets: keep-alive connections pooled per target (as the ALB
/// keeps its connections to registered targets open), `TCP_NODELAY` on every one, a bounded
/// connect time. Idle connections are closed before a typical server's keep-alive timeout
/// (uvicorn: 5 s), so a pooled connection is not reused just as the target closes it.
#[derive(Clone)]
pub struct Upstreams {
    client: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Incoming,
    >,
}

/// How long an idle pooled connection to a target is kept.
const UPSTREAM_IDLE: Duration = Duration::from_secs(4);

impl Upstreams {
    /// A pool with no connections yet.
    pub fn new() -> Self {
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.enforce_http(true);
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .pool_idle_timeout(UPSTREAM_IDLE)
                .pool_timer(hyper_util::rt::TokioTimer::new())
                .set_host(false)
                .build(connector);
        Upstreams { client }
    }
}

impl Default for Upstreams {
    fn default() -> Self {
        Self::new()
    }
}

/// Turns off Nagle's algorithm on an accepted or connected socket: a response written in more
/// than one segment would otherwise wait for the peer's delayed ACK (~40 ms per request on a
/// keep-alive connection).
pub fn tune_socket(stream: &TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        eprintln!("gateway: cannot set TCP_NODELAY: {e}");
    }
}

/// The first line of an error and its causes, for a 502 body.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn forward(
    mut request: Request<Incoming>,
    client: SocketAddr,
    port: u16,
    scheme: &'static str,
    upstreams: &Upstreams,
) -> Result<Response<GatewayBody>, String> {
    let upgrade = is_upgrade(&request);
    let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut request));

    let original_host = request.headers().get(HOST).cloned();
    let headers = request.headers_mut();
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if !upgrade {
        headers.remove(CONNECTION);
    }
    let forwarded_for = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(previous) => format!("{previous}, {}", client.ip()),
        None => client.ip().to_string(),
    };
    if let Ok(value) = HeaderValue::from_str(&forwarded_for) {
        headers.insert("x-forwarded-for", value);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(scheme));
    if let Some(host) = original_host {
        headers.insert("x-forwarded-host", host);
    }
    // The pool is keyed by the absolute target; the request line upstream stays in origin form.
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    *request.uri_mut() = format!(
        "http://{}:{port}{path_and_query}",
        harness_core::net::LOOPBACK
    )
    .parse()
    .map_err(|e| format!("bad request target ({e})"))?;

    let mut response = upstreams.client.request(request).await.map_err(|e| {
        if e.is_connect() {
            format!("its instance is not answering ({})", error_chain(&e))
        } else {
            format!("its instance closed the connection ({})", error_chain(&e))
        }
    })?;
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(downstream_upgrade) = downstream_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                if let (Ok(down), Ok(up)) = tokio::join!(downstream_upgrade, upstream_upgrade) {
                    let _ = tokio::io::copy_bidirectional(
                        &mut TokioIo::new(down),
                        &mut TokioIo::new(up),
                    )
                    .await;
                }
            });
        }
    } else {
        let headers = response.headers_mut();
        for name in HOP_BY_HOP {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    Ok(response.map(|body| body.boxed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The regression behind the ~40 ms per keep-alive request: accepted sockets must have
    /// Nagle's algorithm off.
    #[tokio::test]
    async fn accepted_sockets_have_nodelay() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connecting = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (stream, _) = accept(&listener).await.unwrap();
        assert!(stream.nodelay().unwrap());
        drop(connecting.await.unwrap());
    }

    #[test]
    fn tenant_is_the_first_segment_under_tenant() {
        assert_eq!(tenant_of("/tenant/acme/"), Some("acme"));
        assert_eq!(tenant_of("/tenant/acme/api/v1/flows"), Some("acme"));
        assert_eq!(tenant_of("/tenant/acme"), Some("acme"));
        assert_eq!(tenant_of("/tenant/"), None);
        assert_eq!(tenant_of("/health"), None);
        assert_eq!(tenant_of("/tenantx/acme"), None);
    }

    #[test]
    fn tenant_is_the_first_label_of_a_localhost_name_with_host_routing() {
        assert_eq!(tenant_of_host("acme.localhost:8080"), Some("acme"));
        assert_eq!(tenant_of_host("acme.localhost"), Some("acme"));
        assert_eq!(tenant_of_host("Acme.LOCALHOST.:80"), Some("Acme"));
        assert_eq!(tenant_of_host("127.0.0.1:8080"), None);
        assert_eq!(tenant_of_host("localhost:8080"), None);
        assert_eq!(tenant_of_host(".localhost"), None);
        assert_eq!(tenant_of_host("acme.example.com"), None);
    }

    #[test]
    fn tenant_urls_follow_the_routing() {
        let gw = "http://127.0.0.1:8080";
        assert_eq!(
            Routing::Path.tenant_url(gw, "acme"),
            "http://127.0.0.1:8080/tenant/acme/"
        );
        assert_eq!(
            Routing::Host.tenant_url(gw, "Acme"),
            "http://acme.localhost:8080/"
        );
        assert_eq!(Routing::Host.root_path("acme"), "");
        assert_eq!(Routing::Path.root_path("acme"), "/tenant/acme");
        assert_eq!("host".parse::<Routing>().unwrap(), Routing::Host);
        assert!("hosts"
            .parse::<Routing>()
            .unwrap_err()
            .to_string()
            .contains("\"path\""));
    }
}
