// Plotly charts from /api/scaling (the recommended plan's own charts) and /api/builds.
// Plotly is served from /static/vendor.
"use strict";

const PLOT_CONFIG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["select2d", "lasso2d"]};
const LAYOUT = {margin: {l: 60, r: 20, t: 40, b: 50}, legend: {orientation: "h", y: -0.25}, font: {size: 12},
                paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "#fafafa"};

// A Chart of the API ({title, x_label, y_label, series: [{name, x, y, dashed}], recommended, note}) as traces;
// the recommended plan's own point is a star.
function chartTraces(chart) {
  const out = (chart.series || []).filter((s) => s.y.some((v) => v !== null)).map((s) => ({
    name: s.name, x: s.x, y: s.y, type: "scatter", mode: "lines+markers", connectgaps: false,
    line: {dash: s.dashed ? "dash" : "solid"}}));
  if (out.length && chart.recommended && chart.recommended.y !== null)
    out.push({name: chart.recommended.label, x: [chart.recommended.x], y: [chart.recommended.y], type: "scatter",
              mode: "markers", marker: {symbol: "star", size: 16, color: "#c22"}});
  return out;
}

// Draw into a div that may hold an older chart or an older "no data" text: both are cleared first.
function draw(id, data, layout, note) {
  const div = document.getElementById(id);
  const cap = document.getElementById(id + "-note");
  if (cap) cap.textContent = note || "";
  if (window.Plotly) Plotly.purge(div);
  div.textContent = "";
  if (!window.Plotly) { div.textContent = "Plotly did not load"; return; }
  if (!data.length) { div.textContent = "no data for this chart"; return; }
  return Plotly.react(div, data, Object.assign({}, LAYOUT, layout), PLOT_CONFIG);
}

async function renderCharts(qs, state, plan) {
  const base = {model: state.model, context: state.context || "8192", users: state.users || "1"};
  if (state.quant) base.quant = state.quant;
  document.getElementById("charts").hidden = false;
  document.getElementById("charts-for").textContent = plan.fits
    ? `Charts for the recommended plan: ${plan.plan.strategy} on ${plan.plan.hardware}, ${plan.plan.engine}, `
      + `${Number(plan.workload.context).toLocaleString()} context, ${plan.workload.users} user(s); each chart changes only its x axis.`
    : "The plan does not fit: the GPU-count chart shows how many cards it would take.";
  const [scaling, builds] = await Promise.all([getJSON("/api/scaling?" + qs + "&max_gpus=8"),
                                               getJSON("/api/builds?" + new URLSearchParams(base))]);
  const axis = (c, log) => ({title: {text: c.title}, xaxis: Object.assign({title: {text: c.x_label}}, log ? {type: "log"} : {dtick: 1}),
                             yaxis: {title: {text: c.y_label}, rangemode: "tozero"}});
  for (const [id, c, log] of [["chart-gpus", scaling.by_gpus, false], ["chart-context", scaling.by_context, true],
                              ["chart-users", scaling.by_users, true]])
    draw(id, chartTraces(c), axis(c, log), c.note);
  drawBuilds(builds);
}

function drawBuilds(b) {
  const rows = b.builds || [];
  const ok = rows.filter((r) => r.price_usd && r.decode_tok_s !== null);
  // label only the builds on the price/speed frontier (nothing cheaper is as fast); hover shows the rest
  const front = new Set();
  let best = -1;
  for (const r of ok.slice().sort((a, c) => a.price_usd - c.price_usd))
    if (r.decode_tok_s > best) { best = r.decode_tok_s; front.add(r); }
  const trace = {
    name: "fits", type: "scatter", mode: "markers+text", x: ok.map((r) => r.price_usd), y: ok.map((r) => r.decode_tok_s),
    text: ok.map((r) => (front.has(r) ? r.name : "")), customdata: ok.map((r) => r.name),
    textposition: "top center", textfont: {size: 10}, cliponaxis: false, marker: {size: 10, color: "#2a7"},
    hovertemplate: "%{customdata}<br>$%{x:,.0f}<br>%{y:.1f} tok/s<extra></extra>"};
  const nofit = rows.filter((r) => !r.fits).length;
  const note = `Other machines for ${b.model_label} ${b.quant}, ${b.users} user(s), ${b.context.toLocaleString()} context`
    + (nofit ? `; ${nofit} build(s) do not fit and are not drawn` : "");
  draw("chart-builds", ok.length ? [trace] : [], {title: {text: "Builds: one user's tok/s against price"},
    xaxis: {title: {text: "price (USD)"}, type: "log"}, margin: {l: 60, r: 60, t: 40, b: 50},
    yaxis: {title: {text: "tok/s per user"}, range: [0, 1.15 * Math.max(1, ...ok.map((r) => r.decode_tok_s))]}}, note);
}

// The best candidate's curve from the plan's serving answer: output tok/s (left axis) and the p90 of
// TTFT and TPOT (right axis, ms) against users or requests/s.
function drawServing(sv) {
  const best = sv.best !== null && sv.best !== undefined ? sv.candidates[sv.best] : null;
  const pts = best ? best.curve || [] : [];
  const key = sv.mode === "rate" ? "rate_rps" : "users";
  const x = pts.map((p) => p[key]);
  const data = pts.length ? [
    {name: "output tok/s", x, y: pts.map((p) => p.output_throughput), type: "scatter", mode: "lines+markers"},
    {name: "TTFT p90 (ms)", x, y: pts.map((p) => p.ttft_ms.p90), yaxis: "y2", type: "scatter", mode: "lines+markers",
     line: {dash: "dot"}},
    {name: "TPOT p90 (ms)", x, y: pts.map((p) => p.tpot_ms.p90), yaxis: "y2", type: "scatter", mode: "lines+markers",
     line: {dash: "dash"}}] : [];
  const note = best ? `${best.strategy} (${best.engine}), ${sv.prompt_tokens} prompt + ${sv.output_tokens} output tokens per request; serving simulator` : "";
  draw("chart-serving", data, {title: {text: "Throughput and latency against load"},
    xaxis: {title: {text: sv.mode === "rate" ? "requests/s" : "concurrent users"}, type: "log"},
    yaxis: {title: {text: "output tok/s"}, rangemode: "tozero"},
    yaxis2: {title: {text: "ms (p90)"}, overlaying: "y", side: "right", type: "log"}}, note);
}
