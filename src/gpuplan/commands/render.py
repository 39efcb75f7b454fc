"""Terminal rendering of plan, compare and builds results (rich), from the result models."""

from __future__ import annotations


def _c():
    from rich.console import Console

    return Console()


def _f(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def assumed_lines(a) -> list[str]:
    """What the answer assumed that the user did not say, one line each."""
    out = []
    for name in ("engine", "quant", "kv_type", "link", "ram_gib", "ram_bandwidth_gb_s", "context_per_slot", "slots"):
        x = getattr(a, name)
        if x.source not in ("given", "file"):
            out.append(f"assumed {name.replace('_', ' ')}: {x.value if x.value is not None else 'none'} ({x.why})")
    for o in a.other_engines:
        out.append(f"other engine: {o.note}")
    return out


def engine_default_lines(res) -> list[str]:
    """The engine's own defaults the memory was computed with (set them with --flash-attn, --swa-full,
    --ubatch, --gpu-memory-utilization, --kv)."""
    if not res.engine_defaults:
        return []
    return ["assumed engine defaults: " + "; ".join(f"{k} {v}" for k, v in res.engine_defaults.items())]


def render_plan(res, brief: bool = False) -> None:
    from rich.table import Table

    con = _c()
    head = "[green]fits[/green]" if res.fits else "[red]does not fit[/red]"
    con.print(f"[bold]{res.model_label}[/bold] {res.quant} on {res.plan.hardware}: {head} · "
              f"{res.plan.strategy} · {res.plan.engine}", highlight=False)
    if res.fits:
        rng = res.decode_tok_s_range
        span = (f" ({_f(rng[0])}-{_f(rng[1])} for 8 in 10 measured setups of this class)"
                if rng and res.decode_range_measurements else
                (f" ({_f(rng[0])}-{_f(rng[1])}: no measurements of this class)" if rng else ""))
        w = res.workload
        if w.users > 1:
            load = f"{w.users} users: {_f(res.throughput_tok_s)} tok/s in total"
        else:  # one user's total is its answer over the prompt's time and the answer's: say that instead
            ttft = res.time_to_first_token_s
            when = (f"{ttft * 1e3:,.0f} ms" if ttft < 1 else f"{ttft:,.1f} s") if ttft is not None else None
            load = f"first token of a {w.prompt_tokens:,}-token prompt after {when}" if when else ""
        con.print(f"  one user: {_f(res.decode_tok_s)} tok/s{span} · prompt: {_f(res.prefill_tok_s, 0)} tok/s · "
                  + (f"{load} · " if load else "") + f"bound: {res.bound}")
    else:
        con.print("  no speeds: this plan cannot start")
    for line in res.explanation:
        con.print(f"  • {line}", markup=False, highlight=False)
    if brief:
        return
    for line in assumed_lines(res.assumptions) + engine_default_lines(res):
        con.print(f"  {line}", markup=False, highlight=False)
    t = Table(title="memory per device (GB)")
    for c in ("device", "weights", "KV cache", "overhead", "total", "capacity", "free"):
        t.add_column(c, justify="left" if c == "device" else "right")
    for m in res.memory:
        t.add_row(m.name, *[_f(getattr(m, k), 2) for k in ("weights_gb", "kv_cache_gb", "overhead_gb", "total_gb",
                                                            "capacity_gb", "free_gb")])
    con.print(t)
    if res.alternatives:
        a = Table(title="alternatives")
        for c in ("strategy", "hardware", "1 user tok/s", "tok/s per user", "total tok/s", "verdict"):
            a.add_column(c)
        for alt in res.alternatives[:12]:
            a.add_row(alt.plan.strategy, alt.plan.hardware, _f(alt.decode_tok_s), _f(alt.per_user_tok_s),
                      _f(alt.throughput_tok_s), alt.verdict)
        con.print(a)
    if res.serving is not None:
        render_serving(con, res.serving)
    for eng, cmd in res.commands.items():
        con.print(f"[bold]{eng}[/bold]")
        con.print(cmd, markup=False, highlight=False)


def render_serving(con, sv) -> None:
    """The serving simulator's section: capacity per candidate under the targets, and the curve of
    throughput and latency percentiles against load for the best."""
    from rich.table import Table

    for line in sv.explanation:
        con.print(f"  • {line}", markup=False, highlight=False)
    if sv.mode == "trace":
        _render_trace(con, sv)
        return _render_serving_launch(con, sv)
    if sv.targets.get("ttft_s") or sv.targets.get("tpot_s") or sv.targets.get("e2el_s") or sv.mode == "rate":
        t = Table(title="load each candidate holds under the targets (serving simulator)")
        for c in ("strategy", "engine", "max users" if sv.mode == "users" else "max requests/s", "tok/s there",
                  "limit"):
            t.add_column(c)
        for i, c in enumerate(sv.candidates):
            top = c.max_users if sv.mode == "users" else c.max_rate_rps
            t.add_row(c.strategy + (" *" if i == sv.best else ""), c.engine, _f(top, 0 if sv.mode == "users" else 2),
                      _f(c.at_capacity.output_throughput if c.at_capacity else None, 0), c.binding)
        con.print(t)
    best = sv.candidates[sv.best] if sv.best is not None else None
    if best is not None and best.curve:
        key = "users" if sv.mode == "users" else "rate_rps"
        t = Table(title=f"{best.strategy} ({best.engine}): throughput and latency against load")
        for c in ("users" if sv.mode == "users" else "requests/s", "output tok/s", "req/s", "TTFT p50/p90/p99 ms",
                  "TPOT p50/p90/p99 ms", "E2E p50 s", "batch", "KV used"):
            t.add_column(c, justify="right")
        for p in best.curve:
            t.add_row(_f(getattr(p, key), 0 if key == "users" else 2), _f(p.output_throughput, 0),
                      _f(p.request_throughput, 2),
                      "/".join(_f(x, 0) for x in (p.ttft_ms.median, p.ttft_ms.p90, p.ttft_ms.p99)),
                      "/".join(_f(x, 1) for x in (p.tpot_ms.median, p.tpot_ms.p90, p.tpot_ms.p99)),
                      _f(p.e2el_ms.median / 1e3 if p.e2el_ms.median is not None else None, 1), _f(p.mean_batch, 0),
                      f"{p.kv_peak_fraction:.0%}")
        con.print(t)
    _render_serving_launch(con, sv)


def _render_serving_launch(con, sv) -> None:
    for name, cmd in sv.launch.items():
        c = sv.candidates[sv.best]
        con.print(f"[bold]to serve it on {c.strategy} ({name}):[/bold]")
        con.print(cmd.text, markup=False, highlight=False, soft_wrap=True)


def _render_trace(con, sv) -> None:
    """plan --trace: every candidate replaying the same requests."""
    from rich.table import Table

    t = Table(title=f"the trace's {int(sv.requested or 0):,} requests on each candidate (serving simulator)")
    for c in ("strategy", "engine", "output tok/s", "TTFT p50/p90/p99 ms", "TPOT p50/p90 ms", "E2E p90 s",
              "targets", "limit"):
        t.add_column(c, justify="left" if c in ("strategy", "engine", "limit") else "right")
    for i, c in enumerate(sv.candidates):
        p = c.at_capacity
        if p is None:
            t.add_row(c.strategy, c.engine, "-", "-", "-", "-", "-", c.binding)
            continue
        ok = "-" if p.meets_targets is None else ("met" if p.meets_targets else "missed")
        t.add_row(c.strategy + (" *" if i == sv.best else ""), c.engine, _f(p.output_throughput, 0),
                  "/".join(_f(x, 0) for x in (p.ttft_ms.median, p.ttft_ms.p90, p.ttft_ms.p99)),
                  "/".join(_f(x, 1) for x in (p.tpot_ms.median, p.tpot_ms.p90)),
                  _f(p.e2el_ms.p90 / 1e3 if p.e2el_ms.p90 is not None else None, 1), ok, c.binding)
    con.print(t)


def render_compare(res) -> None:
    from rich.table import Table

    from ..results import METRIC_WORDS

    con = _c()
    t = Table(title=res.title or f"{res.model_label} {res.quant} · {res.context:,} context · {res.users} user(s)",
              caption=f"verdicts: {METRIC_WORDS[res.compared_on]} against the first setup that fits")
    for c in ("setup", "strategy", "tok/s per user", "total tok/s", "memory GB", "verdict"):
        t.add_column(c)
    for r in res.rows:
        if not r.fits:
            t.add_row(r.setup, r.plan.strategy if r.plan else "-", "-", "-", "-", r.verdict, style="red")
            continue
        t.add_row(r.setup, r.plan.strategy, _f(r.per_user_tok_s), _f(r.throughput_tok_s),
                  f"{r.memory_used_gb:.1f} / {r.memory_capacity_gb:.1f}", r.verdict)
    con.print(t)
    for k in ("article", "measured"):
        if getattr(res, k):
            con.print(f"  {k}: {getattr(res, k)}", highlight=False)


def render_builds(res) -> None:
    from rich.table import Table

    con = _c()
    budget = f" · budget ${res.budget_usd:,.0f}" if res.budget_usd is not None else ""
    t = Table(title=f"builds for {res.model_label} {res.quant} · {res.users} user(s) · {res.context:,} context{budget}")
    for c in ("build", "price $", "VRAM GB", "used GB", "W", "1 user tok/s", "total tok/s", "tok/s per $1k",
              "tok/s per 100 W", "$/Mtok 3y"):
        t.add_column(c, justify="left" if c == "build" else "right")
    for r in res.builds:
        t.add_row(r.name + ("" if r.fits else " (does not fit)"), f"{r.price_usd:,.0f}", _f(r.vram_gb),
                  _f(r.vram_used_gb), f"{r.power_w:.0f}", _f(r.decode_tok_s), _f(r.throughput_tok_s),
                  _f(r.tok_s_per_1000_usd), _f(r.tok_s_per_100_w), _f(r.usd_per_million_tokens_3y, 3),
                  style="red" if not r.fits else None)
    con.print(t)
    if res.over_budget:
        names = ", ".join(f"{r.name} (${r.price_usd:,.0f})" for r in res.over_budget)
        con.print(f"  over the ${res.budget_usd:,.0f} budget, not shown: {names}", highlight=False)
    con.print(f"  {res.note}")
