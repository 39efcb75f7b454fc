// Plotly charts from /api/scaling and /api/builds. Plotly is served from /static/vendor.
"use strict";

const PLOT_CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"]};
const LAYOUT = {margin: {l: 60, r: 20, t: 40, b: 50}, legend: {orientation: "h", y: -0.25}, font: {size: 12},
                paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafafa"};

function pick(obj, ...keys) {
  for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
  return undefined;
}

function pickSection(obj, ...keys) {  // the first of keys holding an object or array (not a scalar echo)
  for (const k of keys) if (obj && obj[k] && typeof obj[k] === "object") return obj[k];
  return undefined;
}

// A chart section as Plotly traces. Accepts columns {x_key: [...], name1: [y...], ...} (the first array is x),
// {x: [...], series: {name: [y...]}}, {series: [{name, x, y}]}, or rows [{x_key: .., name1: y, ...}].
// Series named *throughput* are aggregate tok/s and drawn dashed; only tok/s series are drawn when present.
function traces(section, mode) {
  if (!section) return [];
  const tr = (name, x, y) => ({name: name.replace(/_/g, " ").replace(/ tok s$/, ""), x, y, type: "scatter",
    mode: mode || "lines+markers", connectgaps: true, line: {dash: /throughput/.test(name) ? "dash" : "solid"}});
  const ySeries = (keys) => {
    const toks = keys.filter((k) => /tok_s|throughput|split|parallel|replica|decode/.test(k));
    return toks.length ? toks : keys;
  };
  if (Array.isArray(section)) {
    if (!section.length) return [];
    if (section[0].x !== undefined && section[0].y !== undefined && section[0].name !== undefined)
      return section.map((s) => tr(s.name, s.x, s.y));
    const keys = Object.keys(section[0]);
    const xk = keys[0];
    const ys = keys.slice(1).filter((k) => typeof section[0][k] === "number" || section[0][k] === null);
    return ySeries(ys).map((k) => tr(k, section.map((r) => r[xk]), section.map((r) => r[k])));
  }
  const series = pick(section, "series", "y", "lines");
  if (Array.isArray(series)) return series.map((s) => tr(s.name || s.label, s.x || section.x, s.y || s.values));
  if (series && typeof series === "object") return Object.entries(series).map(([name, ys]) => tr(name, section.x, ys));
  const cols = Object.keys(section).filter((k) => Array.isArray(section[k]));
  if (cols.length < 2) return [];
  const x = section[cols[0]];
  return ySeries(cols.slice(1)).map((k) => tr(k, x, section[k]));
}

function sectionTitle(section, fallback) { return (section && !Array.isArray(section) && section.title) || fallback; }
function axisTitle(section, key, fallback) { return (section && !Array.isArray(section) && section[key]) || fallback; }

function draw(id, data, layout) {
  const div = document.getElementById(id);
  if (!window.Plotly) { div.textContent = "Plotly did not load"; return; }
  if (!data.length) { div.textContent = "no data for this chart"; return; }
  return Plotly.react(div, data, Object.assign({}, LAYOUT, layout), PLOT_CONFIG);
}

async function renderCharts(state, plan) {
  const firstGpu = (state.gpus.split(",")[0] || "").replace(/^\d+x\s*/, "").split(":")[0];
  const base = {model: state.model, context: state.context || "8192", users: state.users || "1"};
  if (state.quant) base.quant = state.quant;
  const sq = new URLSearchParams(Object.assign({gpu: firstGpu, max_gpus: "8"}, base, state.link ? {link: state.link} : {}));
  const bq = new URLSearchParams(base);
  document.getElementById("charts").hidden = false;
  const [scaling, builds] = await Promise.all([getJSON("/api/scaling?" + sq), getJSON("/api/builds?" + bq)]);
  const g = pickSection(scaling, "by_gpus", "gpus", "gpu_count", "n_gpus");
  draw("chart-gpus", traces(g), {title: {text: sectionTitle(g, `tok/s vs number of ${firstGpu} (dashed: all users)`)},
    xaxis: {title: {text: axisTitle(g, "x_label", "GPUs")}, dtick: 1}, yaxis: {title: {text: axisTitle(g, "y_label", "tok/s")}, rangemode: "tozero"}});
  const c = pickSection(scaling, "by_context", "context");
  draw("chart-context", traces(c), {title: {text: sectionTitle(c, "Decode tok/s vs context length")},
    xaxis: {title: {text: axisTitle(c, "x_label", "context (tokens)")}, type: "log"}, yaxis: {title: {text: axisTitle(c, "y_label", "tok/s")}, rangemode: "tozero"}});
  const u = pickSection(scaling, "by_users", "users");
  draw("chart-users", traces(u), {title: {text: sectionTitle(u, "Aggregate throughput vs concurrent users")},
    xaxis: {title: {text: axisTitle(u, "x_label", "users")}, type: "log"}, yaxis: {title: {text: axisTitle(u, "y_label", "tok/s (all users)")}, rangemode: "tozero"}});
  drawBuilds(builds);
}

function drawBuilds(b) {
  const rows = (Array.isArray(b) ? b : pick(b, "builds", "rows", "results")) || [];
  const price = (r) => pick(r, "price_usd", "price");
  const speed = (r) => pick(r, "decode_tok_s", "tok_s", "throughput_tok_s");
  const ok = rows.filter((r) => price(r) && speed(r) !== undefined);
  const group = (fits) => ok.filter((r) => (r.fits !== false) === fits);
  // label only the builds on the price/speed frontier (nothing cheaper is as fast); hover shows the rest
  const front = new Set();
  let best = -1;
  for (const r of ok.filter((r) => r.fits !== false).sort((a, b) => price(a) - price(b)))
    if (speed(r) > best) { best = speed(r); front.add(r); }
  const trace = (rs, name, color) => ({
    name, type: "scatter", mode: "markers+text", x: rs.map(price), y: rs.map(speed),
    text: rs.map((r) => (front.has(r) ? r.name || r.id : "")), customdata: rs.map((r) => r.name || r.id),
    textposition: "top center", textfont: {size: 10}, cliponaxis: false,
    marker: {size: 10, color}, hovertemplate: "%{customdata}<br>$%{x:,.0f}<br>%{y:.1f} tok/s<extra></extra>"});
  const data = [trace(group(true), "fits", "#2a7"), trace(group(false), "does not fit", "#c44")].filter((t) => t.x.length);
  draw("chart-builds", data, {title: {text: "Builds: decode tok/s vs price (labelled: best for the money)"},
    xaxis: {title: {text: "price (USD)"}, type: "log"}, margin: {l: 60, r: 60, t: 40, b: 50},
    yaxis: {title: {text: "tok/s per user"}, range: [0, 1.15 * Math.max(1, ...ok.map(speed))]}});
}
