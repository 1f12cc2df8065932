// The langflow-infra dashboard page: one event stream feeds every page; nothing is fetched from
// anywhere but this dashboard. The run's token arrives in the URL fragment (never sent to a
// server), is kept in this origin's sessionStorage and goes with every request as a header.
"use strict";

const TOKEN = (() => {
  const match = location.hash.match(/token=([0-9a-f]+)/);
  if (match) {
    sessionStorage.setItem("dashboard-token", match[1]);
    history.replaceState(null, "", location.pathname + "#services");
  }
  return sessionStorage.getItem("dashboard-token") || "";
})();
const AUTH = { "X-Dashboard-Token": TOKEN };
const COLORS = ["#0969da", "#cf222e", "#1a7f37", "#9a6700", "#8250df", "#bf3989", "#1b7c83", "#953800",
  "#6e7781", "#0550ae", "#a40e26", "#116329"];
const MAX_LOG_LINES = 2000;
const MAX_REQUESTS = 200;

const view = { services: null, tenants: null, logs: [], requests: [], plots: null, reports: [], job: null };

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function mb(bytes) { return bytes === null || bytes === undefined ? "–" : (bytes / 1048576).toFixed(0) + " MB"; }
function size(bytes) {
  if (bytes === null || bytes === undefined) return "–";
  if (bytes < 1024) return bytes + " B";
  if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " KiB";
  return (bytes / 1048576).toFixed(1) + " MiB";
}
function duration(secs) {
  if (secs === null || secs === undefined) return "–";
  if (secs < 60) return secs + " s";
  if (secs < 3600) return Math.floor(secs / 60) + " min " + (secs % 60) + " s";
  return Math.floor(secs / 3600) + " h " + Math.floor((secs % 3600) / 60) + " min";
}

// ---- tabs (hash navigation: no reload) ----
function showTab() {
  const name = (location.hash || "#services").slice(1);
  for (const page of document.querySelectorAll(".page")) page.classList.toggle("active", page.id === "page-" + name);
  for (const link of document.querySelectorAll("#tabs a")) link.classList.toggle("active", link.getAttribute("href") === "#" + name);
  if (name === "plots") renderPlots();
  if (name === "logs") { pendingLines = []; renderLogs(); renderRequests(); }
}
window.addEventListener("hashchange", showTab);

// ---- services ----
function renderServices() {
  const data = view.services;
  if (!data || !data.services) return;
  const rows = data.services;
  const bad = rows.filter((s) => s.state !== "healthy").length;
  $("summary").textContent = `${data.runtime} runtime · ${data.emulator} · ${rows.length} services` +
    (bad ? ` · ${bad} not healthy` : " · all healthy");
  const body = $("services-table").tBodies[0];
  body.replaceChildren(...rows.map((s) => el("tr", { "data-service": s.name, "data-state": s.state },
    el("td", {}, s.name),
    el("td", { class: "state state-" + s.state }, s.state),
    el("td", { class: "num" }, s.restarts + (s.last_exit ? " (" + s.last_exit + ")" : "")),
    el("td", { class: "num" }, mb(s.rss)),
    el("td", { class: "num" }, mb(s.pss)),
    el("td", { class: "num" }, mb(s.uss)),
    el("td", {}, s.runtime),
    el("td", {}, s.container ? s.container.id + " " + s.container.image : (s.pid ? "pid " + s.pid : "–")),
    el("td", { class: "num" }, s.port || "–"),
    el("td", { class: "num" }, duration(s.uptime_secs)),
    el("td", { class: "detail" }, s.detail || ""))));
  fillSelect($("restart-service"), rows.map((s) => s.name).filter((n) => n !== "supervisor" && n !== "dashboard"));
  const logSelect = $("log-service");
  const current = logSelect.value;
  fillSelect(logSelect, rows.map((s) => s.name), "all services (merged)");
  logSelect.value = current;
}

function fillSelect(select, values, emptyLabel) {
  const wanted = (emptyLabel !== undefined ? [""] : []).concat(values);
  const have = Array.from(select.options).map((o) => o.value);
  if (have.join("\n") === wanted.join("\n")) return;
  const keep = select.value;
  select.replaceChildren(...wanted.map((v) => el("option", { value: v }, v === "" ? emptyLabel : v)));
  if (wanted.includes(keep)) select.value = keep;
}

// ---- tenants ----
function renderTenants() {
  const data = view.tenants;
  if (!data) return;
  $("tenants-note").textContent = data.error ? data.error : "";
  const tenants = data.tenants || [];
  $("tenants-table").tBodies[0].replaceChildren(...tenants.map((t) => el("tr", { "data-tenant": t.prefix },
    el("td", {}, t.prefix),
    el("td", {}, /^https?:\/\//.test(t.url || "") ? el("a", { href: t.url, target: "_blank", rel: "noopener" }, t.url) : "–"),
    el("td", {}, t.schema),
    el("td", { class: "num" }, t.users),
    el("td", {}, t.revision || "–"),
    el("td", { class: "num" }, t.rows ?? "–"),
    el("td", { class: "num" }, t.objects ?? "–"),
    el("td", { class: "num" }, size(t.object_bytes)),
    el("td", {}, t.instance))));
  const schemas = tenants.map((t) => t.schema);
  fillSelect($("reset-tenant"), schemas);
  fillSelect($("export-tenant"), schemas);
}

// ---- logs ----
const LEVELS = { error: 0, warn: 1, info: 2, debug: 3 };
function logMatches(line) {
  const service = $("log-service").value;
  const tenant = $("log-tenant").value.trim();
  const level = $("log-level").value;
  const text = $("log-text").value;
  if (service && line.service !== service) return false;
  if (tenant && line.tenant !== tenant) return false;
  if (level && LEVELS[line.level] > LEVELS[level]) return false;
  if (text && !line.text.includes(text)) return false;
  return true;
}
function logNode(line) {
  return el("div", { class: "line lvl-" + line.level, "data-seq": line.seq },
    el("span", { class: "svc" }, line.service.padStart(12) + " | "), line.text);
}
function renderLogs() {
  if (!logsVisible()) return;
  pendingLines = []; // drawn below with everything else
  const pane = $("log-view");
  pane.replaceChildren(...view.logs.filter(logMatches).slice(-800).map(logNode));
  if ($("log-follow").checked) pane.scrollTop = pane.scrollHeight;
}
// New lines are drawn at most twice a second, and only while the Logs page shows: a page left
// open costs the machine (and so the tenants) as little as it can.
let pendingLines = [];
let logsDirty = false;
let flushTimer = null;
function logsVisible() { return $("page-logs").classList.contains("active"); }
function appendLogs(lines) {
  view.logs.push(...lines);
  if (view.logs.length > MAX_LOG_LINES) view.logs.splice(0, view.logs.length - MAX_LOG_LINES);
  pendingLines.push(...lines);
  scheduleFlush();
}
function scheduleFlush() {
  if (flushTimer === null) flushTimer = setTimeout(flushLogs, 500);
}
function flushLogs() {
  flushTimer = null;
  if (!logsVisible()) return;
  const lines = pendingLines;
  pendingLines = [];
  if ($("log-follow").checked && lines.length) {
    const pane = $("log-view");
    pane.append(...lines.filter(logMatches).map(logNode));
    while (pane.childElementCount > 800) pane.firstElementChild.remove();
    pane.scrollTop = pane.scrollHeight;
  }
  if (logsDirty) { logsDirty = false; renderRequests(); }
}
function requestMatches(r) {
  const tenant = $("log-tenant").value.trim();
  const text = $("log-text").value;
  return (!tenant || r.tenant === tenant) && (!text || r.path.includes(text));
}
function renderRequests() {
  if (!logsVisible()) { logsDirty = true; return; }
  $("requests-table").tBodies[0].replaceChildren(...view.requests.filter(requestMatches).slice(-50).reverse().map((r) =>
    el("tr", { "data-path": r.path },
      el("td", {}, r.time), el("td", {}, r.method), el("td", {}, r.path), el("td", {}, r.tenant),
      el("td", { class: "num" + (r.status >= 500 ? " state-crashed" : "") }, r.status),
      el("td", { class: "num" }, r.ms.toFixed(1)))));
}
for (const id of ["log-service", "log-tenant", "log-level", "log-text", "log-follow"]) {
  $(id).addEventListener("input", () => { renderLogs(); renderRequests(); });
}

// ---- plots (SVG, drawn here: no chart library) ----
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}
function lineChart(container, series, unit) {
  const width = 900, height = 220, left = 50, bottom = 20;
  const all = series.flatMap((s) => s.points);
  if (!all.length) { container.replaceChildren(el("p", { class: "note" }, "no data yet")); return; }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]), t0 + 1);
  const vmax = Math.max(...all.map((p) => p[1]), 1e-9) * 1.1;
  const x = (t) => left + (t - t0) / (t1 - t0) * (width - left - 10);
  const y = (v) => (height - bottom) - v / vmax * (height - bottom - 10);
  const chart = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, role: "img" });
  chart.append(svg("line", { x1: left, y1: height - bottom, x2: width - 10, y2: height - bottom, class: "axis" }));
  chart.append(svg("line", { x1: left, y1: 10, x2: left, y2: height - bottom, class: "axis" }));
  for (const frac of [0, 0.5, 1]) {
    const label = svg("text", { x: 4, y: y(vmax / 1.1 * frac) + 3 });
    label.textContent = (vmax / 1.1 * frac).toFixed(vmax < 10 ? 2 : 0) + unit;
    chart.append(label);
  }
  const span = svg("text", { x: width - 150, y: height - 5 });
  span.textContent = `last ${Math.round((t1 - t0) / 60000)} min`;
  chart.append(span);
  const legend = el("div", { class: "legend" });
  series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length];
    const points = s.points.map((p) => `${x(p[0]).toFixed(1)},${y(p[1]).toFixed(1)}`).join(" ");
    chart.append(svg("polyline", { points, fill: "none", stroke: color, "stroke-width": 1.5, "data-series": s.name }));
    const item = el("span", {}, s.name);
    item.style.color = color;
    legend.append(item);
  });
  container.replaceChildren(chart, legend);
}
function renderPlots() {
  const plots = view.plots;
  if (!plots || !$("page-plots").classList.contains("active")) return;
  lineChart($("memory-plot"), Object.entries(plots.memory || {}).map(([name, pts]) =>
    ({ name, points: pts.map((p) => [p[0], p[1] / 1048576]) })), "");
  // Tenants of the run only (the gateway also logs the prefix of a path no tenant has).
  const known = new Set(((view.tenants && view.tenants.tenants) || []).map((t) => t.prefix));
  const latency = Object.entries(plots.latency || {}).filter(([name]) => !known.size || known.has(name));
  lineChart($("latency-plot"), latency.map(([name, buckets]) =>
    ({ name, points: buckets.map((b) => [b.t, b.n ? b.sum_ms / b.n : 0]) })), "");
  lineChart($("errors-plot"), latency.map(([name, buckets]) =>
    ({ name, points: buckets.map((b) => [b.t, b.n ? b.errors / b.n : 0]) })), "");
}

// ---- reports ----
function renderReports() {
  const list = $("reports-list");
  if (!view.reports.length) {
    list.replaceChildren(el("p", { class: "note" },
      "no results yet: `cargo xtask e2e`, `chaos`, `validate` and `bench` keep their last result here"));
    return;
  }
  list.replaceChildren(...view.reports.map((r) => {
    const rows = reportRows(r.report);
    const box = el("div", { class: "report", "data-report": r.kind },
      el("h2", {}, `${r.kind} — `, el("span", { class: r.passed ? "outcome-pass" : "outcome-fail" }, r.passed ? "passed" : "failed"),
        ` — ${new Date(r.finished_at * 1000).toISOString().replace("T", " ").slice(0, 19)} UTC`));
    if (rows.length) {
      const counts = {};
      for (const row of rows) counts[row.outcome] = (counts[row.outcome] || 0) + 1;
      box.append(el("p", {}, Object.entries(counts).map(([k, v]) => `${v} ${k}`).join(", ")));
      box.append(el("table", {}, el("thead", {}, el("tr", {}, el("th", {}, "check"), el("th", {}, "outcome"), el("th", {}, "evidence"))),
        el("tbody", {}, ...rows.map((row) => el("tr", {},
          el("td", {}, row.name), el("td", { class: "outcome-" + row.outcome }, row.outcome),
          el("td", { class: "detail" }, row.evidence || ""))))));
    } else {
      box.append(el("pre", { class: "result" }, JSON.stringify(r.report, null, 1).slice(0, 4000)));
    }
    for (let n = 0; n < (r.screenshots || 0); n++) {
      const img = el("img", { alt: "screenshot of a failed check" });
      box.append(img);
      fetch(`/api/screenshot?report=${encodeURIComponent(r.kind)}&n=${n}`, { headers: AUTH })
        .then((answer) => answer.ok ? answer.blob() : null)
        .then((blob) => { if (blob) img.src = URL.createObjectURL(blob); });
    }
    return box;
  }));
}
// Rows of the reports the commands write: e2e/chaos results, validate findings, bench measurements.
function reportRows(report) {
  if (!report || typeof report !== "object") return [];
  const rows = report.results || report.checks || report.rows || report.findings || report.measurements;
  if (!Array.isArray(rows)) return [];
  return rows.map((row) => ({
    name: [row.check || row.name || row.rule || row.id, row.pair || row.resource || row.scenario].filter(Boolean).join(" "),
    outcome: String(row.outcome || row.severity || row.level || (row.passed === false ? "fail" : row.passed ? "pass" : "")).toLowerCase(),
    evidence: row.evidence || row.message || row.detail || (row.value !== undefined ? String(row.value) : ""),
  }));
}

// ---- actions ----
async function act(action, body) {
  const result = $("action-result");
  result.className = "result";
  result.textContent = `${action}: working…`;
  try {
    const response = await fetch("/api/actions/" + action, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...AUTH },
      body: JSON.stringify(body || {}),
    });
    const answer = await response.json();
    if (!answer.ok) throw new Error(answer.error || response.status);
    result.dataset.action = action;
    result.textContent = describe(action, answer.result);
    return answer.result;
  } catch (e) {
    result.className = "result error";
    result.textContent = `${action} failed: ${e.message}`;
    return null;
  }
}
function describe(action, r) {
  switch (action) {
    case "restart": return `restarted ${r.service}: ready again in ${r.ready_secs.toFixed(1)} s`;
    case "reset-password": return `new password of ${r.username} in ${r.schema} (shown once, not kept):\n${r.password}`;
    case "export": return `exported to ${r.bundle} (${size(r.bytes)})`;
    case "e2e": return "the e2e suite is running: its rows appear above as they are judged";
    default: return JSON.stringify(r);
  }
}
$("restart-button").addEventListener("click", () => act("restart", { service: $("restart-service").value }));
$("reset-button").addEventListener("click", () => act("reset-password", { schema: $("reset-tenant").value, username: $("reset-username").value.trim() }));
$("export-button").addEventListener("click", () => act("export", { schema: $("export-tenant").value }));
$("e2e-button").addEventListener("click", () => act("e2e"));

function renderJob() {
  const job = view.job;
  if (!job) return;
  const rows = job.rows || [];
  const status = job.finished ? (job.error ? "failed: " + job.error : job.passed ? "passed" : "failed")
    : `running… ${rows.length} checks so far`;
  $("e2e-status").textContent = status;
  $("e2e-status").dataset.finished = job.finished ? "1" : "";
  $("e2e-table").tBodies[0].replaceChildren(...rows.map((row) => el("tr", {},
    el("td", {}, row.check), el("td", {}, row.pair), el("td", { class: "outcome-" + row.outcome }, row.outcome),
    el("td", { class: "num" }, row.ms.toFixed(0)), el("td", { class: "detail" }, row.evidence || ""))));
}

// ---- the event stream ----
function applySnapshot(s) {
  view.services = s.services; view.tenants = s.tenants; view.logs = s.logs || [];
  view.requests = s.requests || []; view.plots = s.plots; view.reports = s.reports || []; view.job = s.job;
  renderServices(); renderTenants(); renderLogs(); renderRequests(); renderPlots(); renderReports(); renderJob();
  if (!window.dashboardReadyMs) {
    window.dashboardReadyMs = performance.now();
    document.body.dataset.ready = "1";
  }
}
// Server-sent events read with fetch (EventSource cannot send the token header).
const HANDLERS = {
  hello: (data) => applySnapshot(data),
  lagged: () => refresh(),
  services: (data) => { view.services = data; renderServices(); },
  tenants: (data) => { view.tenants = data; renderTenants(); },
  logs: (data) => appendLogs(data),
  requests: (data) => {
    view.requests.push(...data);
    if (view.requests.length > MAX_REQUESTS) view.requests.splice(0, view.requests.length - MAX_REQUESTS);
    logsDirty = true;
    scheduleFlush();
  },
  plots: (data) => { view.plots = data; renderPlots(); },
  reports: (data) => { view.reports = data; renderReports(); },
  job: (data) => {
    view.job = data;
    renderJob();
    if (data.finished) refresh();
  },
};
function refresh() {
  fetch("/api/snapshot", { headers: AUTH }).then((r) => r.json()).then(applySnapshot).catch(() => {});
}
function setConnection(live, text) {
  $("conn").textContent = text;
  $("conn").className = live ? "conn" : "conn down";
}
async function connect() {
  if (!TOKEN) {
    setConnection(false, "no token: open the URL `cargo xtask up` printed");
    return;
  }
  for (;;) {
    try {
      const answer = await fetch("/api/events", { headers: AUTH, cache: "no-store" });
      if (answer.status === 401) {
        setConnection(false, "token refused: open the URL `cargo xtask status` prints");
        return;
      }
      if (!answer.ok) throw new Error(answer.status);
      setConnection(true, "live");
      const reader = answer.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          let event = "message", data = "";
          for (const line of frame.split("\n")) {
            if (line.startsWith("event: ")) event = line.slice(7);
            else if (line.startsWith("data: ")) data += line.slice(6);
          }
          if (data && HANDLERS[event]) HANDLERS[event](JSON.parse(data));
        }
      }
    } catch (e) {
      // The dashboard restarted or the connection dropped: try again.
    }
    setConnection(false, "reconnecting…");
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
}
showTab();
connect();
