//! The identity server: one 127.0.0.1 listener that is both
//!
//! - the cluster's **OIDC issuer** — `GET /id/<cluster>/.well-known/openid-configuration` and
//!   `GET /id/<cluster>/keys` (JWKS), as EKS serves them; and
//! - the **STS endpoint** the SDKs are pointed at (`AWS_ENDPOINT_URL_STS`). Every request is
//!   forwarded unchanged (Host header included, so SigV4 signatures still verify) to the AWS
//!   emulator, except that `AssumeRoleWithWebIdentity` first gets the token checks real STS makes
//!   and ministack 1.5.33 skips: the issuer is a registered IAM OIDC provider, the token's `aud`
//!   is one of its client ids, the signature verifies with the issuer's JWKS, the token has not
//!   expired. The trust policy itself (`sub`/`aud` conditions) is then evaluated by the emulator
//!   (it runs with `AUTH=true`). Failures answer as STS does (`InvalidIdentityToken`,
//!   `ExpiredTokenException`), so both SDKs raise their normal errors.
//!
//! One log line per STS request: action, outcome — never the token.

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_TYPE};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;

use super::oidc::{self, SigningKey};

/// File name of the issuer's signing key inside the identity directory.
pub const KEY_FILE: &str = "oidc-key.der";

/// Why STS refuses a web identity token before looking at the role's trust policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRejection {
    /// STS error code (`InvalidIdentityToken`, `ExpiredTokenException`).
    pub code: &'static str,
    /// Message in STS's words.
    pub message: String,
}

struct Gate {
    key: SigningKey,
    issuer: String,
    upstream_port: u16,
    iam: aws_sdk_iam::Client,
    http: reqwest::Client,
    forward: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

/// Serves the issuer and the STS gate on `127.0.0.1:port` until the process is stopped. The key
/// lives in `dir` (created when missing); `upstream_port` is the AWS emulator's. Like the kubelet,
/// it keeps the pod's projected token (`langflow/langflow-sa`, 24 h) fresh in
/// `<dir>/`[`super::PROJECTED_TOKEN_FILE`], re-minting it every 30 minutes.
///
/// With `also_bind` (the docker runtime: the run network's gateway address) it also listens on
/// that address, same port, so containers reach it; never on 0.0.0.0.
pub async fn serve(
    port: u16,
    dir: &Path,
    upstream_port: u16,
    region: &str,
    also_bind: Option<std::net::IpAddr>,
) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let key = SigningKey::load_or_create(&dir.join(KEY_FILE))?;
    let listener = TcpListener::bind((harness_core::net::LOOPBACK, port))
        .await
        .with_context(|| format!("identity server cannot listen on 127.0.0.1:{port}"))?;
    let extra = match also_bind {
        Some(ip) => Some(
            TcpListener::bind((ip, port))
                .await
                .with_context(|| format!("identity server cannot listen on {ip}:{port}"))?,
        ),
        None => None,
    };
    let issuer = key.issuer_url(port);
    let token_path = dir.join(super::PROJECTED_TOKEN_FILE);
    super::write_projected_token(&key, &issuer, &token_path)?;
    {
        let (key_path, issuer, token_path) =
            (dir.join(KEY_FILE), issuer.clone(), token_path.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(30 * 60)).await;
                let refreshed = SigningKey::load_or_create(&key_path)
                    .and_then(|key| super::write_projected_token(&key, &issuer, &token_path));
                if let Err(e) = refreshed {
                    eprintln!("identity: cannot refresh the projected token: {e:#}");
                }
            }
        });
    }
    let shared = crate::services::aws::sdk_config(upstream_port, region).await;
    let gate = Arc::new(Gate {
        key,
        issuer,
        upstream_port,
        iam: aws_sdk_iam::Client::new(&shared),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()?,
        forward: hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http(),
    });
    println!(
        "identity server listening on http://127.0.0.1:{port} (issuer {}, STS → 127.0.0.1:{upstream_port})",
        gate.issuer
    );
    if let Some(extra) = extra {
        println!(
            "identity server also listening on {} for containers",
            extra.local_addr()?
        );
        tokio::spawn(accept_loop(extra, gate.clone()));
    }
    accept_loop(listener, gate).await
}

/// Serves connections accepted on `listener` forever.
async fn accept_loop(listener: TcpListener, gate: Arc<Gate>) -> Result<()> {
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("identity: accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let gate = gate.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let gate = gate.clone();
                async move { Ok::<_, Infallible>(gate.handle(request).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: Vec<u8>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    response(
        StatusCode::OK,
        "application/json",
        serde_json::to_vec_pretty(value).unwrap_or_default(),
    )
}

impl Gate {
    async fn handle(&self, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = request.uri().path().to_string();
        let issuer_path = oidc::provider_host_path(&self.issuer)
            .split_once('/')
            .map(|(_, p)| format!("/{p}"))
            .unwrap_or_default();
        if request.method() == hyper::Method::GET {
            if path == "/health" {
                return response(StatusCode::OK, "text/plain", b"ok".to_vec());
            }
            if path == format!("{issuer_path}/.well-known/openid-configuration") {
                return json_response(&oidc::discovery(&self.issuer));
            }
            if path == format!("{issuer_path}/keys") {
                return json_response(&self.key.jwks());
            }
        }
        match self.sts(request).await {
            Ok(response) => response,
            Err(e) => response(
                StatusCode::BAD_GATEWAY,
                "text/plain",
                format!("identity server: cannot reach the AWS emulator: {e:#}").into_bytes(),
            ),
        }
    }

    /// The STS path: check web identity tokens, forward everything to the emulator.
    async fn sts(&self, request: Request<Incoming>) -> Result<Response<Full<Bytes>>> {
        let (parts, body) = request.into_parts();
        let body = body.collect().await?.to_bytes();
        let json_protocol = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("amz-json"));
        let params = sts_params(&parts.headers, &body, json_protocol);
        let action = params.get("Action").cloned().unwrap_or_default();
        if action == "AssumeRoleWithWebIdentity" {
            let token = params.get("WebIdentityToken").cloned().unwrap_or_default();
            let role_arn = params.get("RoleArn").cloned().unwrap_or_default();
            if let Some(rejection) = self.check_token(&token, &role_arn).await {
                println!(
                    "sts {action} role={role_arn} refused: {} {}",
                    rejection.code, rejection.message
                );
                return Ok(sts_error(&rejection, json_protocol));
            }
        }
        let mut forwarded = Request::from_parts(parts, Full::new(body));
        let path_and_query = forwarded
            .uri()
            .path_and_query()
            .map_or("/".to_string(), |p| p.to_string());
        *forwarded.uri_mut() = format!("http://127.0.0.1:{}{path_and_query}", self.upstream_port)
            .parse()
            .context("upstream URI")?;
        let upstream = self.forward.request(forwarded).await?;
        let (parts, body) = upstream.into_parts();
        let body = body.collect().await?.to_bytes();
        println!("sts {action} → {}", parts.status);
        Ok(Response::from_parts(parts, Full::new(body)))
    }

    /// The checks STS makes on a web identity token before the role's trust policy.
    async fn check_token(&self, token: &str, role_arn: &str) -> Option<TokenRejection> {
        let invalid = |message: String| TokenRejection {
            code: "InvalidIdentityToken",
            message,
        };
        let claims = match oidc::decode_unverified(token) {
            Ok((_, claims)) => claims,
            Err(e) => return Some(invalid(format!("The web identity token is malformed: {e}"))),
        };
        let issuer = claims["iss"].as_str().unwrap_or_default().to_string();
        let account = role_arn.split(':').nth(4).unwrap_or_default();
        let provider_arn = format!(
            "arn:aws:iam::{account}:oidc-provider/{}",
            oidc::provider_host_path(&issuer)
        );
        let provider = match self
            .iam
            .get_open_id_connect_provider()
            .open_id_connect_provider_arn(&provider_arn)
            .send()
            .await
        {
            Ok(provider) => provider,
            Err(_) => {
                return Some(invalid(format!(
                    "No OpenIDConnect provider found in your account for {issuer}"
                )))
            }
        };
        let audiences: Vec<String> = match &claims["aud"] {
            Value::String(one) => vec![one.clone()],
            Value::Array(many) => many
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        };
        let client_ids = provider.client_id_list();
        if !audiences.iter().any(|a| client_ids.contains(a)) {
            return Some(invalid(format!(
                "Incorrect token audience: {audiences:?} is not a client id of {provider_arn} ({client_ids:?})"
            )));
        }
        if let Err(e) = self.verify_with_issuer(token, &issuer).await {
            return Some(invalid(format!(
                "The web identity token signature could not be verified: {e:#}"
            )));
        }
        let exp = claims["exp"].as_u64().unwrap_or(0);
        let now = oidc::unix_now();
        if exp <= now {
            return Some(TokenRejection {
                code: "ExpiredTokenException",
                message: format!(
                    "Token expired: current date/time {} must be before the expiration date/time {}",
                    rfc3339(now),
                    rfc3339(exp)
                ),
            });
        }
        None
    }

    /// Fetches the issuer's discovery document and JWKS (loopback issuers only) and verifies.
    async fn verify_with_issuer(&self, token: &str, issuer: &str) -> Result<()> {
        let loopback = issuer.starts_with("http://127.0.0.1:") || issuer == self.issuer;
        anyhow::ensure!(
            loopback,
            "issuer {issuer} is not on 127.0.0.1; the harness only fetches keys locally"
        );
        let discovery: Value = self
            .http
            .get(format!("{issuer}/.well-known/openid-configuration"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let jwks_uri = discovery["jwks_uri"]
            .as_str()
            .context("discovery document has no jwks_uri")?;
        anyhow::ensure!(
            jwks_uri.starts_with("http://127.0.0.1:"),
            "jwks_uri {jwks_uri} is not on 127.0.0.1"
        );
        let jwks: Value = self
            .http
            .get(jwks_uri)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        oidc::verify_signature(token, &jwks)
    }
}

/// An STS request's parameters, from a Query (form) body or the JSON protocol.
fn sts_params(
    headers: &hyper::HeaderMap,
    body: &[u8],
    json_protocol: bool,
) -> std::collections::BTreeMap<String, String> {
    let mut params = std::collections::BTreeMap::new();
    if json_protocol {
        if let Some(action) = headers
            .get("x-amz-target")
            .and_then(|v| v.to_str().ok())
            .and_then(|t| t.rsplit('.').next())
        {
            params.insert("Action".to_string(), action.to_string());
        }
        if let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            for (k, v) in map {
                if let Some(s) = v.as_str() {
                    params.insert(k, s.to_string());
                }
            }
        }
    } else {
        for pair in body.split(|b| *b == b'&') {
            let text = String::from_utf8_lossy(pair);
            let (k, v) = text.split_once('=').unwrap_or((&text, ""));
            params.insert(url_decode(k), url_decode(v));
        }
    }
    params
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space).
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'+', _) => out.push(b' '),
            (b'%', Some(b)) => {
                out.push(b);
                i += 2;
            }
            (b, _) => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn rfc3339(secs: u64) -> String {
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// An STS error response in the protocol the request used.
fn sts_error(rejection: &TokenRejection, json_protocol: bool) -> Response<Full<Bytes>> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let mut response = if json_protocol {
        let body = serde_json::json!({"__type": rejection.code, "message": rejection.message});
        response(
            StatusCode::BAD_REQUEST,
            "application/x-amz-json-1.0",
            body.to_string().into_bytes(),
        )
    } else {
        let body = format!(
            "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><Error><Type>Sender</Type>\
             <Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
            rejection.code,
            xml_escape(&rejection.message)
        );
        response(StatusCode::BAD_REQUEST, "text/xml", body.into_bytes())
    };
    if let Ok(value) = HeaderValue::from_str(&format!("{};Sender", rejection.code)) {
        response.headers_mut().insert("x-amzn-query-error", value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-amzn-requestid", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_json_params_are_read() {
        let headers = hyper::HeaderMap::new();
        let params = sts_params(
            &headers,
            b"Action=AssumeRoleWithWebIdentity&RoleArn=arn%3Aaws%3Aiam%3A%3A1%3Arole%2FR&X=a+b",
            false,
        );
        assert_eq!(params["Action"], "AssumeRoleWithWebIdentity");
        assert_eq!(params["RoleArn"], "arn:aws:iam::1:role/R");
        assert_eq!(params["X"], "a b");
        let mut headers = hyper::HeaderMap::new();
        headers.insert(
            "x-amz-target",
            HeaderValue::from_static("AWSSecurityTokenServiceV20110615.GetCallerIdentity"),
        );
        let params = sts_params(&headers, br#"{"RoleArn":"r"}"#, true);
        assert_eq!(params["Action"], "GetCallerIdentity");
        assert_eq!(params["RoleArn"], "r");
    }
}
