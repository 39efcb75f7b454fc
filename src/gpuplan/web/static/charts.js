// Plotly charts from /api/scaling and /api/builds. Plotly is served from /static/vendor.
"use strict";

const PLOT_CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"]};
const LAYOUT = {margin: {l: 60, r: 20, t: 40, b: 50}, legend: {orientation: "h", y: -0.25}, font: {size: 12},
                paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafafa"};

function pick(obj, ...keys) {
  for (const k of keys) if (obj && obj[k] !== undefined && obj[k] !== null) return obj[k];
  return undefined;
}

// A chart section as Plotly traces. Accepts {x: [...], series: {name: [y...]}} (or y in place of series),
// {series: [{name, x, y}]}, or rows [{x_key: .., name1: y, name2: y}] where the first key is x.
function traces(section, mode) {
  if (!section) return [];
  const tr = (name, x, y) => ({name, x, y, type: "scatter", mode: mode || "lines+markers", connectgaps: false});
  if (Array.isArray(section)) {
    if (!section.length) return [];
    if (section[0].x !== undefined && section[0].y !== undefined && section[0].name !== undefined)
      return section.map((s) => tr(s.name, s.x, s.y));
    const keys = Object.keys(section[0]);
    const xk = keys[0];
    return keys.slice(1).filter((k) => typeof section[0][k] === "number" || section[0][k] === null)
      .map((k) => tr(k.replace(/_/g, " "), section.map((r) => r[xk]), section.map((r) => r[k])));
  }
  const series = pick(section, "series", "y", "lines");
  if (Array.isArray(series)) return series.map((s) => tr(s.name || s.label, s.x || section.x, s.y || s.values));
  if (series && typeof series === "object")
    return Object.entries(series).map(([name, ys]) => tr(name.replace(/_/g, " "), section.x, ys));
  return [];
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
  const g = pick(scaling, "gpus", "by_gpus", "gpu_count", "n_gpus");
  draw("chart-gpus", traces(g), {title: {text: sectionTitle(g, `Decode tok/s per user vs number of ${firstGpu}`)},
    xaxis: {title: {text: axisTitle(g, "x_label", "GPUs")}, dtick: 1}, yaxis: {title: {text: axisTitle(g, "y_label", "tok/s")}, rangemode: "tozero"}});
  const c = pick(scaling, "context", "by_context");
  draw("chart-context", traces(c), {title: {text: sectionTitle(c, "Decode tok/s vs context length")},
    xaxis: {title: {text: axisTitle(c, "x_label", "context (tokens)")}, type: "log"}, yaxis: {title: {text: axisTitle(c, "y_label", "tok/s")}, rangemode: "tozero"}});
  const u = pick(scaling, "users", "by_users");
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
  const trace = (rs, name, color) => ({
    name, type: "scatter", mode: "markers+text", x: rs.map(price), y: rs.map(speed),
    text: rs.map((r) => r.name || r.id), textposition: "top center", textfont: {size: 10},
    marker: {size: 10, color}, hovertemplate: "%{text}<br>$%{x:,.0f}<br>%{y:.1f} tok/s<extra></extra>"});
  const data = [trace(group(true), "fits", "#2a7"), trace(group(false), "does not fit", "#c44")].filter((t) => t.x.length);
  draw("chart-builds", data, {title: {text: "Builds: decode tok/s vs price"}, xaxis: {title: {text: "price (USD)"}},
    yaxis: {title: {text: "tok/s per user"}, range: [0, 1.15 * Math.max(1, ...ok.map(speed))]}});
}
