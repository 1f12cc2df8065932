//! The harness's server processes without the CLI: the gateway
//! (`langflow-infra-gateway --port P --routes FILE`) and the identity server
//! (`langflow-infra-gateway identity --port P --dir D --aws-port A --region R`), the supervisor
//! (`… supervise --input FILE`) and the dashboard (`… dashboard --input FILE`).
//! `cargo xtask` runs the same servers through its hidden `gateway-serve` / `identity-serve`
//! commands; this binary lets the harness's own tests start a stack without the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("identity") {
        return identity(&args[1..]);
    }
    if args.first().map(String::as_str) == Some("supervise") {
        return match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("--input"), Some(input)) if args.len() == 3 => {
                run_server(harness::stack::supervisor::run(std::path::Path::new(input)))
            }
            _ => {
                eprintln!("usage: langflow-infra-gateway supervise --input FILE");
                ExitCode::from(2)
            }
        };
    }
    if args.first().map(String::as_str) == Some("dashboard") {
        return match (args.get(1).map(String::as_str), args.get(2)) {
            (Some("--input"), Some(input)) if args.len() == 3 => {
                run_server(harness::dashboard::serve(std::path::Path::new(input)))
            }
            _ => {
                eprintln!("usage: langflow-infra-gateway dashboard --input FILE");
                ExitCode::from(2)
            }
        };
    }
    let (port, routes, tls) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!(
                "error: {e}\nusage: langflow-infra-gateway --port PORT --routes FILE [--tls-dir DIR --redirect-port PORT]"
            );
            return ExitCode::from(2);
        }
    };
    run_server(harness::gateway::serve_with(port, routes, tls))
}

/// Runs a server future to its end on a fresh runtime; its error becomes one line and exit 1.
fn run_server(server: impl std::future::Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

type Parsed = (u16, PathBuf, Option<harness::gateway::TlsOptions>);

fn parse(args: &[String]) -> Result<Parsed, String> {
    let (mut port, mut routes, mut tls_dir, mut redirect_port) = (None, None, None, None);
    let port_number = |flag: &str, value: &str| {
        value
            .parse::<u16>()
            .map_err(|_| format!("{flag} {value:?} is not a port number; use 1..=65535"))
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => port = Some(port_number(flag, value)?),
            "--routes" => routes = Some(PathBuf::from(value)),
            "--tls-dir" => tls_dir = Some(PathBuf::from(value)),
            "--redirect-port" => redirect_port = Some(port_number(flag, value)?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    let tls = match (tls_dir, redirect_port) {
        (Some(dir), Some(redirect_port)) => {
            Some(harness::gateway::TlsOptions { dir, redirect_port })
        }
        (None, None) => None,
        _ => return Err("--tls-dir and --redirect-port go together".into()),
    };
    Ok((
        port.ok_or("missing --port")?,
        routes.ok_or("missing --routes")?,
        tls,
    ))
}

fn identity(args: &[String]) -> ExitCode {
    let usage = "usage: langflow-infra-gateway identity --port P --dir D --aws-port A --region R [--also-bind IP]";
    let mut values = std::collections::BTreeMap::new();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        match (flag.as_str(), it.next()) {
            ("--port" | "--dir" | "--aws-port" | "--region" | "--also-bind", Some(value)) => {
                values.insert(flag.clone(), value.clone());
            }
            _ => {
                eprintln!("error: unexpected argument {flag:?}\n{usage}");
                return ExitCode::from(2);
            }
        }
    }
    let port = values.get("--port").and_then(|p| p.parse::<u16>().ok());
    let aws_port = values.get("--aws-port").and_then(|p| p.parse::<u16>().ok());
    let (Some(port), Some(aws_port), Some(dir), Some(region)) =
        (port, aws_port, values.get("--dir"), values.get("--region"))
    else {
        eprintln!("error: missing or invalid arguments\n{usage}");
        return ExitCode::from(2);
    };
    let also_bind = match values.get("--also-bind").map(|ip| ip.parse()) {
        None => None,
        Some(Ok(ip)) => Some(ip),
        Some(Err(_)) => {
            eprintln!("error: --also-bind needs an IP address\n{usage}");
            return ExitCode::from(2);
        }
    };
    run_server(harness::credentials::identity_server::serve(
        port,
        std::path::Path::new(dir),
        aws_port,
        region,
        also_bind,
    ))
}
