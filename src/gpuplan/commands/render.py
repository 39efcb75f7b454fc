"""Terminal rendering of plan, compare and builds results (rich)."""

from __future__ import annotations


def _c():
    from rich.console import Console

    return Console()


def _f(x, nd=1):
    return "-" if x is None else f"{x:,.{nd}f}"


def render_plan(res: dict, brief: bool = False) -> None:
    from rich.table import Table

    con = _c()
    head = "[green]fits[/green]" if res["fits"] else "[red]does not fit[/red]"
    con.print(f"[bold]{res['model']}[/bold] {res['quant']} on {res['plan']['hardware']}: {head} · "
              f"{res['plan']['strategy']} · {res['plan']['engine']}")
    con.print(f"  one user: {_f(res['decode_tok_s'])} tok/s · prompt: {_f(res['prefill_tok_s'], 0)} tok/s · "
              f"{res['workload']['users']} users: {_f(res['throughput_tok_s'])} tok/s in total · bound: {res['bound']}")
    for line in res["explanation"]:
        con.print(f"  • {line}")
    assumed = res.get("engine_defaults") or {}
    if assumed:
        con.print("  assumed engine defaults: " + "; ".join(f"{k} {v}" for k, v in assumed.items()), markup=False)
    if brief:
        return
    t = Table(title="memory per device (GB)")
    for c in ("device", "weights", "KV cache", "overhead", "total", "capacity", "free"):
        t.add_column(c, justify="left" if c == "device" else "right")
    for m in res["memory"]:
        t.add_row(m["name"], *[_f(m[k], 2) for k in ("weights_gb", "kv_cache_gb", "overhead_gb", "total_gb",
                                                       "capacity_gb", "free_gb")])
    con.print(t)
    if res["alternatives"]:
        a = Table(title="alternatives")
        for c in ("strategy", "hardware", "1 user tok/s", "total tok/s", "verdict"):
            a.add_column(c)
        for alt in res["alternatives"][:12]:
            a.add_row(alt["plan"]["strategy"], alt["plan"]["hardware"], _f(alt["decode_tok_s"]),
                      _f(alt["throughput_tok_s"]), alt["verdict"])
        con.print(a)
    for eng, cmd in res.get("commands", {}).items():
        con.print(f"[bold]{eng}[/bold]")
        con.print(cmd, markup=False, highlight=False)


def render_compare(res: dict) -> None:
    from rich.table import Table

    con = _c()
    t = Table(title=res.get("title") or f"{res['model']} {res['quant']} · {res['context']:,} context · "
                                         f"{res['users']} user(s)")
    for c in ("setup", "strategy", "tok/s per user", "total tok/s", "memory GB", "verdict"):
        t.add_column(c)
    for r in res["rows"]:
        if not r.get("fits"):
            t.add_row(r["setup"], r.get("plan", {}).get("strategy", "-"), "-", "-", "-", r["verdict"], style="red")
            continue
        t.add_row(r["setup"], r["plan"]["strategy"], _f(r["per_user_tok_s"]), _f(r["throughput_tok_s"]),
                  f"{r['memory_used_gb']:.1f} / {r['memory_capacity_gb']:.1f}", r["verdict"])
    con.print(t)
    for k in ("article", "measured"):
        if res.get(k):
            con.print(f"  {k}: {res[k]}")


def render_builds(res: dict) -> None:
    from rich.table import Table

    con = _c()
    t = Table(title=f"builds for {res['model']} {res['quant']} · {res['users']} user(s) · {res['context']:,} context")
    for c in ("build", "price $", "VRAM GB", "W", "1 user tok/s", "total tok/s", "tok/s per $1k",
              "tok/s per 100 W", "$/Mtok 3y"):
        t.add_column(c, justify="left" if c == "build" else "right")
    for r in res["builds"]:
        style = "red" if not r["fits"] else ("dim" if r["over_budget"] else None)
        t.add_row(r["name"], f"{r['price_usd']:,.0f}", _f(r["vram_gb"]), f"{r['power_w']:.0f}",
                  _f(r["decode_tok_s"]), _f(r["throughput_tok_s"]), _f(r.get("tok_s_per_1000_usd")),
                  _f(r.get("tok_s_per_100_w")), _f(r.get("usd_per_million_tokens_3y"), 3), style=style)
    con.print(t)
    con.print(f"  {res['note']}")
