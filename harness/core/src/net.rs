//! Loopback networking helpers: free ports and readiness polling.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

/// The only address services bind to.
pub const LOOPBACK: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// Resolves a configured port for `service`: 0 picks a free port on 127.0.0.1; a fixed port must
/// be free, or the error names the port, the service and the fix.
pub fn resolve_port(service: &str, configured: u16) -> Result<u16> {
    if configured == 0 {
        let listener = TcpListener::bind(SocketAddr::from((LOOPBACK, 0)))?;
        return Ok(listener.local_addr()?.port());
    }
    if TcpListener::bind(SocketAddr::from((LOOPBACK, configured))).is_err() {
        bail!(
            "port {configured} for {service} is in use on 127.0.0.1; free it or set ports.{service} = 0 \
             in harness.toml (or LANGFLOW_INFRA_PORT_{}=0) to pick a free port",
            service.to_uppercase()
        );
    }
    Ok(configured)
}

/// `n` distinct free ports on 127.0.0.1 (all held open together while choosing, so none repeats).
pub fn free_ports(n: usize) -> Result<Vec<u16>> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind(SocketAddr::from((LOOPBACK, 0))))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| Ok(l.local_addr()?.port()))
        .collect()
}

/// Polls `probe` every `interval` until it returns `Ok(true)`, `alive` returns false, or `timeout`
/// passes. The error says which of those happened, with the last probe error.
pub async fn wait_until<F, Fut>(
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut alive: impl FnMut() -> bool,
    mut probe: F,
) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let last_error = match probe().await {
            Ok(true) => return Ok(()),
            Ok(false) => "not ready yet".to_string(),
            Err(e) => format!("{e:#}"),
        };
        if !alive() {
            bail!("{what} exited before it was ready (last probe: {last_error})");
        }
        if Instant::now() >= deadline {
            bail!(
                "{what} was not ready after {:.0}s (last probe: {last_error})",
                timeout.as_secs_f64()
            );
        }
        tokio::time::sleep(interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_port_in_use_is_named() {
        let busy = TcpListener::bind((LOOPBACK, 0)).unwrap();
        let port = busy.local_addr().unwrap().port();
        let err = resolve_port("postgres", port).unwrap_err().to_string();
        assert!(
            err.contains(&format!("port {port} for postgres is in use")),
            "{err}"
        );
        assert!(err.contains("ports.postgres = 0"), "{err}");
    }

    #[test]
    fn zero_picks_a_bindable_port() {
        let port = resolve_port("aws", 0).unwrap();
        assert_ne!(port, 0);
        TcpListener::bind((LOOPBACK, port)).unwrap();
    }
}
