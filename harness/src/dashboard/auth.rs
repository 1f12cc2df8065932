//! The dashboard's token model, as pure functions of a request's headers.
//!
//! - The run's token (32 random bytes, hex) is printed once by `up` in the dashboard's URL
//!   **fragment** (`/#token=…`): a fragment never reaches a server, a proxy or a log. The page
//!   keeps it in `sessionStorage` — scoped to the dashboard's own origin, port included — and
//!   removes it from the address bar.
//! - Every read (snapshot, event stream, screenshots) and every state-changing request carries it
//!   in the `X-Dashboard-Token` header. There is no cookie: cookies are not separated by port, so
//!   one would reach the gateway and every tenant on 127.0.0.1 too. A cross-site page cannot set
//!   the header (it would need a CORS preflight the dashboard never grants), so a cross-site form
//!   POST gets 403 and changes nothing. A POST must also come from the dashboard's own `Origin`
//!   (when the browser sends one) and carry JSON.
//! - The `Host` must name the dashboard as 127.0.0.1 or localhost on its port: a DNS-rebinding
//!   page (another name resolving to 127.0.0.1) gets 403 before any of the above.
//! - The page itself (HTML, CSS, JS) is static and holds no data; it is served to anyone who can
//!   reach 127.0.0.1:<port> with the right `Host`.

use hyper::header::{HeaderMap, CONTENT_TYPE, HOST, ORIGIN};

/// Header carrying the token on every data request.
pub const TOKEN_HEADER: &str = "x-dashboard-token";

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` is not the dashboard's (403).
    ForeignHost,
    /// A read without the token (401: open the URL `up` printed).
    NoToken,
    /// A state-changing request without the token, from another origin or not JSON (403).
    Forbidden(&'static str),
}

/// The checks of one running dashboard.
#[derive(Debug, Clone)]
pub struct Guard {
    token: String,
    port: u16,
}

impl Guard {
    /// A guard for the dashboard on `port` with the run's `token`.
    pub fn new(token: String, port: u16) -> Self {
        Self { token, port }
    }

    /// Whether `candidate` is the run's token (constant time).
    pub fn is_token(&self, candidate: &str) -> bool {
        constant_time_eq(candidate.as_bytes(), self.token.as_bytes())
    }

    /// The `Host` names this dashboard (127.0.0.1 or localhost, its port).
    pub fn check_host(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let host = headers
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let ours = [
            format!("127.0.0.1:{}", self.port),
            format!("localhost:{}", self.port),
        ];
        if ours.iter().any(|o| o.eq_ignore_ascii_case(host)) {
            Ok(())
        } else {
            Err(Refusal::ForeignHost)
        }
    }

    /// A read: the token header.
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if self.has_token(headers) {
            Ok(())
        } else {
            Err(Refusal::NoToken)
        }
    }

    /// A state-changing request: the token header, the own origin (when sent), a JSON body.
    pub fn check_change(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        if !self.has_token(headers) {
            return Err(Refusal::Forbidden(
                "a state-changing request needs the run's token in the X-Dashboard-Token header",
            ));
        }
        if let Some(origin) = headers.get(ORIGIN) {
            let origin = origin.to_str().unwrap_or("");
            let ours = [
                format!("http://127.0.0.1:{}", self.port),
                format!("http://localhost:{}", self.port),
            ];
            if !ours.iter().any(|o| o.eq_ignore_ascii_case(origin)) {
                return Err(Refusal::Forbidden("the request comes from another origin"));
            }
        }
        let json = headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !json {
            return Err(Refusal::Forbidden(
                "a state-changing request must send JSON",
            ));
        }
        Ok(())
    }

    fn has_token(&self, headers: &HeaderMap) -> bool {
        headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| self.is_token(v))
    }
}

/// Byte equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn guard() -> Guard {
        Guard::new("ab".repeat(32), 4321)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn only_loopback_hosts_on_the_port_are_ours() {
        let g = guard();
        assert!(g
            .check_host(&headers(&[("host", "127.0.0.1:4321")]))
            .is_ok());
        assert!(g
            .check_host(&headers(&[("host", "LOCALHOST:4321")]))
            .is_ok());
        for foreign in ["evil.example:4321", "127.0.0.1:4322", "127.0.0.1", ""] {
            assert_eq!(
                g.check_host(&headers(&[("host", foreign)])),
                Err(Refusal::ForeignHost),
                "{foreign}"
            );
        }
    }

    #[test]
    fn a_read_needs_the_token_header() {
        let g = guard();
        let token = "ab".repeat(32);
        assert!(g.check_read(&headers(&[(TOKEN_HEADER, &token)])).is_ok());
        assert_eq!(
            g.check_read(&headers(&[(TOKEN_HEADER, "nope")])),
            Err(Refusal::NoToken)
        );
        assert_eq!(g.check_read(&headers(&[])), Err(Refusal::NoToken));
        // A cookie named like a token is no token.
        let cookie = format!("lfi_dashboard_4321={token}");
        assert_eq!(
            g.check_read(&headers(&[("cookie", &cookie)])),
            Err(Refusal::NoToken)
        );
    }

    #[test]
    fn a_change_needs_token_origin_and_json() {
        let g = guard();
        let token = "ab".repeat(32);
        let good = [
            (TOKEN_HEADER, token.as_str()),
            ("origin", "http://127.0.0.1:4321"),
            ("content-type", "application/json"),
        ];
        assert!(g.check_change(&headers(&good)).is_ok());
        // A cross-site form: no header, another origin, a form body.
        let form = [
            ("origin", "http://evil.localhost:8000"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        assert!(matches!(
            g.check_change(&headers(&form)),
            Err(Refusal::Forbidden(_))
        ));
        let mut other_origin = good;
        other_origin[1] = ("origin", "http://evil.localhost:8000");
        assert!(matches!(
            g.check_change(&headers(&other_origin)),
            Err(Refusal::Forbidden(_))
        ));
        let mut not_json = good;
        not_json[2] = ("content-type", "text/plain");
        assert!(matches!(
            g.check_change(&headers(&not_json)),
            Err(Refusal::Forbidden(_))
        ));
        assert!(matches!(
            g.check_change(&headers(&good[1..])),
            Err(Refusal::Forbidden(_))
        ));
    }
}
