//! The hidden server commands `up` starts: `gateway-serve`, `identity-serve`, `supervise`,
//! `dashboard-serve`.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;

/// Arguments of `gateway-serve`.
#[derive(clap::Args)]
pub struct GatewayArgs {
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Routes file.
    #[arg(long)]
    routes: PathBuf,
    /// Serve HTTPS with the certificate in (or generated into) this directory.
    #[arg(long, requires = "redirect_port")]
    tls_dir: Option<PathBuf>,
    /// With --tls-dir: plain-HTTP port redirecting to HTTPS.
    #[arg(long, requires = "tls_dir")]
    redirect_port: Option<u16>,
}

/// Arguments of `identity-serve`.
#[derive(clap::Args)]
pub struct IdentityArgs {
    /// Port on 127.0.0.1.
    #[arg(long)]
    port: u16,
    /// Identity directory (signing key, projected token).
    #[arg(long)]
    dir: PathBuf,
    /// Port of the AWS emulator.
    #[arg(long)]
    aws_port: u16,
    /// Region.
    #[arg(long)]
    region: String,
    /// Also listen on this address (the docker runtime's network gateway), same port.
    #[arg(long)]
    also_bind: Option<IpAddr>,
}

/// Arguments of `supervise` and `dashboard-serve`.
#[derive(clap::Args)]
pub struct SuperviseArgs {
    /// The server's input file (written by `up`).
    #[arg(long)]
    input: PathBuf,
}

/// `gateway-serve`: serves the gateway until stopped.
pub async fn gateway(args: GatewayArgs) -> Result<ExitCode> {
    let GatewayArgs {
        port,
        routes,
        tls_dir,
        redirect_port,
    } = args;
    let tls = tls_dir
        .zip(redirect_port)
        .map(|(dir, redirect_port)| harness::gateway::TlsOptions { dir, redirect_port });
    harness::gateway::serve_with(port, routes, tls).await?;
    Ok(ExitCode::SUCCESS)
}

/// `identity-serve`: serves the OIDC issuer and STS gate until stopped.
pub async fn identity(args: IdentityArgs) -> Result<ExitCode> {
    let IdentityArgs {
        port,
        dir,
        aws_port,
        region,
        also_bind,
    } = args;
    harness::credentials::identity_server::serve(port, &dir, aws_port, &region, also_bind).await?;
    Ok(ExitCode::SUCCESS)
}

/// `supervise`: restarts what stops in a run, until the run ends.
pub async fn supervise(args: SuperviseArgs) -> Result<ExitCode> {
    harness::stack::supervisor::run(&args.input).await?;
    Ok(ExitCode::SUCCESS)
}

/// `dashboard-serve`: serves the run's dashboard until the run ends.
pub async fn dashboard(args: SuperviseArgs) -> Result<ExitCode> {
    harness::dashboard::serve(&args.input).await?;
    Ok(ExitCode::SUCCESS)
}
