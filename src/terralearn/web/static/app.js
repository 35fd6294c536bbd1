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
  if (s < 9.95) return `${s.toFixed(1)} s`;
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  return m < 60 ? `${m} min ${s % 60} s` : `${Math.floor(m / 60)} h ${m % 60} min`;
}
/* Replace an element's children; null, undefined and false are left out and arrays flattened (unlike replaceChildren). */
function put(el, ...children) {
  el.replaceChildren(...children.flat(Infinity).filter((c) => c !== null && c !== undefined && c !== false)
    .map((c) => (c instanceof Node ? c : document.createTextNode(String(c)))));
  return el;
}
function errorBox(err) {
  const body = err.body || {};
  return h("div", { class: "error-box", role: "alert" },
    h("div", {}, body.error || err.message),
    body.fix ? h("div", { class: "fix" }, "Fix: " + body.fix) : null);
}
/* A time stamp of the server (ISO, UTC) in this computer's time: "2026-11-21 19:10". */
function when(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (isNaN(d)) return iso;
  const p2 = (n) => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p2(d.getMonth() + 1)}-${p2(d.getDate())} ${p2(d.getHours())}:${p2(d.getMinutes())}`;
}
/* How long a job took, from its start and end stamps (whole seconds). */
function took(job) {
  if (!job.started || !job.finished) return "";
  const s = Math.round((new Date(job.finished) - new Date(job.started)) / 1000);
  return s < 1 ? "under 1 s" : s < 10 ? `${s} s` : duration(s);
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
    if (f.widget === "fixed") continue; // set by the app itself (the workspace, resuming), never in a form
    // the image shown under a map defaults to the rasters picked for the export
    const value = saved[f.name] ?? (f.name === "image" ? saved.rasters : undefined);
    const w = await makeWidget(f, value, spec.output, () => schedule());
    widgets[f.name] = w;
    (f.basic ? basic : more).append(w.el);
  }
  for (const w of Object.values(widgets)) if (w.bind) w.bind(widgets);
  // models without an encoder (tiny, random_forest) ignore the backbone: say so instead of showing it as used
  const modelSel = form.querySelector("#f-model");
  if (modelSel && modelSel.tagName === "SELECT" && widgets.backbone) {
    const note = h("div", { class: "unused-note" }, "Not used by this model.");
    widgets.backbone.el.append(note);
    const sync = () => widgets.backbone.el.classList.toggle("unused", ["tiny", "random_forest"].includes(modelSel.value) || isDetector(modelSel.value));
    modelSel.addEventListener("change", sync);
    sync();
  }
  // the models offered follow the picked chip set's task: detectors for box chips, Mask R-CNN for instance
  // chips, the pixel models otherwise
  if (modelSel && modelSel.tagName === "SELECT" && widgets.chips && widgets.chips.first) {
    const offer = async () => {
      const path = widgets.chips.first();
      let task = null;
      if (path) { try { task = (await api("GET", "/api/describe?" + q({ path }))).task; } catch (e) { /* validation says why */ } }
      for (const o of modelSel.options) {
        const hide = task !== null && o.value !== "auto" && modelTask(o.value) !== task;
        o.hidden = hide;
        o.disabled = hide;
      }
      if (modelSel.selectedOptions[0] && modelSel.selectedOptions[0].disabled) { modelSel.value = "auto"; modelSel.dispatchEvent(new Event("change")); }
    };
    const before = widgets.chips.onchange;
    widgets.chips.onchange = () => { if (before) before(); offer(); };
    await offer();
  }

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
      else { formError.hidden = false; put(formError, errorBox(e)); }
    } finally {
      submit.disabled = false;
      await refreshOutput();
    }
  });
  /* A fresh output name once the last one is taken, unless the user typed their own. */
  async function refreshOutput() {
    if (spec.output === null || !widgets.out) return;
    try {
      const fresh = await api("GET", `/api/forms/${stage}`);
      if (widgets.out.suggested && widgets.out.value() === widgets.out.suggested) widgets.out.set(fresh.output);
      widgets.out.suggested = fresh.output;
      schedule();
    } catch (e) { /* keep the name shown */ }
  }
  schedule();
  return { form, widgets, values, validate, refreshOutput };
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
      // nothing picked before: the largest raster, most likely the image (a label or reference raster is small)
      if (!chosen.length && items.length && f.required) chosen.push(items.reduce((a, b) => ((b.size || 0) > (a.size || 0) ? b : a)).path);
      const box = h("div", { class: "picks", id, role: "group", "aria-label": f.label });
      const redraw = () => {
        put(box);
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
          box.append(h("label", {}, cb, n >= 0 ? h("span", { class: "order", title: "stacking order" }, n + 1) : h("span", { class: "order none" }),
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
        put(sel, h("option", { value: "" }, f.optional ? "(none)" : "(choose a field)"));
        if (!path) return;
        try {
          const d = await api("GET", "/api/describe?" + q({ path }));
          const fields = (d.fields || []).map((x) => x.name);
          if (!fields.length) {
            put(sel, h("option", { value: "" }, "(not needed for a raster)"));
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
      const before = source.onchange;  // several fields may follow one layer (class field, class name field)
      source.onchange = () => { if (before) before(); load(); };
      load();
    };
  } else if (f.widget === "choice") {
    const sel = h("select", { id }, f.optional ? h("option", { value: "" }, "automatic") : null,
      f.choices.map((c) => h("option", { value: c }, c)));
    sel.value = saved ?? f.default ?? (f.optional ? "" : f.choices[0]);
    sel.addEventListener("change", changed);
    input = sel;
    w.value = () => (sel.value === "" && f.optional ? null : sel.value);
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
  wrap.append(h("label", { for: id }, f.label, f.optional ? h("span", { class: "muted small" }, " (optional)") : null), input, help, error);
  return w;
}

/* Detector names of the model registry (models/detection.py): the models offered for box chips. */
const isDetector = (name) => /^(faster_rcnn|retinanet|fcos|ssd|mask_rcnn)/.test(name || "");
// the task a model name trains (the chip set's task must match it)
const modelTask = (name) => /^mask_rcnn/.test(name || "") ? "instances" : isDetector(name) ? "detection" : "pixel_classification";

/* The default pick: the held-out polygons for a reference, a vector layer for labels (a raster is more often the image). */
function preferred(name, items) {
  if (name === "reference") {
    const v = items.find((i) => i.path.endsWith("validation.gpkg"));
    if (v) return v.path;
  }
  if (name === "labels" || name === "reference") {
    const v = items.find((i) => i.kind === "vector");
    if (v) return v.path;
  }
  return items[0].path;
}

/* ------------------------------------------------------------------ jobs */

const ENDED = { finished: "Done.", cancelled: "Stopped on request:", failed: "Failed: see the message below and the log.",
  interrupted: "Interrupted: the worker stopped (the app or the computer was restarted)." };
const JOB_TITLES = { export: "Export", train: "Training", resume: "Training (resumed)", classify: "Classification", evaluate: "Evaluation",
  detect: "Detection", evaluate_detections: "Detection evaluation" };

function jobView(jobId, { onDone } = {}) {
  const el = h("div", { class: "job", "data-job": jobId });
  const head = h("div", { class: "job-head" });
  const bar = h("div", { class: "progress", role: "progressbar", "aria-label": "Progress" }, h("div", { style: "width:0%" }));
  const ptext = h("div", { class: "progress-text" });
  const charts = h("div", { class: "charts", hidden: true });
  const result = h("div", { class: "job-result" });
  const log = h("pre", { class: "log" });
  const logBox = h("details", { class: "log-box" }, h("summary", {}, "Log"), log);
  el.append(head, bar, ptext, charts, result, logBox);
  let finishedShown = false;

  async function tick() {
    let job;
    try { job = await api("GET", `/api/jobs/${jobId}`); }
    catch (e) { put(el, errorBox(e)); return; }
    const active = job.status === "running" || job.status === "queued";
    const training = job.kind === "train" || job.kind === "resume";
    const stop = active ? h("button", { class: "danger", type: "button", onclick: async (ev) => {
      ev.target.disabled = true;
      ev.target.textContent = "Stopping…";
      try { await api("POST", `/api/jobs/${jobId}/cancel`); } catch (e) { result.append(errorBox(e)); }
    } }, training ? "Stop (keeps the best model)" : "Stop") : null;
    const resume = job.resumable && job.run_id ? h("button", { type: "button", onclick: async () => {
      try { const r = await api("POST", `/api/runs/${job.run_id}/resume`); location.href = `/jobs/${r.id}`; }
      catch (e) { result.append(errorBox(e)); }
    } }, "Resume training") : null;
    put(head,
      h("strong", {}, JOB_TITLES[job.kind] || job.kind),
      h("span", { class: `badge ${job.status}` }, job.status.replace("_", " ")),
      h("span", { class: "muted small" }, h("a", { href: `/jobs/${job.id}` }, `job ${job.id}`),
        job.run_id ? [" · ", h("a", { href: "/runs" }, `run ${job.run_id}`)] : null,
        job.started ? ` · started ${when(job.started)}` : null),
      h("span", { class: "spacer" }), stop, resume);
    const p = job.progress || {};
    const frac = job.status === "finished" ? 1 : p.total ? Math.min(1, p.done / p.total) : (active ? null : 0);
    bar.classList.toggle("indeterminate", frac === null);
    bar.classList.toggle("stopped", !active && job.status !== "finished");
    bar.firstChild.style.width = frac === null ? "30%" : `${(100 * frac).toFixed(1)}%`;
    let what = p.phase || (job.status === "queued" ? "Waiting to start" : "");
    if (training && p.history && p.history.length) {
      what = `Epoch ${fmt(p.done)} of ${fmt(p.total)}` + (p.best_epoch ? ` · best ${active ? "so far" : "of the run"}: epoch ${p.best_epoch}` : "");
      if (!active && job.status !== "finished") what = `${ENDED[job.status] || job.status} ${what}`;
    } else if (!active) {
      what = ENDED[job.status] || job.status;
    } else if (p.total) {
      what += ` · ${fmt(p.done)} / ${fmt(p.total)} ${p.unit || ""}`;
      if (p.km2_total) what += ` · ${fmt(p.km2_done, 1)} / ${fmt(p.km2_total, 1)} km²`;
    }
    let right = active ? (p.eta_s ? `about ${duration(p.eta_s)} left` : "") : job.started && job.finished ? `took ${took(job)}` : "";
    if (active && training && p.total && p.done >= p.total) right = "writing the model and its report…";
    put(ptext, h("span", {}, what), h("span", { class: "eta" }, right));
    if (p.history && p.history.length) { charts.hidden = false; drawCharts(charts, p.history, p.best_epoch); }
    log.textContent = job.log || "";
    log.scrollTop = log.scrollHeight;
    if (!active && !finishedShown) {
      finishedShown = true;
      put(result);
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

/* The closing row of a finished stage: its outputs, then the next step of the workflow. */
function nextRow(links, href, label) {
  return h("div", { class: "next-row" }, h("div", { class: "downloads" }, links),
    h("a", { class: "button next", href }, `Next: ${label} →`));
}

function renderResult(job) {
  const r = job.result;
  const box = h("div", {});
  if (job.kind === "export") {
    box.append(h("div", { class: "metrics" },
      metric(fmt(r.chips), "chips written"), metric(fmt(r.train_chips), "for training"),
      metric(fmt(r.val_chips), "held out for validation")));
    if (r.findings && r.findings.length) box.append(findingsList(r.findings));
    box.append(nextRow([h("span", { class: "muted" }, "Chip set ", h("code", {}, r.out))], "/train", "train a model"));
  } else if ((job.kind === "train" || job.kind === "resume") && r.task === "detection") {
    box.append(h("div", { class: "metrics" }, metric(fmt(r.map50), "validation mAP50"), metric(fmt(r.map), "COCO mAP@[.5:.95]")));
    box.append(h("p", { class: "muted small" }, "Scored on the chips of the export's held-out blocks: no object there was seen in training."));
    for (const w of r.warnings || []) box.append(h("p", {}, h("span", { class: "badge warning" }, "warning"), " ", w.message || w, w.fix ? h("span", { class: "muted small" }, " " + w.fix) : null));
    box.append(nextRow([
      r.report ? h("a", { class: "button primary", href: fileUrl(r.report), target: "_blank", rel: "noopener" }, "Open the training report") : null,
      r.package ? h("a", { class: "button", href: downloadUrl(r.package + ".zip") }, "Download the model (.zip)") : null,
    ], "/detect", "detect objects in a raster"));
  } else if (job.kind === "train" || job.kind === "resume") {
    box.append(h("div", { class: "metrics" },
      metric(pct(r.accuracy), "validation accuracy"), metric(fmt(r.mean_iou), "mean IoU"), metric(fmt(r.dice), "Dice"),
      r.baseline_accuracy !== null && r.baseline_accuracy !== undefined ? metric(pct(r.baseline_accuracy), "random forest baseline") : null));
    if (r.status === "stopped_early") box.append(h("p", { class: "muted small" }, "Stopped early: the monitored score had stopped improving."));
    if (r.weights_note) box.append(h("p", { class: "muted small" }, r.weights_note));
    box.append(nextRow([
      r.report ? h("a", { class: "button primary", href: fileUrl(r.report), target: "_blank", rel: "noopener" }, "Open the training report") : null,
      r.package ? h("a", { class: "button", href: downloadUrl(r.package + ".zip") }, "Download the model (.zip)") : null,
    ], "/classify", "classify a raster"));
  } else if (job.kind === "classify") {
    box.append(h("div", { class: "metrics" }, metric(fmt(r.pixels), "pixels"),
      r.area_km2 ? metric(fmt(r.area_km2, 1), "km²") : null, r.seconds ? metric(fmt(Math.round(r.pixels / r.seconds)), "pixels per second") : null,
      metric(r.cog_valid ? "valid" : "not valid", "Cloud-Optimized GeoTIFF")));
    for (const w of r.warnings || []) box.append(h("p", {}, h("span", { class: "badge warning" }, "warning"), " ", w));
    box.append(mapViewer(r.rasters && r.rasters[0], r.out));
    box.append(nextRow([
      h("a", { class: "button primary", href: downloadUrl(r.out) }, "Download the map (GeoTIFF)"),
      r.qml ? h("a", { class: "button", href: downloadUrl(r.qml) }, "QGIS style (.qml)") : null,
      r.attribute_table ? h("a", { class: "button", href: downloadUrl(r.attribute_table) }, "Attribute table (.aux.xml)") : null,
      r.probability ? h("a", { class: "button", href: downloadUrl(r.probability) }, "Confidence raster") : null,
    ], "/evaluate", "evaluate the map"));
  } else if (job.kind === "evaluate") {
    box.append(evaluationView(r, job.config));
  } else if (job.kind === "detect") {
    box.append(h("div", { class: "metrics" }, metric(fmt(r.detections), "objects detected"),
      ...Object.entries(r.counts || {}).map(([name, n]) => metric(fmt(n), name)),
      metric(fmt(r.tiles), `tiles of ${fmt(r.tile_size)} px`), r.area_km2 ? metric(fmt(r.area_km2, 2), "km²") : null));
    for (const w of r.warnings || []) box.append(h("p", {}, h("span", { class: "badge warning" }, "warning"), " ", w));
    box.append(detectionViewer(r.rasters && r.rasters[0], r.out));
    box.append(nextRow([
      h("a", { class: "button primary", href: downloadUrl(r.out) }, "Download the detections (GeoPackage)"),
      r.qml ? h("a", { class: "button", href: downloadUrl(r.qml) }, "QGIS style (.qml)") : null,
    ], "/evaluate", "evaluate the detections"));
  } else if (job.kind === "evaluate_detections") {
    box.append(detectionEvaluationView(r));
  }
  return box;
}

function metric(v, k) { return h("div", { class: "metric" }, h("div", { class: "v" }, v), h("div", { class: "k" }, k)); }

function drawCharts(container, history, best) {
  if (history.some((r) => typeof r.map50 === "number")) {  // a detector: its losses and validation mAP
    put(container,
      lineChart("Loss", history, [["train_loss", "training", "#2e7d4f"]], best),
      lineChart("Validation mAP", history, [["map50", "mAP50", "#24508f"], ["map", "mAP@[.5:.95]", "#a86400"]], best),
      h("div", { class: "chart-note muted small" }, best ? `Dashed line: the best epoch (${best}), whose model is kept.` : ""));
    return;
  }
  put(container,
    lineChart("Loss", history, [["train_loss", "training", "#2e7d4f"], ["val_loss", "validation", "#c0392b"]], best),
    lineChart("Validation scores", history, [["accuracy", "accuracy", "#24508f"], ["mean_iou", "mean IoU", "#a86400"], ["dice", "Dice", "#7b3fa0"]], best),
    h("div", { class: "chart-note muted small" }, best ? `Dashed line: the best epoch (${best}), whose model is kept.` : ""));
}

function lineChart(title, rows, series, best) {
  const W = 420, H = 230, L = 46, R = 12, T = 30, B = 34;
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
  const maxEpoch = Math.max(...rows.map((r) => r.epoch));
  const minEpoch = Math.min(...rows.map((r) => r.epoch));
  const x = (e) => L + (maxEpoch === minEpoch ? 0.5 : (e - minEpoch) / (maxEpoch - minEpoch)) * (W - L - R);
  const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  add("text", { x: 4, y: 17, class: "title" }, title);
  for (let i = 0; i <= 4; i++) {
    const v = lo + (hi - lo) * i / 4;
    add("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), stroke: "#e3e8eb" });
    add("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, v.toFixed(hi - lo < 0.1 ? 3 : 2));
  }
  const ticks = [...new Set(rows.map((r) => r.epoch))];
  const every = Math.ceil(ticks.length / 10);
  ticks.forEach((e, i) => { if (i % every === 0 || (i === ticks.length - 1 && i % every > every / 2)) add("text", { x: x(e), y: H - B + 14, "text-anchor": "middle" }, e); });
  add("text", { x: (L + W - R) / 2, y: H - 4, "text-anchor": "middle" }, "epoch");
  if (best) add("line", { x1: x(best), x2: x(best), y1: T, y2: H - B, stroke: "#8fd3a8", "stroke-dasharray": "4 3" });
  let lx = W - R;
  for (const [key, label, colour] of series.slice().reverse()) {
    const pts = rows.filter((r) => typeof r[key] === "number").map((r) => `${x(r.epoch).toFixed(1)},${y(r[key]).toFixed(1)}`);
    if (pts.length) add("polyline", { points: pts.join(" "), fill: "none", stroke: colour, "stroke-width": 2 });
    if (pts.length === 1) { const [px, py] = pts[0].split(","); add("circle", { cx: px, cy: py, r: 3, fill: colour }); }
    add("text", { x: lx, y: 17, "text-anchor": "end", style: `fill:${colour};font-weight:600` }, label);
    lx -= label.length * 7 + 14;
  }
  return svg;
}

function findingsList(findings) {
  return h("div", { class: "findings" }, findings.map((f) => h("div", { class: "finding" },
    h("div", {}, h("span", { class: `badge ${f.severity}` }, f.severity)),
    h("div", {}, h("div", {}, f.message), f.fix && !/^nothing to do/i.test(f.fix) ? h("div", { class: "fix" }, "Fix: " + f.fix) : null))));
}

async function latestJob(kinds) {
  const r = await api("GET", "/api/jobs?" + q({ limit: 20 }));
  return r.jobs.find((j) => kinds.includes(j.kind));
}

/* ------------------------------------------------------------------ map viewer (Leaflet, pixel grid, offline) */

/* The frame of a map viewer: tools above, the map, the legend below; ``draw`` fills it once it is on the page. */
function viewerFrame(draw) {
  const wrap = h("div", { class: "mapwrap" });
  const div = h("div", { class: "mapview" });
  const tools = h("div", { class: "map-tools" });
  const legend = h("div", { class: "legend" });
  wrap.append(tools, div, legend);
  setTimeout(async () => {
    try { await draw(div, tools, legend); } catch (e) { wrap.append(errorBox(e)); }
  }, 0);
  return wrap;
}

function mapViewer(imagePath, mapPath) {
  return viewerFrame(async (div, tools, legend) => {
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
  });
}

/* Detections over the image they were found on: boxes coloured by class, a score slider, the counts shown. */
function detectionViewer(imagePath, gpkgPath) {
  return viewerFrame(async (div, tools, legend) => {
    const d = await api("GET", "/api/detections?" + q({ path: gpkgPath }));
    const image = imagePath || (d.raster ? relPath(d.raster) : null);
    const base = image ? await api("GET", "/api/pyramid?" + q({ path: image })) : null;
    const ref = base || { width: d.width, height: d.height, max_zoom: 0 };
    const map = L.map(div, { crs: L.CRS.Simple, minZoom: -2, maxZoom: ref.max_zoom + 3, attributionControl: false, zoomSnap: 0.25 });
    const at = (x, y) => map.unproject([x, y], ref.max_zoom);
    const bounds = L.latLngBounds(at(0, ref.height), at(ref.width, 0));
    if (base) L.tileLayer("/api/tiles/{z}/{x}/{y}.png?" + q({ path: image }), {
      tileSize: 256, minZoom: -2, maxZoom: ref.max_zoom + 3, maxNativeZoom: base.max_zoom, minNativeZoom: 0,
      bounds, noWrap: true, keepBuffer: 2 }).addTo(map);
    map.fitBounds(bounds);
    const group = L.layerGroup().addTo(map);
    const shown = h("span", { class: "muted small", "data-shown": "" });
    const colours = d.classes.map((c) => c.colour || "#ff00ff");
    const draw = (min) => {
      group.clearLayers();
      let n = 0;
      for (const [x0, y0, x1, y1, k, score] of d.boxes) {
        if (score < min) continue;
        n += 1;
        L.rectangle(L.latLngBounds(at(x0, y1), at(x1, y0)), { color: colours[k], weight: 2, fill: false })
          .bindTooltip(`${d.classes[k].name} · score ${score.toFixed(2)}`).addTo(group);
      }
      shown.textContent = `${fmt(n)} of ${fmt(d.total)} boxes with a score of at least ${min.toFixed(2)}`;
    };
    const scores = d.boxes.map((b) => b[5]);
    const lowest = scores.length ? Math.floor(100 * Math.min(...scores)) : 0;
    const slider = h("input", { type: "range", min: lowest, max: 100, value: lowest, "aria-label": "Minimum score" });
    slider.addEventListener("input", () => draw(slider.value / 100));
    tools.append(h("label", {}, "Minimum score ", slider), shown);
    draw(lowest / 100);
    if (d.shown < d.total) tools.append(h("span", { class: "muted small" }, ` (the best ${fmt(d.shown)} are drawn)`));
    d.classes.forEach((c, i) => legend.append(h("span", {}, h("span", { class: "sw", style: `background:${colours[i]}` }), c.name)));
  });
}

function detectionEvaluationView(r) {
  const m = r.metrics || {};
  const box = h("div", {});
  box.append(h("div", { class: "metrics" }, metric(fmt(m.map50), "mAP50"), metric(fmt(m.map), "COCO mAP@[.5:.95]"),
    metric(fmt(m.map75), "mAP75"), metric(fmt((m.counts || {}).reference), "reference objects")));
  for (const w of r.warnings || []) box.append(h("p", {}, h("span", { class: "badge warning" }, "warning"), " ", w.message || w, w.fix ? h("span", { class: "muted small" }, " " + w.fix) : null));
  const rows = m.per_class || [];
  if (rows.length) {
    box.append(h("h3", {}, `Per class (matched at IoU ≥ ${fmt(m.min_iou, 2)})`), h("div", { class: "table-scroll" }, h("table", { class: "per-class ap-table" },
      h("tr", {}, ["Class", "AP50", "AP", "Precision", "Recall", "F1", "TP", "FP", "FN"].map((c, i) => h("th", { class: i ? "num" : "" }, c))),
      rows.map((c) => h("tr", {}, h("td", { class: "nowrap" }, h("span", { class: "sw", style: `background:${c.colour || "#ccc"}` }), c.class_name),
        ...[c.ap50, c.ap, c.precision, c.recall, c.f1].map((v) => h("td", { class: "num" }, fmt(v))),
        ...[c.tp, c.fp, c.fn].map((v) => h("td", { class: "num" }, fmt(v))))))));
  }
  for (const [png, title] of [[r.pr_png, "Precision-recall curves"], [r.seams_png, "Recall and precision by distance to a tile seam"]]) {
    if (png) box.append(h("h3", {}, title), h("img", { class: "figure", src: fileUrl(png), alt: title }));
  }
  box.append(nextRow([
    r.report ? h("a", { class: "button primary", href: fileUrl(r.report), target: "_blank", rel: "noopener" }, "Open the evaluation report") : null,
    r.metrics_json ? h("a", { class: "button", href: downloadUrl(r.metrics_json) }, "metrics.json") : null,
  ], "/runs", "compare runs"));
  return box;
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
  const drop = h("div", { class: "dropzone" },
    h("div", {}, h("strong", {}, "Add your data: "), "drop files here or ", h("label", { class: "button", for: "upload-input" }, "Choose files…")),
    h("div", { class: "small" }, "GeoTIFF rasters, GeoPackages, GeoJSON or zipped shapefiles; they are copied into uploads/."), fileInput);
  fileInput.style.display = "none";
  const sampleBtn = h("button", { type: "button", id: "add-sample" }, "Add the sample scene");
  left.append(crumbs, h("div", { class: "table-scroll" }, table), drop, status, h("div", { class: "actions" }, sampleBtn,
    h("span", { class: "muted small" }, "or try everything on a built-in 6-band 20 m scene with land-cover polygons.")));
  let current = "";
  let selected = null;

  async function list(path) {
    current = path;
    let r;
    try { r = await api("GET", "/api/files?" + q({ path })); } catch (e) { put(status, errorBox(e)); return; }
    const parts = r.path && r.path !== "." ? r.path.split("/") : [];
    put(crumbs, h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); list(""); } }, "workspace"),
      ...parts.map((p, i) => [" / ", h("a", { href: "#", onclick: (ev) => { ev.preventDefault(); list(parts.slice(0, i + 1).join("/")); } }, p)]));
    put(table, h("tr", {}, h("th", {}, "Name"), h("th", {}, "Kind"), h("th", { class: "num" }, "Size")));
    if (r.parent !== null && r.parent !== undefined) {
      table.append(h("tr", {}, h("td", { class: "name", colspan: 3, onclick: () => list(r.parent === "." ? "" : r.parent) }, "↑ Up one folder")));
    }
    if (!r.entries.length) table.append(h("tr", {}, h("td", { colspan: 3, class: "muted" }, "Nothing here yet. Add files below, or the sample scene.")));
    for (const e of r.entries) {
      const open = () => (e.kind === "folder" ? list(e.path) : show(e));
      table.append(h("tr", { class: e.path === selected ? "selected" : "" }, h("td", { class: "name", onclick: open, title: e.kind === "folder" ? "Open the folder" : "Show its summary" }, (e.kind === "folder" ? "📁 " : "") + e.name),
        h("td", {}, h("span", { class: "kind" }, e.kind)), h("td", { class: "num small" }, e.kind === "folder" ? "" : bytes(e.size))));
    }
  }

  async function show(e) {
    selected = e.path;
    for (const tr of table.querySelectorAll("tr")) tr.classList.toggle("selected", tr.firstChild.textContent.endsWith(e.name));
    put(right, h("h2", {}, e.name), h("p", { class: "muted" }, "Reading…"));
    try {
      const d = await api("GET", "/api/describe?" + q({ path: e.path }));
      put(right, h("h2", {}, e.name), describeView(d));
      if (["raster", "map", "vector"].includes(d.kind)) {
        right.append(h("h3", {}, "Quick look"), h("img", { class: "quicklook", alt: `Quick look of ${e.name}`, src: "/api/quicklook?" + q({ path: e.path }) }));
      }
      if (["report", "image"].includes(d.kind)) right.append(h("p", {}, h("a", { href: fileUrl(e.path), target: "_blank", rel: "noopener" }, "Open")));
    } catch (err) { put(right, h("h2", {}, e.name), errorBox(err)); }
  }

  async function upload(fileList) {
    for (const file of fileList) {
      const fd = new FormData();
      fd.append("file", file);
      fd.append("folder", "uploads");
      put(status, h("p", { class: "muted" }, `Uploading ${file.name}…`));
      try {
        const r = await api("POST", "/api/upload", fd, true);
        put(status, h("p", { class: "notice ok" }, `Added ${r.path} (${r.kind})`));
        await list("uploads");
        show({ name: r.path.split("/").pop(), path: r.path });
      } catch (err) { put(status, errorBox(err)); }
    }
    refreshHeader();
  }
  fileInput.addEventListener("change", () => upload(fileInput.files));
  drop.addEventListener("dragover", (ev) => { ev.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (ev) => { ev.preventDefault(); drop.classList.remove("over"); upload(ev.dataTransfer.files); });
  sampleBtn.addEventListener("click", async () => {
    sampleBtn.disabled = true;
    put(status, h("p", { class: "muted" }, "Writing the sample scene…"));
    try { await api("POST", "/api/sample"); put(status, h("p", { class: "notice ok" }, "Sample scene added in sample/")); await list("sample"); }
    catch (err) { put(status, errorBox(err)); }
    sampleBtn.disabled = false;
    refreshHeader();
  });
  list("");
};

const FIELD_TYPES = { object: "text", int64: "integer", int32: "integer", float64: "decimal", float32: "decimal", bool: "yes/no" };
function bytes(b) {
  if (b === null || b === undefined) return "";
  return b < 1024 ? `${b} B` : b < 1048576 ? `${(b / 1024).toFixed(0)} KB` : `${(b / 1048576).toFixed(1)} MB`;
}

function describeView(d) {
  const rows = [];
  const add = (k, v) => { if (v !== null && v !== undefined && v !== "") rows.push(h("dt", {}, k), h("dd", {}, v)); };
  const crs = d.crs ? `${d.crs.name || ""}${d.crs.epsg ? ` (EPSG:${d.crs.epsg})` : ""}` : "none: the file has no CRS";
  add("Kind", d.kind);
  if (d.kind === "raster" || d.kind === "map") {
    add("Size", `${fmt(d.width)} × ${fmt(d.height)} pixels, ${d.bands} band${d.bands === 1 ? "" : "s"} (${d.dtype})`);
    if (d.band_names && d.band_names.some((b) => b)) add("Bands", d.band_names.map((b, i) => b || `band ${i + 1}`).join(", "));
    add("CRS", crs);
    if (d.pixel_size) add("Pixel size", `${fmt(d.pixel_size[0], 3)} × ${fmt(d.pixel_size[1], 3)} ${d.pixel_units || ""}`);
    if (d.extent) add("Extent", d.extent.map((v) => fmt(v, 2)).join(", "));
    if (d.lonlat_bounds) add("Lon/lat box", d.lonlat_bounds.map((v) => fmt(v, 4)).join(", "));
    add("Nodata", d.nodata);
  }
  if (d.kind === "vector") {
    add("Features", fmt(d.feature_count));
    add("Geometry", d.geometry_type);
    add("CRS", crs);
    if (d.bounds) add("Extent", d.bounds.map((v) => fmt(v, 2)).join(", "));
    if (d.layers && d.layers.length > 1) add("Layers", d.layers.map((l) => l.name || l).join(", "));
  }
  const px = (v) => (Array.isArray(v) ? `${v[0]} × ${v[1]}` : v);
  if (d.kind === "chipset") {
    add("Chips", `${fmt(d.chips)} (${fmt(d.train)} for training, ${fmt(d.val)} for validation)`);
    add("Tile size", d.tile_size ? `${px(d.tile_size)} pixels, stride ${px(d.stride)}` : null);
    if (d.bands) add("Bands", `${d.bands.join(", ")} (${d.dtype})`);
    if (d.split) add("Split", `${d.split.method}, ${pct(d.split.val_fraction)} held out`);
    add("CRS", d.crs);
    if (d.pixel_size) add("Pixel size", `${px(d.pixel_size)} ${d.pixel_units || ""}`);
    if (d.sources) add("Made from", `${(d.sources.rasters || []).join(", ")}; labels ${d.sources.labels || "–"}${d.sources.class_field ? ` (field ${d.sources.class_field})` : ""}`);
    add("Created", when(d.created));
  }
  if (d.kind === "package") {
    add("Model", d.backbone ? `${d.architecture} · ${d.backbone}` : d.architecture);
    add("Weights", d.weights);
    if (d.bands) add("Bands", d.bands.join(", "));
    if (d.chip_size) add("Chip size", `${px(d.chip_size)} pixels`);
    if (d.metrics) add("Validation", `accuracy ${pct(d.metrics.accuracy)}, mean IoU ${fmt(d.metrics.mean_iou)}, Dice ${fmt(d.metrics.dice)}`);
    if (d.epochs_run) add("Epochs", `${d.epochs_run} (best ${d.best_epoch})`);
    add("Run", d.run_id);
    if (d.model_size_mb) add("Weights size", `${fmt(d.model_size_mb, 2)} MB`);
  }
  const file = [d.driver, d.compression && d.compression !== "NONE" ? `${d.compression.toLowerCase()} compression` : null,
    d.overviews ? `${d.overviews} overviews` : null, d.layer ? `layer "${d.layer}"` : null].filter(Boolean).join(", ");
  add("File", [bytes(d.file_size), file].filter(Boolean).join(" · "));
  if (d.rotated) add("Grid", "rotated or south-up (TerraLearn refuses it: warp it north-up first)");
  const out = h("div", {}, h("dl", { class: "summary" }, rows));
  if (d.kind === "vector" && d.fields) {
    out.append(h("h3", {}, "Fields"), h("table", {}, h("tr", {}, h("th", {}, "Field"), h("th", {}, "Type"), h("th", {}, "Values")),
      d.fields.map((f) => h("tr", {}, h("td", {}, h("code", {}, f.name)), h("td", {}, FIELD_TYPES[f.type] || f.type),
        h("td", { class: "small" }, f.distinct ? f.distinct.slice(0, 12).join(", ") + (f.distinct.length > 12 ? ", …" : "") : "many different values")))));
  }
  if (d.classes && d.classes.length) {
    out.append(h("h3", {}, "Classes"), h("div", { class: "legend" }, d.classes.map((c) =>
      h("span", {}, h("span", { class: "sw", style: `background:${c.colour || c.color || "#ccc"}` }), c.name,
        h("span", { class: "muted" }, ` (${c.value}${c.pixels ? `; ${fmt(c.pixels.total)} px` : ""})`)))));
  }
  return out;
}

pages.check = async () => {
  const left = card("Inputs");
  const right = card("Findings", h("p", { class: "empty-state" }, "Run the checks to see what would go wrong, and how to fix it, before exporting."));
  root.append(h("div", { class: "stage" }, left, right));
  await buildForm("check", left, {
    submitLabel: "Run the checks",
    onSubmit: async (vals) => {
      put(right, h("h2", {}, "Findings"), h("p", { class: "muted" }, "Checking… (reads the labels and counts pixels per class)"));
      try {
        const r = await api("POST", "/api/check", { values: vals });
        const errors = r.findings.filter((f) => f.severity === "error").length;
        const warns = r.findings.filter((f) => f.severity === "warning").length;
        put(right, h("h2", {}, "Findings"),
          h("div", { class: `summary-banner ${errors ? "error" : "ok"}` }, errors
            ? `${errors} problem${errors > 1 ? "s" : ""} to fix before exporting${warns ? `, ${warns} warning${warns > 1 ? "s" : ""}` : ""}.`
            : `Ready to export${warns ? ` (${warns} warning${warns > 1 ? "s" : ""} worth reading)` : ""}.`),
          findingsList(r.findings),
          errors ? null : h("div", { class: "actions" }, h("a", { class: "button primary", href: "/export" }, "Continue to Export →")));
        store.set("form.export", { ...store.get("form.export", {}), ...vals });
        refreshHeader();
      } catch (e) {
        put(right, h("h2", {}, "Findings"), errorBox(e));
        throw e;
      }
    },
  });
};

function stagePage(stage, { title, submitLabel, kinds, empty }) {
  return async () => {
    const left = card(title);
    const right = card("Latest job");
    root.append(h("div", { class: "stage" }, left, right));
    let form = null;
    const showJob = (id) => put(right, h("h2", {}, "Latest job"), jobView(id, { onDone: () => form && form.refreshOutput() }));
    const last = await latestJob(kinds);
    if (last) showJob(last.id);
    else right.append(h("p", { class: "empty-state" }, empty, " You can leave the page while it runs: the job goes on."));
    form = await buildForm(stage, left, {
      submitLabel,
      onSubmit: async (vals) => {
        const r = await api("POST", `/api/jobs/${stage}`, { values: vals });
        showJob(r.id);
        refreshHeader();
        if (right.getBoundingClientRect().top < 0) right.scrollIntoView({ behavior: "smooth", block: "start" });
      },
    });
  };
}

pages.export = stagePage("export", { title: "Settings", submitLabel: "Export chips", kinds: ["export"],
  empty: "No chips exported yet. Pick the image and the labels, then export." });
pages.train = stagePage("train", { title: "Settings", submitLabel: "Start training", kinds: ["train", "resume"],
  empty: "No training yet. Pick a chip set and start: the loss and the scores are drawn after every epoch." });
pages.classify = stagePage("classify", { title: "Settings", submitLabel: "Classify", kinds: ["classify"],
  empty: "No map yet. Pick a trained model and the raster to classify." });
pages.detect = stagePage("detect", { title: "Settings", submitLabel: "Detect objects", kinds: ["detect"],
  empty: "No detections yet. Pick a trained detector and the raster to search." });
const evaluateMap = stagePage("evaluate", { title: "A classified map", submitLabel: "Evaluate the map", kinds: ["evaluate"],
  empty: "No evaluation yet. Pick a map and reference data (polygons, points or a classified raster)." });
const evaluateDetections = stagePage("evaluate_detections", { title: "Detections", submitLabel: "Evaluate the detections",
  kinds: ["evaluate_detections"], empty: "No detection evaluation yet. Pick detections (.gpkg) and the reference objects or annotation file." });
pages.evaluate = async () => { await evaluateMap(); await evaluateDetections(); };

function evaluationView(r, config) {
  const m = r.metrics || {};
  const aa = m.area_adjusted || {};
  const box = h("div", {});
  const adjusted = aa.overall_accuracy !== undefined && Math.abs(aa.overall_accuracy - m.overall_accuracy) > 5e-4;
  box.append(h("div", { class: "metrics" }, metric(pct(m.overall_accuracy), "overall accuracy"),
    adjusted ? metric(`${pct(aa.overall_accuracy)}`, `area-adjusted accuracy (± ${pct(aa.overall_accuracy_ci)})`) : null,
    metric(fmt(m.kappa), "Cohen's kappa"), metric(fmt(m.mean_iou), "mean IoU"), metric(fmt(m.dice), "Dice"),
    metric(fmt(m.reference_pixels), "reference pixels")));
  if (config) {
    box.append(h("p", { class: "muted small" }, "Map ", h("code", {}, relPath(config.prediction)), " against ",
      h("code", {}, relPath(config.reference)), m.reference_kind ? ` (${m.reference_kind}${m.reference_features ? `, ${fmt(m.reference_features)} features` : ""})` : "", "."));
  }
  for (const w of r.warnings || []) box.append(h("p", {}, h("span", { class: "badge warning" }, "warning"), " ", w.message || w, w.fix ? h("span", { class: "muted small" }, " " + w.fix) : null));
  const perClass = m.per_class || [];
  const tables = h("div", {});
  if (perClass.length) {
    tables.append(h("div", {}, h("h3", {}, "Per class"), h("div", { class: "table-scroll" }, h("table", { class: "per-class" },
      h("tr", {}, [["Class", ""], ["User's acc.", "precision: of the pixels mapped as this class, the share that is right"],
        ["Producer's acc.", "recall: of the reference pixels of this class, the share mapped right"], ["F1", ""], ["IoU", ""],
        ["Reference px", "reference pixels of this class"]].map(([c, tip], i) => h("th", { class: i ? "num" : "", title: tip || null }, c))),
      perClass.map((c) => h("tr", {}, h("td", { class: "nowrap" }, h("span", { class: "sw", style: `background:${c.colour || "#ccc"}` }), c.name),
        h("td", { class: "num" }, pct(c.precision)), h("td", { class: "num" }, pct(c.recall)),
        h("td", { class: "num" }, fmt(c.f1)), h("td", { class: "num" }, fmt(c.iou)), h("td", { class: "num" }, fmt(c.support))))))));
  }
  if (r.confusion_png) {
    tables.append(h("div", {}, h("h3", {}, "Confusion matrix"),
      h("a", { href: fileUrl(r.confusion_png), target: "_blank", rel: "noopener", title: "Open full size" },
        h("img", { class: "figure confusion", src: fileUrl(r.confusion_png), alt: "Confusion matrix" }))));
  }
  box.append(tables);
  const image = config && config.image && config.image.length ? config.image[0] : null;
  box.append(h("h3", {}, image ? "The map over the image" : "The map"), mapViewer(image ? relPath(image) : null, config ? relPath(config.prediction) : null));
  box.append(nextRow([
    r.report ? h("a", { class: "button primary", href: fileUrl(r.report), target: "_blank", rel: "noopener" }, "Open the evaluation report") : null,
    r.metrics_json ? h("a", { class: "button", href: downloadUrl(r.metrics_json) }, "metrics.json") : null,
    r.confusion_png ? h("a", { class: "button", href: downloadUrl(r.confusion_png) }, "Confusion matrix (PNG)") : null,
  ], "/runs", "compare runs"));
  return box;
}

const WORKSPACE = document.querySelector("header .workspace code").textContent;
function relPath(p) {
  if (!p) return p;
  return p.startsWith(WORKSPACE + "/") ? p.slice(WORKSPACE.length + 1) : p;
}

/* The run table's columns: [sort key, heading, tooltip, cell text]. */
const RUN_COLUMNS = [
  ["id", "Run", "Run number", (r) => r.id],
  ["name", "Name", "The run's name", (r) => r.name || ""],
  ["status", "Status", "How the training ended", null],
  ["task", "Task", "Pixel classification or object detection", (r) => (r.task || "").replace("_", " ")],
  ["headline", "Score", "Each task's headline on its validation data: mIoU for pixel classification, mAP50 for detection", (r) => (r.headline == null ? "–" : `${r.headline_metric === "map50" ? "mAP50" : r.headline_metric === "mean_iou" ? "mIoU" : r.headline_metric} ${fmt(r.headline)}`)],
  ["architecture", "Model", "Architecture and backbone", (r) => (r.backbone ? `${r.architecture} · ${r.backbone}` : r.architecture)],
  ["chip_size", "Chips", "Bands and chip size in pixels", (r) => `${fmt(r.bands)} bands, ${fmt(r.chip_size)} px`],
  ["epochs_run", "Epochs", "Epochs run (the best one kept)", (r) => `${fmt(r.epochs_run)} (best ${fmt(r.best_epoch)})`],
  ["training_seconds", "Time", "Training time", (r) => duration(r.training_seconds)],
  ["accuracy", "Accuracy", "Validation accuracy (cross-validated on held-out polygons for --model auto)", (r) => pct(r.accuracy)],
  ["mean_iou", "mIoU", "Validation mean IoU", (r) => fmt(r.mean_iou)],
  ["dice", "Dice", "Validation Dice (mean F1)", (r) => fmt(r.dice)],
  ["baseline_accuracy", "Forest", "Accuracy of the random-forest baseline on the same pixels", (r) => pct(r.baseline_accuracy)],
  ["selection", "Selection", "How the default (--model auto) chose: each candidate's cross-validated score on held-out polygons", (r) => r.selection ? `${r.selection}${r.cv_spread != null ? ` · spread ± ${fmt(r.cv_spread)}` : ""}` : ""],
  ["eval_accuracy", "Map acc.", "Accuracy of the latest evaluation of a map made with this model", (r) => pct(r.eval_accuracy)],
  ["eval_kappa", "Map κ", "Kappa of that evaluation", (r) => fmt(r.eval_kappa)],
  ["eval_ap50", "Det. AP50", "mAP50 of the latest evaluation of detections made with this detector", (r) => fmt(r.eval_ap50)],
  ["created", "Started", "When the run started", (r) => when(r.created)],
];
const NUMERIC = new Set(["id", "epochs_run", "training_seconds", "headline", "accuracy", "mean_iou", "dice", "baseline_accuracy", "eval_accuracy", "eval_kappa", "eval_ap50"]);

const COMPARE_LABELS = { epochs_set: "epochs (maximum)", epochs_run: "epochs run", training_seconds: "training time",
  model_size_mb: "model size (MB)", mean_iou: "mean IoU", dice: "Dice", per_class_iou: "IoU per class", chip_set_fingerprint: "chip set",
  eval_accuracy: "map accuracy", eval_kappa: "map kappa", eval_mean_iou: "map mean IoU", baseline_accuracy: "forest accuracy" };
const SHARES = new Set(["accuracy", "baseline_accuracy", "eval_accuracy"]);
function compareLabel(key) { return COMPARE_LABELS[key] || key.replaceAll("_", " "); }
function compareValue(key, v) {
  if (v === null || v === undefined) return "–";
  if (typeof v === "string" && v.startsWith("[")) { try { v = JSON.parse(v); } catch (e) { /* shown as it is */ } }
  if (SHARES.has(key)) return pct(v);
  if (key === "training_seconds") return duration(v);
  if (key === "created") return when(v);
  if (key === "package" || key === "chips") return h("code", {}, relPath(String(v)));
  if (Array.isArray(v)) return v.map((x) => (typeof x === "number" ? fmt(x, 2) : String(x))).join(", ");
  if (typeof v === "object") return JSON.stringify(v);
  return fmt(v);
}
function compareDiff(key, d) {
  if (d === null || d === undefined || d === 0) return d === 0 ? "0" : "";
  const sign = d > 0 ? "+" : "−";
  if (SHARES.has(key)) return `${sign}${(100 * Math.abs(d)).toFixed(1)} points`;
  if (key === "training_seconds") return `${sign}${duration(Math.abs(d))}`;
  return sign + fmt(Math.abs(d));
}

pages.runs = async () => {
  const tableCard = card("Training runs");
  const cmpCard = card("Compare two runs", h("p", { class: "empty-state" }, "Tick two runs in the table to compare them."));
  cmpCard.id = "compare";
  const jobsCard = card("Recent jobs");
  jobsCard.id = "jobs";
  root.append(tableCard, cmpCard, jobsCard);
  let sort = store.get("runs.sort", "id");
  let desc = store.get("runs.desc", true);
  const picked = [];
  let runCount = 0;
  const wrap = h("div", { class: "table-scroll" });
  tableCard.append(wrap);

  async function load() {
    let r;
    try { r = await api("GET", "/api/runs?" + q({ sort, descending: desc })); } catch (e) { put(wrap, errorBox(e)); return; }
    runCount = r.runs.length;
    compare();
    if (!r.runs.length) { put(wrap, h("p", { class: "empty-state" }, "No runs yet. ", h("a", { href: "/train" }, "Train a model"), " to see it here.")); return; }
    const head = h("tr", {}, h("th", { title: "Tick two runs to compare them" }, "Pick"), RUN_COLUMNS.map(([k, label, tip]) => h("th", {
      class: `sortable ${sort === k ? "sorted" : ""} ${sort === k && !desc ? "asc" : ""} ${NUMERIC.has(k) ? "num" : ""}`,
      onclick: () => { desc = sort === k ? !desc : true; sort = k; store.set("runs.sort", sort); store.set("runs.desc", desc); load(); },
      title: `${tip} (click to sort)`, "aria-sort": sort === k ? (desc ? "descending" : "ascending") : null,
    }, label)), h("th", {}, "Report"));
    const rows = r.runs.map((run) => {
      const cb = h("input", { type: "checkbox", checked: picked.includes(run.id), "aria-label": `Compare run ${run.id}` });
      cb.addEventListener("change", () => {
        const i = picked.indexOf(run.id);
        if (cb.checked && i < 0) picked.push(run.id);
        if (!cb.checked && i >= 0) picked.splice(i, 1);
        while (picked.length > 2) picked.shift();
        load();
      });
      const cells = RUN_COLUMNS.map(([k, , , text]) => {
        if (k === "status") return h("td", {}, h("span", { class: `badge ${run.status}` }, String(run.status).replace("_", " ")));
        const v = text(run);
        return h("td", { class: `${NUMERIC.has(k) ? "num" : ""} ${k === "created" ? "nowrap small" : ""}` }, v === "" || v === null || v === undefined ? "–" : v);
      });
      const links = h("td", { class: "nowrap" }, run.report ? h("a", { href: fileUrl(run.report), target: "_blank", rel: "noopener" }, "Open") : null,
        run.status === "interrupted" ? h("button", { type: "button", class: "small", title: "Continue this run from its last checkpoint", onclick: async () => {
          try { const j = await api("POST", `/api/runs/${run.id}/resume`); location.href = `/jobs/${j.id}`; } catch (e) { wrap.prepend(errorBox(e)); }
        } }, "Resume") : null);
      return h("tr", { class: picked.includes(run.id) ? "selected" : "" }, h("td", {}, cb), cells, links);
    });
    put(wrap, h("table", { id: "runs-table" }, head, rows));
  }
  async function compare() {
    if (picked.length !== 2) {
      put(cmpCard, h("h2", {}, "Compare two runs"), h("p", { class: "empty-state" }, runCount < 2
        ? "With two runs or more, tick two of them in the table to see their settings and scores side by side."
        : "Tick two runs in the table to see their settings and scores side by side."));
      return;
    }
    const [a, b] = picked.slice().sort((x, y) => x - y);
    try {
      const r = await api("GET", "/api/runs/compare?" + q({ a, b }));
      const rows = r.rows.filter((x) => x.a !== null || x.b !== null);
      const same = rows.filter((x) => JSON.stringify(x.a) === JSON.stringify(x.b));
      const differ = rows.filter((x) => !same.includes(x));
      const line = (x) => h("tr", {}, h("td", { class: "nowrap" }, compareLabel(x.key)),
        h("td", {}, compareValue(x.key, x.a)), h("td", {}, compareValue(x.key, x.b)), h("td", { class: "num nowrap" }, compareDiff(x.key, x.diff)));
      put(cmpCard, h("h2", {}, `Run ${a} vs run ${b}`), h("div", { class: "table-scroll" }, h("table", { class: "compare" },
        h("tr", {}, h("th", {}, "What differs"), h("th", {}, `run ${a}`), h("th", {}, `run ${b}`), h("th", { class: "num" }, `run ${b} − run ${a}`)),
        differ.map(line))),
        same.length ? h("details", { class: "more" }, h("summary", {}, `The same in both (${same.length})`),
          h("div", { class: "table-scroll" }, h("table", { class: "compare" }, same.map((x) =>
            h("tr", {}, h("td", { class: "nowrap" }, compareLabel(x.key)), h("td", {}, compareValue(x.key, x.a))))))) : null);
    } catch (e) { put(cmpCard, h("h2", {}, "Compare two runs"), errorBox(e)); }
  }
  async function loadJobs() {
    const r = await api("GET", "/api/jobs?" + q({ limit: 15 }));
    put(jobsCard, h("h2", {}, "Recent jobs"), r.jobs.length ? h("div", { class: "table-scroll" }, h("table", { id: "jobs-table" },
      h("tr", {}, h("th", {}, "Job"), h("th", {}, "Step"), h("th", {}, "Status"), h("th", {}, "Output"), h("th", {}, "Started"), h("th", { class: "num" }, "Took")),
      r.jobs.map((j) => h("tr", {}, h("td", {}, h("a", { href: `/jobs/${j.id}` }, `job ${j.id}`)), h("td", {}, JOB_TITLES[j.kind] || j.kind),
        h("td", {}, h("span", { class: `badge ${j.status}` }, j.status)),
        h("td", {}, j.config && j.config.out ? h("code", {}, relPath(j.config.out)) : j.run_id ? `run ${j.run_id}` : "–"),
        h("td", { class: "nowrap small" }, when(j.started || j.created)), h("td", { class: "num small" }, took(j))))))
      : h("p", { class: "empty-state" }, "No jobs yet: they appear here as soon as an export, a training, a classification or an evaluation starts."));
  }
  await load();
  await loadJobs();
};

pages.job = async () => {
  const id = Number(location.pathname.split("/").pop());
  root.append(card(null, jobView(id)));
  try {
    const job = await api("GET", `/api/jobs/${id}`);
    const step = { train: "train", resume: "train", export: "export", classify: "classify", evaluate: "evaluate",
      detect: "detect", evaluate_detections: "evaluate" }[job.kind];
    document.querySelector("h1").textContent = `Job ${id}: ${(JOB_TITLES[job.kind] || job.kind).toLowerCase()}`;
    document.title = `Job ${id} · TerraLearn`;
    const li = document.querySelector(`nav.path li[data-step="${step}"]`);
    if (li) li.classList.add("current");
  } catch (e) { /* the job view shows the error */ }
};

(async () => {
  refreshHeader();
  setInterval(refreshHeader, 5000);
  try { if (pages[PAGE]) await pages[PAGE](); }
  catch (e) { root.append(errorBox(e)); }
  document.body.dataset.ready = "1";
})();
