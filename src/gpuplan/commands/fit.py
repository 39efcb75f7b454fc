"""`gpuplan fit`: memory per device, verdict, largest context."""

from __future__ import annotations

import json
import sys

from .common import check_range, default_engine, gb, resolve_hardware


def default_plan(model, hw, engine, kv, wl, options=None):
    """The plan `fit` judges: all layers on the given GPUs, split by layers in proportion to room;
    `options` are the user's engine settings (perf/engine_profiles.engine_options)."""
    from dataclasses import replace

    from ..perf.engine_profiles import LLAMA_FAMILY
    from ..planner.shares import proportional_shares
    from ..types import Plan, Split

    n = hw.n
    opts = options or {}
    if n == 1:
        return Plan(split=Split.NONE, engine=engine, device_ids=(0,), kv_type=kv, **opts)
    if engine in LLAMA_FAMILY:
        plan = Plan(split=Split.LAYER, engine=engine, device_ids=tuple(range(n)), kv_type=kv, **opts)
        return replace(plan, shares=proportional_shares(model, hw, plan, wl))
    per_node = n // hw.nodes
    return Plan(split=Split.TENSOR, engine=engine, device_ids=tuple(range(n)), tp=per_node, pp=hw.nodes, kv_type=kv,
                **opts)


def fit_result(model, hw, plan, wl) -> dict:
    from ..perf.engine_profiles import described
    from ..perf.memory import allocated_context, device_memory, fits, max_context

    mem = device_memory(model, hw, plan, wl)
    ok = fits(mem)
    eng = described(plan)
    return {
        "fits": ok,
        "model": model.spec.id, "quant": model.quant.id, "engine": plan.engine.value,
        "context": wl.context, "users": wl.users, "kv_type": plan.kv_type,
        "plan": {"strategy": plan.strategy, "split": plan.split.value, "shares": list(plan.shares),
                 "tp": plan.tp, "pp": plan.pp, "gpu_layers": plan.gpu_layers},
        "devices": [{"name": m.name, "weights_gb": gb(m.weights), "kv_cache_gb": gb(m.kv_cache),
                     "overhead_gb": gb(m.overhead), "total_gb": gb(m.total), "capacity_gb": gb(m.capacity),
                     "free_gb": gb(m.free), "fits": m.free >= 0,
                     **({"repacked_gb": gb(m.repacked)} if m.repacked else {})} for m in mem],
        "max_context": max_context(model, hw, plan, wl),
        "model_max_context": model.spec.max_context,
        "allocated_context": allocated_context(plan, wl),
        "engine_settings": eng["settings"],
        "engine_defaults": eng["defaults_assumed"],
    }


def fit(model_ref, quant, gpus, hardware, context, users, engine, kv, link, ram, as_json, options=None):
    from ..perf.memory import kv_type_bytes
    from ..sources.resolve import resolve_model
    from ..types import Workload

    check_range("--context", context, 1, 10_000_000)
    check_range("--users", users, 1, 100_000)
    kv_type_bytes(kv)
    model = resolve_model(model_ref, quant)
    hw = resolve_hardware(gpus, hardware, link, ram)
    eng = default_engine(model, engine)
    wl = Workload(context=context, users=users)
    plan = default_plan(model, hw, eng, kv.lower(), wl, options)
    res = fit_result(model, hw, plan, wl)
    if as_json:
        sys.stdout.write(json.dumps(res, indent=2) + "\n")
        return
    render(res)


def render(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    t = Table(title=f"{res['model']} {res['quant']} · {res['engine']} · context {res['context']:,}"
                    f" × {res['users']} · {res['plan']['strategy']}")
    for c in ("device", "weights GB", "KV cache GB", "overhead GB", "total GB", "capacity GB", "free GB"):
        t.add_column(c, justify="right" if c != "device" else "left")
    for d in res["devices"]:
        style = None if d["fits"] else "red"
        t.add_row(d["name"], f"{d['weights_gb']:.2f}", f"{d['kv_cache_gb']:.2f}", f"{d['overhead_gb']:.2f}",
                  f"{d['total_gb']:.2f}", f"{d['capacity_gb']:.2f}", f"{d['free_gb']:.2f}", style=style)
    con.print(t)
    assumed = res.get("engine_defaults") or {}
    if assumed:
        con.print("assumed engine defaults: " + "; ".join(f"{k} {v}" for k, v in assumed.items())
                  + ". Set them with --flash-attn, --swa-full, --ubatch, --gpu-memory-utilization, --kv.")
    if res["fits"]:
        con.print(f"[green]fits[/green]: largest context that fits is {res['max_context']:,} tokens per sequence"
                  f" (model maximum {res['model_max_context']:,})")
    else:
        short = -min(d["free_gb"] for d in res["devices"])
        hint = (f"; at this hardware the largest context that fits is {res['max_context']:,}"
                if res["max_context"] else "; the weights alone do not fit")
        con.print(f"[red]does not fit[/red]: short by {short:.2f} GB on the fullest device{hint}. "
                  "Try `gpuplan plan` for offload and split options.")
