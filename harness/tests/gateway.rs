//! The gateway over real sockets: routing, 404/502 answers, streaming, websocket-style upgrades and
//! live route changes. The upstream here is a small raw-TCP HTTP server standing in for a Langflow
//! instance (the gateway is the thing under test; tenancy.rs runs it in front of real Langflow).

use std::path::Path;
use std::time::{Duration, Instant};

use harness::gateway::{Routes, Upstream};
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
    Routes {
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
