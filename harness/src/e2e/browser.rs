//! The e2e `browser` suite: the tenants' real UI in one headless Chromium, through the gateway.
//!
//! Both tenants are used in ONE browser (one context, one tab each), as a person with accounts in
//! two tenants would. Checks (each with a positive control; a screenshot of the tab is kept under
//! the artifacts directory when one fails):
//! - `browser/ui-login` (per tenant): the login form signs the tenant's user in (control: before
//!   it, the page's own `whoami` is refused);
//! - `browser/two-tenants` (a→b): b's page shows neither a's flow, project nor username
//!   (control: a's page shows them);
//! - `browser/requests` (per tenant): every request the tenant's UI made to the gateway stays
//!   under its own prefix (path routing) or its own host (host routing); requests to other hosts
//!   are listed, not failed (the browser resolves only loopback names);
//! - `browser/same-origin` (a→b): script on b's page cannot read a's API with a's cookies
//!   (control: the same request from a's page succeeds). Tenants that share an origin (path
//!   routing) fail it, with the evidence: a's data read, storage and `Path=/` cookies shared;
//! - `browser/upload` (per tenant): an uploaded SVG and HTML file with script does not run when
//!   opened (control: the same payload as a document does run, so the probe can tell);
//! - `browser/logout` (a→b): a's logout leaves b signed in (control: both signed in before);
//! - `browser/time`: the suite's own wall time (target ≤ 60 s for two tenants).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use serde_json::Value;

use super::client::{Auth, TenantClient};
use super::{CheckResult, Outcome, TenantCredentials};
use crate::browser::{Chromium, Tab};
use crate::gateway::Routing;

/// What the suite aims for with two tenants (reported, not enforced, by `browser/time`).
pub const TARGET_SECS: f64 = 60.0;
/// How long the UI may take to show something after a navigation.
const UI_TIMEOUT: Duration = Duration::from_secs(25);

/// What the browser suite runs against.
pub struct BrowserSuite<'a> {
    /// Base URL of the gateway (`http://127.0.0.1:<port>`).
    pub gateway: &'a str,
    /// How the gateway tells tenants apart.
    pub routing: Routing,
    /// Two or more tenants.
    pub tenants: &'a [TenantCredentials],
    /// Where screenshots of failed checks go.
    pub artifacts: &'a Path,
    /// A missing Chromium fails the run (`--suite browser`) instead of skipping the suite.
    pub chromium_required: bool,
}

/// What the suite created in one tenant through the API before opening the browser.
struct Seeded {
    creds: TenantCredentials,
    url: String,
    flow_id: String,
    flow_name: String,
    project_name: String,
    files: Vec<(String, String)>,
}

/// A check's verdict.
enum Verdict {
    Pass(Option<String>),
    Skip(String),
    Fail(String),
}

impl From<Result<Option<String>>> for Verdict {
    fn from(result: Result<Option<String>>) -> Self {
        match result {
            Ok(note) => Verdict::Pass(note),
            Err(e) => Verdict::Fail(format!("{e:#}")),
        }
    }
}

/// Collects results, printing each and keeping a screenshot when a check fails.
struct Recorder<'a> {
    results: Vec<CheckResult>,
    artifacts: &'a Path,
}

impl Recorder<'_> {
    async fn record(
        &mut self,
        check: &str,
        pair: &str,
        started: Instant,
        verdict: Verdict,
        tab: Option<&Tab>,
    ) {
        let (outcome, mut evidence) = match verdict {
            Verdict::Pass(note) => (Outcome::Pass, note),
            Verdict::Skip(reason) => (Outcome::Skip, Some(reason)),
            Verdict::Fail(evidence) => (Outcome::Fail, Some(evidence)),
        };
        if outcome == Outcome::Fail {
            if let Some(tab) = tab {
                let file = self.artifacts.join(format!(
                    "{}-{}.png",
                    check.replace('/', "-"),
                    pair.replace('→', "-to-")
                ));
                let shot = match tab.screenshot(&file).await {
                    Ok(()) => format!("screenshot: {}", file.display()),
                    Err(e) => format!("no screenshot: {e:#}"),
                };
                evidence = Some(format!("{}; {shot}", evidence.unwrap_or_default()));
            }
        }
        crate::progress::println(format!(
            "{:<5} {check} {pair}",
            match outcome {
                Outcome::Pass => "pass",
                Outcome::Fail => "FAIL",
                Outcome::Skip => "skip",
            }
        ));
        self.results.push(CheckResult {
            check: check.into(),
            pair: pair.into(),
            outcome,
            ms: started.elapsed().as_secs_f64() * 1000.0,
            evidence,
        });
    }
}

/// `Some(path)` of the Chromium to use, `None` when there is none (the suite is then skipped).
pub fn chromium() -> Result<Option<PathBuf>> {
    crate::browser::find_chromium()
}

/// The row reported instead of the suite when no Chromium is installed.
pub fn skipped_without_chromium() -> CheckResult {
    CheckResult {
        check: "browser".into(),
        pair: "-".into(),
        outcome: Outcome::Skip,
        ms: 0.0,
        evidence: Some(format!(
            "skipped: chromium not found (apt-get install chromium, or set {})",
            crate::browser::CHROMIUM_ENV
        )),
    }
}

/// Runs the browser suite; every outcome is a row (setup failures included).
pub async fn run(suite: &BrowserSuite<'_>) -> Vec<CheckResult> {
    let started = Instant::now();
    let mut recorder = Recorder {
        results: Vec::new(),
        artifacts: suite.artifacts,
    };
    let executable = match chromium() {
        Ok(Some(path)) => path,
        Ok(None) if !suite.chromium_required => return vec![skipped_without_chromium()],
        Ok(None) => {
            let mut row = skipped_without_chromium();
            row.outcome = Outcome::Fail;
            return vec![row];
        }
        Err(e) => {
            recorder
                .record(
                    "browser",
                    "-",
                    started,
                    Verdict::Fail(format!("{e:#}")),
                    None,
                )
                .await;
            return recorder.results;
        }
    };
    let mut seeded = Vec::new();
    for creds in suite.tenants {
        let t0 = Instant::now();
        match seed(suite, creds).await {
            Ok(s) => seeded.push(s),
            Err(e) => {
                recorder
                    .record(
                        "browser/setup",
                        &creds.prefix,
                        t0,
                        Verdict::Fail(format!("{e:#}")),
                        None,
                    )
                    .await
            }
        }
    }
    if seeded.len() < suite.tenants.len() {
        return recorder.results;
    }
    let t0 = Instant::now();
    let chromium = match Chromium::launch(&executable).await {
        Ok(c) => c,
        Err(e) => {
            recorder
                .record(
                    "browser/launch",
                    "-",
                    t0,
                    Verdict::Fail(format!("{e:#}")),
                    None,
                )
                .await;
            return recorder.results;
        }
    };
    let version = chromium.version.clone();
    checks(&chromium, &seeded, &mut recorder).await;
    chromium.close().await;
    let secs = started.elapsed().as_secs_f64();
    let time = Verdict::Pass(Some(format!(
        "{secs:.1} s for {} tenants in {version}, routing {} (target <= {TARGET_SECS:.0} s{})",
        seeded.len(),
        suite.routing,
        if secs > TARGET_SECS { ": OVER" } else { "" }
    )));
    recorder
        .record("browser/time", "-", started, time, None)
        .await;
    recorder.results
}

/// SVG and HTML files whose script would set `window.__lfiXss` and the title if it ran.
fn payloads(marker: &str) -> [(String, &'static str, String); 2] {
    let script = format!("window.__lfiXss='{marker}';document.title='lfi-xss-{marker}';");
    [
        (
            format!("browser-{marker}.svg"),
            "image/svg+xml",
            format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"10\" height=\"10\"><script>{script}</script><rect width=\"10\" height=\"10\"/></svg>"
            ),
        ),
        (
            format!("browser-{marker}.html"),
            "text/html",
            format!("<!doctype html><html><body><p>upload</p><script>{script}</script></body></html>"),
        ),
    ]
}

async fn seed(suite: &BrowserSuite<'_>, creds: &TenantCredentials) -> Result<Seeded> {
    let url = suite.routing.tenant_url(suite.gateway, &creds.prefix);
    let client = TenantClient::new(&url);
    let token = client.token(&creds.username, &creds.password).await?;
    let marker = crate::secret::hex(4);
    let flow_name = format!("browser-flow-{}-{marker}", creds.prefix);
    let flow_id = client.create_flow(&token, &flow_name).await?;
    let project_name = format!("browser-project-{}-{marker}", creds.prefix);
    let body = serde_json::json!({"name": project_name, "description": "", "flows_list": [], "components_list": []});
    let mut created = None;
    for path in ["api/v1/projects/", "api/v1/folders/"] {
        let answer = client.post_json(path, &body, &Auth::Bearer(&token)).await?;
        if answer.status == 200 || answer.status == 201 {
            created = Some(answer);
            break;
        }
    }
    created.with_context(|| format!("cannot create project {project_name}"))?;
    let mut files = Vec::new();
    for (name, mime, content) in payloads(&marker) {
        let file = client
            .upload_file_as(&token, &name, content.as_bytes(), mime)
            .await?;
        let id = file["id"]
            .as_str()
            .context("uploaded file has no id")?
            .to_string();
        files.push((name, id));
    }
    Ok(Seeded {
        creds: creds.clone(),
        url,
        flow_id,
        flow_name,
        project_name,
        files,
    })
}

/// JavaScript: `fetch(url)` with the page's cookies → `{status, body}` or `{error}`.
/// The browser's own `fetch`, taken from a blank same-origin iframe: Langflow's UI wraps
/// `window.fetch` (it adds headers, and throws on a request without them), and script injected
/// into a page would not go through the UI's wrapper either.
const NATIVE_FETCH: &str = "(window.__lfiFetch || (window.__lfiFetch = (() => { const f = document.createElement('iframe'); f.style.display = 'none'; document.documentElement.appendChild(f); return f.contentWindow.fetch.bind(f.contentWindow); })()))";

fn fetch_js(url: &str, method: &str) -> String {
    format!(
        "{NATIVE_FETCH}({url}, {{method: {method}, credentials: 'include', headers: {{}}}}).then(async r => ({{status: r.status, type: r.type, body: (await r.text()).slice(0, 4000), contentType: r.headers.get('content-type'), disposition: r.headers.get('content-disposition')}})).catch(e => ({{error: String(e)}}))",
        url = serde_json::to_string(url).expect("string"),
        method = serde_json::to_string(method).expect("string"),
    )
}

/// What a page's `whoami` answers: the username, or `None` when refused.
async fn whoami(tab: &Tab, seeded: &Seeded) -> Result<Option<String>> {
    let answer: Value = tab
        .eval(&fetch_js(
            &format!("{}api/v1/users/whoami", seeded.url),
            "GET",
        ))
        .await?;
    if let Some(error) = answer["error"].as_str() {
        return Err(anyhow!("whoami from the page failed: {error}"));
    }
    Ok(match answer["status"].as_u64() {
        Some(200) => serde_json::from_str::<Value>(answer["body"].as_str().unwrap_or(""))
            .ok()
            .and_then(|v| v["username"].as_str().map(String::from)),
        _ => None,
    })
}

const USERNAME_FIELD: &str = "input[name=\"username\"]";
const PASSWORD_FIELD: &str = "input[name=\"password\"], input[type=\"password\"]";

/// Signs in through the login form; `Ok(note)` once the page's own whoami names the user.
async fn ui_login(tab: &Tab, seeded: &Seeded) -> Result<Option<String>> {
    tab.goto(&seeded.url).await?;
    tab.wait_for(
        "the login form",
        &format!("document.querySelector('{USERNAME_FIELD}')"),
        UI_TIMEOUT,
    )
    .await?;
    if let Some(user) = whoami(tab, seeded).await? {
        return Err(anyhow!(
            "control: the page was already signed in as {user} before the login form was used"
        ));
    }
    tab.type_into(USERNAME_FIELD, &seeded.creds.username)
        .await?;
    tab.type_into(PASSWORD_FIELD, &seeded.creds.password)
        .await?;
    if tab.click("button[type=\"submit\"]").await.is_err() {
        tab.press_enter(PASSWORD_FIELD).await?;
    }
    tab.wait_for(
        "the UI after sign-in",
        "!location.pathname.endsWith('/login') && document.body.innerText.length > 0",
        UI_TIMEOUT,
    )
    .await?;
    match whoami(tab, seeded).await? {
        Some(user) if user == seeded.creds.username => Ok(None),
        Some(user) => Err(anyhow!(
            "the form signed in {user}, not {}",
            seeded.creds.username
        )),
        None => Err(anyhow!(
            "after the login form {} is not signed in (page {})",
            seeded.creds.username,
            tab.url().await.unwrap_or_default()
        )),
    }
}

/// The visible text of the tenant's home page once its own flow is listed.
async fn home_text(tab: &Tab, seeded: &Seeded) -> Result<String> {
    tab.goto(&seeded.url).await?;
    let flow = serde_json::to_string(&seeded.flow_name)?;
    tab.wait_for(
        &format!("its own flow {} to be listed", seeded.flow_name),
        &format!("document.body.innerText.includes({flow})"),
        UI_TIMEOUT,
    )
    .await
    .context("control")?;
    tab.eval("document.body.innerText").await
}

async fn checks(chromium: &Chromium, tenants: &[Seeded], recorder: &mut Recorder<'_>) {
    let mut tabs = Vec::new();
    for seeded in tenants {
        match chromium.tab().await {
            Ok(tab) => tabs.push(tab),
            Err(e) => {
                recorder
                    .record(
                        "browser/setup",
                        &seeded.creds.prefix,
                        Instant::now(),
                        Verdict::Fail(format!("{e:#}")),
                        None,
                    )
                    .await;
                return;
            }
        }
    }
    let mut signed_in = vec![false; tenants.len()];
    for (i, (seeded, tab)) in tenants.iter().zip(&tabs).enumerate() {
        let t0 = Instant::now();
        let result = ui_login(tab, seeded).await;
        signed_in[i] = result.is_ok();
        recorder
            .record(
                "browser/ui-login",
                &seeded.creds.prefix,
                t0,
                result.into(),
                Some(tab),
            )
            .await;
    }
    let skip_unless_signed_in = |i: usize, j: usize| -> Option<Verdict> {
        (!signed_in[i] || !signed_in[j])
            .then(|| Verdict::Skip("a tenant could not sign in (see browser/ui-login)".into()))
    };

    // Each tenant's page: its own flow listed (control), nothing of the others.
    for (i, (b, tab)) in tenants.iter().zip(&tabs).enumerate() {
        let t0 = Instant::now();
        if let Some(skip) = skip_unless_signed_in(i, i) {
            recorder
                .record("browser/two-tenants", &b.creds.prefix, t0, skip, None)
                .await;
            continue;
        }
        let text = home_text(tab, b).await;
        for a in tenants.iter().filter(|a| a.creds.prefix != b.creds.prefix) {
            let pair = format!("{}→{}", a.creds.prefix, b.creds.prefix);
            let verdict: Verdict = match &text {
                Err(e) => Verdict::Fail(format!("{e:#}")),
                Ok(text) => two_tenants(tab, a, b, text).await.into(),
            };
            recorder
                .record("browser/two-tenants", &pair, t0, verdict, Some(tab))
                .await;
        }
    }

    // Every request of each tenant's UI stayed with that tenant.
    for (i, (seeded, tab)) in tenants.iter().zip(&tabs).enumerate() {
        let t0 = Instant::now();
        let verdict = match skip_unless_signed_in(i, i) {
            Some(skip) => skip,
            None => requests(seeded, &tab.requests()).into(),
        };
        recorder
            .record(
                "browser/requests",
                &seeded.creds.prefix,
                t0,
                verdict,
                Some(tab),
            )
            .await;
    }

    for (i, (a, a_tab)) in tenants.iter().zip(&tabs).enumerate() {
        for (j, (b, b_tab)) in tenants.iter().zip(&tabs).enumerate() {
            if i == j {
                continue;
            }
            let t0 = Instant::now();
            let pair = format!("{}→{}", a.creds.prefix, b.creds.prefix);
            let verdict = match skip_unless_signed_in(i, j) {
                Some(skip) => skip,
                None => same_origin(a, a_tab, b, b_tab).await.into(),
            };
            recorder
                .record("browser/same-origin", &pair, t0, verdict, Some(b_tab))
                .await;
        }
    }

    for (i, (seeded, tab)) in tenants.iter().zip(&tabs).enumerate() {
        let t0 = Instant::now();
        let verdict = match skip_unless_signed_in(i, i) {
            Some(skip) => skip,
            None => upload(chromium, tab, seeded).await.into(),
        };
        recorder
            .record(
                "browser/upload",
                &seeded.creds.prefix,
                t0,
                verdict,
                Some(tab),
            )
            .await;
    }

    // Logout last: the first tenant signs out, every other one must stay signed in.
    if let (Some(a), Some(a_tab)) = (tenants.first(), tabs.first()) {
        for (j, (b, b_tab)) in tenants.iter().zip(&tabs).enumerate().skip(1) {
            let t0 = Instant::now();
            let pair = format!("{}→{}", a.creds.prefix, b.creds.prefix);
            let verdict = match skip_unless_signed_in(0, j) {
                Some(skip) => skip,
                None => logout(a, a_tab, b, b_tab).await.into(),
            };
            recorder
                .record("browser/logout", &pair, t0, verdict, Some(a_tab))
                .await;
        }
    }
}

/// b's page (text already shown with b's own flow) must not show a's flow, project or
/// username, and b's own flow list (as its UI fetches it) must not hold a's flow.
async fn two_tenants(tab: &Tab, a: &Seeded, b: &Seeded, text: &str) -> Result<Option<String>> {
    if !text.contains(&b.project_name) {
        return Err(anyhow!(
            "control: {}'s own project {} is not shown on its page",
            b.creds.prefix,
            b.project_name
        ));
    }
    for (what, value) in [
        ("flow", &a.flow_name),
        ("project", &a.project_name),
        ("username", &a.creds.username),
    ] {
        if text.contains(value.as_str()) {
            return Err(anyhow!(
                "{}'s {what} {value} is shown on {}'s page",
                a.creds.prefix,
                b.creds.prefix
            ));
        }
    }
    let listed: Value = tab
        .eval(&fetch_js(
            &format!("{}api/v1/flows/?get_all=true&header_flows=true", b.url),
            "GET",
        ))
        .await?;
    let body = listed["body"].as_str().unwrap_or("");
    if listed["status"].as_u64() != Some(200) || !body.contains(&b.flow_id) {
        return Err(anyhow!(
            "control: {}'s page cannot list its own flows: {}",
            b.creds.prefix,
            short(&listed)
        ));
    }
    if body.contains(&a.flow_id) {
        return Err(anyhow!(
            "{}'s flow {} is in the flow list of {}'s page",
            a.creds.prefix,
            a.flow_id,
            b.creds.prefix
        ));
    }
    match whoami(tab, b).await? {
        Some(user) if user == b.creds.username => Ok(None),
        other => Err(anyhow!(
            "{}'s page is signed in as {other:?}, expected {}",
            b.creds.prefix,
            b.creds.username
        )),
    }
}

/// Host and path of an http(s) URL.
fn host_and_path(url: &str) -> Option<(String, String)> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))?;
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    Some((host.to_ascii_lowercase(), path.to_string()))
}

/// Every recorded request to the gateway's host(s) is the tenant's own; other hosts are listed.
fn requests(seeded: &Seeded, urls: &[String]) -> Result<Option<String>> {
    let (own_host, own_path) = host_and_path(&seeded.url).context("tenant URL")?;
    let gateway_port = own_host.rsplit(':').next().unwrap_or("").to_string();
    let mut own = 0;
    let mut api = 0;
    let mut others: Vec<String> = Vec::new();
    let mut strays = Vec::new();
    for url in urls {
        let Some((host, path)) = host_and_path(url) else {
            continue; // data:, blob:, about:
        };
        let ours = host == own_host && path.starts_with(&own_path);
        let gateway = host.ends_with(&format!(":{gateway_port}"))
            && (host.starts_with("127.0.0.1:")
                || host.starts_with("localhost:")
                || host.contains(".localhost:"));
        if ours {
            own += 1;
            if path[own_path.len()..].starts_with("api/") {
                api += 1;
            }
        } else if gateway {
            strays.push(url.clone());
        } else if !others.contains(&host) {
            others.push(host);
        }
    }
    if own == 0 || api == 0 {
        return Err(anyhow!(
            "control: recorded {own} requests under {} ({api} API calls) — the recording cannot tell",
            seeded.url
        ));
    }
    if !strays.is_empty() {
        return Err(anyhow!(
            "{} of {} requests of {}'s UI left {}: {}",
            strays.len(),
            urls.len(),
            seeded.creds.prefix,
            seeded.url,
            strays
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(Some(format!(
        "{own} requests under {} ({api} API){}",
        seeded.url,
        if others.is_empty() {
            String::new()
        } else {
            format!(
                "; other hosts (not resolved, no internet): {}",
                others.join(", ")
            )
        }
    )))
}

fn short(answer: &Value) -> String {
    match answer["error"].as_str() {
        Some(error) => format!("fetch failed: {error}"),
        None => format!(
            "HTTP {} {}",
            answer["status"],
            answer["body"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(120)
                .collect::<String>()
        ),
    }
}

/// Script on b's page must not read a's flow with a's cookies.
async fn same_origin(a: &Seeded, a_tab: &Tab, b: &Seeded, b_tab: &Tab) -> Result<Option<String>> {
    let flow_url = format!("{}api/v1/flows/{}", a.url, a.flow_id);
    let own: Value = a_tab.eval(&fetch_js(&flow_url, "GET")).await?;
    if own["status"].as_u64() != Some(200)
        || !own["body"].as_str().unwrap_or("").contains(&a.flow_name)
    {
        return Err(anyhow!(
            "control: {}'s own page cannot read its flow {flow_url}: {}",
            a.creds.prefix,
            short(&own)
        ));
    }
    b_tab.goto(&b.url).await?;
    let cross: Value = b_tab.eval(&fetch_js(&flow_url, "GET")).await?;
    let read = cross["status"].as_u64() == Some(200)
        && cross["body"].as_str().unwrap_or("").contains(&a.flow_name);
    if !read {
        return Ok(Some(format!(
            "from {}'s page: {} ({})",
            b.creds.prefix,
            short(&cross),
            cross["type"].as_str().unwrap_or("-")
        )));
    }
    // The exposure, with what else the shared origin shares.
    let origin: String = b_tab.eval("location.origin").await.unwrap_or_default();
    let storage: Value = b_tab
        .eval(&format!(
            "(() => {{ const needle = {}; const hits = s => Object.keys(s).filter(k => String(s.getItem(k)).includes(needle) || k.includes(needle)); return {{local: Object.keys(localStorage), localA: hits(localStorage), sessionA: hits(sessionStorage)}}; }})()",
            serde_json::to_string(&a.creds.prefix)?
        ))
        .await
        .unwrap_or(Value::Null);
    let cookies: Vec<String> = b_tab
        .eval::<String>("document.cookie")
        .await
        .unwrap_or_default()
        .split(';')
        .map(|c| c.trim().split('=').next().unwrap_or("").to_string())
        .filter(|c| !c.is_empty())
        .collect();
    Err(anyhow!(
        "script on {}'s page ({origin}) read {}'s flow {} (HTTP 200) with {}'s cookies: both tenants share the origin {origin}. \
         Also shared: localStorage keys {} (holding {}: {}), sessionStorage keys holding {}: {}, cookies readable by {}'s script: {}",
        b.creds.prefix,
        a.creds.prefix,
        a.flow_id,
        a.creds.prefix,
        storage["local"],
        a.creds.prefix,
        storage["localA"],
        a.creds.prefix,
        storage["sessionA"],
        b.creds.prefix,
        if cookies.is_empty() { "none".to_string() } else { cookies.join(", ") },
    ))
}

/// Files with script uploaded by the tenant do not run when opened from its API.
async fn upload(chromium: &Chromium, tab: &Tab, seeded: &Seeded) -> Result<Option<String>> {
    let probe = "JSON.stringify({xss: window.__lfiXss || null, title: document.title})";
    let mut notes = Vec::new();
    for (name, id) in &seeded.files {
        let file_url = format!("{}api/v2/files/{id}", seeded.url);
        tab.goto(&seeded.url).await?;
        let fetched: Value = tab.eval(&fetch_js(&file_url, "GET")).await?;
        let body = fetched["body"].as_str().unwrap_or("");
        if fetched["status"].as_u64() != Some(200) || !body.contains("__lfiXss") {
            return Err(anyhow!(
                "control: {name} cannot be fetched back from {file_url}: {}",
                short(&fetched)
            ));
        }
        // Control: the same bytes as a document of their own type do run.
        let mime = if name.ends_with(".svg") {
            "image/svg+xml"
        } else {
            "text/html"
        };
        let data_url = format!(
            "data:{mime};base64,{}",
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, body)
        );
        tab.goto(&data_url).await?;
        let control: String = tab.eval(probe).await?;
        if !control.contains("lfi-xss-") {
            return Err(anyhow!(
                "control: the payload of {name} did not run even as a document ({control}), so the probe cannot tell"
            ));
        }
        tab.goto(&seeded.url).await?;
        // Opening the file, top-level in a tab of its own (same browser context, so with the
        // tenant's cookies): a download leaves that tab blank, a rendered file runs there. A
        // download never finishes loading as a page, so the tab is thrown away afterwards.
        let file_tab = chromium.tab().await?;
        let opened = file_tab
            .goto_within(&file_url, Duration::from_secs(4))
            .await;
        let seen: Result<String> = file_tab.eval(probe).await;
        file_tab.close().await;
        let seen = seen?;
        if seen.contains("lfi-xss-") {
            return Err(anyhow!(
                "{name} uploaded to {} ran its script when opened at {file_url} (served as {}, {})",
                seeded.creds.prefix,
                fetched["contentType"],
                fetched["disposition"]
            ));
        }
        notes.push(format!(
            "{name}: served as {} / {}{}",
            fetched["contentType"].as_str().unwrap_or("-"),
            fetched["disposition"].as_str().unwrap_or("inline"),
            if opened.is_err() { " (download)" } else { "" }
        ));
    }
    Ok(Some(notes.join("; ")))
}

/// a signs out through its UI's logout request; b stays signed in.
async fn logout(a: &Seeded, a_tab: &Tab, b: &Seeded, b_tab: &Tab) -> Result<Option<String>> {
    a_tab.goto(&a.url).await?;
    b_tab.goto(&b.url).await?;
    if whoami(a_tab, a).await?.is_none() || whoami(b_tab, b).await?.is_none() {
        return Err(anyhow!(
            "control: {} and {} are not both signed in before the logout",
            a.creds.prefix,
            b.creds.prefix
        ));
    }
    let answer: Value = a_tab
        .eval(&fetch_js(&format!("{}api/v1/logout", a.url), "POST"))
        .await?;
    if answer["status"].as_u64() != Some(200) {
        return Err(anyhow!(
            "{}'s logout failed: {}",
            a.creds.prefix,
            short(&answer)
        ));
    }
    a_tab.goto(&a.url).await?;
    if let Some(user) = whoami(a_tab, a).await? {
        return Err(anyhow!(
            "{} is still signed in as {user} after its logout",
            a.creds.prefix
        ));
    }
    b_tab.goto(&b.url).await?;
    match whoami(b_tab, b).await? {
        Some(user) if user == b.creds.username => Ok(None),
        other => Err(anyhow!(
            "{}'s logout signed {} out too (whoami: {other:?})",
            a.creds.prefix,
            b.creds.prefix
        )),
    }
}
