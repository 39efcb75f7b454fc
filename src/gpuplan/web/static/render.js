// Rendering of a plan: verdict, numbers, memory bars, explanation, alternatives, commands.
"use strict";

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "class") e.className = v; else if (k === "style") e.style.cssText = v; else e.setAttribute(k, v);
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}

function fmt(x, digits) {
  if (x === null || x === undefined || x === "") return "–";
  if (typeof x !== "number") return String(x);
  if (!isFinite(x)) return "∞";
  const d = digits === undefined ? (Math.abs(x) >= 100 ? 0 : Math.abs(x) >= 10 ? 1 : 2) : digits;
  return x.toLocaleString(undefined, {maximumFractionDigits: d, minimumFractionDigits: 0});
}

function strategyText(p) {
  if (!p) return "";
  if (typeof p === "string") return p;
  return p.strategy || p.split || "";
}

function renderPlan(r) {
  document.getElementById("answer").hidden = false;
  const v = document.getElementById("verdict");
  v.className = "verdict " + (r.fits ? "ok" : "bad");
  v.replaceChildren(
    el("div", {class: "big"}, r.fits ? "Fits" : "Does not fit"),
    el("div", {}, [r.model_label || r.model, r.quant, (r.engine || (r.plan && r.plan.engine)) && "on " + (r.engine || r.plan.engine)].filter(Boolean).join(" · ")),
    el("div", {class: "strategy"}, "Plan: " + strategyText(r.plan) + (r.plan && r.plan.hardware ? " on " + r.plan.hardware : "")),
  );
  const users = r.users || (r.workload && r.workload.users) || 1;
  renderSpeeds(r, users);
  renderMemory(r.memory || r.devices || []);
  const ex = Array.isArray(r.explanation) ? r.explanation : (r.explanation ? [r.explanation] : []);
  document.getElementById("explanation").replaceChildren(...ex.map((s) => el("li", {}, s)));
  renderAssumptions(r.assumptions);
  renderAlternatives(r.alternatives || []);
  renderCommands(r.commands || {}, r.unsupported_engines || {});
  renderServing(r.serving);
}

// The serving simulator's answer: capacity per candidate under the targets, and the best plan's
// throughput and latency percentiles against load (the chart is drawn in charts.js).
function renderServing(sv) {
  const box = document.getElementById("serving");
  box.hidden = !sv;
  if (!sv) return;
  document.getElementById("serving-explanation").replaceChildren(...(sv.explanation || []).map((s) => el("li", {}, s)));
  const t = document.getElementById("serving-candidates");
  const targets = sv.targets && (sv.targets.ttft_s || sv.targets.tpot_s || sv.targets.e2el_s);
  if (targets || sv.mode === "rate") {
    const top = sv.mode === "rate" ? "max requests/s" : "max users";
    t.replaceChildren(el("tr", {}, ...["plan", "engine", top, "tok/s there", "limit"].map((h) => el("th", {}, h))),
      ...sv.candidates.map((c, i) => el("tr", {class: i === sv.best ? "best" : ""},
        el("td", {}, c.strategy), el("td", {}, c.engine),
        el("td", {class: "n"}, fmt(sv.mode === "rate" ? c.max_rate_rps : c.max_users, sv.mode === "rate" ? 2 : 0)),
        el("td", {class: "n"}, fmt(c.at_capacity ? c.at_capacity.output_throughput : null, 0)), el("td", {}, c.binding))));
  } else {
    t.replaceChildren();
  }
  // the command that starts the best candidate, its sequence limit set to the load it holds
  const cmds = sv.launch || {};
  const best = sv.best !== null && sv.best !== undefined ? sv.candidates[sv.best] : null;
  const sc = document.getElementById("serving-commands");
  sc.replaceChildren(...(Object.keys(cmds).length && best ? [el("h3", {}, `to serve it on ${best.strategy}`)] : []));
  if (Object.keys(cmds).length) commandBoxes(sc, cmds);
  if (typeof drawServing === "function") drawServing(sv);
}

// A plan that does not fit cannot start: it has no speeds, and the page shows none.
function renderSpeeds(r, users) {
  const box = document.getElementById("numbers");
  if (!r.fits || r.decode_tok_s === null || r.decode_tok_s === undefined) {
    box.replaceChildren(el("div", {class: "nospeed", id: "num-none"},
      r.fits ? "no speeds for this answer (memory only)" : "No speeds: this plan does not fit, so it cannot run."));
    return;
  }
  const nums = [["decode-tok-s", "one user", r.decode_tok_s, "tok/s while generating"]];
  if (users > 1 && r.per_user_tok_s !== undefined && r.per_user_tok_s !== null)
    nums.push(["per-user-tok-s", "each user", r.per_user_tok_s, `tok/s with ${users} users at once`]);
  nums.push(["throughput-tok-s", "all users", r.throughput_tok_s, `tok/s aggregate for ${users} user${users > 1 ? "s" : ""}`]);
  nums.push(["prefill-tok-s", "prompt", r.prefill_tok_s, "tok/s reading the prompt"]);
  const ttft = r.time_to_first_token_s !== undefined ? r.time_to_first_token_s : r.ttft_s;
  if (ttft !== undefined && ttft !== null) nums.push(["ttft", "first token", ttft, "seconds for the prompt"]);
  const bound = r.bound || r.bottleneck;
  if (bound) nums.push(["bound", "bound by", bound, r.roofline_fraction ? `${fmt(100 * r.roofline_fraction, 0)}% of the physical limit` : ""]);
  box.replaceChildren(...nums.map(([id, label, val, unit]) =>
    el("div", {class: "num", id: "num-" + id}, el("small", {}, label), el("b", {class: typeof val === "number" ? "" : "text"}, fmt(val)), el("small", {}, unit))));
}

function renderAssumptions(a) {
  const box = document.getElementById("assumptions");
  box.replaceChildren();
  if (!a) return;
  for (const [k, x] of Object.entries(a)) {
    if (k === "other_engines") {
      for (const o of x) box.append(el("li", {}, el("b", {}, "other engine: "), o.note));
      continue;
    }
    const v = x.value === null ? "none" : String(x.value);
    box.append(el("li", {"data-key": k}, el("b", {}, k.replace(/_/g, " ") + ": " + v), ` (${x.source}) ${x.why}`));
  }
}

const MEM_PARTS = [["weights_gb", "weights", "w"], ["kv_cache_gb", "KV cache", "kv"], ["overhead_gb", "overhead", "oh"]];

function renderMemory(devs) {
  const box = document.getElementById("memory");
  box.replaceChildren(el("div", {class: "legend"}, ...MEM_PARTS.map(([, n, c]) => el("span", {class: "key " + c}, n)),
    el("span", {class: "key free"}, "free")));
  for (const d of devs) {
    const cap = d.capacity_gb || 0, total = d.total_gb || 0;
    const scale = Math.max(cap, total) || 1;
    const bar = el("div", {class: "bar" + (total > cap ? " over" : "")});
    for (const [k, n, c] of MEM_PARTS) {
      const x = d[k] || 0;
      if (x > 0) bar.append(el("span", {class: c, style: `width:${(100 * x / scale).toFixed(2)}%`, title: `${n}: ${fmt(x)} GB`}));
    }
    const free = Math.max(0, cap - total);
    if (free > 0) bar.append(el("span", {class: "free", style: `width:${(100 * free / scale).toFixed(2)}%`, title: `free: ${fmt(free)} GB`}));
    box.append(el("div", {class: "memrow"},
      el("div", {class: "memname"}, d.name || "device"),
      bar,
      el("div", {class: "memnums"}, `${fmt(total)} / ${fmt(cap)} GB` + (d.free_gb < 0 ? ` (short ${fmt(-d.free_gb)} GB)` : ""))));
  }
}

function renderAlternatives(alts) {
  const t = document.getElementById("alternatives");
  t.replaceChildren(el("tr", {}, ...["plan", "fits", "decode tok/s", "prefill tok/s", "throughput tok/s", "verdict"].map((h) => el("th", {}, h))));
  for (const a of alts) {
    t.append(el("tr", {class: a.fits === false ? "nofit" : ""},
      el("td", {}, strategyText(a.plan) || a.strategy || "", a.plan && a.plan.hardware ? el("small", {class: "hw"}, a.plan.hardware) : null),
      el("td", {}, a.fits === undefined ? "" : a.fits ? "yes" : "no"),
      el("td", {class: "n"}, fmt(a.decode_tok_s)), el("td", {class: "n"}, fmt(a.prefill_tok_s)),
      el("td", {class: "n"}, fmt(a.throughput_tok_s)), el("td", {}, a.verdict || a.reason || "")));
  }
  if (!alts.length) t.append(el("tr", {}, el("td", {colspan: 6}, "no other plans")));
}

function copyText(text, btn) {
  const done = () => { btn.textContent = "copied"; setTimeout(() => { btn.textContent = "copy"; }, 1500); };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else fallbackCopy(text, done);
}

function fallbackCopy(text, done) {
  const ta = el("textarea", {style: "position:fixed;left:-9999px"});
  ta.value = text;
  document.body.append(ta);
  ta.select();
  try { document.execCommand("copy"); done(); } finally { ta.remove(); }
}

function commandBoxes(box, cmds) {
  for (const [engine, c] of Object.entries(cmds)) {
    const text = typeof c === "string" ? c : (c && (c.command || c.text)) || JSON.stringify(c, null, 2);
    const btn = el("button", {type: "button", class: "small copy"}, "copy");
    btn.onclick = () => copyText(text, btn);
    box.append(el("div", {class: "cmd"}, el("div", {class: "cmdhead"}, el("b", {}, engine), btn), el("pre", {}, text)));
  }
}

function renderCommands(cmds, unsupported) {
  const box = document.getElementById("commands");
  box.replaceChildren();
  commandBoxes(box, cmds);
  if (!Object.keys(cmds).length) box.append(el("p", {}, "no launch command for this plan"));
  const un = Object.entries(unsupported || {});
  if (un.length) box.append(el("details", {class: "unsupported"}, el("summary", {}, "other engines"),
    el("ul", {}, ...un.map(([e, why]) => el("li", {}, el("b", {}, e), ": " + why)))));
}

function renderInspected(info) {
  const box = document.getElementById("inspected");
  const s = info.spec || {};
  box.hidden = false;
  box.replaceChildren(
    el("b", {}, info.name), ` — ${s.architecture}, ${s.n_layers} layers, hidden ${s.hidden_size}, ` +
      `${s.n_heads} heads / ${s.n_kv_heads} KV heads, ${info.quant}, weights ${fmt(info.weights_gb)} GB (${info.weights_origin}).`,
    el("br"),
    info.catalog_id ? `Matches catalog model ${info.catalog_id}: planning with it.`
      : "Not in the catalog: the fit below is for this file; plans and charts need a catalog model.");
  if (!info.catalog_id && info.fit) {
    const f = info.fit;
    document.getElementById("answer").hidden = false;
    renderPlan({fits: f.fits, model: info.name, quant: f.quant, engine: f.engine, plan: f.plan, memory: f.devices,
                explanation: [f.verdict], assumptions: f.assumptions, alternatives: [], commands: {}});
    document.getElementById("charts").hidden = true;
  }
}
