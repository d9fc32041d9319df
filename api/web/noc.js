// The NOC view: what is down now and the province's last hour, refreshed on its own.
// Uses app.js's helpers (el, api, fmt, token, setStatus, qos, PALETTE, inkOf).
"use strict";

const NOC_EVERY_S = (() => {
  const n = Number(new URLSearchParams(location.search).get("refresh"));
  return Number.isFinite(n) && n >= 5 && n <= 3600 ? n : 30;
})();
const MAX_DETAILS = 25; // incidents whose symptoms are fetched, newest first
let NOC_CHART = null;

function when(ms) {
  if (!ms) return "—";
  // Vietnam time, the shift's clock.
  return new Date(ms + 7 * 3600 * 1000).toISOString().slice(0, 16).replace("T", " ") + " (UTC+7)";
}

function duration(s) {
  if (s === null || s === undefined) return "—";
  const m = Math.floor(s / 60), h = Math.floor(m / 60), d = Math.floor(h / 24);
  return d ? d + " ng " + (h % 24) + " h" : h ? h + " h " + (m % 60) + " ph" : m + " ph";
}

function fill(id, rows, empty, cols) {
  const tbody = document.querySelector("#" + id + " tbody");
  tbody.replaceChildren();
  if (!rows.length) {
    const tr = el("tr", null, "empty");
    const td = el("td", empty, "status");
    td.colSpan = cols;
    tr.append(td);
    tbody.append(tr);
  }
  for (const r of rows) tbody.append(r);
}

function tile(id, n) {
  const t = document.getElementById(id);
  t.querySelector(".n").textContent = String(n);
  t.classList.toggle("bad", n > 0);
  t.dataset.count = String(n);
}

async function nocIncidents() {
  const body = await api("/api/v1/incidents?state=active&limit=200");
  const list = body.incidents;
  const details = await Promise.all(list.slice(0, MAX_DETAILS).map((i) =>
    api("/api/v1/incidents/" + i.id).catch(() => null)));
  const rows = [];
  const links = [];
  list.forEach((i, n) => {
    const d = details[n];
    const tr = el("tr", null, i.severity);
    tr.dataset.incident = String(i.id);
    tr.append(el("td", i.id), el("td", i.severity + (i.state === "acknowledged" ? " (đã nhận / ack)" : ""), "sev"));
    const root = el("td");
    root.append(el("strong", i.entity || "—"), el("br"), el("span", i.kind + " · " + i.entity_kind, "en"));
    if (i.labels && i.labels.operator) root.append(el("span", " · " + i.labels.operator, "en"));
    tr.append(root);
    const sym = el("td");
    const active = d ? d.symptoms.filter((s) => s.end_ms === null) : [];
    if (d && active.length) {
      const ul = el("ul", null, "symptoms");
      for (const s of active.slice(0, 8)) ul.append(el("li", s.kind + ": " + s.entity));
      if (active.length > 8) ul.append(el("li", "… +" + (active.length - 8)));
      sym.append(ul);
    } else {
      sym.textContent = i.symptom_count ? i.symptom_count + " triệu chứng / symptoms" : "—";
    }
    tr.append(sym, el("td", when(i.opened_ms)), el("td", duration(i.outage_s), "num"));
    rows.push(tr);
    // Links down: interfaces failing now, as root cause or as a symptom of an open incident.
    if (i.entity_kind === "interface" && i.root_recovered_ms === null) links.push([i.entity, i.id, i.opened_ms]);
    for (const s of active) if (s.entity_kind === "interface") links.push([s.entity, i.id, s.start_ms]);
  });
  fill("noc-incidents-table", rows, "Không có sự cố đang mở / no open incidents", 6);
  const seen = new Set();
  const linkRows = [];
  for (const [entity, id, since] of links) {
    if (seen.has(entity)) continue;
    seen.add(entity);
    const tr = el("tr");
    tr.dataset.link = entity;
    tr.append(el("td", entity), el("td", "#" + id), el("td", when(since)));
    linkRows.push(tr);
  }
  fill("noc-links-table", linkRows, "Không có đường truyền mất / no links down", 3);
  tile("tile-incidents", body.total);
  tile("tile-links", linkRows.length);
}

async function nocDevices() {
  const body = await api("/api/v1/devices?status=down");
  const rows = body.devices.map((d) => {
    const tr = el("tr");
    tr.dataset.device = d.id;
    tr.append(el("td", d.id), el("td", d.kind), el("td", d.operator), el("td", d.commune),
      el("td", when(d.status_since_ms)), el("td", d.last_error || "—"));
    return tr;
  });
  fill("noc-devices-table", rows, "Mọi thiết bị đang hoạt động / every device is up", 6);
  tile("tile-devices", rows.length);
}

async function nocProbes() {
  const body = await api("/api/v1/probes");
  const off = body.probes.filter((p) => p.status === "offline");
  const rows = off.map((p) => {
    const tr = el("tr");
    tr.dataset.probe = p.probe_id;
    tr.append(el("td", p.probe_id), el("td", p.operator), el("td", p.commune), el("td", when(p.last_seen_ms)));
    return tr;
  });
  fill("noc-probes-table", rows, "Mọi đầu đo đang gửi số liệu / every probe is reporting", 4);
  tile("tile-probes", rows.length);
  FLEET = body.probes;
  nocFleet();
}

// The probe fleet: what each agent reports (version, schedule, queue, radio, data used).
let FLEET = [];

function mb(n) {
  return n === null || n === undefined ? "—" : fmt(n / 1e6, 1) + " MB";
}

function nocFleet() {
  const want = document.getElementById("fleet-state").value;
  const rows = FLEET.filter((p) => !want || p.status === want).map((p) => {
    const tr = el("tr", null, p.schedule_state === "refused" ? "bad" : null);
    tr.dataset.probe = p.probe_id;
    const sched = el("td");
    sched.append(el("span", p.schedule_version === null ? "riêng / local" : "v" + p.schedule_version +
      (p.schedule_name ? " " + p.schedule_name : "")), el("span", " · " + p.schedule_state, "en"));
    if (p.schedule_refused_version !== null) {
      sched.append(el("br"), el("span", "từ chối / refused v" + p.schedule_refused_version + ": " +
        (p.schedule_refused_reason || ""), "refused"));
    }
    const clock = p.clock_offset_ms === null ? "—" : fmt(p.clock_offset_ms, 1) + " ms" + (p.clock_synced ? " ✓" : " ✗");
    const radio = p.radio_technology ? p.radio_technology + (p.rsrp_dbm !== null ? " " + fmt(p.rsrp_dbm, 0) + " dBm" : "") : "—";
    const data = mb(p.data_used_bytes) + (p.data_budget_bytes !== null ? " / " + mb(p.data_budget_bytes) : "");
    tr.append(el("td", p.probe_id), el("td", p.commune + " · " + p.operator), el("td", p.status),
      el("td", p.agent_version || "—"), sched, el("td", p.queue_batches === null ? "—" : fmt(p.queue_batches, 0), "num"),
      el("td", when(p.last_seen_ms)), el("td", clock, "num"), el("td", radio), el("td", data, "num"));
    return tr;
  });
  fill("noc-fleet-table", rows, "Không có đầu đo / no probes", 10);
}

async function nocRtt() {
  const [step, whole] = await Promise.all([
    qos({ metric: "rtt_ms", stat: "p95", group_by: "operator", step: "5m" }),
    qos({ metric: "rtt_ms", stat: "p95", group_by: "operator", step: "60m" }),
  ]);
  const series = step.series.slice().sort((a, b) => (a.labels.operator || "").localeCompare(b.labels.operator || ""));
  const hour = new Map(whole.series.map((s) => [s.labels.operator, s.points]));
  const rows = series.map((s) => {
    const last = [...s.points].reverse().find((p) => p.value !== null);
    // The current clock hour's p95 from its own merged sketches (p95s of 5-minute steps cannot be averaged).
    const h = hour.get(s.labels.operator) || [];
    const best = h.length ? h[h.length - 1] : null;
    if (best) document.getElementById("noc-hour").textContent = when(best.ts_ms).slice(11, 16);
    const tr = el("tr");
    tr.dataset.operator = s.labels.operator;
    tr.append(el("td", s.labels.operator), el("td", last ? fmt(last.value, 1) + " ms" : "—", "num"),
      el("td", best && best.value !== null ? fmt(best.value, 1) + " ms" : "—", "num"),
      el("td", fmt(s.points.reduce((a, p) => a + p.count, 0), 0), "num"));
    return tr;
  });
  fill("noc-rtt-table", rows, "Không có số liệu RTT trong giờ qua / no RTT data in the last hour", 4);
  const box = document.getElementById("noc-rtt-chart");
  const xs = series.length ? series[0].points.map((p) => p.ts_ms / 1000) : [];
  const data = [xs, ...series.map((s) => s.points.map((p) => p.value))];
  const points = series.reduce((a, s) => a + s.points.filter((p) => p.value !== null).length, 0);
  box.dataset.series = String(series.length);
  box.dataset.points = String(points);
  if (NOC_CHART) { NOC_CHART.destroy(); NOC_CHART = null; }
  box.replaceChildren();
  if (!points) { box.append(el("p", "Không có số liệu / no data", "status")); box.dataset.ink = "0"; return; }
  NOC_CHART = new uPlot({
    width: Math.max(300, box.clientWidth || 800),
    height: 220,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Asia/Ho_Chi_Minh"),
    series: [{}, ...series.map((s, i) => ({ label: s.labels.operator, stroke: PALETTE[i % PALETTE.length], width: 2,
      points: { show: true, size: 5 }, value: (u, v) => (v === null ? "—" : fmt(v, 1) + " ms") }))],
    axes: [{ font: "11px sans-serif", values: [[60, "{HH}:{mm}", "\n{D}/{M}/{YYYY}", null, "\n{D}/{M}", null, null, null, 1]] },
      { size: 48, font: "11px sans-serif", label: "ms" }],
    hooks: { draw: [(u) => { box.dataset.ink = String(inkOf(u.ctx.canvas)); }] },
  }, data, box);
}

async function nocRefresh() {
  const parts = [["devices", nocDevices()], ["incidents", nocIncidents()], ["probes", nocProbes()], ["rtt", nocRtt()]];
  const errors = [];
  for (const [name, p] of parts) {
    try { await p; } catch (e) { errors.push(name + ": " + e.message); }
  }
  document.getElementById("updated").textContent = new Date(Date.now() + 7 * 3600 * 1000)
    .toISOString().slice(11, 19) + " (UTC+7)";
  setStatus("noc-status", errors.length ? "Lỗi / error — " + errors.join("; ") : "", errors.length > 0);
  document.body.dataset.refreshes = String(Number(document.body.dataset.refreshes || 0) + 1);
}

async function nocMain() {
  document.getElementById("every").textContent = String(NOC_EVERY_S);
  document.getElementById("every-en").textContent = String(NOC_EVERY_S);
  if (!token()) {
    const form = document.getElementById("login");
    form.hidden = false;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("netqos-token", document.getElementById("token").value);
      location.reload();
    });
    setStatus("noc-status", "Cần khóa truy cập / an API key is needed", true);
    document.body.dataset.state = "ready";
    return;
  }
  document.getElementById("fleet-state").addEventListener("change", nocFleet);
  await nocRefresh();
  document.body.dataset.state = "ready";
  setInterval(nocRefresh, NOC_EVERY_S * 1000);
}

nocMain();
