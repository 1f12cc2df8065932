//! Progress display for long operations: an indicatif spinner on a terminal, plain start/finish
//! lines on stderr otherwise (CI logs), nothing at all when quiet.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use std::sync::OnceLock;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// All spinners share one display so parallel steps do not overwrite each other.
fn display() -> &'static MultiProgress {
    static DISPLAY: OnceLock<MultiProgress> = OnceLock::new();
    DISPLAY.get_or_init(MultiProgress::new)
}

/// Prints a line above any active spinners (plain `eprintln!` when none are drawn).
pub fn println(line: impl AsRef<str>) {
    if std::io::stderr().is_terminal() {
        let _ = display().println(line.as_ref());
    } else {
        eprintln!("{}", line.as_ref());
    }
}

/// A long operation in progress.
pub struct Step {
    bar: Option<ProgressBar>,
    plain: bool,
    label: String,
    started: Instant,
}

impl Step {
    /// Starts a step labelled `label` (e.g. "postgres: starting").
    pub fn start(label: impl Into<String>) -> Self {
        let label = label.into();
        let quiet = std::env::var_os("LANGFLOW_INFRA_QUIET").is_some();
        if quiet {
            return Self {
                bar: None,
                plain: false,
                label,
                started: Instant::now(),
            };
        }
        if std::io::stderr().is_terminal() {
            let bar = display().add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner:.cyan} {prefix:.bold} {wide_msg} [{elapsed}]",
                )
                .expect("static template"),
            );
            bar.set_prefix(label.clone());
            bar.enable_steady_tick(Duration::from_millis(120));
            Self {
                bar: Some(bar),
                plain: false,
                label,
                started: Instant::now(),
            }
        } else {
            eprintln!("... {label}");
            Self {
                bar: None,
                plain: true,
                label,
                started: Instant::now(),
            }
        }
    }

    /// Updates the detail shown beside the label (terminal only).
    pub fn set_message(&self, message: impl Into<String>) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.into());
        }
    }

    /// Finishes the step successfully with a short summary.
    pub fn finish(self, summary: impl AsRef<str>) {
        let line = format!(
            "{} {} ({:.1}s)",
            self.label,
            summary.as_ref(),
            self.started.elapsed().as_secs_f64()
        );
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            display().remove(bar);
            println(format!("ok   {line}"));
        } else if self.plain {
            eprintln!("ok   {line}");
        }
    }

    /// Ends the step as failed (the caller reports the error).
    pub fn fail(self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            display().remove(bar);
        }
        if self.bar.is_some() || self.plain {
            println(format!(
                "FAIL {} ({:.1}s)",
                self.label,
                self.started.elapsed().as_secs_f64()
            ));
        }
    }
}
