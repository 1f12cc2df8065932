//! TLS for the gateway, as the ALB has it when a certificate is configured: a self-signed
//! certificate for `127.0.0.1` / `localhost` generated once per state dir (`cert.pem`, and
//! `key.pem` at 0600), HTTPS on the gateway port, and a plain-HTTP listener that answers every
//! request with a 301 to the same path and query on HTTPS (the seed's HTTP→HTTPS redirect).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// File name of the certificate (PEM) inside the TLS directory; clients trust it as a root.
pub const CERT_FILE: &str = "cert.pem";
/// File name of the private key (PEM, 0600).
pub const KEY_FILE: &str = "key.pem";

/// Path of the certificate in `dir`.
pub fn cert_path(dir: &Path) -> PathBuf {
    dir.join(CERT_FILE)
}

/// Loads the certificate and key in `dir`, generating them when absent.
pub fn load_or_create(dir: &Path) -> Result<Arc<rustls::ServerConfig>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let (cert_file, key_file) = (dir.join(CERT_FILE), dir.join(KEY_FILE));
    if !cert_file.exists() || !key_file.exists() {
        let generated = rcgen::generate_simple_self_signed(vec![
            "127.0.0.1".to_string(),
            "localhost".to_string(),
        ])
        .context("cannot generate the gateway's self-signed certificate")?;
        harness_core::state::write_private(
            &key_file,
            generated.signing_key.serialize_pem().as_bytes(),
        )?;
        harness_core::state::write_private(&cert_file, generated.cert.pem().as_bytes())?;
    }
    let cert = CertificateDer::from_pem_file(&cert_file).with_context(|| {
        format!(
            "{} is not a PEM certificate; delete it to regenerate",
            cert_file.display()
        )
    })?;
    let key = PrivateKeyDer::from_pem_file(&key_file).with_context(|| {
        format!(
            "{} is not a PEM private key; delete it to regenerate",
            key_file.display()
        )
    })?;
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .context("the gateway's certificate and key do not match")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The HTTPS URL a plain-HTTP request should be redirected to: same host name, the TLS port,
/// same path and query.
pub fn redirect_location(host_header: Option<&str>, tls_port: u16, path_and_query: &str) -> String {
    let host = host_header
        .map(|h| {
            // Strip a port (IPv6 literals keep their brackets).
            match h.rsplit_once(':') {
                Some((name, port))
                    if !name.is_empty() && port.chars().all(|c| c.is_ascii_digit()) =>
                {
                    name
                }
                _ => h,
            }
        })
        .filter(|h| !h.is_empty())
        .unwrap_or("127.0.0.1");
    format!("https://{host}:{tls_port}{path_and_query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_keep_host_path_and_query() {
        assert_eq!(
            redirect_location(Some("127.0.0.1:8080"), 8443, "/tenant/acme/x?y=1"),
            "https://127.0.0.1:8443/tenant/acme/x?y=1"
        );
        assert_eq!(
            redirect_location(Some("localhost"), 443, "/"),
            "https://localhost:443/"
        );
        assert_eq!(
            redirect_location(None, 1, "/health"),
            "https://127.0.0.1:1/health"
        );
    }

    #[test]
    fn certificate_is_generated_once_with_a_private_key() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        load_or_create(dir.path()).unwrap();
        let first = std::fs::read(cert_path(dir.path())).unwrap();
        load_or_create(dir.path()).unwrap();
        assert_eq!(first, std::fs::read(cert_path(dir.path())).unwrap());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
