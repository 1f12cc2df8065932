//! Headless Chromium driven over the DevTools protocol (chromiumoxide), for the e2e browser suite.
//!
//! - [`find_chromium`]: `LANGFLOW_INFRA_CHROMIUM`, else `chromium` / `chromium-browser` /
//!   `google-chrome` on `PATH` (Debian's package is `chromium`).
//! - [`Chromium::launch`]: one browser per suite run, a fresh temp profile, DevTools on
//!   127.0.0.1 only (an ephemeral port read from Chromium's own output), no proxy, and a host
//!   resolver that answers only `localhost` / `*.localhost` / 127.0.0.1: nothing the UI asks for on
//!   other hosts (fonts, GitHub badges) ever leaves the machine — those requests are recorded and
//!   fail locally. As root Chromium's sandbox cannot start, so it runs with `--no-sandbox`.
//! - [`Tab`]: one page with every request it makes recorded, script evaluation (promises
//!   awaited), typing and clicking through real input events, and screenshots.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::network::EventRequestWillBeSent;
use chromiumoxide::cdp::browser_protocol::page::CaptureScreenshotFormat;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use chromiumoxide::cdp::js_protocol::runtime::EvaluateParams;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use serde::de::DeserializeOwned;

/// Environment variable naming the Chromium executable (overrides the `PATH` search).
pub const CHROMIUM_ENV: &str = "LANGFLOW_INFRA_CHROMIUM";
/// How long one browser operation (navigation, evaluation, input) may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The Chromium executable to use: `LANGFLOW_INFRA_CHROMIUM` when set (it must exist), else the
/// first of `chromium`, `chromium-browser`, `google-chrome` on `PATH`.
pub fn find_chromium() -> Result<Option<PathBuf>> {
    if let Some(path) = std::env::var_os(CHROMIUM_ENV).filter(|v| !v.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!(
                "{CHROMIUM_ENV}={} is not a file; point it at a Chromium executable or unset it",
                path.display()
            );
        }
        return Ok(Some(path));
    }
    let Some(search) = std::env::var_os("PATH") else {
        return Ok(None);
    };
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&search) {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Ok(Some(candidate));
            }
        }
    }
    Ok(None)
}

/// One headless Chromium process and its DevTools connection.
pub struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    _profile: tempfile::TempDir,
    /// `Chromium/<version>` as the browser reports it.
    pub version: String,
}

impl Chromium {
    /// Starts `executable` headless with a fresh profile; DevTools listens on 127.0.0.1 only.
    pub async fn launch(executable: &Path) -> Result<Self> {
        let profile = tempfile::Builder::new()
            .prefix("lfi-chromium-")
            .tempdir()
            .context("cannot create a temp profile for Chromium")?;
        let mut config = BrowserConfig::builder()
            .chrome_executable(executable)
            .new_headless_mode()
            .user_data_dir(profile.path())
            .window_size(1280, 900)
            .viewport(None)
            .launch_timeout(Duration::from_secs(30))
            .request_timeout(STEP_TIMEOUT)
            .arg(("remote-debugging-address", "127.0.0.1"))
            // Only the loopback names resolve: no request leaves the machine.
            .arg((
                "host-resolver-rules",
                "MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE *.localhost, EXCLUDE 127.0.0.1",
            ))
            .args([
                "no-proxy-server",
                "disable-gpu",
                "disable-component-update",
                "disable-domain-reliability",
                "no-pings",
                "no-default-browser-check",
                // Tabs of the suite stay live when another is in front: timers, rendering and
                // input of a background tab would otherwise stall.
                "disable-background-timer-throttling",
                "disable-renderer-backgrounding",
                "disable-backgrounding-occluded-windows",
            ]);
        // Chromium's sandbox needs an unprivileged user: as root (CI containers) it refuses to
        // start unless the sandbox is off.
        if nix::unistd::geteuid().is_root() {
            config = config.no_sandbox();
        }
        let config = config
            .build()
            .map_err(|e| anyhow!("cannot configure Chromium: {e}"))?;
        let (browser, mut handler) = Browser::launch(config)
            .await
            .with_context(|| format!("cannot start {} headless", executable.display()))?;
        let handler = tokio::spawn(async move {
            // Every event must be polled for the connection to make progress; messages of newer
            // protocol versions that do not parse are ignored.
            while let Some(event) = handler.next().await {
                let _ = event;
            }
        });
        let version = tokio::time::timeout(STEP_TIMEOUT, browser.version())
            .await
            .map_err(|_| anyhow!("Chromium did not report its version in time"))?
            .map(|v| v.product)
            .unwrap_or_else(|_| "Chromium (version unknown)".into());
        Ok(Self {
            browser,
            handler,
            _profile: profile,
            version,
        })
    }

    /// A new tab in the browser's default context (shares cookies and storage with every other
    /// tab of that context, like two tabs of one user's browser).
    pub async fn tab(&self) -> Result<Tab> {
        self.tab_in(None).await
    }

    /// A new tab in a fresh, isolated browser context (its own cookies and storage, like a
    /// separate profile).
    pub async fn isolated_tab(&self) -> Result<Tab> {
        let context = step(
            "create a browser context",
            self.browser
                .create_browser_context(CreateBrowserContextParams::default()),
        )
        .await?;
        self.tab_in(Some(context)).await
    }

    async fn tab_in(
        &self,
        context: Option<chromiumoxide::cdp::browser_protocol::browser::BrowserContextId>,
    ) -> Result<Tab> {
        let mut params = CreateTargetParams::new("about:blank");
        params.browser_context_id = context;
        let page = step("open a tab", self.browser.new_page(params)).await?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let mut events = step(
            "listen to the tab's requests",
            page.event_listener::<EventRequestWillBeSent>(),
        )
        .await?;
        let sink = requests.clone();
        let recorder = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                sink.lock()
                    .expect("request log lock")
                    .push(event.request.url.clone());
            }
        });
        Ok(Tab {
            page,
            requests,
            recorder,
        })
    }

    /// Closes the browser and waits for its process to end.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.browser.close()).await;
        let _ = tokio::time::timeout(Duration::from_secs(10), self.browser.wait()).await;
        self.handler.abort();
    }
}

/// Runs one browser operation with the step timeout; errors name the operation.
async fn step<T, E: std::fmt::Display>(
    what: &str,
    operation: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    match tokio::time::timeout(STEP_TIMEOUT, operation).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(anyhow!("browser: cannot {what}: {e}")),
        Err(_) => Err(anyhow!(
            "browser: cannot {what}: no answer within {}s",
            STEP_TIMEOUT.as_secs()
        )),
    }
}

/// One browser tab.
pub struct Tab {
    page: Page,
    requests: Arc<Mutex<Vec<String>>>,
    recorder: tokio::task::JoinHandle<()>,
}

impl Drop for Tab {
    fn drop(&mut self) {
        self.recorder.abort();
    }
}

impl Tab {
    /// Navigates to `url` and waits for the load to finish.
    pub async fn goto(&self, url: &str) -> Result<()> {
        step(&format!("open {url}"), self.page.goto(url)).await?;
        Ok(())
    }

    /// Navigates to `url`, waiting at most `limit` for the load: a response the browser
    /// downloads (`Content-Disposition: attachment`) never finishes loading as a page.
    pub async fn goto_within(&self, url: &str, limit: Duration) -> Result<()> {
        match tokio::time::timeout(limit, self.page.goto(url)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(anyhow!("browser: cannot open {url}: {e}")),
            Err(_) => Err(anyhow!(
                "browser: {url} did not load as a page within {}s",
                limit.as_secs()
            )),
        }
    }

    /// Closes the tab (whatever it is still loading).
    pub async fn close(self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.page.clone().close()).await;
    }

    /// The tab's current URL.
    pub async fn url(&self) -> Result<String> {
        Ok(step("read the URL", self.page.url())
            .await?
            .unwrap_or_default())
    }

    /// Evaluates `expression` in the page (a promise is awaited) and returns its value as JSON.
    pub async fn eval<T: DeserializeOwned>(&self, expression: &str) -> Result<T> {
        let params = EvaluateParams::builder()
            .expression(expression)
            .await_promise(true)
            .return_by_value(true)
            .build()
            .map_err(|e| anyhow!("bad evaluation: {e}"))?;
        let answer = step("evaluate script", self.page.execute(params)).await?;
        if let Some(exception) = &answer.result.exception_details {
            bail!(
                "script threw: {}",
                exception
                    .exception
                    .as_ref()
                    .and_then(|e| e.description.clone())
                    .unwrap_or_else(|| exception.text.clone())
            );
        }
        let value = answer
            .result
            .result
            .value
            .clone()
            .unwrap_or(serde_json::Value::Null);
        serde_json::from_value(value.clone())
            .with_context(|| format!("unexpected script result {value}"))
    }

    /// Polls the boolean `condition` until it holds or `timeout` passes.
    pub async fn wait_for(&self, what: &str, condition: &str, timeout: Duration) -> Result<()> {
        let started = Instant::now();
        let mut last_error = None;
        loop {
            match self.eval::<bool>(&format!("Boolean({condition})")).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => last_error = Some(e),
            }
            if started.elapsed() > timeout {
                let url = self.url().await.unwrap_or_default();
                bail!(
                    "timed out after {}s waiting for {what} (page {url}){}",
                    timeout.as_secs(),
                    last_error
                        .map(|e| format!("; last error: {e:#}"))
                        .unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Brings the tab to the front: input events go to the front tab only (a mouse event sent
    /// to a background tab is never answered).
    async fn activate(&self) -> Result<()> {
        step("bring the tab to the front", self.page.bring_to_front()).await?;
        Ok(())
    }

    /// Clicks the first element matching `selector` and types `text` with real key events.
    pub async fn type_into(&self, selector: &str, text: &str) -> Result<()> {
        self.activate().await?;
        let element = step(
            &format!("find {selector}"),
            self.page.find_element(selector),
        )
        .await?;
        step(&format!("click {selector}"), element.click()).await?;
        step(&format!("type into {selector}"), element.type_str(text)).await?;
        Ok(())
    }

    /// Clicks the first element matching `selector` with a real mouse event.
    pub async fn click(&self, selector: &str) -> Result<()> {
        self.activate().await?;
        let element = step(
            &format!("find {selector}"),
            self.page.find_element(selector),
        )
        .await?;
        step(&format!("click {selector}"), element.click()).await?;
        Ok(())
    }

    /// Presses Enter in the first element matching `selector` (submits its form).
    pub async fn press_enter(&self, selector: &str) -> Result<()> {
        self.activate().await?;
        let element = step(
            &format!("find {selector}"),
            self.page.find_element(selector),
        )
        .await?;
        step(
            &format!("press Enter in {selector}"),
            element.press_key("Enter"),
        )
        .await?;
        Ok(())
    }

    /// Every URL the tab has requested so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().expect("request log lock").clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        self.requests.lock().expect("request log lock").clear();
    }

    /// Saves a PNG screenshot of the visible page to `path` (its directory is created).
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let png = step(
            "take a screenshot",
            self.page.screenshot(
                ScreenshotParams::builder()
                    .format(CaptureScreenshotFormat::Png)
                    .build(),
            ),
        )
        .await?;
        std::fs::write(path, png).with_context(|| format!("cannot write {}", path.display()))
    }
}
