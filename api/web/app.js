// The department's page: reads only the public API with the key the user gives.
"use strict";

const STATUS = {
  pass: "Đạt / pass",
  fail: "Không đạt / fail",
  insufficient_data: "Chưa đủ mẫu / insufficient data",
  not_measured: "Chưa đo / not measured",
  no_limit: "Chưa có ngưỡng / no limit",
  met: "Đạt / met",
  not_met: "Chưa đạt / not met",
  no_data: "Chưa có số liệu / no data",
  not_judged: "Không đánh giá / not judged",
  incomplete: "Chưa đủ báo cáo / incomplete",
  inconsistent: "Số liệu mâu thuẫn / inconsistent",
};
const UNVERIFIED = "Chưa kiểm chứng / unverified";
const APPROXIMATE = "xấp xỉ / approximate";
const APPROXIMATE_MEANING = "≈ Xấp xỉ / approximate — giá trị không chính xác tuyệt đối (tỷ lệ từ bản phác phân vị,"
  + " mẫu quanh ngưỡng tính là không đạt: cận dưới; hoặc trung vị ước lượng, sai số khoảng 1 %) / the value is not"
  + " exact (a share from the quantile sketch with the threshold's bucket counted as failing: a lower bound;"
  + " or a median estimated from it, within about 1 %)";
const NOT_CHECKED = "Chưa kiểm tra / not checked";
// The Vietnamese of the method conditions listed as not checked: the same table as
// compliance/report.py's NOT_CHECKED_VI (a test keeps them equal); untranslated ones show in English.
const NOT_CHECKED_VI = {
  "measured to the regulation's test server": "đo tới máy chủ đo kiểm theo quy chuẩn",
  "samples taken outdoors while moving (the regulation's drive test)":
    "mẫu đo ngoài trời khi di chuyển (đo kiểm lưu động theo quy chuẩn)",
  "samples spread over all hours of the day": "mẫu phân bố trên mọi giờ trong ngày",
  "the 1,500 samples split 500 indoor, 500 outdoor fixed, 500 moving":
    "1.500 mẫu chia 500 trong nhà, 500 ngoài trời cố định, 500 di động",
  "samples spread over the hours of the day (the hour-level rollups of this period are no longer kept)":
    "mẫu phân bố trên các giờ trong ngày (số liệu tổng hợp theo giờ của kỳ này không còn được lưu)",
};

function notChecked(c) {
  return NOT_CHECKED_VI[c] ? NOT_CHECKED_VI[c] + " / " + c : c;
}

function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}

// One formatter per precision: toLocaleString with options builds a new one on every call,
// which made drawing the page's few thousand numbers take a visible fraction of a second.
const FORMATTERS = {};

function fmt(v, digits) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  const d = digits === undefined ? 2 : digits;
  if (!FORMATTERS[d]) FORMATTERS[d] = new Intl.NumberFormat("vi-VN", { maximumFractionDigits: d });
  return FORMATTERS[d].format(v);
}

function token() {
  const m = /(?:^|&)token=([^&]+)/.exec(location.hash.slice(1));
  if (m) {
    sessionStorage.setItem("netqos-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
  return sessionStorage.getItem("netqos-token");
}

async function api(path) {
  const r = await fetch(path, { headers: { Authorization: "Bearer " + token() } });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (!r.ok) {
    const why = body && typeof body.detail === "string" ? body.detail : r.statusText;
    const err = new Error("HTTP " + r.status + ": " + why);
    err.status = r.status;
    throw err;
  }
  return body;
}

function setStatus(id, text, isError) {
  const p = document.getElementById(id);
  p.textContent = text;
  p.className = "status" + (isError ? " error" : "");
  p.hidden = !text;
}

function defaultPeriod() {
  const now = new Date(Date.now() + 7 * 3600 * 1000); // Vietnam time
  return now.getUTCFullYear() + "-Q" + (Math.floor(now.getUTCMonth() / 3) + 1);
}

async function loadKpi(year) {
  const body = await api("/api/v1/kpi" + (year ? "?year=" + encodeURIComponent(year) : ""));
  const tbody = document.querySelector("#kpi-table tbody");
  tbody.replaceChildren();
  for (const k of body.indicators) {
    const tr = el("tr", null, k.status);
    tr.dataset.kpi = k.id;
    tr.append(el("td", k.number));
    const name = el("td", k.name_vi);
    name.append(el("br"), el("span", k.name_en, "en"));
    tr.append(name, el("td", fmt(k.target) + " " + k.unit, "num"));
    // A value held back says why in words (incomplete / inconsistent), never a bare "no data".
    const value = el("td", null, "num");
    value.append(el("span", k.value === null ? "—" : fmt(k.value) + " " + k.unit));
    if (k.value === null || k.status === "incomplete" || k.status === "inconsistent") {
      value.append(el("br"), el("span", STATUS[k.status] || k.status, "kpi-status"));
    }
    tr.dataset.status = k.status;
    tr.append(value);
    const prog = el("td");
    const ratio = k.progress_ratio === null ? 0 : Math.max(0, Math.min(1, k.progress_ratio));
    const bar = el("span", null, "bar " + (ratio >= 1 ? "" : ratio >= 0.7 ? "mid" : "low"));
    const fill = el("span");
    fill.style.width = Math.round(ratio * 100) + "%";
    bar.append(fill);
    prog.append(bar, el("span", " " + (k.progress_ratio === null ? "—" : fmt(100 * k.progress_ratio, 0) + " %")));
    tr.append(prog);
    const src = el("td", k.source);
    src.title = k.formula;
    if (k.reports && k.reports.length) {
      // Which report versions the value used, so a signed figure can be traced to its uploads.
      const used = el("div", "Báo cáo đã dùng / reports used: ", "kpi-reports");
      used.append(el("span", k.reports.map((r) => r.kind + (r.operator ? " " + r.operator : "")
        + " v" + r.version + " (#" + r.report_id + ")").filter((x, i, a) => a.indexOf(x) === i).join(", ")));
      src.append(used);
    }
    if (k.missing && k.missing.length) {
      const ul = el("ul", null, "kpi-missing");
      for (const m of k.missing) ul.append(el("li", m));
      // With a value (met / not met) these are caveats; without one, why it is held back.
      const title = k.status === "met" || k.status === "not_met"
        ? "Lưu ý / notes:" : "Thiếu hoặc chưa khớp / missing or mismatched:";
      src.append(el("div", title, "kpi-missing-title"), ul);
    }
    tr.append(src);
    tbody.append(tr);
  }
  document.getElementById("kpi-table").hidden = false;
  setStatus("kpi-status", body.reference + " — " + body.year + (body.inventory_note ? " — " + body.inventory_note : ""));
}

let COMMUNES = []; // from GET /api/v1/communes: code, name, lat, lon

async function loadCommunes() {
  const body = await api("/api/v1/communes");
  COMMUNES = body.communes;
  const sel = document.querySelector("#filters select[name=commune]");
  for (const c of body.communes) {
    const o = el("option", c.name + " (" + c.code + ")");
    o.value = c.code;
    sel.append(o);
  }
}

let LAST_COMPLIANCE = null;
let COMMUNES_READY = Promise.resolve();

async function loadCompliance(f) {
  const q = new URLSearchParams({ period: f.period });
  for (const k of ["technology", "operator", "commune"]) if (f[k]) q.set(k, f[k]);
  setStatus("compliance-status", "Đang tải… / Loading…");
  const body = await api("/api/v1/compliance?" + q.toString());
  LAST_COMPLIANCE = body;
  // The province view first, shown before the long table is built below it.
  await COMMUNES_READY;
  drawOverview(body, body.rows.filter((r) => !f.status || r.status === f.status));
  // Let the browser paint it (the next frame; a frame may never come in a headless run with
  // virtual time, hence the timer).
  await new Promise((resolve) => {
    requestAnimationFrame(() => setTimeout(resolve, 0));
    setTimeout(resolve, 50);
  });
  // Time from navigation to a painted province view (map and matrix), read by bench/page.py.
  if (!document.body.dataset.overviewMs) document.body.dataset.overviewMs = String(Math.round(performance.now()));
  const tbody = document.querySelector("#compliance-table tbody");
  tbody.replaceChildren();
  const rows = body.rows.filter((r) => !f.status || r.status === f.status);
  for (const r of rows) {
    const tr = el("tr", null, r.status);
    tr.dataset.row = [r.operator, r.commune, r.technology, r.indicator].join("|");
    tr.append(el("td", r.operator), el("td", (r.commune_name || "") + " (" + r.commune + ")"), el("td", r.technology));
    const name = el("td", r.name_vi);
    name.append(el("br"), el("span", r.name_en, "en"));
    name.title = r.note;
    tr.append(name);
    const value = el("td", (r.approximate ? "≈ " : "") + fmt(r.value) + " " + r.unit, "num");
    value.dataset.approximate = r.approximate ? "true" : "false";
    if (r.approximate) value.append(el("br"), el("span", APPROXIMATE, "approx"));
    tr.append(value);
    tr.append(el("td", r.op + " " + fmt(r.limit) + " " + r.unit, "num"));
    tr.append(el("td", fmt(r.sample_count, 0) + " / " + fmt(r.min_samples, 0), "num"));
    tr.append(el("td", STATUS[r.status] || r.status, "result"));
    // Our interpretation (or example data) is said on the row itself, with what it rests on.
    tr.dataset.unverified = r.unverified ? "true" : "false";
    const note = el("td", null, "note");
    if (r.unverified) note.append(el("span", UNVERIFIED, "unverified"), el("br"));
    if (r.note) note.append(el("span", r.note));
    if (r.not_checked && r.not_checked.length) {
      // The regulation's method conditions this verdict does not vouch for.
      const ul = el("ul", null, "not-checked");
      for (const c of r.not_checked) ul.append(el("li", notChecked(c)));
      note.append(el("br"), el("span", NOT_CHECKED + ":", "not-checked-title"), ul);
    }
    tr.append(note);
    tbody.append(tr);
  }
  document.getElementById("compliance-table").hidden = rows.length === 0;
  const caveats = document.getElementById("compliance-caveats");
  caveats.replaceChildren();
  for (const [k, why] of Object.entries(body.declared_speeds || {})) {
    if (k === "version" || k === "source") continue;
    const li = el("li", null, "declared-unverified");
    li.append(el("span", UNVERIFIED, "unverified"), el("span", " — " + k + ": " + why));
    caveats.append(li);
  }
  if (rows.some((r) => r.approximate)) caveats.append(el("li", APPROXIMATE_MEANING, "approximate-legend"));
  if (rows.some((r) => r.not_checked && r.not_checked.length)) {
    caveats.append(el("li", NOT_CHECKED + " — điều kiện phương pháp đo của quy chuẩn mà số liệu không thể hiện"
      + " được / method conditions of the regulation the data cannot show", "not-checked-legend"));
  }
  for (const n of body.not_judged || []) {
    const li = el("li", null, "not-judged");
    li.dataset.technology = n.technology;
    li.append(el("span", STATUS.not_judged, "unverified"), el("span", " — " + n.technology + ": " + n.reason));
    caveats.append(li);
  }
  caveats.hidden = caveats.children.length === 0;
  const profiles = body.profiles.map((p) => p.reference).join(", ");
  setStatus("compliance-status", rows.length
    ? body.period + " — " + profiles + " — " + rows.length + " chỉ tiêu / indicators"
    : body.period + " — không có số liệu / no data");
}

async function loadIncidents() {
  let body;
  try {
    body = await api("/api/v1/incidents?state=open");
  } catch (e) {
    if (e.status === 404) {
      setStatus("incidents-status", "Không có sự cố (chưa có dịch vụ sự cố) / no incidents (the incidents service is not available: " + e.message + ")");
      return;
    }
    throw e;
  }
  const list = Array.isArray(body) ? body : (body && (body.incidents || body.items)) || [];
  const tbody = document.querySelector("#incidents-table tbody");
  tbody.replaceChildren();
  for (const i of list) {
    const tr = el("tr");
    const since = i.opened_ms || i.opened_at_ms || i.start_ms;
    tr.append(el("td", i.id), el("td", i.kind), el("td", i.entity), el("td", i.severity),
      el("td", since ? new Date(since).toISOString().slice(0, 16).replace("T", " ") + " UTC" : (i.opened || "—")));
    tbody.append(tr);
  }
  document.getElementById("incidents-table").hidden = list.length === 0;
  setStatus("incidents-status", list.length ? "" : "Không có sự cố đang mở / no open incidents");
}

function filtersFromUrl() {
  const q = new URLSearchParams(location.search);
  const f = { period: q.get("period") || defaultPeriod() };
  for (const k of ["technology", "operator", "commune", "status", "year"]) f[k] = q.get(k) || "";
  const form = document.getElementById("filters");
  for (const k of ["period", "technology", "operator", "status"]) form.elements[k].value = f[k];
  return f;
}

async function settle(id, promise) {
  try { await promise; } catch (e) { setStatus(id, "Lỗi / error: " + e.message, true); }
}

/* ---------- the province at a glance: compliance matrix and map ---------- */

// Worst first: one failing operator makes the commune's cell fail.
const RANK = { fail: 3, insufficient_data: 2, pass: 1 };
const SYMBOL = { fail: "✗", insufficient_data: "…", pass: "✓", none: "—" };
const SVG_NS = "http://www.w3.org/2000/svg";

function svg(tag, attrs, text) {
  const e = document.createElementNS(SVG_NS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// One verdict from many rows (operators, technologies): the worst judged status, unverified if
// any judged row rests on our interpretation; "none" when no row is judged (not measured, no limit).
function verdict(rows) {
  let status = "none";
  let unverified = false;
  for (const r of rows) {
    if (!RANK[r.status]) continue;
    if (status === "none" || RANK[r.status] > RANK[status]) status = r.status;
    if (r.unverified) unverified = true;
  }
  return { status, unverified };
}

function rowLine(r) {
  return r.operator + " " + r.technology + ": " + (r.approximate ? "≈ " : "") + fmt(r.value) + " " + r.unit
    + " (" + r.op + " " + fmt(r.limit) + ") → " + (STATUS[r.status] || r.status) + (r.unverified ? " — " + UNVERIFIED : "");
}

function indicatorsOf(rows) {
  const out = new Map();
  for (const r of rows) if (!out.has(r.indicator)) out.set(r.indicator, r);
  return out;
}

function selectCommune(code) {
  const form = document.getElementById("filters");
  form.elements.commune.value = code;
  form.requestSubmit();
}

function drawOverview(body, rows) {
  document.getElementById("overview-period").textContent = "— " + body.period;
  const inds = indicatorsOf(rows);
  const byCommune = new Map();
  for (const r of rows) {
    if (!byCommune.has(r.commune)) byCommune.set(r.commune, []);
    byCommune.get(r.commune).push(r);
  }
  // The matrix: every commune imported (a commune without probes says so), every indicator judged.
  const table = document.getElementById("matrix");
  table.replaceChildren();
  const head = el("tr");
  head.append(el("th", "Xã/phường / Commune"));
  for (const [id, r] of inds) {
    const th = el("th", r.name_vi, "ind");
    th.title = r.name_en + " (" + id + ")";
    th.dataset.indicator = id;
    head.append(th);
  }
  const thead = el("thead");
  thead.append(head);
  const tbody = el("tbody");
  const communes = COMMUNES.length ? COMMUNES : [...byCommune.keys()].map((c) => ({ code: c, name: c }));
  for (const c of communes) {
    const mine = byCommune.get(c.code) || [];
    const tr = el("tr");
    tr.dataset.commune = c.code;
    const name = el("th", c.name, "commune");
    name.title = c.code;
    name.addEventListener("click", () => selectCommune(c.code));
    tr.append(name);
    for (const id of inds.keys()) {
      const cellRows = mine.filter((r) => r.indicator === id);
      const v = verdict(cellRows);
      const td = el("td", SYMBOL[v.status], "cell " + v.status + (v.unverified ? " unverified" : ""));
      td.dataset.status = v.status;
      td.title = c.name + " — " + inds.get(id).name_vi + " / " + inds.get(id).name_en + "\n"
        + (cellRows.length ? cellRows.map(rowLine).join("\n") : "không có số liệu / no data");
      tr.append(td);
    }
    tbody.append(tr);
  }
  table.append(thead, tbody);
  // The map's indicator choice: overall, or one indicator.
  const sel = document.getElementById("map-indicator");
  const keep = sel.value;
  sel.replaceChildren(el("option", "Tổng hợp / overall"));
  sel.firstChild.value = "";
  for (const [id, r] of inds) {
    const o = el("option", r.name_vi + " / " + r.name_en);
    o.value = id;
    sel.append(o);
  }
  sel.value = inds.has(keep) ? keep : "";
  sel.onchange = () => drawMap(byCommune, inds);
  drawMap(byCommune, inds);
}

// A plain equirectangular projection, scaled by cos(latitude): at a province's size the
// distortion is far below what a dot per commune can show.
function drawMap(byCommune, inds) {
  const map = document.getElementById("map");
  map.replaceChildren();
  const W = 420, H = 360, M = 28;
  const pts = COMMUNES.filter((c) => Number.isFinite(c.lat) && Number.isFinite(c.lon));
  const indicator = document.getElementById("map-indicator").value;
  map.append(svg("rect", { x: 0, y: 0, width: W, height: H, class: "map-bg" }));
  if (!pts.length) {
    map.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "map-empty" },
      "Chưa có tọa độ xã / no commune coordinates"));
    return;
  }
  const lat0 = pts.reduce((a, c) => a + c.lat, 0) / pts.length;
  const k = Math.cos((lat0 * Math.PI) / 180);
  const xs = pts.map((c) => c.lon * k), ys = pts.map((c) => c.lat);
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y0 = Math.min(...ys), y1 = Math.max(...ys);
  const span = Math.max(x1 - x0, y1 - y0, 1e-3);
  const scale = Math.min((W - 2 * M) / Math.max(x1 - x0, span * 0.2), (H - 2 * M) / Math.max(y1 - y0, span * 0.2));
  const cx = (W - scale * (x1 - x0)) / 2, cy = (H - scale * (y1 - y0)) / 2;
  const px = (c) => cx + (c.lon * k - x0) * scale, py = (c) => H - cy - (c.lat - y0) * scale;
  // A light graticule every 0.1 degree: a sense of distance without a base map.
  const grid = svg("g", { class: "graticule" });
  for (let lon = Math.ceil((x0 / k - 0.05) * 10) / 10; lon * k <= x1 + 0.05; lon += 0.1) {
    const x = cx + (lon * k - x0) * scale;
    if (x > 0 && x < W) grid.append(svg("line", { x1: x, y1: 0, x2: x, y2: H }));
  }
  for (let lat = Math.ceil((y0 - 0.05) * 10) / 10; lat <= y1 + 0.05; lat += 0.1) {
    const y = H - cy - (lat - y0) * scale;
    if (y > 0 && y < H) grid.append(svg("line", { x1: 0, y1: y, x2: W, y2: y }));
  }
  map.append(grid);
  const info = document.getElementById("map-info") || el("p", "", "hint");
  info.id = "map-info";
  map.after(info);
  const labels = pts.length <= 60;
  const placed = []; // label boxes already drawn: a label that would overlap one is moved or left to the hover
  const place = (c) => {
    const w = c.name.length * 6.3, x = px(c), y = py(c);
    // Beside the dot first (right, then left), then a line lower or higher.
    for (const [right, dy] of [[true, 4], [false, 4], [true, 17], [false, 17], [true, -9], [false, -9],
      [true, 30], [false, 30], [true, -22], [false, -22]]) {
      const box = right ? [x + 12, y + dy - 10, x + 12 + w, y + dy + 2] : [x - 12 - w, y + dy - 10, x - 12, y + dy + 2];
      if (box[0] < 0 || box[2] > W || box[1] < 0 || box[3] > H) continue;
      if (placed.some((b) => box[0] < b[2] && b[0] < box[2] && box[1] < b[3] && b[1] < box[3])) continue;
      placed.push(box);
      return svg("text", { x: (right ? box[0] : box[2]).toFixed(1), y: (y + dy).toFixed(1),
        "text-anchor": right ? "start" : "end" }, c.name);
    }
    return null;
  };
  for (const c of pts) placed.push([px(c) - 9, py(c) - 9, px(c) + 9, py(c) + 9]);
  for (const c of pts) {
    const mine = (byCommune.get(c.code) || []).filter((r) => !indicator || r.indicator === indicator);
    const v = verdict(mine);
    const g = svg("g", { class: "commune " + v.status + (v.unverified ? " unverified" : ""), "data-commune": c.code,
      "data-status": v.status, tabindex: 0 });
    const what = c.name + " (" + c.code + "): " + (v.status === "none" ? "không có đánh giá / not judged"
      : STATUS[v.status]) + (v.unverified ? " — " + UNVERIFIED : "");
    g.append(svg("title", {}, what + (mine.length ? "\n" + mine.map((r) => r.name_vi + " — " + rowLine(r)).slice(0, 12).join("\n") : "")));
    g.append(svg("circle", { cx: px(c).toFixed(1), cy: py(c).toFixed(1), r: 9 }));
    const label = labels ? place(c) : null;
    if (label) g.append(label);
    g.addEventListener("mouseenter", () => { info.textContent = what; });
    g.addEventListener("click", () => selectCommune(c.code));
    map.append(g);
  }
  info.textContent = pts.length + " xã/phường / communes — " + (indicator ? inds.get(indicator).name_vi : "tổng hợp / overall");
}

/* ---------- monthly trends (uPlot) ---------- */

const PALETTE = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#5d4037", "#455a64"];
const CHARTS = {};
let QOS_RUNNING = 0;
const QOS_WAITING = [];

// At most two /qos queries at once: the API allows a key two (api.max_queries_per_key).
async function qos(params) {
  if (QOS_RUNNING >= 2) await new Promise((resolve) => QOS_WAITING.push(resolve));
  QOS_RUNNING++;
  try {
    return await api("/api/v1/qos?" + new URLSearchParams(params).toString());
  } finally {
    QOS_RUNNING--;
    const next = QOS_WAITING.shift();
    if (next) next();
  }
}

// The six Vietnam months ending with the period's last month (never past the current month).
function trendRange(period) {
  const now = new Date(Date.now() + 7 * 3600 * 1000);
  let y = now.getUTCFullYear(), m = now.getUTCMonth() + 1;
  const cur = y * 12 + m;
  let mm = /^(\d{4})-(\d{2})$/.exec(period), qq = /^(\d{4})-Q([1-4])$/.exec(period), yy = /^(\d{4})$/.exec(period);
  if (mm) { y = +mm[1]; m = +mm[2]; } else if (qq) { y = +qq[1]; m = 3 * +qq[2]; } else if (yy) { y = +yy[1]; m = 12; }
  let end = Math.min(y * 12 + m, cur);
  const start = end - 5;
  const iso = (n) => { const yr = Math.floor((n - 1) / 12), mo = ((n - 1) % 12) + 1;
    return yr + "-" + String(mo).padStart(2, "0") + "-01T00:00:00+07:00"; };
  return { from: iso(start), to: iso(end + 1) };
}

function inkOf(canvas) {
  // Non-blank pixels of the plot: proof the lines were drawn, read by the browser tests.
  try {
    const d = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++;
    return n;
  } catch (e) { return -1; }
}

function drawChart(id, resp, scale, limit, limitText, suffix) {
  const fig = document.getElementById(id);
  const box = fig.querySelector(".plot");
  box.replaceChildren();
  if (CHARTS[id]) { CHARTS[id].destroy(); delete CHARTS[id]; }
  const series = resp.series.slice().sort((a, b) => (a.labels.operator || "").localeCompare(b.labels.operator || ""));
  const xs = series.length ? series[0].points.map((p) => p.ts_ms / 1000) : [];
  const data = [xs];
  const opts = [{}];
  let points = 0;
  series.forEach((s, i) => {
    data.push(s.points.map((p) => (p.value === null ? null : p.value * scale)));
    points += s.points.filter((p) => p.value !== null).length;
    opts.push({ label: s.labels.operator || "tất cả / all", stroke: PALETTE[i % PALETTE.length], width: 2,
      points: { show: true, size: 4 }, value: (u, v) => (v === null ? "—" : fmt(v, 1) + suffix) });
  });
  if (limit !== null && xs.length) {
    data.push(xs.map(() => limit));
    opts.push({ label: "Ngưỡng / limit", stroke: "#b71c1c", width: 1.5, dash: [6, 4], points: { show: false },
      value: () => fmt(limit, 1) + suffix });
  }
  fig.querySelector(".limit-note").textContent = limitText;
  fig.dataset.series = String(series.length);
  fig.dataset.points = String(points);
  if (!points) {
    box.append(el("p", "Không có số liệu trong 6 tháng / no data in these 6 months", "status"));
    fig.dataset.ink = "0";
    return;
  }
  const width = Math.max(260, Math.floor(box.clientWidth || fig.clientWidth || 400));
  const plot = new uPlot({
    width,
    height: 210,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Asia/Ho_Chi_Minh"),
    series: opts,
    scales: { x: { time: true }, y: { range: (u, lo, hi) => [Math.min(0, lo), Math.max(hi, limit || 0) * 1.1 || 1] } },
    axes: [
      { values: [[86400 * 28, "{MM}/{YYYY}", null, null, null, null, null, null, 1],
        [86400, "{D}/{M}", "\n{MM}/{YYYY}", null, null, null, null, null, 1]], space: 60, font: "11px sans-serif" },
      { size: 48, font: "11px sans-serif" },
    ],
    legend: { live: true },
    hooks: { draw: [(u) => { fig.dataset.ink = String(inkOf(u.ctx.canvas)); }] },
  }, data, box);
  CHARTS[id] = plot;
}

async function loadTrends(f, complianceDone) {
  const tech = f.technology || "4G";
  const { from, to } = trendRange(f.period);
  const base = { group_by: "operator", from, to, step: "1d", technology: tech };
  if (f.commune) base.commune = f.commune;
  if (f.operator) base.operator = f.operator;
  // The queries start with the page's others; the charts are drawn once compliance is in.
  // The limits come from the same API: QCVN's latency (a mean) from the compliance answer,
  // the national median download target from decision 1110's profile.
  const targetAnswer = api("/api/v1/compliance?" + new URLSearchParams({ period: f.period, technology: tech,
    profile: "decision-1110-2024" }).toString()).catch(() => null);
  const answers = Promise.all([
    qos({ ...base, metric: "rtt_ms", stat: "p95" }),
    qos({ ...base, metric: "dl_bps", stat: "p50" }),
    qos({ ...base, metric: "loss_ratio", stat: "mean" }),
    targetAnswer,
  ]);
  await COMMUNES_READY;
  const where = f.commune ? ((COMMUNES.find((c) => c.code === f.commune) || {}).name || f.commune) : "toàn tỉnh / whole province";
  document.getElementById("trend-where").textContent = "— " + where + " — " + tech
    + (f.operator ? " — " + f.operator : "") + " — theo ngày, 6 tháng / daily, six months";
  setStatus("trends-status", "Đang tải… / Loading…");
  const [rtt, dl, loss, d] = await answers;
  const target = d ? d.rows.find((r) => r.indicator === "dl_median" && r.limit !== null) || null : null;
  await complianceDone;
  const latency = ((LAST_COMPLIANCE && LAST_COMPLIANCE.rows) || []).find((r) => r.indicator === "latency_mean"
    && r.technology === tech && r.limit !== null);
  drawChart("chart-rtt", rtt, 1, latency ? latency.limit : null, latency
    ? "Ngưỡng " + ((LAST_COMPLIANCE.profiles.find((p) => p.id === latency.profile) || {}).reference || latency.profile) + ": RTT trung bình " + latency.op + " " + fmt(latency.limit) + " ms (quy chuẩn giới hạn giá trị trung bình; p95 vẽ để so sánh) / limit: mean RTT (the regulation limits the mean; the p95 is drawn against it)"
    : "Không có ngưỡng QCVN cho " + tech + " / no QCVN latency limit for " + tech, " ms");
  drawChart("chart-dl", dl, 1e-6, target ? target.limit : null, target
    ? "Chỉ tiêu Quyết định 1110: trung vị " + target.op + " " + fmt(target.limit) + " Mbit/s / national median target"
    : "Không có chỉ tiêu trung vị cho " + tech + " / no median target for " + tech, " Mbit/s");
  drawChart("chart-loss", loss, 100, null, "QCVN không quy định tỷ lệ mất gói / no QCVN limit on packet loss", " %");
  setStatus("trends-status", "");
}

async function main() {
  const form = document.getElementById("login");
  if (!token()) {
    form.hidden = false;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("netqos-token", document.getElementById("token").value);
      location.reload();
    });
    for (const id of ["kpi-status", "compliance-status", "incidents-status", "trends-status"]) {
      setStatus(id, "Cần khóa truy cập / an API key is needed", true);
    }
    document.body.dataset.state = "ready";
    return;
  }
  const f = filtersFromUrl();
  // Every first request at once; the map and matrix wait only for the communes they place.
  COMMUNES_READY = settle("compliance-status", loadCommunes().then(() => {
    document.querySelector("#filters select[name=commune]").value = f.commune;
  }));
  const compliance = settle("compliance-status", loadCompliance(f));
  await Promise.all([
    COMMUNES_READY,
    compliance,
    settle("kpi-status", loadKpi(f.year)),
    settle("incidents-status", loadIncidents()),
    settle("trends-status", loadTrends(f, compliance)),
  ]);
  document.body.dataset.drawnMs = String(Math.round(performance.now()));
  document.getElementById("filters").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(ev.target).entries());
    history.replaceState(null, "", "?" + new URLSearchParams(Object.entries(data).filter(([, v]) => v)).toString());
    const compliance = settle("compliance-status", loadCompliance(data));
    await Promise.all([compliance,
      settle("trends-status", loadTrends({ ...data, period: data.period || defaultPeriod() }, compliance))]);
  });
  document.body.dataset.state = "ready";
}

// The NOC view loads this file for its helpers (el, api, fmt, token) and runs its own main.
if (document.getElementById("kpi")) main();
