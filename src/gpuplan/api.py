"""The API both front ends use: the CLI renders these dicts for a terminal, the web page as
HTML. Every function takes plain values, raises InputError on bad input, returns JSON-ready dicts."""

from __future__ import annotations

from .errors import InputError


def _hw(gpus, hardware=None, link=None, ram=None, nodes=1, ram_gib=None):
    from .commands.common import resolve_hardware

    hw = resolve_hardware(gpus, hardware, link, ram, nodes)
    if ram_gib is not None:
        from dataclasses import replace

        if not (1 <= ram_gib <= 65536):
            raise InputError(f"RAM size {ram_gib:g} GB is out of range; accepted: 1 to 65536")
        hw = replace(hw, host_ram_gib=float(ram_gib))
    return hw


def _check_workload(context, users):
    from .commands.common import check_range

    check_range("context", context, 1, 10_000_000)
    check_range("users", users, 1, 100_000)


def fit(model: str, gpus: str | None = None, quant: str | None = None, context: int = 8192, users: int = 1,
        engine: str | None = None, kv: str = "f16", link: str | None = None, ram: str | None = None,
        hardware: str | None = None, flash_attn: str | None = None, swa_full: bool | None = None,
        ubatch: int | None = None, gpu_memory_utilization: float | None = None) -> dict:
    from .commands.common import default_engine
    from .commands.fit import default_plan, fit_result
    from .perf.engine_profiles import engine_options
    from .perf.memory import kv_type_bytes
    from .sources.resolve import resolve_model
    from .types import Workload

    _check_workload(context, users)
    kv_type_bytes(kv)
    opts = engine_options(flash_attn, swa_full, ubatch, gpu_memory_utilization)
    m = resolve_model(model, quant)
    hw = _hw(gpus, hardware, link, ram)
    wl = Workload(context=context, users=users)
    plan = default_plan(m, hw, default_engine(m, engine), kv.lower(), wl, opts)
    return fit_result(m, hw, plan, wl)


def plan(model: str, gpus: str | None = None, quant: str | None = None, context: int = 8192, users: int = 1,
         engine: str | None = None, goal: str = "latency", min_user_tok_s: float = 0.0, link: str | None = None,
         ram: str | None = None, nodes: int = 1, hardware: str | None = None, prompt_tokens: int = 512,
         output_tokens: int = 256, ram_gib: float | None = None, model_ref: str | None = None,
         kv: str | None = None, flash_attn: str | None = None, swa_full: bool | None = None,
         ubatch: int | None = None, gpu_memory_utilization: float | None = None) -> dict:
    from .perf.engine_profiles import engine_options
    from .perf.memory import kv_type_bytes
    from .planner.report import plan_json

    _check_workload(context, users)
    if kv is not None:
        kv_type_bytes(kv)
    opts = engine_options(flash_attn, swa_full, ubatch, gpu_memory_utilization)
    file_ref = model_ref if model_ref and model_ref.lower().endswith(".gguf") else None
    return plan_json(model, quant, _hw(gpus, hardware, link, ram, nodes, ram_gib), context, users, engine, goal,
                     min_user_tok_s, prompt_tokens, output_tokens, file_ref, kv=kv.lower() if kv else None,
                     options=opts)


def compare(model: str | None, setups: list[str], quant: str | None = None, context: int = 8192,
            users: int = 1, scenario: str | None = None) -> dict:
    from .planner.compare import compare_json

    _check_workload(context, users)
    return compare_json(model, setups, quant, context, users, scenario)


def builds(model: str, quant: str | None = None, budget: float | None = None, users: int = 1,
           context: int = 8192, electricity: float = 0.15) -> dict:
    from .planner.builds import builds_json

    _check_workload(context, users)
    return builds_json(model, quant, budget, users, context, electricity)


def scaling(model: str, gpu: str, quant: str | None = None, context: int = 8192, users: int = 1,
            max_gpus: int = 8, link: str | None = None) -> dict:
    """Chart data: decode tok/s against GPU count for layer split, tensor parallel and replicas;
    against context; and aggregate throughput against users."""
    from .planner.charts import scaling_json

    _check_workload(context, users)
    return scaling_json(model, gpu, quant, context, users, max_gpus, link)


def catalog_list(kind: str, search: str | None = None) -> list[dict]:
    from . import catalog

    tables = {"gpus": catalog.devices, "devices": catalog.devices, "models": catalog.models,
              "links": catalog.links, "host-memory": catalog.host_memories, "quants": catalog.quants,
              "builds": catalog.builds}
    if kind not in tables:
        raise InputError(f"unknown catalog '{kind}'; accepted: {', '.join(tables)}")
    words = (search or "").lower().split()
    out = []
    for e in tables[kind]().values():
        d = e.model_dump()
        hay = " ".join(str(v) for v in (d.get("id"), d.get("name"), *(d.get("aliases") or []))).lower()
        if all(w in hay for w in words):
            out.append(d)
    return out


def validate_file(paths: list[str]) -> dict:
    from .bench.validate import validate

    res = validate(paths)
    return {"rows": res["rows"], "summary": res["summary"]}
