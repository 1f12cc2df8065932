//! A small Langflow API client for one tenant URL (`…/tenant/<prefix>/`), speaking real HTTP
//! through the gateway (or a deployed ALB with `--target`).

use std::time::Duration;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};

/// Credentials for one tenant user.
#[derive(Debug, Clone)]
pub enum Auth<'a> {
    /// No credentials.
    None,
    /// `Authorization: Bearer <token>`.
    Bearer(&'a str),
    /// `x-api-key: <key>`.
    ApiKey(&'a str),
    /// `Cookie: <name=value>` (a session cookie as a browser sends it back).
    Cookie(&'a str),
    /// An API key and, when there is one, a cookie (a load balancer's stickiness cookie).
    ApiKeyAndCookie(&'a str, Option<&'a str>),
}

/// An HTTP answer: status, body and `Set-Cookie` headers.
#[derive(Debug, Clone)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// Body as text.
    pub body: String,
    /// Every `Set-Cookie` header.
    pub set_cookies: Vec<String>,
}

impl Answer {
    /// The body as JSON (`Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Evidence for a report: status and the start of the body.
    pub fn evidence(&self) -> String {
        let body: String = self.body.chars().take(160).collect();
        format!("HTTP {} {}", self.status, body.replace('\n', " "))
    }
}

/// A client for one tenant's URL.
#[derive(Debug, Clone)]
pub struct TenantClient {
    base: String,
    http: reqwest::Client,
}

fn form_encode(pairs: &[(&str, &str)]) -> String {
    let encode = |s: &str| -> String {
        s.bytes()
            .map(|b| match b {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                    (b as char).to_string()
                }
                _ => format!("%{b:02X}"),
            })
            .collect()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

impl TenantClient {
    /// A client for `tenant_url` (ending in `/`).
    pub fn new(tenant_url: &str) -> Self {
        let base = if tenant_url.ends_with('/') {
            tenant_url.to_string()
        } else {
            format!("{tenant_url}/")
        };
        let mut http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .redirect(reqwest::redirect::Policy::none());
        // Host routing: `<prefix>.localhost` is the loopback address (browsers know it; the
        // system resolver may not), so it is resolved here without DNS.
        if let Some((host, port)) = localhost_subdomain(&base) {
            http = http.resolve(&host, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        }
        let http = http.build().expect("a reqwest client builds");
        Self { base, http }
    }

    /// The tenant URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(&self, request: reqwest::RequestBuilder, auth: &Auth<'_>) -> Result<Answer> {
        let request = match auth {
            Auth::None => request,
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::ApiKey(key) => request.header("x-api-key", *key),
            Auth::Cookie(cookie) => request.header(reqwest::header::COOKIE, *cookie),
            Auth::ApiKeyAndCookie(key, None) => request.header("x-api-key", *key),
            Auth::ApiKeyAndCookie(key, Some(cookie)) => request
                .header("x-api-key", *key)
                .header(reqwest::header::COOKIE, *cookie),
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let set_cookies = response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(String::from))
            .collect();
        let body = response.text().await.unwrap_or_default();
        Ok(Answer {
            status,
            body,
            set_cookies,
        })
    }

    /// `GET <base><path>`.
    pub async fn get(&self, path: &str, auth: &Auth<'_>) -> Result<Answer> {
        self.send(self.http.get(format!("{}{path}", self.base)), auth)
            .await
    }

    /// `GET <base><path>` with a per-request timeout (streams read to their end).
    pub async fn get_within(
        &self,
        path: &str,
        auth: &Auth<'_>,
        timeout: Duration,
    ) -> Result<Answer> {
        self.send(
            self.http
                .get(format!("{}{path}", self.base))
                .timeout(timeout),
            auth,
        )
        .await
    }

    /// `POST <base><path>` with a JSON body and a per-request timeout (streams read to their end).
    pub async fn post_json_within(
        &self,
        path: &str,
        body: &Value,
        auth: &Auth<'_>,
        timeout: Duration,
    ) -> Result<Answer> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .json(body)
                .timeout(timeout),
            auth,
        )
        .await
    }

    /// `POST <base><path>` with a JSON body.
    pub async fn post_json(&self, path: &str, body: &Value, auth: &Auth<'_>) -> Result<Answer> {
        self.send(
            self.http.post(format!("{}{path}", self.base)).json(body),
            auth,
        )
        .await
    }

    /// `POST api/v1/login` with a username and password. A 429 (Langflow limits logins per client
    /// and minute; a deployed stack keeps its default of 5) is waited out, twice at most.
    pub async fn login(&self, username: &str, password: &str) -> Result<Answer> {
        let mut attempts = 0;
        loop {
            let request = self
                .http
                .post(format!("{}api/v1/login", self.base))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(form_encode(&[
                    ("username", username),
                    ("password", password),
                ]));
            let answer = self.send(request, &Auth::None).await?;
            if answer.status != 429 || attempts == 2 {
                return Ok(answer);
            }
            attempts += 1;
            crate::progress::println(format!(
                "login rate limit hit at {}; waiting a minute",
                self.base
            ));
            tokio::time::sleep(Duration::from_secs(61)).await;
        }
    }

    /// Logs in and returns the access token, or an error with the answer as evidence.
    pub async fn token(&self, username: &str, password: &str) -> Result<String> {
        let answer = self.login(username, password).await?;
        answer.json()["access_token"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("login of {username} failed: {}", answer.evidence()))
    }

    /// The id of the user a token belongs to (`api/v1/users/whoami`).
    pub async fn user_id(&self, token: &str) -> Result<String> {
        let answer = self
            .get("api/v1/users/whoami", &Auth::Bearer(token))
            .await?;
        answer.json()["id"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("whoami failed: {}", answer.evidence()))
    }

    /// Creates an empty flow and returns its id.
    pub async fn create_flow(&self, token: &str, name: &str) -> Result<String> {
        let body = json!({"name": name, "data": {"nodes": [], "edges": []}});
        let answer = self
            .post_json("api/v1/flows/", &body, &Auth::Bearer(token))
            .await?;
        id_of(&answer, "flow creation")
    }

    /// Ids of the flows the caller can list.
    pub async fn flow_ids(&self, auth: &Auth<'_>) -> Result<(Answer, Vec<String>)> {
        let answer = self.get("api/v1/flows/?get_all=true", auth).await?;
        let ids = ids_in(&answer.json());
        Ok((answer, ids))
    }

    /// Creates a flow with `data` (`{"nodes": [...], "edges": [...]}`) and returns its id.
    pub async fn create_flow_with(
        &self,
        auth: &Auth<'_>,
        name: &str,
        data: &Value,
    ) -> Result<String> {
        let answer = self
            .post_json("api/v1/flows/", &json!({"name": name, "data": data}), auth)
            .await?;
        id_of(&answer, "flow creation")
    }

    /// Creates a credential variable and returns its id.
    pub async fn create_variable(&self, token: &str, name: &str, value: &str) -> Result<String> {
        let body =
            json!({"name": name, "value": value, "type": "Credential", "default_fields": []});
        let answer = self
            .post_json("api/v1/variables/", &body, &Auth::Bearer(token))
            .await?;
        id_of(&answer, "variable creation")
    }

    /// Names of the variables the caller can list.
    pub async fn variable_names(&self, token: &str) -> Result<(Answer, Vec<String>)> {
        let answer = self.get("api/v1/variables/", &Auth::Bearer(token)).await?;
        let names = answer
            .json()
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|v| v["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        Ok((answer, names))
    }

    /// Creates an API key and returns it (shown once by Langflow).
    pub async fn create_api_key(&self, token: &str, name: &str) -> Result<String> {
        let answer = self
            .post_json(
                "api/v1/api_key/",
                &json!({"name": name}),
                &Auth::Bearer(token),
            )
            .await?;
        answer.json()["api_key"]
            .as_str()
            .map(String::from)
            .ok_or_else(|| anyhow!("API key creation failed: {}", answer.evidence()))
    }

    /// Uploads a text file (`api/v2/files/`) and returns the answer's JSON (id, name, path).
    pub async fn upload_file(&self, token: &str, name: &str, content: &[u8]) -> Result<Value> {
        self.upload_file_as(token, name, content, "text/plain")
            .await
    }

    /// Uploads a file of media type `mime` (`api/v2/files/`); returns the answer's JSON.
    pub async fn upload_file_as(
        &self,
        token: &str,
        name: &str,
        content: &[u8],
        mime: &str,
    ) -> Result<Value> {
        self.upload_file_with(&Auth::Bearer(token), name, content, mime)
            .await
    }

    /// Uploads a file of media type `mime` (`api/v2/files/`) with `auth`; returns the answer's
    /// JSON.
    pub async fn upload_file_with(
        &self,
        auth: &Auth<'_>,
        name: &str,
        content: &[u8],
        mime: &str,
    ) -> Result<Value> {
        let part = reqwest::multipart::Part::bytes(content.to_vec())
            .file_name(name.to_string())
            .mime_str(mime)?;
        let form = reqwest::multipart::Form::new().part("file", part);
        let request = self
            .http
            .post(format!("{}api/v2/files/", self.base))
            .multipart(form);
        let answer = self.send(request, auth).await?;
        let value = answer.json();
        if value["id"].is_string() {
            Ok(value)
        } else {
            Err(anyhow!("file upload failed: {}", answer.evidence()))
        }
    }

    /// Ids of the caller's files (`api/v2/files/`).
    pub async fn file_ids(&self, token: &str) -> Result<(Answer, Vec<String>)> {
        let answer = self.get("api/v2/files/", &Auth::Bearer(token)).await?;
        let ids = ids_in(&answer.json());
        Ok((answer, ids))
    }
}

/// `(host, port)` of a `http://<name>.localhost:<port>/…` URL.
fn localhost_subdomain(url: &str) -> Option<(String, u16)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let authority = rest.split('/').next()?;
    let (host, port) = authority.rsplit_once(':')?;
    let port = port.parse().ok()?;
    crate::gateway::tenant_of_host(authority)?;
    Some((host.to_string(), port))
}

fn id_of(answer: &Answer, what: &str) -> Result<String> {
    answer.json()["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| anyhow!("{what} failed: {}", answer.evidence()))
}

fn ids_in(value: &Value) -> Vec<String> {
    let items = value
        .as_array()
        .or_else(|| value["items"].as_array())
        .cloned()
        .unwrap_or_default();
    items
        .iter()
        .filter_map(|v| v["id"].as_str().map(String::from))
        .collect()
}
