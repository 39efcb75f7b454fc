// The form: catalogs, hardware rows, state in the URL, submit -> /api/plan (+ charts).
"use strict";

const $ = (id) => document.getElementById(id);
const CONTEXTS = [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576];
const PRESETS = {
  "1x RTX 4090": {gpus: "rtx-4090"},
  "1x RTX 3090": {gpus: "rtx-3090"},
  "2x RTX 3090": {gpus: "2x rtx-3090"},
  "2x RTX 3090 NVLink": {gpus: "2x rtx-3090", link: "nvlink-bridge-3090"},
  "2x RTX 4090": {gpus: "2x rtx-4090"},
  "RTX 4090 + RTX 3060 12GB": {gpus: "rtx-4090,rtx-3060-12gb"},
  "4x RTX 3090": {gpus: "4x rtx-3090"},
  "RTX A6000": {gpus: "rtx-a6000"},
  "Mac Studio M2 Ultra 192GB": {gpus: "apple-m2-ultra-76c:192gb"},
  "8x H100 SXM": {gpus: "8x h100-sxm-80gb"},
};
const FIELDS = ["model", "quant", "link", "ram", "ram_gib", "context", "users", "goal", "ttft", "tpot"];
let GPUS = [];  // catalog devices
let LINKS = [];  // catalog links

async function getJSON(url, opts) {
  let r;
  try { r = await fetch(url, opts); } catch (e) { throw new Error("cannot reach the gpuplan server (" + e.message + ")"); }
  let body = null;
  try { body = await r.json(); } catch (e) { /* not JSON */ }
  if (!r.ok) {
    const err = body && body.error;
    throw new Error((err && (err.message || err)) || ("HTTP " + r.status));
  }
  return body;
}

function showError(msg) {
  const box = $("error");
  box.textContent = msg;
  box.hidden = !msg;
}

// ------------------------------------------------------------------ catalogs
function option(sel, value, text) {
  const o = document.createElement("option");
  o.value = value; o.textContent = text === undefined ? value : text;
  sel.appendChild(o);
}

async function loadCatalogs() {
  const [models, quants, gpus, links, ram] = await Promise.all(
    ["models", "quants", "gpus", "links", "host-memory"].map((k) => getJSON("/api/catalog/" + k)));
  for (const m of models) option($("model-list"), m.id, m.name);
  option($("quant"), "", "the format the model ships in");
  for (const q of quants) option($("quant"), q.id, q.id + (q.bits_per_weight ? ` (${q.bits_per_weight} bpw)` : ""));
  $("quant").value = "";
  GPUS = gpus;
  LINKS = links;
  for (const l of links.filter((l) => l.scope !== "inter-node")) option($("link"), l.id, l.name);
  for (const h of ram) option($("ram"), h.id, h.name);
  for (const name of Object.keys(PRESETS)) option($("preset"), name);
}

// ------------------------------------------------------------------ hardware rows <-> spec string
function addGpuRow(id, count, size) {
  const row = document.createElement("div");
  row.className = "gpu-row";
  const sel = document.createElement("select");
  sel.className = "gpu";
  for (const g of GPUS) option(sel, g.id, `${g.name} (${g.memory_options_gib ? g.memory_options_gib.join("/") : g.memory_gib} GB)`);
  sel.value = id || "rtx-4090";
  const n = document.createElement("input");
  Object.assign(n, {type: "number", min: 1, max: 64, value: count || 1, className: "count", title: "how many"});
  const mem = document.createElement("select");
  mem.className = "size";
  const fillSizes = () => {
    const g = GPUS.find((x) => x.id === sel.value);
    mem.innerHTML = "";
    mem.hidden = !(g && g.memory_options_gib);
    if (g && g.memory_options_gib) for (const s of g.memory_options_gib) option(mem, String(s), s + " GB");
  };
  fillSizes();
  if (size) mem.value = String(size);
  else if (!mem.hidden) mem.value = mem.options[mem.options.length - 1].value;
  const rm = document.createElement("button");
  Object.assign(rm, {type: "button", textContent: "×", className: "small", title: "remove"});
  rm.onclick = () => { row.remove(); updateSpec(); };
  sel.onchange = () => { fillSizes(); updateSpec(); };
  n.oninput = mem.onchange = updateSpec;
  row.append(n, document.createTextNode("×"), sel, mem, rm);
  $("gpu-rows").appendChild(row);
  updateSpec();
}

function gpusSpec() {
  return [...document.querySelectorAll(".gpu-row")].map((row) => {
    const n = parseInt(row.querySelector(".count").value, 10) || 1;
    const mem = row.querySelector(".size");
    const id = row.querySelector(".gpu").value + (!mem.hidden && mem.value ? ":" + mem.value + "gb" : "");
    return n > 1 ? `${n}x ${id}` : id;
  }).join(",");
}

function setGpus(spec) {
  $("gpu-rows").innerHTML = "";
  for (const item of (spec || "").split(/[,+]/).map((s) => s.trim()).filter(Boolean)) {
    const m = item.match(/^(?:(\d+)\s*x\s*)?([A-Za-z0-9._-]+)(?::(\d+(?:\.\d+)?)\s*gb)?$/i);
    if (m) addGpuRow(m[2].toLowerCase(), parseInt(m[1] || "1", 10), m[3]);
  }
  if (!document.querySelector(".gpu-row")) addGpuRow("rtx-4090", 1);
}

function updateSpec() {
  $("gpus-spec").textContent = "--gpus '" + gpusSpec() + "'";
  checkLink();
}

// A bridge or NVLink fits only the cards the catalog says take it: when the GPUs change, a chosen
// link that no longer fits goes back to automatic (and the page says so).
function linkFits(linkId, gpuIds) {
  const l = LINKS.find((x) => x.id === linkId);
  if (!l || l.kind === "pcie") return true;
  return gpuIds.every((id) => {
    const g = GPUS.find((x) => x.id === id);
    return g && ((l.fits_devices || []).length ? l.fits_devices.includes(id) : g.nvlink === linkId);
  });
}

function checkLink() {
  const sel = $("link"), note = $("link-note");
  if (!sel || !sel.value) { if (note) note.hidden = true; return; }
  const ids = [...document.querySelectorAll(".gpu-row .gpu")].map((s) => s.value);
  if (linkFits(sel.value, ids)) return;
  note.textContent = `${sel.value} does not fit ${[...new Set(ids)].join(", ")}: link set to automatic`;
  note.hidden = false;
  sel.value = "";
}

// ------------------------------------------------------------------ context slider
function syncContext(fromSlider) {
  if (fromSlider) $("context").value = CONTEXTS[$("context-slider").value];
  const c = parseInt($("context").value, 10) || 0;
  let i = CONTEXTS.findIndex((x) => x >= c);
  $("context-slider").value = i < 0 ? CONTEXTS.length - 1 : i;
  $("context-label").textContent = c ? c.toLocaleString() + " tokens" : "";
}

// ------------------------------------------------------------------ state <-> URL
function formState() {
  const s = {gpus: gpusSpec()};
  for (const f of FIELDS) { const v = $(f).value.trim(); if (v !== "") s[f] = v; }
  return s;
}

function restore(params) {
  for (const f of FIELDS) if (params.has(f)) $(f).value = params.get(f);
  setGpus(params.get("gpus") || "rtx-4090");
  syncContext(false);
}

async function run(pushState) {
  const s = formState();
  const qs = new URLSearchParams(s).toString();
  if (pushState) history.pushState(null, "", "?" + qs);
  showError("");
  $("busy").hidden = false;
  $("intro").hidden = true;
  try {
    const plan = await getJSON("/api/plan?" + qs);
    renderPlan(plan);
    renderCharts(qs, s, plan).catch((e) => showError("charts: " + e.message));
  } catch (e) {
    showError(e.message);
    $("answer").hidden = true;
    $("charts").hidden = true;
  } finally {
    $("busy").hidden = true;
  }
}

// ------------------------------------------------------------------ upload a GGUF header / config.json
async function inspectUpload(file) {
  const blob = file.name.toLowerCase().endsWith(".gguf") || file.size > 4 * 2 ** 20 ? file.slice(0, 32 * 2 ** 20) : file;
  const fd = new FormData();
  fd.append("file", blob, file.name);
  const q = new URLSearchParams({gpus: gpusSpec(), context: $("context").value || "8192", users: $("users").value || "1"});
  if (!file.name.toLowerCase().endsWith(".gguf") && $("quant").value) q.set("quant", $("quant").value);
  showError("");
  $("busy").hidden = false;
  try {
    const info = await getJSON("/api/model/inspect?" + q, {method: "POST", body: fd});
    renderInspected(info);
    if (info.catalog_id) {
      $("model").value = info.catalog_id;
      if ([...$("quant").options].some((o) => o.value === info.quant)) $("quant").value = info.quant;
      await run(true);
    }
  } catch (e) {
    showError(e.message);
  } finally {
    $("busy").hidden = true;
    $("model-file").value = "";
  }
}

// ------------------------------------------------------------------ start
async function main() {
  try { await loadCatalogs(); } catch (e) { showError(e.message); return; }
  $("preset").onchange = () => {
    const p = PRESETS[$("preset").value];
    if (!p) return;
    setGpus(p.gpus);
    $("link").value = p.link || "";
    $("link-note").hidden = true;
  };
  $("add-gpu").onclick = () => addGpuRow("rtx-3060-12gb", 1);
  $("link").onchange = () => { $("link-note").hidden = true; };
  $("context-slider").oninput = () => syncContext(true);
  $("context").oninput = () => syncContext(false);
  $("model-file").onchange = () => { if ($("model-file").files[0]) inspectUpload($("model-file").files[0]); };
  $("form").onsubmit = (ev) => { ev.preventDefault(); run(true); };
  window.onpopstate = () => { const p = new URLSearchParams(location.search); restore(p); if (p.has("model")) run(false); };
  const params = new URLSearchParams(location.search);
  restore(params);
  if (params.has("model")) run(false);
}

main();
