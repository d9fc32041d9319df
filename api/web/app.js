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
// api/report.py's NOT_CHECKED_VI (a test keeps them equal); untranslated ones show in English.
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

function fmt(v, digits) {
  if (v === null || v === undefined) return "—";
  if (typeof v !== "number") return String(v);
  return v.toLocaleString("vi-VN", { maximumFractionDigits: digits === undefined ? 2 : digits });
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

async function loadCommunes() {
  const body = await api("/api/v1/communes");
  const sel = document.querySelector("#filters select[name=commune]");
  for (const c of body.communes) {
    const o = el("option", c.name + " (" + c.code + ")");
    o.value = c.code;
    sel.append(o);
  }
}

async function loadCompliance(f) {
  const q = new URLSearchParams({ period: f.period });
  for (const k of ["technology", "operator", "commune"]) if (f[k]) q.set(k, f[k]);
  setStatus("compliance-status", "Đang tải… / Loading…");
  const body = await api("/api/v1/compliance?" + q.toString());
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

async function main() {
  const form = document.getElementById("login");
  if (!token()) {
    form.hidden = false;
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      sessionStorage.setItem("netqos-token", document.getElementById("token").value);
      location.reload();
    });
    for (const id of ["kpi-status", "compliance-status", "incidents-status"]) {
      setStatus(id, "Cần khóa truy cập / an API key is needed", true);
    }
    document.body.dataset.state = "ready";
    return;
  }
  const f = filtersFromUrl();
  await settle("compliance-status", loadCommunes().then(() => {
    document.querySelector("#filters select[name=commune]").value = f.commune;
  }));
  await Promise.all([
    settle("kpi-status", loadKpi(f.year)),
    settle("compliance-status", loadCompliance(f)),
    settle("incidents-status", loadIncidents()),
  ]);
  document.getElementById("filters").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const data = Object.fromEntries(new FormData(ev.target).entries());
    history.replaceState(null, "", "?" + new URLSearchParams(Object.entries(data).filter(([, v]) => v)).toString());
    await settle("compliance-status", loadCompliance(data));
  });
  document.body.dataset.state = "ready";
}

main();
