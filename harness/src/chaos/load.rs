//! The bounded loopback load a chaos scenario runs under: per tenant, one authenticated
//! `GET api/v1/flows/<id>` through the gateway at a fixed rate (a request that is still waiting
//! delays the next: the load never piles up), every answer recorded with its time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How long one load request may take before it counts as failed.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// What one tenant's load fetches.
#[derive(Debug, Clone)]
pub struct LoadTarget {
    /// Tenant prefix.
    pub tenant: String,
    /// Full URL fetched (`…/tenant/<prefix>/api/v1/flows/<id>`).
    pub url: String,
    /// Bearer token of a tenant user.
    pub token: String,
}

/// One answered (or failed) load request.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    /// When it was sent, since the load started.
    #[serde(skip)]
    pub at: Duration,
    /// When it finished, since the load started.
    #[serde(skip)]
    pub done: Duration,
    /// Index of the tenant in the load's targets.
    pub tenant: usize,
    /// HTTP 200 within the timeout.
    pub ok: bool,
    /// `HTTP 502`, `timeout`, `connection refused`…
    pub outcome: String,
}

/// A running load.
pub struct Load {
    started: Instant,
    samples: Arc<Mutex<Vec<Sample>>>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tenants: usize,
}

impl Load {
    /// Starts `rps_per_tenant` requests per second against each target.
    pub fn start(targets: Vec<LoadTarget>, rps_per_tenant: f64) -> Self {
        let started = Instant::now();
        let samples = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("a reqwest client builds");
        let period = Duration::from_secs_f64(1.0 / rps_per_tenant.max(0.1));
        let tasks = targets
            .iter()
            .cloned()
            .enumerate()
            .map(|(index, target)| {
                let (http, samples, stop) = (http.clone(), samples.clone(), stop.clone());
                tokio::spawn(async move {
                    let mut tick = tokio::time::interval(period);
                    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        let at = started.elapsed();
                        let answer = http
                            .get(&target.url)
                            .bearer_auth(&target.token)
                            .send()
                            .await;
                        let (ok, outcome) = match answer {
                            Ok(r) if r.status().as_u16() == 200 => (true, "HTTP 200".to_string()),
                            Ok(r) => (false, format!("HTTP {}", r.status().as_u16())),
                            Err(e) if e.is_timeout() => (false, "timeout".to_string()),
                            Err(e) if e.is_connect() => (false, "connection refused".to_string()),
                            Err(e) => (false, format!("error: {e}")),
                        };
                        samples.lock().expect("samples").push(Sample {
                            at,
                            done: started.elapsed(),
                            tenant: index,
                            ok,
                            outcome,
                        });
                    }
                })
            })
            .collect();
        Self {
            started,
            samples,
            stop,
            tasks,
            tenants: targets.len(),
        }
    }

    /// Time since the load started.
    pub fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// Samples sent at or after `from`.
    pub fn samples_since(&self, from: Duration) -> Vec<Sample> {
        self.samples
            .lock()
            .expect("samples")
            .iter()
            .filter(|s| s.at >= from)
            .cloned()
            .collect()
    }

    /// Whether each tenant's last `n` samples (finished after `after`) all succeeded.
    pub fn all_healthy_after(&self, after: Duration, n: usize) -> bool {
        let samples = self.samples_since(after);
        (0..self.tenants).all(|tenant| {
            let mine: Vec<&Sample> = samples.iter().filter(|s| s.tenant == tenant).collect();
            mine.len() >= n && mine[mine.len() - n..].iter().all(|s| s.ok)
        })
    }

    /// Stops the load and waits for its in-flight requests.
    pub async fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

/// Figures of one tenant's load over a scenario.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TenantFigures {
    /// Requests sent.
    pub sent: usize,
    /// Requests that did not get HTTP 200 in time.
    pub failed: usize,
    /// From the fault to its first failed request, ms (none when nothing failed).
    pub ms_to_first_failure: Option<f64>,
    /// Longest stretch without a successful answer: from a failed request's start to the next
    /// successful one's, ms.
    pub max_outage_ms: f64,
    /// From the fault to the first success after its last failure, ms (0 when nothing failed).
    pub recovery_ms: f64,
    /// What the failed requests got, with counts (`HTTP 502 ×12`).
    pub failures: Vec<String>,
}

/// Figures of tenant `tenant` from the samples sent after the fault at `fault`.
pub fn figures(samples: &[Sample], tenant: usize, fault: Duration) -> TenantFigures {
    let mut mine: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.tenant == tenant && s.at >= fault)
        .collect();
    mine.sort_by_key(|s| s.at);
    let mut figures = TenantFigures {
        sent: mine.len(),
        failed: mine.iter().filter(|s| !s.ok).count(),
        ..TenantFigures::default()
    };
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let mut outage_start: Option<Duration> = None;
    let mut last_failure: Option<usize> = None;
    for (i, sample) in mine.iter().enumerate() {
        if sample.ok {
            if let Some(start) = outage_start.take() {
                figures.max_outage_ms = figures.max_outage_ms.max(ms(sample.at - start));
            }
        } else {
            figures
                .ms_to_first_failure
                .get_or_insert(ms(sample.at.saturating_sub(fault)));
            outage_start.get_or_insert(sample.at);
            last_failure = Some(i);
        }
    }
    if let (Some(start), Some(last)) = (outage_start, mine.last()) {
        // Still failing at the end: the outage lasts at least until the last request ended.
        figures.max_outage_ms = figures.max_outage_ms.max(ms(last.done - start));
    }
    if let Some(last) = last_failure {
        figures.recovery_ms = match mine.get(last + 1) {
            Some(next) => ms(next.at.saturating_sub(fault)),
            None => f64::INFINITY,
        };
    }
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for s in mine.iter().filter(|s| !s.ok) {
        *counts.entry(s.outcome.as_str()).or_default() += 1;
    }
    figures.failures = counts
        .into_iter()
        .map(|(what, n)| format!("{what} ×{n}"))
        .collect();
    figures
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(secs: f64, ok: bool) -> Sample {
        Sample {
            at: Duration::from_secs_f64(secs),
            done: Duration::from_secs_f64(secs + 0.01),
            tenant: 0,
            ok,
            outcome: if ok { "HTTP 200" } else { "HTTP 502" }.into(),
        }
    }

    #[test]
    fn outage_recovery_and_first_failure_are_measured_from_the_fault() {
        let samples = vec![
            sample(0.5, true),
            sample(1.0, true),
            sample(1.5, false),
            sample(2.0, false),
            sample(3.5, true),
            sample(4.0, false),
            sample(4.5, true),
        ];
        let f = figures(&samples, 0, Duration::from_secs(1));
        assert_eq!((f.sent, f.failed), (6, 3));
        assert_eq!(f.ms_to_first_failure, Some(500.0));
        assert_eq!(f.max_outage_ms, 2000.0);
        assert_eq!(f.recovery_ms, 3500.0);
        assert_eq!(f.failures, vec!["HTTP 502 ×3".to_string()]);
    }

    #[test]
    fn a_tenant_still_failing_has_not_recovered() {
        let samples = vec![sample(1.0, true), sample(2.0, false), sample(3.0, false)];
        let f = figures(&samples, 0, Duration::ZERO);
        assert!(f.recovery_ms.is_infinite());
        assert!(f.max_outage_ms >= 1000.0);
    }

    #[test]
    fn no_failures_means_no_outage() {
        let samples = vec![sample(1.0, true), sample(2.0, true)];
        let f = figures(&samples, 0, Duration::ZERO);
        assert_eq!((f.failed, f.max_outage_ms, f.recovery_ms), (0, 0.0, 0.0));
        assert_eq!(f.ms_to_first_failure, None);
    }
}
