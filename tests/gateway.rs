//! The gateway over real sockets: routing, 404/502 answers, streaming, websocket-style upgrades and
//! live route changes. The upstream here is a small raw-TCP HTTP server standing in for a Langflow
//! instance (the gateway is the thing under test; tenancy.rs runs it in front of real Langflow).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use harness::gateway::{Routes, Routing, Upstream};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// Starts the gateway on a free port over `routes`; returns its base URL.
async fn start_gateway(routes_path: &Path) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let path = routes_path.to_path_buf();
    tokio::spawn(async move { harness::gateway::serve_on(listener, path).await });
    format!("http://127.0.0.1:{port}")
}

fn write_routes(path: &Path, tenants: &[(&str, u16)]) {
    write_routes_with(path, Routing::Path, tenants);
}

fn write_routes_with(path: &Path, routing: Routing, tenants: &[(&str, u16)]) {
    Routes {
        routing,
        tenants: tenants
            .iter()
            .map(|(prefix, port)| {
                let upstream = Upstream {
                    port: *port,
                    schema: format!("{prefix}-000000"),
                };
                (prefix.to_string(), upstream)
            })
            .collect(),
        ..Routes::default()
    }
    .write(path)
    .unwrap();
}

/// A stand-in instance: answers `/stream` with three SSE events 300 ms apart, `/ws` with a 101
/// and then echoes bytes, anything else with the request line and headers it received.
async fn start_upstream() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve_one(stream));
        }
    });
    port
}

async fn serve_one(stream: TcpStream) {
    let mut reader = BufReader::new(stream);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).await.unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        head.push_str(&line);
    }
    let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
    let mut stream = reader.into_inner();
    if path.ends_with("/stream") {
        stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        for i in 0..3 {
            let event = format!("data: event {i}\n\n");
            let chunk = format!("{:x}\r\n{event}\r\n", event.len());
            stream.write_all(chunk.as_bytes()).await.unwrap();
            stream.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        stream.write_all(b"0\r\n\r\n").await.unwrap();
    } else if path.ends_with("/ws") {
        stream
            .write_all(
                b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n",
            )
            .await
            .unwrap();
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    } else {
        let body = head;
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(response.as_bytes()).await.unwrap();
    }
}

async fn get(url: &str) -> (u16, String, reqwest::header::HeaderMap) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, response.text().await.unwrap(), headers)
}

#[tokio::test]
async fn routes_tenants_and_answers_404_502_and_health() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    let upstream = start_upstream().await;
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    write_routes(&routes, &[("acme", upstream), ("down", dead_port)]);
    let gw = start_gateway(&routes).await;

    let (status, body, _) = get(&format!("{gw}/health")).await;
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    // Forwarded with the full path and query, plus X-Forwarded-* headers.
    let (status, body, _) = get(&format!("{gw}/tenant/acme/api/v1/flows?x=1")).await;
    assert_eq!(status, 200);
    assert!(
        body.starts_with("GET /tenant/acme/api/v1/flows?x=1 HTTP/1.1"),
        "{body}"
    );
    let lower = body.to_ascii_lowercase();
    assert!(lower.contains("x-forwarded-for: 127.0.0.1"), "{body}");
    assert!(lower.contains("x-forwarded-proto: http"), "{body}");

    let (status, body, _) = get(&format!("{gw}/tenant/nosuch/")).await;
    assert_eq!(status, 404);
    assert_eq!(body, "unknown tenant 'nosuch'\n");
    let (status, _, _) = get(&format!("{gw}/elsewhere")).await;
    assert_eq!(status, 404);

    let (status, _, headers) = get(&format!("{gw}/tenant/acme?next=1")).await;
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "/tenant/acme/?next=1");

    // A tenant whose instance is down fails alone.
    let (status, body, _) = get(&format!("{gw}/tenant/down/")).await;
    assert_eq!(status, 502);
    assert!(body.contains("tenant 'down' is unavailable"), "{body}");
    assert_eq!(get(&format!("{gw}/tenant/acme/")).await.0, 200);

    // Routes are re-read when the file changes: a new tenant appears, a removed one is 404.
    tokio::time::sleep(Duration::from_millis(20)).await;
    write_routes(&routes, &[("beta", upstream)]);
    let mut seen = false;
    for _ in 0..50 {
        if get(&format!("{gw}/tenant/beta/")).await.0 == 200 {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(seen, "the gateway never picked up the new route");
    assert_eq!(get(&format!("{gw}/tenant/acme/")).await.0, 404);
}

/// GET `url` with `host` resolved to the gateway's address (no DNS needed, as for a browser).
async fn get_via(gw: &str, url: &str) -> (u16, String) {
    let addr: std::net::SocketAddr = gw.trim_start_matches("http://").parse().unwrap();
    let host = url
        .trim_start_matches("http://")
        .split([':', '/'])
        .next()
        .unwrap()
        .to_string();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .resolve(&host, addr)
        .build()
        .unwrap();
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

#[tokio::test]
async fn host_routing_gives_every_tenant_its_own_origin() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    let (acme, widgetco) = (start_upstream().await, start_upstream().await);
    write_routes_with(
        &routes,
        Routing::Host,
        &[("acme", acme), ("widgetco", widgetco)],
    );
    let gw = start_gateway(&routes).await;
    let port = gw.rsplit(':').next().unwrap();

    // The host header picks the tenant; the path goes upstream unchanged (Langflow at `/`).
    let (status, body) = get_via(
        &gw,
        &format!("http://acme.localhost:{port}/api/v1/flows?x=1"),
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /api/v1/flows?x=1 HTTP/1.1"), "{body}");
    assert!(
        body.to_ascii_lowercase()
            .contains(&format!("host: acme.localhost:{port}")),
        "{body}"
    );
    // Host names are case-insensitive; each name reaches its own instance only.
    let (status, body) = get_via(&gw, &format!("http://WidgetCo.localhost:{port}/x")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /x HTTP/1.1"), "{body}");
    // A tenant's /health is its instance's; the gateway's own is on other hosts.
    let (status, body) = get_via(&gw, &format!("http://acme.localhost:{port}/health")).await;
    assert_eq!(status, 200);
    assert!(body.starts_with("GET /health HTTP/1.1"), "{body}");
    assert_eq!(get(&format!("{gw}/health")).await.0, 200);
    // Unknown tenant host, and paths instead of hosts, are not routed.
    let (status, body) = get_via(&gw, &format!("http://nosuch.localhost:{port}/")).await;
    assert_eq!((status, body.as_str()), (404, "unknown tenant 'nosuch'\n"));
    let (status, body, _) = get(&format!("{gw}/tenant/acme/")).await;
    assert_eq!(status, 404);
    assert!(body.contains("<prefix>.localhost"), "{body}");
}

#[tokio::test]
async fn streams_events_as_they_come() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    write_routes(&routes, &[("acme", start_upstream().await)]);
    let gw = start_gateway(&routes).await;

    let started = Instant::now();
    let mut response = reqwest::get(format!("{gw}/tenant/acme/api/v1/stream"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert_eq!(&first[..], b"data: event 0\n\n");
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    let total = started.elapsed();
    assert_eq!(rest, b"data: event 1\n\ndata: event 2\n\n");
    // The first event arrived before the upstream had finished (≥ 900 ms): not buffered.
    assert!(
        first_at + Duration::from_millis(500) < total,
        "first event at {first_at:?}, all at {total:?}"
    );
}

#[tokio::test]
async fn upgrades_are_spliced_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    write_routes(&routes, &[("acme", start_upstream().await)]);
    let gw = start_gateway(&routes).await;
    let address = gw.trim_start_matches("http://");

    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(
            format!("GET /tenant/acme/ws HTTP/1.1\r\nhost: {address}\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let mut reader = BufReader::new(stream);
    let mut status_line = String::new();
    reader.read_line(&mut status_line).await.unwrap();
    assert!(status_line.starts_with("HTTP/1.1 101"), "{status_line}");
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).await.unwrap();
        if line == "\r\n" {
            break;
        }
    }
    let mut stream = reader.into_inner();
    for message in ["ping", "a second frame"] {
        stream.write_all(message.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; message.len()];
        tokio::time::timeout(Duration::from_secs(5), stream.read_exact(&mut buf))
            .await
            .expect("echo in time")
            .unwrap();
        assert_eq!(buf, message.as_bytes());
    }
}

/// With TLS (as the ALB with a certificate): HTTPS with the generated certificate, only for
/// clients that trust it; `X-Forwarded-Proto: https` upstream; plain HTTP redirected with 301 to
/// the same path and query on HTTPS.
#[tokio::test]
async fn tls_serves_https_and_redirects_plain_http() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_upstream().await;
    let routes = dir.path().join("routes.json");
    write_routes(&routes, &[("acme", upstream)]);
    let tls_dir = dir.path().join("tls");
    let config = harness::gateway_tls::load_or_create(&tls_dir).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (port, redirect_port) = (
        listener.local_addr().unwrap().port(),
        redirect.local_addr().unwrap().port(),
    );
    tokio::spawn(harness::gateway::serve_tls_on(
        listener, redirect, routes, config,
    ));

    let pem = std::fs::read(harness::gateway_tls::cert_path(&tls_dir)).unwrap();
    let trusting = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let health = trusting
        .get(format!("https://127.0.0.1:{port}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let echoed = trusting
        .get(format!("https://127.0.0.1:{port}/tenant/acme/echo"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
        .to_lowercase();
    assert!(echoed.contains("x-forwarded-proto: https"), "{echoed}");

    // A client that does not trust the generated certificate is refused by TLS itself.
    assert!(reqwest::Client::new()
        .get(format!("https://127.0.0.1:{port}/health"))
        .send()
        .await
        .is_err());
    // Plain HTTP on the TLS port is not served as HTTP.
    assert!(reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .map(|r| r.status() != 200)
        .unwrap_or(true));

    let moved = trusting
        .get(format!(
            "http://127.0.0.1:{redirect_port}/tenant/acme/api/v1/flows?limit=5"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 301);
    assert_eq!(
        moved.headers()["location"],
        format!("https://127.0.0.1:{port}/tenant/acme/api/v1/flows?limit=5").as_str()
    );
}

/// `gateway.tls = true` on a real stack: the gateway is recorded with its https URL, `status`
/// probes it trusting the generated certificate, and the redirect port answers 301.
#[tokio::test(flavor = "multi_thread")]
async fn a_stack_with_tls_serves_its_gateway_over_https() {
    let root = common::repo_root();
    let root = root.as_path();
    let dir = tempfile::tempdir().unwrap();
    let mut config =
        harness::config::Config::isolated_with_tenants(root, dir.path(), "tenants: []\n").unwrap();
    config.gateway.tls = true;
    let stack = common::Running(harness::stack::Stack::new(config).with_gateway_command(
        harness::stack::GatewayCommand::standalone(env!("CARGO_BIN_EXE_langflow-infra-gateway")),
    ));
    let up = stack.up().await.unwrap();
    let gateway = up.status.service("gateway").unwrap();
    assert!(
        gateway.url.starts_with("https://127.0.0.1:"),
        "{}",
        gateway.url
    );
    assert!(
        stack.status().await.unwrap().unwrap().healthy(),
        "status must probe the https gateway with its own certificate"
    );
    let pem = std::fs::read(harness::gateway_tls::cert_path(&stack.gateway_tls_dir())).unwrap();
    let key_mode = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(stack.gateway_tls_dir().join("key.pem"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(key_mode, 0o600);
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let health = client
        .get(format!("{}/health", gateway.url))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    // The redirect listener's port is in the gateway's command line only; find it in its log.
    let log = std::fs::read_to_string(stack.log_path("gateway").unwrap()).unwrap();
    let redirect = log
        .split("redirecting http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the gateway logs its redirect listener")
        .to_string();
    let moved = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!("http://{redirect}/tenant/acme/"))
        .send()
        .await
        .unwrap();
    assert_eq!(moved.status(), 301);
    assert_eq!(
        moved.headers()["location"],
        format!("{}/tenant/acme/", gateway.url).as_str()
    );
}

/// A keep-alive stand-in instance: serves any number of requests per connection (content-length
/// answers, no `connection: close`) and counts the connections it accepted.
async fn start_keep_alive_upstream() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut head = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        head.push_str(&line);
                    }
                    let body = head.lines().next().unwrap_or("").to_string();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (port, accepted)
}

/// The gateway keeps its connection to a target open across requests (the ALB does; a new TCP
/// connection and HTTP handshake per request is what made every request slower), and a dead
/// pooled connection is replaced rather than answered with 502.
#[tokio::test]
async fn keep_alive_requests_reuse_one_upstream_connection() {
    let dir = tempfile::tempdir().unwrap();
    let routes = dir.path().join("routes.json");
    let (port, accepted) = start_keep_alive_upstream().await;
    write_routes(&routes, &[("acme", port)]);
    let gw = start_gateway(&routes).await;
    // One client connection to the gateway, kept alive (reqwest pools per host).
    let client = reqwest::Client::builder().build().unwrap();
    for i in 0..25 {
        let response = client
            .get(format!("{gw}/tenant/acme/api/v1/item/{i}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        let body = response.text().await.unwrap();
        assert_eq!(body, format!("GET /tenant/acme/api/v1/item/{i} HTTP/1.1"));
    }
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "25 sequential keep-alive requests must share one upstream connection"
    );
    // Concurrent requests open more connections, and those are pooled too (no more than the
    // concurrency).
    let mut tasks = Vec::new();
    for i in 0..8 {
        let (client, gw) = (reqwest::Client::new(), gw.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..5 {
                let url = format!("{gw}/tenant/acme/c/{i}/{j}");
                assert_eq!(client.get(url).send().await.unwrap().status().as_u16(), 200);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let after = accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(
        after <= 1 + 8,
        "40 requests from 8 clients opened {after} connections"
    );
}

/// The gateway benchmark runs end to end (a short run: its figures are benchmark output, not
/// asserted here): every request answered through each path, the targets computed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_benchmark_measures_every_path() {
    let command =
        harness::stack::GatewayCommand::standalone(env!("CARGO_BIN_EXE_langflow-infra-gateway"));
    let options = harness::gateway_bench::GatewayBenchOptions {
        clients: vec![1, 4],
        requests: 200,
        nginx: None,
        ui_loads: 0,
        root: common::repo_root(),
    };
    let report = harness::gateway_bench::run(&command, &options)
        .await
        .unwrap();
    for clients in [1, 4] {
        for path in ["direct", "gateway"] {
            let row = report
                .rows
                .iter()
                .find(|r| r.path == path && r.clients == clients)
                .unwrap_or_else(|| panic!("no {path} row for {clients} clients: {report:?}"));
            assert_eq!(row.errors, 0, "{row:?}");
            assert!(row.requests >= 200, "{row:?}");
            assert!(row.p50_ms > 0.0 && row.p99_ms >= row.p50_ms, "{row:?}");
        }
    }
    assert!(report.targets.iter().any(|t| t.name.contains("p50")));
}
