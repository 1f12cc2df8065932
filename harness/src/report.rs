//! Human-readable rendering of results as tables (the `--json` forms are the serde structs).

use comfy_table::{Cell, Color};

use crate::stack::{DownReport, ServiceState, StackStatus};

pub use harness_core::tables::{megabytes, table, truncate};

/// The services table shown by `up` and `status`.
pub fn status_table(status: &StackStatus) -> String {
    let containers = status.services.iter().any(|s| s.container.is_some());
    let (where_header, memory_header) = if containers {
        ("pid / container", "memory")
    } else {
        ("pid", "rss")
    };
    // PSS / USS where the kernel tells them (native processes): RSS counts the pages tenants
    // share with the fork server once per tenant.
    let shared = status.services.iter().any(|s| s.memory.is_some());
    let mut header = vec!["service", "state", "url", where_header, memory_header];
    if shared {
        header.extend(["pss", "uss"]);
    }
    header.push("detail");
    let mut table = table(&header);
    for service in &status.services {
        let color = match service.state {
            ServiceState::Healthy => Color::Green,
            ServiceState::Unhealthy => Color::Yellow,
            ServiceState::Crashed => Color::Red,
        };
        let mut row = vec![
            Cell::new(&service.name),
            Cell::new(format!("{:?}", service.state).to_lowercase()).fg(color),
            Cell::new(&service.url),
            Cell::new(match &service.container {
                Some(c) => format!("{} {}", crate::runtime::short_id(&c.id), c.image),
                None => service.pid.to_string(),
            }),
            Cell::new(megabytes(service.rss_bytes)),
        ];
        if shared {
            row.push(Cell::new(megabytes(service.memory.map(|m| m.pss))));
            row.push(Cell::new(megabytes(service.memory.map(|m| m.uss))));
        }
        row.push(Cell::new(service.detail.as_deref().unwrap_or("")));
        table.add_row(row);
    }
    format!(
        "runtime: {}, emulator: {}\n{table}",
        status.runtime, status.emulator
    )
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

/// The per-tenant table `up` prints: where each tenant is and, once, the passwords it created.
pub fn tenants_table(
    tenants: &[crate::stack::TenantEndpoint],
    credentials: &[crate::tenancy::IssuedCredentials],
) -> String {
    let mut table = table(&["tenant", "url", "schema", "username", "password"]);
    for tenant in tenants {
        let mut names: Vec<&str> = tenant.users.iter().map(String::as_str).collect();
        if names.is_empty() {
            names.push("-");
        }
        for name in names {
            let password = credentials
                .iter()
                .find(|c| c.schema == tenant.schema && c.username == name)
                .map_or("(unchanged; `tenant user-reset` sets a new one)", |c| {
                    c.password.as_str()
                });
            table.add_row(vec![
                Cell::new(&tenant.prefix),
                Cell::new(&tenant.url),
                Cell::new(&tenant.schema),
                Cell::new(name),
                Cell::new(if name == "-" { "" } else { password }),
            ]);
        }
    }
    table.to_string()
}

/// `tenant schema-list`.
pub fn schemas_table(schemas: &[crate::tenancy::TenantSchema]) -> String {
    let mut table = table(&["prefix", "schema", "users", "alembic revision"]);
    for schema in schemas {
        table.add_row(vec![
            Cell::new(&schema.prefix),
            Cell::new(&schema.schema),
            Cell::new(schema.users),
            Cell::new(schema.revision.as_deref().unwrap_or("-")),
        ]);
    }
    table.to_string()
}

/// `tenant user-list`.
pub fn users_table(users: &[crate::tenancy::TenantUser]) -> String {
    let mut table = table(&["username", "active", "superuser", "created", "last login"]);
    for user in users {
        table.add_row(vec![
            Cell::new(&user.username),
            Cell::new(user.active),
            Cell::new(user.superuser),
            Cell::new(&user.created_at),
            Cell::new(user.last_login_at.as_deref().unwrap_or("-")),
        ]);
    }
    table.to_string()
}

/// Credentials just issued (`user-add`, `user-reset`), with the once-only notice.
pub fn credentials_table(credentials: &crate::tenancy::IssuedCredentials) -> String {
    let mut table = table(&["schema", "username", "password"]);
    table.add_row(vec![
        Cell::new(&credentials.schema),
        Cell::new(&credentials.username),
        Cell::new(&credentials.password),
    ]);
    let notice = if credentials.generated {
        "\nThe password was generated and is shown only now; it is stored only as a bcrypt hash."
    } else {
        ""
    };
    format!("{table}{notice}")
}

/// `bench` results.
pub fn bench_table(report: &crate::bench::BenchReport) -> String {
    let mut table = table(&["metric", "value", "target", "result"]);
    for m in &report.measurements {
        let (text, color) = match (m.target, m.pass) {
            (None, _) => ("-", Color::Reset),
            (Some(_), true) => ("pass", Color::Green),
            (Some(_), false) => ("FAIL", Color::Red),
        };
        table.add_row(vec![
            Cell::new(&m.metric),
            Cell::new(format!("{:.2} {}", m.value, m.unit)),
            Cell::new(
                m.target
                    .map_or("-".into(), |t| format!("<= {t} {}", m.unit)),
            ),
            Cell::new(text).fg(color),
        ]);
    }
    table.to_string()
}

/// A check's or scenario's outcome, coloured.
fn outcome_cell(outcome: crate::e2e::Outcome) -> Cell {
    use crate::e2e::Outcome;
    let (text, color) = match outcome {
        Outcome::Pass => ("pass", Color::Green),
        Outcome::Fail => ("FAIL", Color::Red),
        Outcome::Skip => ("skip", Color::Yellow),
    };
    Cell::new(text).fg(color)
}

/// The e2e results table and a one-line summary.
pub fn e2e_table(report: &crate::e2e::E2eReport) -> String {
    use crate::e2e::Outcome;
    let mut table = table(&["check", "tenants", "result", "ms", "evidence"]);
    for r in &report.results {
        table.add_row(vec![
            Cell::new(&r.check),
            Cell::new(&r.pair),
            outcome_cell(r.outcome),
            Cell::new(format!("{:.0}", r.ms)),
            Cell::new(r.evidence.as_deref().unwrap_or("")),
        ]);
    }
    let count = |o: Outcome| report.results.iter().filter(|r| r.outcome == o).count();
    format!(
        "{table}\n{} passed, {} failed, {} skipped against {} (up {:.1}s, setup {:.1}s, checks {:.1}s, down {:.1}s)",
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip),
        report.target,
        report.up_secs,
        report.setup_secs,
        report.checks_secs,
        report.down_secs
    )
}

/// `validate --rehearse` results.
pub fn rehearsal_table(rehearsal: &crate::rehearse::Rehearsal) -> String {
    let mut table = table(&["stack", "status", "s", "outputs / reason"]);
    for s in &rehearsal.stacks {
        let mut detail = match &s.reason {
            Some(reason) => reason.clone(),
            None => s
                .outputs
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
        };
        if !s.skipped.is_empty() {
            detail.push_str(&format!(
                "\n(left out, unknown to the emulator: {})",
                s.skipped.join(", ")
            ));
        }
        if !s.not_emulated.is_empty() {
            detail.push_str(&format!(
                "\n(left out, not rehearsed — skipped: {})",
                s.not_emulated.join("; ")
            ));
        }
        let color = if s.status == "CREATE_COMPLETE" {
            Color::Green
        } else {
            Color::Red
        };
        table.add_row(vec![
            Cell::new(&s.name),
            Cell::new(&s.status).fg(color),
            Cell::new(format!("{:.1}", s.secs)),
            Cell::new(detail),
        ]);
    }
    let not_emulated: usize = rehearsal.stacks.iter().map(|s| s.not_emulated.len()).sum();
    format!(
        "{table}\nrehearsal of stage {} on {}: {}{}; stacks {}",
        rehearsal.stage,
        rehearsal.emulator.emulator,
        if rehearsal.ok() {
            "all stacks created"
        } else {
            "FAILED"
        },
        if not_emulated > 0 {
            format!("; {not_emulated} resource(s) skipped, not rehearsed (the emulator does not emulate them or what they import)")
        } else {
            String::new()
        },
        if rehearsal.deleted {
            "deleted"
        } else {
            "NOT all deleted"
        }
    )
}

/// The chaos results table and a one-line summary.
pub fn chaos_table(report: &crate::chaos::ChaosReport) -> String {
    use crate::e2e::Outcome;
    let mut table = table(&[
        "scenario",
        "result",
        "sent",
        "failed",
        "max outage s",
        "recovery s",
        "data lost",
        "evidence",
    ]);
    let secs = |ms: f64| format!("{:.1}", ms / 1000.0);
    for r in &report.results {
        table.add_row(vec![
            Cell::new(&r.scenario),
            outcome_cell(r.outcome),
            Cell::new(r.requests_sent),
            Cell::new(r.requests_failed),
            Cell::new(secs(r.max_outage_ms)),
            Cell::new(r.recovery_ms.map(secs).unwrap_or_else(|| "-".into())),
            Cell::new(r.data_lost),
            Cell::new(&r.evidence),
        ]);
    }
    let count = |o: Outcome| report.results.iter().filter(|r| r.outcome == o).count();
    format!(
        "{table}\n{} passed, {} failed, {} skipped on the {} runtime; load {} req/s per tenant ({}); up {:.1}s, total {:.1}s",
        count(Outcome::Pass),
        count(Outcome::Fail),
        count(Outcome::Skip),
        report.runtime,
        report.rps_per_tenant,
        report.tenants.join(", "),
        report.up_secs,
        report.total_secs
    )
}

/// Spawn vs fork, per tenant count: warm up, per-tenant memory after the workload, recovery.
pub fn start_figures_table(figures: &[crate::bench::StartFigures]) -> String {
    let mut table = table(&[
        "start",
        "tenants",
        "warm up",
        "RSS / tenant",
        "PSS / tenant",
        "USS / tenant (max)",
        "fork server PSS",
        "killed tenant serving again",
    ]);
    let mb = |b: u64| format!("{:.0} MB", b as f64 / 1_048_576.0);
    for f in figures {
        let n = f.instances.len().max(1) as u64;
        let avg = |pick: fn(&crate::runtime::MemoryUsage) -> u64| {
            mb(f.instances.iter().map(|(_, m)| pick(m)).sum::<u64>() / n)
        };
        table.add_row(vec![
            Cell::new(&f.start),
            Cell::new(f.tenants),
            Cell::new(format!("{:.1} s", f.warm_up_secs)),
            Cell::new(avg(|m| m.rss)),
            Cell::new(avg(|m| m.pss)),
            Cell::new(mb(f
                .instances
                .iter()
                .map(|(_, m)| m.uss)
                .max()
                .unwrap_or(0))),
            Cell::new(f.fork_server.map_or("-".into(), |s| mb(s.pss))),
            Cell::new(format!("{:.1} s", f.recovery_secs)),
        ]);
    }
    table.to_string()
}

/// The gateway benchmark: each path's latency and throughput, what the proxies add, the targets.
pub fn gateway_bench_table(report: &crate::gateway_bench::GatewayBenchReport) -> String {
    let mut rows = table(&[
        "path", "clients", "requests", "errors", "p50", "p99", "req/s",
    ]);
    for r in &report.rows {
        rows.add_row(vec![
            Cell::new(&r.path),
            Cell::new(r.clients),
            Cell::new(r.requests),
            Cell::new(r.errors),
            Cell::new(format!("{:.3} ms", r.p50_ms)),
            Cell::new(format!("{:.3} ms", r.p99_ms)),
            Cell::new(format!("{:.0}", r.rps)),
        ]);
    }
    let mut added = table(&[
        "through",
        "clients",
        "added p50",
        "added p99",
        "req/s vs nginx",
    ]);
    for a in &report.added {
        added.add_row(vec![
            Cell::new(&a.path),
            Cell::new(a.clients),
            Cell::new(format!("{:+.3} ms", a.added_p50_ms)),
            Cell::new(format!("{:+.3} ms", a.added_p99_ms)),
            Cell::new(a.rps_vs_nginx.map_or("-".into(), |r| format!("{:.2}×", r))),
        ]);
    }
    let mut targets = table(&["target", "value", "bound", "result"]);
    for t in &report.targets {
        targets.add_row(vec![
            Cell::new(&t.name),
            Cell::new(format!("{:.3}", t.value)),
            Cell::new(&t.limit),
            Cell::new(match t.met {
                Some(true) => "met",
                Some(false) => "MISSED",
                None => "not measured",
            }),
        ]);
    }
    let mut out = format!("{rows}\n{added}\n");
    if let Some(ui) = &report.ui {
        let mut page = table(&["UI page load (cold)", "loads", "requests", "median"]);
        page.add_row(vec![
            Cell::new("direct"),
            Cell::new(ui.loads),
            Cell::new(ui.requests_per_load),
            Cell::new(format!("{:.0} ms", ui.direct_ms)),
        ]);
        page.add_row(vec![
            Cell::new("through the gateway"),
            Cell::new(ui.loads),
            Cell::new(ui.requests_per_load),
            Cell::new(format!("{:.0} ms", ui.gateway_ms)),
        ]);
        out.push_str(&format!("{page}\n"));
    }
    out.push_str(&targets.to_string());
    if let Some(note) = &report.nginx_missing {
        out.push_str(&format!("\nnote: {note}"));
    }
    if let Some(note) = &report.ui_missing {
        out.push_str(&format!("\nnote: UI page load {note}"));
    }
    out
}
