//! `cargo xtask bench --gateway`: what the gateway adds to a request, measured against the same
//! backend reached directly and through nginx (Debian's `nginx`, a minimal keep-alive reverse proxy
//! written here), at 1 and 16 concurrent keep-alive clients.
//!
//! The backend is a small HTTP/1.1 server in this process (keep-alive, `TCP_NODELAY`, a 1 KB page
//! like a Langflow HTML answer) on its own runtime thread, so only the proxy differs between the
//! three paths. The gateway is the real `gateway-serve` process with a routes file naming the
//! backend as a tenant; nginx runs with its own temp directory. Every client holds one keep-alive
//! connection and sends its requests one after another; latencies are per request, throughput is
//! requests over the wall time of the whole configuration.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::{TcpListener, TcpStream};

use crate::gateway::{Routes, Upstream};
use crate::net::LOOPBACK;
use crate::stack::GatewayCommand;

/// The tenant the backend is routed as.
const TENANT: &str = "bench";
/// The page every request asks for.
const PAGE_PATH: &str = "/tenant/bench/page";
/// Targets (issue 29): added p50 / p99 on keep-alive, gateway throughput against nginx's.
const TARGET_ADDED_P50_MS: f64 = 1.0;
const TARGET_ADDED_P99_MS: f64 = 3.0;
const TARGET_THROUGHPUT_VS_NGINX: f64 = 0.9;
const TARGET_UI_LOAD_RATIO: f64 = 1.1;

/// What to measure.
#[derive(Debug, Clone)]
pub struct GatewayBenchOptions {
    /// Concurrent keep-alive clients per configuration (e.g. 1 and 16).
    pub clients: Vec<usize>,
    /// Requests in all per configuration (spread over the clients), after a warm-up.
    pub requests: usize,
    /// The nginx binary; `None` looks for `nginx` on PATH and in /usr/sbin.
    pub nginx: Option<PathBuf>,
    /// Cold loads of a tenant's UI in headless Chromium per path (direct and through the gateway)
    /// on a one-tenant stack; 0 leaves the UI part out.
    pub ui_loads: usize,
    /// The repository root (its configuration starts the one-tenant stack for the UI part).
    pub root: PathBuf,
}

impl Default for GatewayBenchOptions {
    fn default() -> Self {
        Self {
            clients: vec![1, 16],
            requests: 20_000,
            nginx: None,
            ui_loads: 5,
            root: PathBuf::from("."),
        }
    }
}

/// One path × concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct PathFigures {
    /// `direct`, `gateway` or `nginx`.
    pub path: String,
    /// Concurrent keep-alive clients.
    pub clients: usize,
    /// Requests measured.
    pub requests: usize,
    /// Requests that failed (transport error or a status other than 200).
    pub errors: usize,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Requests per second over the whole configuration.
    pub rps: f64,
}

/// What a proxy adds over the direct path at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct AddedFigures {
    /// `gateway` or `nginx`.
    pub path: String,
    /// Concurrent keep-alive clients.
    pub clients: usize,
    /// p50 through the proxy minus p50 direct, ms.
    pub added_p50_ms: f64,
    /// p99 through the proxy minus p99 direct, ms.
    pub added_p99_ms: f64,
    /// Throughput through the proxy over nginx's at the same concurrency (None without nginx).
    pub rps_vs_nginx: Option<f64>,
}

/// One target and whether it was met.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// What is measured.
    pub name: String,
    /// The figure.
    pub value: f64,
    /// The bound.
    pub limit: String,
    /// Met, missed, or not measured (`None`, e.g. without nginx).
    pub met: Option<bool>,
}

/// A tenant's UI loaded cold (fresh browser context: no cache, no cookies) in headless Chromium,
/// from navigation start to the end of the last request the page made.
#[derive(Debug, Clone, Serialize)]
pub struct UiFigures {
    /// Loads per path (after one warm-up load each).
    pub loads: usize,
    /// Requests one load made (the page and everything it fetched), direct.
    pub requests_per_load: usize,
    /// Median load, straight to the tenant's instance, ms.
    pub direct_ms: f64,
    /// Median load through the gateway, ms.
    pub gateway_ms: f64,
    /// Every load, ms: (direct, gateway) pairs in the order they ran.
    pub samples_ms: Vec<(f64, f64)>,
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct GatewayBenchReport {
    /// Every path × concurrency.
    pub rows: Vec<PathFigures>,
    /// The UI page load, direct vs gateway (None when left out).
    pub ui: Option<UiFigures>,
    /// Why the UI part was left out, when it was.
    pub ui_missing: Option<String>,
    /// What the gateway and nginx add over the direct path.
    pub added: Vec<AddedFigures>,
    /// The targets.
    pub targets: Vec<Target>,
    /// Why nginx was not measured, when it was not.
    pub nginx_missing: Option<String>,
}

impl GatewayBenchReport {
    /// No request failed and no measured target was missed.
    pub fn pass(&self) -> bool {
        self.rows.iter().all(|r| r.errors == 0) && self.targets.iter().all(|t| t.met != Some(false))
    }
}

/// Runs the benchmark: backend, gateway process (`gateway`), nginx when installed.
pub async fn run(
    gateway: &GatewayCommand,
    options: &GatewayBenchOptions,
) -> Result<GatewayBenchReport> {
    if options.clients.is_empty() || options.clients.contains(&0) {
        bail!("--clients needs one or more counts above 0 (e.g. 1,16)");
    }
    let work = tempfile::tempdir().context("cannot create a temp dir for the gateway bench")?;
    let backend = Backend::start()?;
    let gateway_proc = Proxy::gateway(gateway, work.path(), backend.port).await?;
    let nginx_bin = options.nginx.clone().or_else(find_nginx);
    let (nginx_proc, nginx_missing) = match nginx_bin {
        Some(bin) => (
            Some(Proxy::nginx(&bin, work.path(), backend.port).await?),
            None,
        ),
        None => (
            None,
            Some(
                "nginx is not installed (apt-get install nginx); its column is left out"
                    .to_string(),
            ),
        ),
    };

    let mut rows = Vec::new();
    for &clients in &options.clients {
        let mut paths = vec![("direct", backend.port), ("gateway", gateway_proc.port)];
        if let Some(nginx) = &nginx_proc {
            paths.push(("nginx", nginx.port));
        }
        for (name, port) in paths {
            rows.push(measure(name, port, clients, options.requests).await?);
        }
    }
    drop(nginx_proc);
    drop(gateway_proc);
    drop(backend);

    let find = |path: &str, clients: usize| {
        rows.iter()
            .find(|r| r.path == path && r.clients == clients)
            .cloned()
    };
    let mut added = Vec::new();
    let mut targets = Vec::new();
    for &clients in &options.clients {
        let direct = find("direct", clients).expect("measured");
        let nginx = find("nginx", clients);
        for proxy in ["gateway", "nginx"] {
            let Some(row) = find(proxy, clients) else {
                continue;
            };
            added.push(AddedFigures {
                path: proxy.to_string(),
                clients,
                added_p50_ms: row.p50_ms - direct.p50_ms,
                added_p99_ms: row.p99_ms - direct.p99_ms,
                rps_vs_nginx: nginx.as_ref().map(|n| row.rps / n.rps),
            });
        }
        let gateway = find("gateway", clients).expect("measured");
        if clients == 1 {
            let p50 = gateway.p50_ms - direct.p50_ms;
            let p99 = gateway.p99_ms - direct.p99_ms;
            targets.push(Target {
                name: "gateway added latency p50, 1 keep-alive client (ms)".into(),
                value: p50,
                limit: format!("≤ {TARGET_ADDED_P50_MS}"),
                met: Some(p50 <= TARGET_ADDED_P50_MS),
            });
            targets.push(Target {
                name: "gateway added latency p99, 1 keep-alive client (ms)".into(),
                value: p99,
                limit: format!("≤ {TARGET_ADDED_P99_MS}"),
                met: Some(p99 <= TARGET_ADDED_P99_MS),
            });
        }
        if clients == *options.clients.iter().max().expect("non-empty") {
            let ratio = nginx.as_ref().map(|n| gateway.rps / n.rps);
            targets.push(Target {
                name: format!("gateway throughput / nginx's, {clients} clients"),
                value: ratio.unwrap_or(f64::NAN),
                limit: format!("≥ {TARGET_THROUGHPUT_VS_NGINX}"),
                met: ratio.map(|r| r >= TARGET_THROUGHPUT_VS_NGINX),
            });
        }
    }
    let (ui, ui_missing) = if options.ui_loads == 0 {
        (None, Some("left out (--ui-loads 0)".to_string()))
    } else {
        match crate::browser::find_chromium()? {
            None => (
                None,
                Some("no Chromium found (apt-get install chromium)".to_string()),
            ),
            Some(chromium) => (Some(ui_page_load(gateway, options, &chromium).await?), None),
        }
    };
    if let Some(ui) = &ui {
        let ratio = ui.gateway_ms / ui.direct_ms;
        targets.push(Target {
            name: "UI page load through the gateway / direct".into(),
            value: ratio,
            limit: format!("≤ {TARGET_UI_LOAD_RATIO}"),
            met: Some(ratio <= TARGET_UI_LOAD_RATIO),
        });
    }
    Ok(GatewayBenchReport {
        rows,
        ui,
        ui_missing,
        added,
        targets,
        nginx_missing,
    })
}

/// The end of the last request of the page in the tab, ms after navigation start (the page's own
/// performance timeline: the document and every resource it fetched).
const PAGE_DONE_MS: &str = "Math.max(...performance.getEntries().map(e => e.responseEnd || 0))";
/// Requests the page made (the document and its resources).
const PAGE_REQUESTS: &str = "performance.getEntriesByType('resource').length + 1";
/// The UI has rendered its login form.
const LOGIN_FORM: &str = "document.querySelector('input[type=password]') !== null";

/// Starts a one-tenant native stack and loads its UI cold, alternately straight from the
/// instance and through the gateway: one warm-up each, then `options.ui_loads` each.
async fn ui_page_load(
    gateway: &GatewayCommand,
    options: &GatewayBenchOptions,
    chromium: &Path,
) -> Result<UiFigures> {
    let dir = tempfile::Builder::new()
        .prefix("lfi-gwbench-")
        .tempdir()
        .context("cannot create a temp dir")?;
    let yaml = format!(
        "tenants:\n  - prefix: {TENANT}\n    users:\n      - username: admin@{TENANT}.com\n        superuser: true\n"
    );
    let config = crate::config::Config::isolated_with_tenants(&options.root, dir.path(), &yaml)?;
    let stack = crate::stack::Stack::new(config.clone())
        .with_runtime(crate::runtime::for_run("native", &config)?)
        .with_gateway_command(gateway.clone());
    let result = async {
        crate::progress::println("bench: starting a one-tenant stack for the UI page load");
        let up = stack.up().await?;
        let tenant = up
            .tenants
            .iter()
            .find(|t| t.prefix == TENANT)
            .ok_or_else(|| anyhow!("the bench tenant did not come up"))?;
        let gateway_url = tenant.url.clone();
        let direct_url = format!(
            "http://127.0.0.1:{}{}/",
            tenant.instance_port,
            config.gateway.routing.root_path(TENANT)
        );
        let browser = crate::browser::Chromium::launch(chromium).await?;
        let measured = async {
            let mut samples = Vec::new();
            let mut requests = 0;
            for round in 0..=options.ui_loads {
                let (direct, n) = load_once(&browser, &direct_url).await?;
                let (through, _) = load_once(&browser, &gateway_url).await?;
                if round > 0 {
                    samples.push((direct, through));
                    requests = n;
                }
            }
            Ok::<_, anyhow::Error>((samples, requests))
        }
        .await;
        browser.close().await;
        let (samples, requests) = measured?;
        let median = |pick: fn(&(f64, f64)) -> f64| {
            let mut values: Vec<f64> = samples.iter().map(pick).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Ok(UiFigures {
            loads: samples.len(),
            requests_per_load: requests,
            direct_ms: median(|s| s.0),
            gateway_ms: median(|s| s.1),
            samples_ms: samples,
        })
    }
    .await;
    stack.down(true)?;
    result
}

/// One cold load of `url` in a fresh browser context: (ms until the last request ended, requests).
async fn load_once(browser: &crate::browser::Chromium, url: &str) -> Result<(f64, usize)> {
    let tab = browser.isolated_tab().await?;
    let measured = async {
        tab.goto(url).await?;
        tab.wait_for("the login form", LOGIN_FORM, Duration::from_secs(60))
            .await?;
        // Let the requests the rendered form starts finish, then read the timeline.
        let mut last = 0usize;
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now: usize = tab.eval(PAGE_REQUESTS).await?;
            if now == last {
                break;
            }
            last = now;
        }
        let done: f64 = tab.eval(PAGE_DONE_MS).await?;
        Ok::<_, anyhow::Error>((done, last))
    }
    .await;
    tab.close().await;
    measured
}

/// nginx on PATH or in /usr/sbin (Debian puts it there; root's PATH has it, a user's may not).
fn find_nginx() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin")])
        .map(|dir| dir.join("nginx"))
        .find(|candidate| candidate.is_file())
}

/// `clients` keep-alive connections to `port`, `requests` GETs in all (after 50 per client to warm
/// up), each client's one after another.
async fn measure(path: &str, port: u16, clients: usize, requests: usize) -> Result<PathFigures> {
    let per_client = requests.div_ceil(clients).max(1);
    let mut connections = Vec::new();
    for _ in 0..clients {
        let mut connection = Client::connect(port).await?;
        for _ in 0..50 {
            connection.get().await?;
        }
        connections.push(connection);
    }
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for mut connection in connections {
        tasks.spawn(async move {
            let mut latencies = Vec::with_capacity(per_client);
            let mut errors = 0;
            for _ in 0..per_client {
                let t = Instant::now();
                match connection.get().await {
                    Ok(()) => latencies.push(t.elapsed()),
                    Err(_) => {
                        errors += 1;
                        // A failed connection is replaced; the next request measures again.
                        if let Ok(fresh) = Client::connect(connection.port).await {
                            connection = fresh;
                        }
                    }
                }
            }
            (latencies, errors)
        });
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (l, e) = done.context("a bench client panicked")?;
        latencies.extend(l);
        errors += e;
    }
    let wall = started.elapsed();
    latencies.sort();
    let pick = |q: f64| -> f64 {
        if latencies.is_empty() {
            return f64::NAN;
        }
        let index = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies[index].as_secs_f64() * 1000.0
    };
    Ok(PathFigures {
        path: path.to_string(),
        clients,
        requests: latencies.len() + errors,
        errors,
        p50_ms: pick(0.50),
        p99_ms: pick(0.99),
        rps: (latencies.len() + errors) as f64 / wall.as_secs_f64(),
    })
}

/// One keep-alive HTTP/1.1 connection.
struct Client {
    port: u16,
    sender: hyper::client::conn::http1::SendRequest<Empty<Bytes>>,
}

impl Client {
    async fn connect(port: u16) -> Result<Self> {
        let stream = TcpStream::connect((LOOPBACK, port))
            .await
            .with_context(|| format!("cannot connect to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .context("HTTP handshake")?;
        tokio::spawn(connection);
        Ok(Self { port, sender })
    }

    async fn get(&mut self) -> Result<()> {
        self.sender.ready().await?;
        let request = Request::get(PAGE_PATH)
            .header(hyper::header::HOST, format!("127.0.0.1:{}", self.port))
            .body(Empty::new())?;
        let response = self.sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::OK || body.len() != PAGE.len() {
            bail!("status {status}, {} bytes", body.len());
        }
        Ok(())
    }
}

/// The page: 1 KB of HTML, about what Langflow's index answer is without its assets.
static PAGE: &[u8] = &[b'x'; 1024];

/// The backend, on its own single-threaded runtime in a thread of this process.
struct Backend {
    port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Backend {
    fn start() -> Result<Self> {
        let listener = std::net::TcpListener::bind((LOOPBACK, 0)).context("bench backend bind")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("bench-backend".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("backend runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("backend listener");
                    tokio::select! {
                        _ = stopped => {}
                        _ = serve_backend(listener) => {}
                    }
                });
            })
            .context("cannot start the bench backend thread")?;
        Ok(Self {
            port,
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve_backend(listener: TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|_request: Request<hyper::body::Incoming>| async {
                    let mut response = Response::new(Full::new(Bytes::from_static(PAGE)));
                    response.headers_mut().insert(
                        hyper::header::CONTENT_TYPE,
                        hyper::header::HeaderValue::from_static("text/html; charset=utf-8"),
                    );
                    Ok::<_, Infallible>(response)
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// A proxy process in front of the backend (the gateway or nginx), stopped with SIGTERM when
/// dropped (nginx's workers exit with their master).
struct Proxy {
    port: u16,
    child: tokio::process::Child,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(pid) = self.child.id() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
    }
}

impl Proxy {
    /// The real gateway process, routing the bench tenant to the backend.
    async fn gateway(command: &GatewayCommand, dir: &Path, backend: u16) -> Result<Self> {
        let routes_path = dir.join("routes.json");
        let mut routes = Routes::default();
        routes.tenants.insert(
            TENANT.to_string(),
            Upstream {
                port: backend,
                schema: format!("{TENANT}-000000"),
            },
        );
        routes.write(&routes_path)?;
        let port = crate::net::free_ports(1)?[0];
        let log = std::fs::File::create(dir.join("gateway.log"))?;
        let child = tokio::process::Command::new(&command.program)
            .args(&command.args)
            .arg("--port")
            .arg(port.to_string())
            .arg("--routes")
            .arg(&routes_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start the gateway {}", command.program.display()))?;
        wait_for_port(port, "the gateway", &dir.join("gateway.log")).await?;
        Ok(Self { port, child })
    }

    /// nginx as a keep-alive reverse proxy to the backend, everything in `dir`.
    async fn nginx(binary: &Path, dir: &Path, backend: u16) -> Result<Self> {
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(prefix.join("logs"))?;
        let port = crate::net::free_ports(1)?[0];
        let conf = prefix.join("nginx.conf");
        std::fs::write(&conf, nginx_conf(&prefix, port, backend))?;
        let child = tokio::process::Command::new(binary)
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start {}", binary.display()))?;
        wait_for_port(port, "nginx", &prefix.join("logs/error.log")).await?;
        Ok(Self { port, child })
    }
}

/// A minimal reverse proxy: keep-alive to the upstream, an access log like the gateway's.
fn nginx_conf(prefix: &Path, port: u16, backend: u16) -> String {
    let p = prefix.display();
    format!(
        "daemon off;\n\
         worker_processes auto;\n\
         pid {p}/nginx.pid;\n\
         error_log {p}/logs/error.log warn;\n\
         events {{ worker_connections 1024; }}\n\
         http {{\n\
         \x20 access_log {p}/logs/access.log;\n\
         \x20 client_body_temp_path {p}/body;\n\
         \x20 proxy_temp_path {p}/proxy;\n\
         \x20 fastcgi_temp_path {p}/fastcgi;\n\
         \x20 uwsgi_temp_path {p}/uwsgi;\n\
         \x20 scgi_temp_path {p}/scgi;\n\
         \x20 upstream backend {{ server 127.0.0.1:{backend}; keepalive 64; keepalive_requests 1000000; }}\n\
         \x20 keepalive_requests 1000000;\n\
         \x20 server {{\n\
         \x20   listen 127.0.0.1:{port};\n\
         \x20   location / {{\n\
         \x20     proxy_pass http://backend;\n\
         \x20     proxy_http_version 1.1;\n\
         \x20     proxy_set_header Connection \"\";\n\
         \x20     proxy_set_header Host $host;\n\
         \x20     proxy_set_header X-Forwarded-For $remote_addr;\n\
         \x20   }}\n\
         \x20 }}\n\
         }}\n"
    )
}

/// Waits until something accepts on `port` (10 s), else fails with the tail of `log`.
async fn wait_for_port(port: u16, what: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect((LOOPBACK, port)).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(5).collect();
    Err(anyhow!(
        "{what} did not listen on 127.0.0.1:{port} within 10 s; its log ends: {}",
        tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
    ))
}
