//! How the ALB's listener rules tell tenants apart (path prefix or host header), and what that
//! means for a tenant's URL and Langflow's root path. The configuration names the routing; the
//! gateway applies it.

use anyhow::Result;
use serde::{Deserialize, Serialize};

/// Path prefix under which tenants are served.
pub const TENANT_PATH: &str = "/tenant/";
/// Domain under which tenants are served with host routing: `<prefix>.localhost` resolves to the
/// loopback address without any DNS set-up (browsers and glibc's resolver handle `*.localhost`).
pub const TENANT_DOMAIN: &str = "localhost";

/// How the gateway picks the tenant of a request, like the ALB's listener-rule conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Routing {
    /// `path-pattern` rules: `/tenant/<prefix>/…` on one host; every tenant shares one origin.
    #[default]
    Path,
    /// `host-header` rules: `<prefix>.localhost:<port>`; every tenant is its own origin and
    /// Langflow serves at `/`.
    Host,
}

impl Routing {
    /// `path` or `host`.
    pub fn as_str(self) -> &'static str {
        match self {
            Routing::Path => "path",
            Routing::Host => "host",
        }
    }

    /// The root path a tenant's Langflow serves under (`LANGFLOW_ROOT_PATH`): `/tenant/<prefix>`
    /// with path routing, empty (the origin's root) with host routing.
    pub fn root_path(self, prefix: &str) -> String {
        match self {
            Routing::Path => format!("/tenant/{prefix}"),
            Routing::Host => String::new(),
        }
    }

    /// A tenant's URL (ending in `/`) on the gateway whose base URL is `gateway_url`
    /// (`http://127.0.0.1:<port>`).
    pub fn tenant_url(self, gateway_url: &str, prefix: &str) -> String {
        let gateway_url = gateway_url.trim_end_matches('/');
        match self {
            Routing::Path => format!("{gateway_url}{TENANT_PATH}{prefix}/"),
            Routing::Host => {
                let (scheme, rest) = gateway_url
                    .split_once("://")
                    .unwrap_or(("http", gateway_url));
                let port = rest.rsplit_once(':').map(|(_, port)| port);
                match port {
                    Some(port) => format!(
                        "{scheme}://{}.{TENANT_DOMAIN}:{port}/",
                        prefix.to_ascii_lowercase()
                    ),
                    None => format!(
                        "{scheme}://{}.{TENANT_DOMAIN}/",
                        prefix.to_ascii_lowercase()
                    ),
                }
            }
        }
    }
}

impl std::fmt::Display for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Routing {
    type Err = anyhow::Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "path" => Ok(Routing::Path),
            "host" => Ok(Routing::Host),
            _ => Err(anyhow::anyhow!(
                "unknown gateway routing {name:?}; use \"path\" (/tenant/<prefix>/) or \"host\" (<prefix>.localhost)"
            )),
        }
    }
}
