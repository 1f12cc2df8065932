//! Human-readable rendering of results as tables (the `--json` forms are the serde structs).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, Color, ContentArrangement, Table};

use crate::stack::{DownReport, ServiceState, StackStatus};

/// A table with the project's style and the given header.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(Cell::new));
    table
}

/// Megabytes, one decimal, or `-`.
pub fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1} MB", b as f64 / 1_048_576.0))
}

/// The services table shown by `up` and `status`.
pub fn status_table(status: &StackStatus) -> String {
    let mut table = table(&["service", "state", "url", "pid", "rss", "detail"]);
    for service in &status.services {
        let color = match service.state {
            ServiceState::Healthy => Color::Green,
            ServiceState::Unhealthy => Color::Yellow,
            ServiceState::Crashed => Color::Red,
        };
        table.add_row(vec![
            Cell::new(&service.name),
            Cell::new(format!("{:?}", service.state).to_lowercase()).fg(color),
            Cell::new(&service.url),
            Cell::new(service.pid),
            Cell::new(megabytes(service.rss_bytes)),
            Cell::new(service.detail.as_deref().unwrap_or("")),
        ]);
    }
    table.to_string()
}

/// The summary printed by `down`.
pub fn down_summary(report: &DownReport) -> String {
    let mut lines = Vec::new();
    if report.state_was_corrupt {
        lines.push(
            "state file was corrupt: found the run's processes by their marker instead".to_string(),
        );
    }
    if report.stopped.is_empty() && report.orphans_stopped == 0 {
        lines.push("nothing was running".to_string());
    }
    for (name, outcome) in &report.stopped {
        lines.push(format!(
            "{name}: {}",
            serde_json::to_value(outcome)
                .unwrap_or_default()
                .as_str()
                .unwrap_or("?")
        ));
    }
    if report.orphans_stopped > 0 {
        lines.push(format!(
            "stopped {} process(es) of the run not in the state file",
            report.orphans_stopped
        ));
    }
    lines.push(if report.volumes_removed {
        "removed run state, logs, Postgres data and secrets".to_string()
    } else {
        "removed run state and logs (Postgres data kept; `down --volumes` drops it)".to_string()
    });
    lines.join("\n")
}
