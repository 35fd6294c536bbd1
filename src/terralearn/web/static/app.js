/* TerraLearn web app: plain JavaScript, no build step, no network access beyond this app. */
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const CSRF_HEADER = document.querySelector('meta[name="csrf-header"]').content;
const PAGE = document.body.dataset.page;
const root = document.getElementById("page");

/* ------------------------------------------------------------------ helpers */

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "html") el.innerHTML = v; // only for trusted, app-made markup
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && (body.error || body.detail && JSON.stringify(body.detail))) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

async function api(method, url, body, isForm) {
  const opts = { method, headers: { Accept: "application/json" } };
  if (method !== "GET") opts.headers[CSRF_HEADER] = CSRF;
  if (body !== undefined) {
    if (isForm) opts.body = body;
    else { opts.body = JSON.stringify(body); opts.headers["Content-Type"] = "application/json"; }
  }
  const res = await fetch(url, opts);
  let data = null;
  try { data = await res.json(); } catch (e) { data = null; }
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

const q = (params) => new URLSearchParams(params).toString();
const fileUrl = (p) => "/files/" + p.split("/").map(encodeURIComponent).join("/");
const downloadUrl = (p) => "/api/download?" + q({ path: p });

function fmt(v, digits = 3) {
  if (v === null || v === undefined || v === "") return "–";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return v.toLocaleString();
    return v.toFixed(digits);
  }
  return String(v);
}
const pct = (v) => (v === null || v === undefined ? "–" : (100 * v).toFixed(1) + " %");
function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
function errorBox(err) {
  const body = err.body || {};
  return h("div", { class: "error-box", role: "alert" },
    h("div", {}, body.error || err.message),
    body.fix ? h("div", { class: "fix" }, "Fix: " + body.fix) : null);
}
function card(title, ...children) {
  return h("section", { class: "card" }, title ? h("h2", {}, title) : null, ...children);
}
const store = {
  get(key, dflt) { try { return JSON.parse(localStorage.getItem("tl." + key)) ?? dflt; } catch (e) { return dflt; } },
  set(key, value) { localStorage.setItem("tl." + key, JSON.stringify(value)); },
};

/* ------------------------------------------------------------------ header: steps done, running jobs */

async function refreshHeader() {
  try {
    const s = await api("GET", "/api/status");
    const ind = document.getElementById("jobs-indicator");
    ind.hidden = !s.active_jobs;
    ind.textContent = `${s.active_jobs} job${s.active_jobs === 1 ? "" : "s"} running`;
    for (const li of document.querySelectorAll("nav.path li")) {
      li.classList.toggle("done", !!(s.done || {})[li.dataset.step]);
    }
  } catch (e) { /* the page still works */ }
}

/* ------------------------------------------------------------------ forms built from the stage settings */

async function buildForm(stage, container, { submitLabel, onSubmit, prefill = {}, endpoint }) {
  const spec = await api("GET", `/api/forms/${stage}`);
  const saved = { ...store.get("inputs", {}), ...store.get("form." + stage, {}), ...prefill };
  const widgets = {};
  const basic = h("div", {});
  const more = h("details", { class: "more" }, h("summary", {}, "More settings"));
  const formError = h("div", { class: "form-error", hidden: true });
  const submit = h("button", { class: "primary", type: "submit" }, submitLabel);
  const form = h("form", { novalidate: true, "data-stage": stage }, basic, more,
    h("div", { class: "actions" }, submit), formError);
  container.append(form);

  for (const f of spec.fields) {
    const w = await makeWidget(f, saved[f.name], spec.output, () => schedule());
    widgets[f.name] = w;
    (f.basic ? basic : more).append(w.el);
  }
  for (const w of Object.values(widgets)) if (w.bind) w.bind(widgets);

  function values() {
    const out = {};
    for (const [name, w] of Object.entries(widgets)) {
      const v = w.value();
      if (v !== undefined) out[name] = v;
    }
    return out;
  }
  function showErrors(errors) {
    for (const [name, w] of Object.entries(widgets)) w.setError(errors[name]);
    const general = Object.entries(errors).filter(([k]) => !widgets[k]).map(([, v]) => v);
    formError.hidden = !general.length;
    formError.textContent = general.join(" ");
    if (Object.keys(errors).some((k) => widgets[k] && !widgets[k].basic)) more.open = true;
  }
  let timer = null;
  let lastOk = true;
  async function validate() {
    try {
      const r = await api("POST", `/api/validate/${stage}`, { values: values() });
      showErrors(r.errors);
      lastOk = r.ok;
    } catch (e) { /* validation is a convenience: the submit validates again */ }
    return lastOk;
  }
  function schedule() { clearTimeout(timer); timer = setTimeout(validate, 300); }

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const vals = values();
    store.set("form." + stage, vals);
    const shared = store.get("inputs", {});
    for (const k of ["rasters", "labels", "class_field", "class_name_field"]) if (k in vals) shared[k] = vals[k];
    store.set("inputs", shared);
    submit.disabled = true;
    formError.hidden = true;
    try {
      await onSubmit(vals, { showErrors, form });
    } catch (e) {
      if (e.body && e.body.errors) showErrors(e.body.errors);
      else { formError.hidden = false; formError.replaceChildren(errorBox(e)); }
    } finally {
      submit.disabled = false;
      if (spec.output !== null) {
        const fresh = await api("GET", `/api/forms/${stage}`);
        if (widgets.out && widgets.out.suggested && widgets.out.value() === widgets.out.suggested) {
          widgets.out.set(fresh.output);
        }
        if (widgets.out) widgets.out.suggested = fresh.output;
      }
    }
  });
  schedule();
  return { form, widgets, values, validate };
}

async function findItems(kinds) {
  const r = await api("GET", "/api/find?" + q({ kinds: kinds.join(",") }));
  return r.items;
}

async function makeWidget(f, saved, suggestedOutput, changed) {
  const id = "f-" + f.name;
  const error = h("div", { class: "error", hidden: true, id: id + "-error" });
  const help = h("div", { class: "help" }, f.help);
  const wrap = h("div", { class: "field", "data-field": f.name });
  const w = { el: wrap, basic: f.basic, setError(msg) {
    error.hidden = !msg; error.textContent = msg || ""; wrap.classList.toggle("invalid", !!msg);
  } };
  let input;

  if (f.widget === "pick") {
    const items = await findItems(f.kinds);
    if (f.multiple) {
      const chosen = Array.isArray(saved) ? saved.filter((p) => items.some((i) => i.path === p)) : [];
      if (!chosen.length && items.length && f.required) chosen.push(items[0].path);
      const box = h("div", { class: "picks", id, role: "group", "aria-label": f.label });
      const redraw = () => {
        box.replaceChildren();
        if (!items.length) box.append(h("div", { class: "empty" }, `Nothing of this kind yet (${f.kinds.join(" or ")}). Add files on the Data page.`));
        for (const it of items) {
          const n = chosen.indexOf(it.path);
          const cb = h("input", { type: "checkbox", value: it.path, checked: n >= 0 });
          cb.addEventListener("change", () => {
            const i = chosen.indexOf(it.path);
            if (cb.checked && i < 0) chosen.push(it.path);
            if (!cb.checked && i >= 0) chosen.splice(i, 1);
            redraw(); changed(); w.onchange && w.onchange();
          });
          box.append(h("label", {}, cb, n >= 0 ? h("span", { class: "order", title: "stacking order" }, n + 1) : null,
            h("span", {}, it.path), h("span", { class: "kind" }, it.kind)));
        }
      };
      redraw();
      input = box;
      w.value = () => chosen.slice();
      w.first = () => chosen[0];
    } else {
      const sel = h("select", { id },
        f.required ? null : h("option", { value: "" }, "(none)"),
        items.map((it) => h("option", { value: it.path }, `${it.path}  ·  ${it.kind}`)));
      if (!items.length) sel.append(h("option", { value: "" }, `Nothing of this kind yet (${f.kinds.join(" or ")})`));
      if (saved && items.some((i) => i.path === saved)) sel.value = saved;
      else if (f.required && items.length) sel.value = preferred(f.name, items);
      sel.addEventListener("change", () => { changed(); w.onchange && w.onchange(); });
      input = sel;
      w.value = () => sel.value || null;
      w.first = () => sel.value || null;
    }
  } else if (f.widget === "output") {
    const inp = h("input", { type: "text", id, value: suggestedOutput || saved || "", spellcheck: "false" });
    inp.addEventListener("input", changed);
    input = inp;
    w.suggested = suggestedOutput;
    w.value = () => inp.value.trim();
    w.set = (v) => { inp.value = v; };
  } else if (f.widget === "field") {
    const sel = h("select", { id }, h("option", { value: "" }, "(pick the layer first)"));
    input = sel;
    sel.addEventListener("change", changed);
    w.value = () => sel.value || null;
    w.bind = (all) => {
      const source = all[f.source];
      if (!source) return;
      const load = async () => {
        const path = source.first && source.first();
        sel.replaceChildren(h("option", { value: "" }, f.optional ? "(none)" : "(choose a field)"));
        if (!path) return;
        try {
          const d = await api("GET", "/api/describe?" + q({ path }));
          const fields = (d.fields || []).map((x) => x.name);
          if (!fields.length) {
            sel.replaceChildren(h("option", { value: "" }, "(not needed for a raster)"));
          }
          for (const name of fields) {
            const distinct = (d.fields.find((x) => x.name === name) || {}).distinct;
            sel.append(h("option", { value: name }, distinct ? `${name}  (e.g. ${distinct.slice(0, 4).join(", ")})` : name));
          }
          const want = saved && fields.includes(saved) ? saved
            : f.name === "class_field" ? d.class_field_guess || ""
            : fields.find((n) => /name/i.test(n) && !/^(id|fid)$/i.test(n)) || "";
          sel.value = want || "";
        } catch (e) { /* the layer may not be readable: validation says so */ }
        changed();
      };
      source.onchange = load;
      load();
    };
  } else if (f.widget === "choice") {
    const sel = h("select", { id }, f.choices.map((c) => h("option", { value: c }, c)));
    sel.value = saved ?? f.default ?? f.choices[0];
    sel.addEventListener("change", changed);
    input = sel;
    w.value = () => sel.value;
  } else if (f.widget === "checkbox") {
    const cb = h("input", { type: "checkbox", id, checked: saved ?? f.default ?? false });
    cb.addEventListener("change", changed);
    wrap.append(h("label", { class: "check", for: id }, cb, f.label), help, error);
    w.value = () => cb.checked;
    return w;
  } else if (f.widget === "number") {
    const attrs = { type: "number", id, step: f.step };
    if (f.min !== undefined) attrs.min = f.min;
    if (f.max !== undefined) attrs.max = f.max;
    const inp = h("input", attrs);
    const v = saved ?? f.default;
    inp.value = v === null || v === undefined ? "" : v;
    inp.placeholder = f.optional ? "automatic" : "";
    inp.addEventListener("input", changed);
    input = inp;
    w.value = () => (inp.value === "" ? (f.optional ? null : undefined) : Number(inp.value));
  } else if (f.widget === "list") {
    const v = saved ?? f.default ?? [];
    const inp = h("input", { type: "text", id, value: Array.isArray(v) ? v.join(", ") : v,
      placeholder: f.choices ? f.choices.join(", ") : "comma-separated" });
    inp.addEventListener("input", changed);
    input = inp;
    w.value = () => inp.value;
  } else {
    const listId = id + "-list";
    const inp = h("input", { type: "text", id, value: saved ?? f.default ?? "", list: f.suggestions && f.suggestions.length ? listId : null });
    inp.addEventListener("input", changed);
    input = f.suggestions && f.suggestions.length
      ? h("div", {}, inp, h("datalist", { id: listId }, f.suggestions.map((s) => h("option", { value: s }))))
      : inp;
    w.value = () => (inp.value === "" && f.optional ? null : inp.value);
  }
  wrap.append(h("label", { for: id }, f.label, f.required ? null : h("span", { class: "muted small" }, " (optional)")), input, help, error);
  return w;
}

function preferred(name, items) {
  if (name === "reference") {
    const v = items.find((i) => i.path.endsWith("validation.gpkg"));
    if (v) return v.path;
  }
  return items[0].path;
}

/* ------------------------------------------------------------------ jobs */

const JOB_TITLES = { export: "Export", train: "Training", resume: "Training (resumed)", classify: "Classification", evaluate: "Evaluation" };

function jobView(jobId, { onDone } = {}) {
  const el = h("div", { class: "job", "data-job": jobId });
  const head = h("div", { class: "job-head" });
  const bar = h("div", { class: "progress" }, h("div", { style: "width:0%" }));
  const ptext = h("div", { class: "progress-text" });
  const charts = h("div", { class: "charts", hidden: true });
  const result = h("div", { class: "job-result" });
  const log = h("pre", { class: "log" });
  const logBox = h("details", {}, h("summary", { class: "small" }, "Log"), log);
  el.append(head, bar, ptext, charts, result, logBox);
  let finishedShown = false;

  async function tick() {
    let job;
    try { job = await api("GET", `/api/jobs/${jobId}`); }
    catch (e) { el.replaceChildren(errorBox(e)); return; }
    const active = job.status === "running" || job.status === "queued";
    const stop = active ? h("button", { class: "danger", type: "button", onclick: async (ev) => {
      ev.target.disabled = true;
      try { await api("POST", `/api/jobs/${jobId}/cancel`); } catch (e) { result.append(errorBox(e)); }
    } }, job.kind === "train" || job.kind === "resume" ? "Stop (keeps the best model)" : "Stop") : null;
    const resume = job.resumable && job.run_id ? h("button", { type: "button", onclick: async () => {
      try { const r = await api("POST", `/api/runs/${job.run_id}/resume`); location.href = `/jobs/${r.id}`; }
      catch (e) { result.append(errorBox(e)); }
    } }, "Resume training") : null;
    head.replaceChildren(
      h("strong", {}, `${JOB_TITLES[job.kind] || job.kind} · job ${job.id}`),
      h("span", { class: `badge ${job.status}` }, job.status.replace("_", " ")),
      job.run_id ? h("a", { href: "/runs" }, `run ${job.run_id}`) : null,
      h("a", { class: "small", href: `/jobs/${job.id}` }, "job page"), stop, resume);
    const p = job.progress || {};
    const frac = p.total ? Math.min(1, p.done / p.total) : (active ? null : 1);
    bar.classList.toggle("indeterminate", frac === null);
    bar.firstChild.style.width = frac === null ? "30%" : `${(100 * frac).toFixed(1)}%`;
    const left = active && p.eta_s ? `about ${duration(p.eta_s)} left` : "";
    let what = p.phase || "";
    if (p.total) what += ` · ${fmt(p.done)} / ${fmt(p.total)} ${p.unit === "epochs" ? "epochs" : p.unit || ""}`;
    if (p.km2_total) what += ` · ${fmt(p.km2_done, 1)} / ${fmt(p.km2_total, 1)} km²`;
    ptext.replaceChildren(h("span", {}, what), h("span", {}, left));
    if (p.history && p.history.length) { charts.hidden = false; drawCharts(charts, p.history, p.best_epoch); }
    log.textContent = job.log || "";
    log.scrollTop = log.scrollHeight;
    if (!active && !finishedShown) {
      finishedShown = true;
      result.replaceChildren();
      if (job.error) result.append(errorBox({ body: { error: job.error, fix: job.fix } }));
      if (job.result) result.append(renderResult(job));
      refreshHeader();
      if (onDone) onDone(job);
    }
    if (active) setTimeout(tick, 1000);
  }
  tick();
  return el;
}

function renderResult(job) {
  const r = job.result;
  const box = h("div", {});
  if (job.kind === "export") {
    box.append(h("div", { class: "metrics" },
      metric(fmt(r.chips), "chips written"), metric(fmt(r.train_chips), "for training"),
      metric(fmt(r.val_chips), "held out for validation"), metric(duration(r.seconds), "time")),
      h("p", {}, "Chip set: ", h("code", {}, r.out), ". ", h("a", { href: "/train" }, "Next: train a model →")));
    if (r.findings && r.findings.length) box.append(findingsList(r.findings));
  } else if (job.kind === "train" || job.kind === "resume") {
    box.append(h("div", { class: "metrics" },
      metric(pct(r.accuracy), "validation accuracy"), metric(fmt(r.mean_iou), "mean IoU"),
      metric(fmt(r.dice), "Dice"), metric(pct(r.baseline_accuracy), "random forest baseline")));
    if (r.weights_note) box.append(h("p", { class: "muted small" }, r.weights_note));
    box.append(h("div", { class: "downloads" },
      r.report ? h("a", { class: "button primary", href: fileUrl(r.report), target: "_blank", rel: "noopener" }, "Open the training report") : null,
      r.package ? h("span", { class: "muted" }, "Model package: ", h("code", {}, r.package)) : null,
      h("a", { href: "/classify" }, "Next: classify a raster →")));
  } else if (job.kind === "classify") {
    box.append(h("div", { class: "metrics" }, metric(fmt(r.pixels), "pixels"),
      r.area_km2 ? metric(fmt(r.area_km2, 1), "km²") : null, metric(duration(r.seconds), "time"),
      metric(r.cog_valid ? "valid" : "not valid", "Cloud-Optimized GeoTIFF")));
    for (const w of r.warnings || []) box.append(h("p", { class: "badge warning" }, w));
    box.append(mapViewer(r.rasters && r.rasters[0], r.out));
    box.append(h("div", { class: "downloads" },
      h("a", { class: "button primary", href: downloadUrl(r.out) }, "Download the map (GeoTIFF)"),
      r.qml ? h("a", { class: "button", href: downloadUrl(r.qml) }, "QGIS style (.qml)") : null,
      r.attribute_table ? h("a", { class: "button", href: downloadUrl(r.attribute_table) }, "Attribute table") : null,
      r.probability ? h("a", { class: "button", href: downloadUrl(r.probability) }, "Confidence raster") : null,
      h("a", { href: "/evaluate" }, "Next: evaluate the map →")));
  } else if (job.kind === "evaluate") {
    box.append(evaluationView(r, job.config));
  }
  return box;
}

function metric(v, k) { return h("div", { class: "metric" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k)); }

function drawCharts(container, history, best) {
  container.replaceChildren(
    lineChart("Loss", history, [["train_loss", "training", "#2e7d4f"], ["val_loss", "validation", "#c0392b"]], best),
    lineChart("Validation scores", history, [["accuracy", "accuracy", "#24508f"], ["mean_iou", "mean IoU", "#a86400"], ["dice", "Dice", "#7b3fa0"]], best));
}

function lineChart(title, rows, series, best) {
  const W = 460, H = 220, L = 44, R = 10, T = 26, B = 30;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("class", "chart");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  const add = (tag, attrs, text) => {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    if (text !== undefined) el.textContent = text;
    svg.append(el);
    return el;
  };
  const vals = rows.flatMap((r) => series.map(([k]) => r[k])).filter((v) => typeof v === "number" && isFinite(v));
  let lo = Math.min(...vals), hi = Math.max(...vals);
  if (!vals.length) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const n = rows.length;
  const maxEpoch = Math.max(...rows.map((r) => r.epoch));
  const minEpoch = Math.min(...rows.map((r) => r.epoch));
  const x = (e) => L + (maxEpoch === minEpoch ? 0.5 : (e - minEpoch) / (maxEpoch - minEpoch)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  add("text", { x: L, y: 16, style: "font-weight:600;fill:#1d2a33" }, title);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e8eb" });
    add("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(hi - lo < 0.1 ? 3 : 2));
  }
  add("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle" }, `epoch (${n} so far)`);
  if (best) add("line", { x1: x(best), x2: x(best), y1: T, y2: H - B, stroke: "#8fd3a8", "stroke-dasharray": "4 3" });
  let lx = W - R;
  for (const [key, label, colour] of series.slice().reverse()) {
    const pts = rows.filter((r) => typeof r[key] === "number").map((r) => `${x(r.epoch).toFixed(1)},${y(r[key]).toFixed(1)}`);
    if (pts.length) add("polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2 });
    if (pts.length === 1) { const [px, py] = pts[0].split(","); add("circle", { cx: px, cy: py, r: 3, fill: colour }); }
    const t = add("text", { x: lx, y: 16, "text-anchor": "end", style: `fill:${colour}` }, label);
    lx -= label.length * 6.5 + 12;
    void t;
  }
  return svg;
}

function findingsList(findings) {
  return h("div", { class: "findings" }, findings.map((f) => h("div", { class: "finding" },
    h("div", {}, h("span", { class: `badge ${f.severity}` }, f.severity)),
    h("div", {}, h("div", {}, f.message), f.fix ? h("div", { class: "fix" }, "Fix: " + f.fix) : null))));
}

async function latestJob(kinds) {
  const r = await api("GET", "/api/jobs?" + q({ limit: 20 }));
  return r.jobs.find((j) => kinds.includes(j.kind));
}

/* ------------------------------------------------------------------ map viewer (Leaflet, pixel grid, offline) */

function mapViewer(imagePath, mapPath) {
  const wrap = h("div", { class: "mapwrap" });
  const div = h("div", { class: "mapview" });
  const tools = h("div", { class: "map-tools" });
  const legend = h("div", { class: "legend" });
  wrap.append(tools, div, legend);
  setTimeout(async () => {
    try {
      const base = imagePath ? await api("GET", "/api/pyramid?" + q({ path: imagePath })) : null;
      const over = mapPath ? await api("GET", "/api/pyramid?" + q({ path: mapPath })) : null;
      const ref = over || base;
      const map = L.map(div, { crs: L.CRS.Simple, minZoom: -2, maxZoom: ref.max_zoom + 3, attributionControl: false, zoomSnap: 0.25 });
      const bounds = L.latLngBounds(map.unproject([0, ref.height], ref.max_zoom), map.unproject([ref.width, 0], ref.max_zoom));
      const layer = (p, info) => L.tileLayer("/api/tiles/{z}/{x}/{y}.png?" + q({ path: p }), {
        tileSize: 256, minZoom: -2, maxZoom: ref.max_zoom + 3, maxNativeZoom: info.max_zoom, minNativeZoom: 0,
        bounds, noWrap: true, keepBuffer: 2 });
      let overlay = null;
      if (base) layer(imagePath, base).addTo(map);
      if (over) overlay = layer(mapPath, over).setOpacity(base ? 0.7 : 1).addTo(map);
      map.fitBounds(bounds);
      if (overlay && base) {
        const slider = h("input", { type: "range", min: 0, max: 100, value: 70, "aria-label": "Map opacity" });
        slider.addEventListener("input", () => overlay.setOpacity(slider.value / 100));
        tools.append(h("label", {}, "Map opacity ", slider));
        const toggle = h("input", { type: "checkbox", checked: true });
        toggle.addEventListener("change", () => (toggle.checked ? overlay.addTo(map) : overlay.remove()));
        tools.append(h("label", {}, toggle, " show the map over the image"));
      }
      tools.append(h("span", { class: "muted small" }, "Scroll or use + / − to zoom, drag to pan."));
      for (const c of (over && over.legend) || []) {
        legend.append(h("span", {}, h("span", { class: "sw", style: `background:${c.colour}` }), `${c.name}`,
          c.value !== null && c.value !== undefined && String(c.value) !== c.name ? h("span", { class: "muted" }, ` (${c.value})`) : null));
      }
    } catch (e) { wrap.append(errorBox(e)); }
  }, 0);
  return wrap;
}

/* ------------------------------------------------------------------ pages */

const pages = {};

pages.data = async () => {
  const left = card("Workspace files");
  const right = card("Details", h("p", { class: "empty-state" }, "Pick a file to see its bands, CRS, pixel size, extent and a quick look."));
  root.append(h("div", { class: "grid2" }, left, right));
  const crumbs = h("div", { class: "crumbs" });
  const table = h("table", { class: "files" });
  const status = h("div", {});
  const fileInput = h("input", { type: "file", multiple: true, accept: ".tif,.tiff,.gpkg,.geojson,.json,.zip", id: "upload-input" });
  const drop = h("div", { class: "dropzone" }, h("div", {}, "Drop rasters (GeoTIFF), GeoPackages, GeoJSON or zipped shapefiles here, or "),
    h("label", { class: "button", for: "upload-input" }, "choose files…"), fileInput);
  fileInput.style.display = "none";
  const sampleBtn = h("button", { type: "button", id: "add-sample" }, "Add the sample scene");
  left.append(crumbs, h("div", { class: "table-scroll" }, table), drop, h("div", { class: "actions" }, sampleBtn,
    h("span", { class: "muted small" }, "A 6-band 20 m scene with land-cover polygons, to try everything.")), status);
  let current = "";

  async function list(path) {
    current = path;
    let r;
    try { r = await api("GET", "/api/files?" + q({ path })); } catch (e) { status.replaceChildren(errorBox(e)); return; }
    const parts = r.path && r.path !== "." ? r.path.split("/") : [];
    crumbs.replaceChildren(h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); list(""); } }, "workspace"),
      ...parts.map((p, i) => [" / ", h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); list(parts.slice(0, i + 1).join("/")); } }, p)]));
    table.replaceChildren(h("tr", {}, h("th", {}, "Name"), h("th", {}, "Kind"), h("th", { class: "num" }, "Size")));
    if (r.parent !== null && r.parent !== undefined) {
      table.append(h("tr", {}, h("td", { class: "name", onclick: () => list(r.parent === "." ? "" : r.parent) }, "⬑ .."), h("td"), h("td")));
    }
    if (!r.entries.length) table.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "Empty. Upload files or add the sample scene.")));
    for (const e of r.entries) {
      const open = () => (e.kind === "folder" ? list(e.path) : show(e));
      table.append(h("tr", {}, h("td", { class: "name", onclick: open }, (e.kind === "folder" ? "📁 " : "") + e.name),
        h("td", {}, h("span", { class: "kind" }, e.kind)), h("td", { class: "num small" }, e.kind === "folder" ? "" : size(e.size))));
    }
  }
  function size(b) { return b === null || b === undefined ? "" : b < 1024 ? `${b} B` : b < 1048576 ? `${(b / 1024).toFixed(0)} KB` : `${(b / 1048576).toFixed(1)} MB`; }

  async function show(e) {
    right.replaceChildren(h("h2", {}, e.name), h("p", { class: "muted" }, "Reading…"));
    try {
      const d = await api("GET", "/api/describe?" + q({ path: e.path }));
      right.replaceChildren(h("h2", {}, e.name), describeView(d));
      if (["raster", "map", "vector"].includes(d.kind)) {
        right.append(h("img", { class: "quicklook", alt: `Quick look of ${e.name}`, src: "/api/quicklook?" + q({ path: e.path }) }));
      }
      if (["report", "image"].includes(d.kind)) right.append(h("p", {}, h("a", { href: fileUrl(e.path), target: "_blank", rel: "noopener" }, "Open")));
    } catch (err) { right.replaceChildren(h("h2", {}, e.name), errorBox(err)); }
  }

  async function upload(fileList) {
    for (const file of fileList) {
      const fd = new FormData();
      fd.append("file", file);
      fd.append("folder", "uploads");
      status.replaceChildren(h("p", { class: "muted" }, `Uploading ${file.name}…`));
      try {
        const r = await api("POST", "/api/upload", fd, true);
        status.replaceChildren(h("p", { class: "badge ok" }, `Added ${r.path} (${r.kind})`));
        await list("uploads");
        show({ name: r.path.split("/").pop(), path: r.path });
      } catch (err) { status.replaceChildren(errorBox(err)); }
    }
    refreshHeader();
  }
  fileInput.addEventListener("change", () => upload(fileInput.files));
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); upload(ev.dataTransfer.files); });
  sampleBtn.addEventListener("click", async () => {
    sampleBtn.disabled = true;
    status.replaceChildren(h("p", { class: "muted" }, "Writing the sample scene…"));
    try { await api("POST", "/api/sample"); status.replaceChildren(h("p", { class: "badge ok" }, "Sample scene added in sample/")); await list("sample"); }
    catch (err) { status.replaceChildren(errorBox(err)); }
    sampleBtn.disabled = false;
    refreshHeader();
  });
  list("");
};

function describeView(d) {
  const rows = [];
  const add = (k, v) => { if (v !== null && v !== undefined && v !== "") rows.push(h("dt", {}, k), h("dd", {}, v)); };
  add("Kind", d.kind);
  if (d.kind === "raster" || d.kind === "map") {
    add("Size", `${fmt(d.width)} × ${fmt(d.height)} pixels, ${d.bands} band${d.bands === 1 ? "" : "s"} (${d.dtype})`);
    add("CRS", d.crs ? `${d.crs.name || ""}${d.crs.epsg ? ` (EPSG:${d.crs.epsg})` : ""}` : "none");
    if (d.pixel_size) add("Pixel size", `${fmt(d.pixel_size[0], 3)} × ${fmt(d.pixel_size[1], 3)} ${d.pixel_units || ""}`);
    if (d.extent) add("Extent", d.extent.map((v) => fmt(v, 2)).join(", "));
    if (d.lonlat_bounds) add("Lon/lat box", d.lonlat_bounds.map((v) => fmt(v, 4)).join(", "));
    add("Nodata", d.nodata);
    if (d.band_names && d.band_names.some((b) => b)) add("Bands", d.band_names.map((b, i) => b || `band ${i + 1}`).join(", "));
  }
  if (d.kind === "vector") {
    add("Features", fmt(d.feature_count));
    add("Geometry", d.geometry_type);
    add("CRS", d.crs ? `${d.crs.name || ""}${d.crs.epsg ? ` (EPSG:${d.crs.epsg})` : ""}` : "none");
    if (d.bounds) add("Extent", d.bounds.map((v) => fmt(v, 2)).join(", "));
    if (d.layers && d.layers.length > 1) add("Layers", d.layers.map((l) => l.name || l).join(", "));
  }
  const dl = h("dl", { class: "summary" }, rows);
  const out = h("div", {}, dl);
  if (d.kind === "vector" && d.fields) {
    out.append(h("h3", {}, "Fields"), h("table", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Type"), h("th", {}, "Values")),
      d.fields.map((f) => h("tr", {}, h("td", {}, f.name), h("td", {}, f.type), h("td", { class: "small" }, f.distinct ? f.distinct.slice(0, 12).join(", ") : "many")))));
  }
  if (d.classes && d.classes.length) {
    out.append(h("h3", {}, "Classes"), h("div", { class: "legend" }, d.classes.map((c) =>
      h("span", {}, h("span", { class: "sw", style: `background:${c.colour || c.color || "#ccc"}` }), `${c.name} (${c.value})`))));
  }
  const extra = Object.entries(d).filter(([k, v]) => !["path", "kind", "fields", "classes", "crs", "extent", "bounds", "lonlat_bounds", "band_names", "band_descriptions", "dtypes", "pixel_size", "pixel_units", "width", "height", "bands", "dtype", "nodata", "nodata_is_nan", "layers", "name", "class_field_guess", "distinct_values_sampled", "wkt", "feature_count", "geometry_type"].includes(k) && (typeof v !== "object" || v === null));
  if (extra.length) out.append(h("dl", { class: "summary" }, extra.flatMap(([k, v]) => [h("dt", {}, k.replaceAll("_", " ")), h("dd", {}, fmt(v))])));
  return out;
}

pages.check = async () => {
  const left = card("Inputs");
  const right = card("Findings", h("p", { class: "empty-state" }, "Run the checks to see what would go wrong, and how to fix it, before exporting."));
  root.append(h("div", { class: "grid2" }, left, right));
  await buildForm("check", left, {
    submitLabel: "Run the checks",
    onSubmit: async (vals) => {
      right.replaceChildren(h("h2", {}, "Findings"), h("p", { class: "muted" }, "Checking… (reads the labels and counts pixels per class)"));
      try {
        const r = await api("POST", "/api/check", { values: vals });
        const errors = r.findings.filter((f) => f.severity === "error").length;
        const warns = r.findings.filter((f) => f.severity === "warning").length;
        right.replaceChildren(h("h2", {}, "Findings"),
          h("div", { class: `summary-banner ${errors ? "error" : "ok"}` }, errors
            ? `${errors} problem${errors > 1 ? "s" : ""} to fix before exporting${warns ? `, ${warns} warning${warns > 1 ? "s" : ""}` : ""}.`
            : `Ready to export${warns ? ` (${warns} warning${warns > 1 ? "s" : ""} worth reading)` : ""}.`),
          findingsList(r.findings),
          errors ? null : h("div", { class: "actions" }, h("a", { class: "button primary", href: "/export" }, "Continue to Export →")));
        store.set("form.export", { ...store.get("form.export", {}), ...vals });
        refreshHeader();
      } catch (e) {
        right.replaceChildren(h("h2", {}, "Findings"), errorBox(e));
        throw e;
      }
    },
  });
};

function stagePage(stage, { title, submitLabel, kinds }) {
  return async () => {
    const left = card(title);
    const right = card("Latest job");
    root.append(h("div", { class: "grid2" }, left, right));
    const showJob = (id) => right.replaceChildren(h("h2", {}, "Latest job"), jobView(id));
    const last = await latestJob(kinds);
    if (last) showJob(last.id);
    else right.append(h("p", { class: "empty-state" }, "Nothing has run yet. Fill in the form and start; you can leave the page, the job keeps running."));
    await buildForm(stage, left, {
      submitLabel,
      onSubmit: async (vals) => {
        const r = await api("POST", `/api/jobs/${stage}`, { values: vals });
        showJob(r.id);
        refreshHeader();
      },
    });
  };
}

pages.export = stagePage("export", { title: "Settings", submitLabel: "Export chips", kinds: ["export"] });
pages.train = stagePage("train", { title: "Settings", submitLabel: "Start training", kinds: ["train", "resume"] });
pages.classify = stagePage("classify", { title: "Settings", submitLabel: "Classify", kinds: ["classify"] });
pages.evaluate = stagePage("evaluate", { title: "Settings", submitLabel: "Evaluate the map", kinds: ["evaluate"] });

function evaluationView(r, config) {
  const m = r.metrics || {};
  const box = h("div", {});
  box.append(h("div", { class: "metrics" }, metric(pct(m.overall_accuracy), "overall accuracy"),
    metric(fmt(m.kappa), "Cohen's kappa"), metric(fmt(m.mean_iou), "mean IoU"),
    m.area_adjusted && m.area_adjusted.overall_accuracy !== undefined ? metric(pct(m.area_adjusted.overall_accuracy), "area-adjusted accuracy") : null,
    metric(fmt(m.reference_pixels ?? m.pixels), "reference pixels")));
  for (const w of r.warnings || []) box.append(h("p", {}, h("span", { class: "badge warning" }, "warning"), " ", w.message || w, w.fix ? h("span", { class: "muted small" }, " " + w.fix) : null));
  const perClass = m.per_class || m.classes || [];
  if (perClass.length) {
    box.append(h("h3", {}, "Per class"), h("div", { class: "table-scroll" }, h("table", {},
      h("tr", {}, ["Class", "User's acc. (precision)", "Producer's acc. (recall)", "F1", "IoU", "Reference px"].map((c, i) => h("th", { class: i ? "num" : "" }, c))),
      perClass.map((c) => h("tr", {}, h("td", {}, c.name ?? c.class), h("td", { class: "num" }, fmt(c.precision)), h("td", { class: "num" }, fmt(c.recall)),
        h("td", { class: "num" }, fmt(c.f1)), h("td", { class: "num" }, fmt(c.iou)), h("td", { class: "num" }, fmt(c.support ?? c.reference_pixels)))))));
  }
  if (r.confusion_png) box.append(h("h3", {}, "Confusion matrix"), h("img", { class: "figure", src: fileUrl(r.confusion_png), alt: "Confusion matrix" }));
  const image = config && config.image && config.image.length ? config.image[0] : null;
  box.append(h("h3", {}, "Map"), mapViewer(image ? relPath(image) : null, config ? relPath(config.prediction) : null));
  box.append(h("div", { class: "downloads" },
    r.report ? h("a", { class: "button primary", href: fileUrl(r.report), target: "_blank", rel: "noopener" }, "Open the evaluation report") : null,
    r.metrics_json ? h("a", { class: "button", href: downloadUrl(r.metrics_json) }, "metrics.json") : null,
    r.confusion_png ? h("a", { class: "button", href: downloadUrl(r.confusion_png) }, "Confusion matrix (PNG)") : null));
  return box;
}

const WORKSPACE = document.querySelector("header .workspace code").textContent;
function relPath(p) {
  if (!p) return p;
  return p.startsWith(WORKSPACE + "/") ? p.slice(WORKSPACE.length + 1) : p;
}

const RUN_COLUMNS = [["id", "Run"], ["name", "Name"], ["status", "Status"], ["architecture", "Model"], ["backbone", "Backbone"],
  ["bands", "Bands"], ["chip_size", "Chip"], ["epochs_run", "Epochs"], ["best_epoch", "Best"], ["training_seconds", "Time"],
  ["accuracy", "Val. accuracy"], ["mean_iou", "mIoU"], ["dice", "Dice"], ["baseline_accuracy", "Forest acc."],
  ["eval_accuracy", "Map accuracy"], ["eval_kappa", "Map kappa"], ["created", "Started"]];

pages.runs = async () => {
  const tableCard = card("Training runs");
  const cmpCard = card("Compare two runs", h("p", { class: "empty-state" }, "Tick two runs in the table to compare them."));
  const jobsCard = card("Recent jobs");
  jobsCard.id = "jobs";
  root.append(tableCard, cmpCard, jobsCard);
  let sort = store.get("runs.sort", "id");
  let desc = store.get("runs.desc", true);
  const picked = [];
  const wrap = h("div", { class: "table-scroll" });
  tableCard.append(wrap);

  async function load() {
    let r;
    try { r = await api("GET", "/api/runs?" + q({ sort, descending: desc })); } catch (e) { wrap.replaceChildren(errorBox(e)); return; }
    if (!r.runs.length) { wrap.replaceChildren(h("p", { class: "empty-state" }, "No runs yet. ", h("a", { href: "/train" }, "Train a model"), " to see it here.")); return; }
    const head = h("tr", {}, h("th", {}, ""), RUN_COLUMNS.map(([k, label]) => h("th", {
      class: `sortable ${sort === k ? "sorted" : ""} ${sort === k && !desc ? "asc" : ""} ${typeof r.runs[0][k] === "number" ? "num" : ""}`,
      onclick: () => { desc = sort === k ? !desc : true; sort = k; store.set("runs.sort", sort); store.set("runs.desc", desc); load(); },
      title: "Sort",
    }, label)), h("th", {}, ""));
    const rows = r.runs.map((run) => {
      const cb = h("input", { type: "checkbox", checked: picked.includes(run.id), "aria-label": `Compare run ${run.id}` });
      cb.addEventListener("change", () => {
        const i = picked.indexOf(run.id);
        if (cb.checked && i < 0) picked.push(run.id);
        if (!cb.checked && i >= 0) picked.splice(i, 1);
        while (picked.length > 2) picked.shift();
        load(); compare();
      });
      const cells = RUN_COLUMNS.map(([k]) => {
        let v = run[k];
        if (k === "status") return h("td", {}, h("span", { class: `badge ${v}` }, String(v).replace("_", " ")));
        if (["accuracy", "baseline_accuracy", "eval_accuracy"].includes(k)) v = pct(v);
        else if (k === "training_seconds") v = duration(v);
        else if (k === "created") v = (v || "").replace("T", " ").replace("+00:00", " UTC");
        else v = fmt(v);
        return h("td", { class: typeof run[k] === "number" ? "num" : "" }, v);
      });
      const links = h("td", {}, run.report ? h("a", { href: fileUrl(run.report), target: "_blank", rel: "noopener" }, "report") : null,
        run.status === "interrupted" ? h("button", { type: "button", onclick: async () => {
          try { const j = await api("POST", `/api/runs/${run.id}/resume`); location.href = `/jobs/${j.id}`; } catch (e) { wrap.prepend(errorBox(e)); }
        } }, "resume") : null);
      return h("tr", { class: picked.includes(run.id) ? "selected" : "" }, h("td", {}, cb), cells, links);
    });
    wrap.replaceChildren(h("table", { id: "runs-table" }, head, rows));
  }
  async function compare() {
    if (picked.length !== 2) { cmpCard.replaceChildren(h("h2", {}, "Compare two runs"), h("p", { class: "empty-state" }, "Tick two runs in the table to compare them.")); return; }
    const [a, b] = picked.slice().sort((x, y) => x - y);
    try {
      const r = await api("GET", "/api/runs/compare?" + q({ a, b }));
      cmpCard.replaceChildren(h("h2", {}, `Run ${a} vs run ${b}`), h("div", { class: "table-scroll" }, h("table", {},
        h("tr", {}, h("th", {}, ""), h("th", {}, `run ${a}`), h("th", {}, `run ${b}`), h("th", { class: "num" }, "b − a")),
        r.rows.filter((x) => x.a !== null || x.b !== null).map((x) => h("tr", {}, h("td", {}, x.key.replaceAll("_", " ")),
          h("td", { class: "small" }, fmt(x.a)), h("td", { class: "small" }, fmt(x.b)),
          h("td", { class: "num" }, x.diff === null ? "" : (x.diff > 0 ? "+" : "") + fmt(x.diff)))))));
    } catch (e) { cmpCard.replaceChildren(h("h2", {}, "Compare two runs"), errorBox(e)); }
  }
  async function loadJobs() {
    const r = await api("GET", "/api/jobs?" + q({ limit: 15 }));
    jobsCard.replaceChildren(h("h2", {}, "Recent jobs"), r.jobs.length ? h("table", {},
      h("tr", {}, h("th", {}, "Job"), h("th", {}, "Kind"), h("th", {}, "Status"), h("th", {}, "Started"), h("th", {}, "Finished")),
      r.jobs.map((j) => h("tr", {}, h("td", {}, h("a", { href: `/jobs/${j.id}` }, `job ${j.id}`)), h("td", {}, JOB_TITLES[j.kind] || j.kind),
        h("td", {}, h("span", { class: `badge ${j.status}` }, j.status)), h("td", { class: "small" }, (j.started || j.created || "").replace("T", " ")),
        h("td", { class: "small" }, (j.finished || "").replace("T", " "))))) : h("p", { class: "empty-state" }, "No jobs yet."));
  }
  await load();
  await loadJobs();
};

pages.job = async () => {
  const id = Number(location.pathname.split("/").pop());
  root.append(card(null, jobView(id)));
};

(async () => {
  refreshHeader();
  setInterval(refreshHeader, 5000);
  try { if (pages[PAGE]) await pages[PAGE](); }
  catch (e) { root.append(errorBox(e)); }
  document.body.dataset.ready = "1";
})();
