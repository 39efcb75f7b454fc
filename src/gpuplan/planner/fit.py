"""`gpuplan fit`: the default split of the model over the given devices, memory per device,
the verdict in one sentence, and the largest context that fits."""

from __future__ import annotations

from dataclasses import replace

from ..perf.engine_profiles import LLAMA_FAMILY, described
from ..perf.memory import allocated_context, device_memory, fits, max_context
from ..requests import FitRequest
from ..results import DeviceFit, EngineVerdict, FitPlan, FitResult
from ..types import Engine, Hardware, LoadedModel, Plan, Split, Workload
from .defaults import assumptions, engine_choice, shortfall


def gb(x: float) -> float:
    return round(x / 1e9, 2)


def default_plan(model: LoadedModel, hw: Hardware, engine: Engine, kv: str, wl: Workload,
                 options: dict | None = None) -> Plan:
    """The plan `fit` judges: all layers on the given GPUs, split by layers in proportion to room
    (llama.cpp), or tensor parallel inside a node and pipeline across nodes (GPU engines);
    `options` are the user's engine settings (perf/engine_profiles.engine_options)."""
    from .shares import proportional_shares

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


def verdict(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload, mem, largest: int) -> str:
    """The answer in one sentence that is true of the numbers beside it."""
    gpu = [m for m in mem if m.name != "host RAM"]
    if fits(mem):
        return (f"fits on {plan.engine.value}: largest context that fits is {largest:,} tokens per sequence"
                f" at {wl.users} sequence(s) (model maximum {model.spec.max_context:,})")
    short = shortfall(mem, plan.engine)
    weights_only = [m for m in gpu if m.weights > m.capacity]
    if weights_only:
        m = weights_only[0]
        why = f"the weights alone ({m.weights / 1e9:.2f} GB on {m.name}) exceed its {m.capacity / 1e9:.2f} GB"
    elif largest:
        why = f"at this hardware the largest context that fits is {largest:,} tokens per sequence"
    else:
        why = "the weights and the engine's overhead leave no room for even a one-token KV cache"
    return f"does not fit on {plan.engine.value}: {short}; {why}"


def _other_engines(model, hw, wl, kv, others, ok: bool, opts: dict) -> list[EngineVerdict]:
    out = []
    for e in others:
        p = default_plan(model, hw, e, kv if e in LLAMA_FAMILY or kv in ("f16", "fp8") else "f16", wl, opts)
        mem = device_memory(model, hw, p, wl)
        if fits(mem) != ok:
            note = (f"{e.value} would fit" if fits(mem) else
                    f"{e.value} would not fit: {shortfall(mem, e)}")
            out.append(EngineVerdict(engine=e.value, fits=fits(mem), note=note))
    return out


def fit_loaded(model: LoadedModel, hw: Hardware, req: FitRequest) -> FitResult:
    """fit for a model already loaded (an upload on the web page, or api.fit)."""
    from .report import engine_options_of

    engine, engine_why, others = engine_choice(model, hw, req.engine)
    kv = req.kv or "f16"
    wl = Workload(context=req.context, users=req.users)
    opts = engine_options_of(req)
    plan = default_plan(model, hw, engine, kv, wl, opts)
    mem = device_memory(model, hw, plan, wl)
    ok = fits(mem)
    largest = max_context(model, hw, plan, wl)
    other = _other_engines(model, hw, wl, kv, others, ok, opts)
    eng = described(plan)
    sentence = verdict(model, hw, plan, wl, mem, largest)
    if other:
        sentence += "; " + "; ".join(o.note for o in other) + f" (--engine {other[0].engine})"
    return FitResult(
        fits=ok, model=model.spec.id, model_label=model.label, quant=model.quant.id, engine=plan.engine.value,
        context=wl.context, users=wl.users, kv_type=plan.kv_type,
        plan=FitPlan(strategy=plan.description, split=plan.split.value, shares=list(plan.shares), tp=plan.tp,
                     pp=plan.pp, gpu_layers=plan.gpu_layers),
        devices=[DeviceFit(name=m.name, weights_gb=gb(m.weights), kv_cache_gb=gb(m.kv_cache),
                           overhead_gb=gb(m.overhead), total_gb=gb(m.total), capacity_gb=gb(m.capacity),
                           free_gb=gb(m.free), fits=m.free >= 0, repacked_gb=gb(m.repacked) if m.repacked else None)
                 for m in mem],
        max_context=largest, model_max_context=model.spec.max_context, verdict=sentence,
        allocated_context=allocated_context(plan, wl), engine_settings=eng["settings"],
        engine_defaults=eng["defaults_assumed"],
        assumptions=assumptions(model, hw, plan, wl, engine_why, req.quant, req.kv, None,
                                concurrent=wl.users, context_given="context" in req.model_fields_set,
                                others=other))


def fit(req: FitRequest) -> FitResult:
    from ..sources.hardware import resolve_hardware
    from ..sources.resolve import resolve_model

    model = resolve_model(req.model, req.quant)
    return fit_loaded(model, resolve_hardware(req), req)
