//! The gateway as a standalone process: `langflow-infra-gateway --port P --routes FILE`.
//! `cargo xtask` runs the same server through its hidden `gateway-serve` command; this binary
//! lets the harness's own tests start a stack without the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (port, routes) = match parse(&args) {
        Ok(parsed) => parsed,
        Err(e) => {
            eprintln!("error: {e}\nusage: langflow-infra-gateway --port PORT --routes FILE");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(harness::gateway::serve(port, routes)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn parse(args: &[String]) -> Result<(u16, PathBuf), String> {
    let (mut port, mut routes) = (None, None);
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--port" => {
                port =
                    Some(value.parse::<u16>().map_err(|_| {
                        format!("--port {value:?} is not a port number; use 1..=65535")
                    })?)
            }
            "--routes" => routes = Some(PathBuf::from(value)),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok((
        port.ok_or("missing --port")?,
        routes.ok_or("missing --routes")?,
    ))
}
