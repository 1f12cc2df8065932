//! The dashboard's token model, as pure functions of a request's headers.
//!
//! - The run's token (32 random bytes, hex) is printed once by `up` inside the dashboard's URL
//!   (`/?token=…`). The first visit trades it for a cookie `HttpOnly; SameSite=Strict` named
//!   after the port (two runs on one machine do not overwrite each other's) and is redirected
//!   to `/`, so the token leaves the address bar. Every page and API answer needs the cookie.
//! - A state-changing request (every `POST`) also needs the token in the `X-Dashboard-Token`
//!   header, which only the dashboard's own page knows (embedded in the HTML it is served), an
//!   `Origin` that is the dashboard's own when the browser sends one, and a JSON body. A
//!   cross-site form cannot set a header, carry the `SameSite=Strict` cookie or send JSON, so it
//!   gets 403 and changes nothing.
//! - The `Host` must name the dashboard as 127.0.0.1 or localhost on its port: a DNS-rebinding
//!   page (another name resolving to 127.0.0.1) gets 403 before any of the above.

use hyper::header::{HeaderMap, CONTENT_TYPE, COOKIE, HOST, ORIGIN};

/// Header carrying the token on state-changing requests.
pub const TOKEN_HEADER: &str = "x-dashboard-token";

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The `Host` is not the dashboard's (403).
    ForeignHost,
    /// No valid session cookie on a page or read (401: open the URL `up` printed).
    NoSession,
    /// A state-changing request without the session, the token header, from another origin or
    /// not JSON (403).
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

    /// The session cookie's name (per port: cookies are not separated by port).
    pub fn cookie_name(&self) -> String {
        format!("lfi_dashboard_{}", self.port)
    }

    /// The `Set-Cookie` value that opens a session.
    pub fn session_cookie(&self) -> String {
        format!(
            "{}={}; HttpOnly; SameSite=Strict; Path=/",
            self.cookie_name(),
            self.token
        )
    }

    /// The token (embedded in the page for its own state-changing requests).
    pub fn token(&self) -> &str {
        &self.token
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

    /// The request carries the session cookie.
    pub fn check_session(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        let name = self.cookie_name();
        let found = headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(k, v)| k == name && self.is_token(v));
        if found {
            Ok(())
        } else {
            Err(Refusal::NoSession)
        }
    }

    /// A state-changing request: session, token header, own origin (when sent), JSON body.
    pub fn check_change(&self, headers: &HeaderMap) -> Result<(), Refusal> {
        self.check_session(headers).map_err(|_| {
            Refusal::Forbidden("a state-changing request needs the dashboard's session cookie")
        })?;
        let header_ok = headers
            .get(TOKEN_HEADER)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| self.is_token(v));
        if !header_ok {
            return Err(Refusal::Forbidden(
                "a state-changing request needs the X-Dashboard-Token header",
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
    fn the_session_needs_the_cookie_with_the_token() {
        let g = guard();
        let cookie = format!("other=1; lfi_dashboard_4321={}", g.token());
        assert!(g.check_session(&headers(&[("cookie", &cookie)])).is_ok());
        assert_eq!(
            g.check_session(&headers(&[("cookie", "lfi_dashboard_4321=nope")])),
            Err(Refusal::NoSession)
        );
        let other_port = format!("lfi_dashboard_9999={}", g.token());
        assert_eq!(
            g.check_session(&headers(&[("cookie", &other_port)])),
            Err(Refusal::NoSession)
        );
    }

    #[test]
    fn a_change_needs_header_origin_and_json() {
        let g = guard();
        let cookie = format!("lfi_dashboard_4321={}", g.token());
        let good = [
            ("cookie", cookie.as_str()),
            (TOKEN_HEADER, g.token()),
            ("origin", "http://127.0.0.1:4321"),
            ("content-type", "application/json"),
        ];
        assert!(g.check_change(&headers(&good)).is_ok());
        // A cross-site form: cookie (if the browser sent it), no header, another origin, form body.
        let form = [
            ("cookie", cookie.as_str()),
            ("origin", "http://evil.localhost:8000"),
            ("content-type", "application/x-www-form-urlencoded"),
        ];
        assert!(matches!(
            g.check_change(&headers(&form)),
            Err(Refusal::Forbidden(_))
        ));
        let mut other_origin = good;
        other_origin[2] = ("origin", "http://evil.localhost:8000");
        assert!(matches!(
            g.check_change(&headers(&other_origin)),
            Err(Refusal::Forbidden(_))
        ));
        let mut not_json = good;
        not_json[3] = ("content-type", "text/plain");
        assert!(matches!(
            g.check_change(&headers(&not_json)),
            Err(Refusal::Forbidden(_))
        ));
        // Without the cookie (a cross-site request: SameSite=Strict keeps it home).
        assert!(matches!(
            g.check_change(&headers(&good[1..])),
            Err(Refusal::Forbidden(_))
        ));
    }
}
