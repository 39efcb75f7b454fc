"""Plan results as the JSON contract of DESIGN.md, and the explanation that walks the
article's decision framework with this model's numbers at every step."""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Split, Workload
from .search import Candidate, candidates, rank


def _gb(x: float) -> float:
    return round(x / 1e9, 2)


def _r(x: float | None, nd: int = 1):
    return None if x is None else round(x, nd)


def describe_hw(hw: Hardware, ids) -> str:
    from collections import Counter

    names = Counter(hw.devices[i].name for i in ids)
    return " + ".join(f"{n}x {name}" if n > 1 else name for name, n in names.items())


def candidate_json(c: Candidate, hw: Hardware, n_layers: int) -> dict:
    p = c.plan
    from ..perf.memory import layers_per_device

    devs = []
    for j, i in enumerate(p.device_ids):
        devs.append({"index": i, "id": hw.devices[i].id, "share": p.shares[j] if p.shares else None})
    d = {
        "fits": c.fits,
        "plan": {"strategy": p.strategy, "split": p.split.value, "engine": p.engine.value, "devices": devs,
                 "tp": p.tp, "pp": p.pp, "replicas": p.replicas, "gpu_layers": p.gpu_layers,
                 "kv_type": p.kv_type, "experts_on_host": p.experts_on_host,
                 "hardware": describe_hw(hw, p.device_ids) + (f" (x{p.replicas} replicas)" if p.replicas > 1 else "")},
        "decode_tok_s": _r(c.decode.value) if c.decode else None,
        "prefill_tok_s": _r(c.prefill.value) if c.prefill else None,
        "throughput_tok_s": _r(c.throughput.value) if c.throughput else None,
        "per_user_tok_s": _r(c.per_user_tok_s),
        "concurrent_per_replica": c.concurrent,
        "bound": c.decode.bound if c.decode else None,
        "roofline_fraction": _r(c.decode.roofline_fraction, 3) if c.decode else None,
        "breakdown_ms_per_token": {k: round(v * 1e3, 3) for k, v in c.decode.seconds.items()} if c.decode else {},
        "memory": [{"name": m.name, "weights_gb": _gb(m.weights), "kv_cache_gb": _gb(m.kv_cache),
                    "overhead_gb": _gb(m.overhead), "total_gb": _gb(m.total), "capacity_gb": _gb(m.capacity),
                    "free_gb": _gb(m.free)} for m in c.memory],
        "verdict": c.verdict or (c.reason or ""),
    }
    if p.split == Split.LAYER and p.shares:
        gl = p.gpu_layers if p.gpu_layers is not None else n_layers
        d["plan"]["layers_per_device"] = layers_per_device(gl, p.shares)
    return d


def _verdicts(ranked: list[Candidate], wl: Workload) -> None:
    if not ranked or not ranked[0].fits:
        return
    best = ranked[0]
    best.verdict = "recommended"
    key = (lambda c: c.decode.value) if wl.goal == "latency" and wl.users <= 1 else (lambda c: c.score)
    for c in ranked[1:]:
        if not c.fits:
            c.verdict = c.reason or "does not fit"
            continue
        ratio = key(c) / key(best) if key(best) else 0
        more = c.n_devices - best.n_devices
        if ratio >= 1.0 and more > 0:
            c.verdict = f"{ratio:.2f}x the recommended plan with {more} more GPU(s): not worth the extra card(s)"
        elif ratio >= 1.0:
            c.verdict = f"{ratio:.2f}x: as good"
        else:
            c.verdict = f"{ratio:.2f}x the recommended plan"


def explain(model: LoadedModel, hw: Hardware, wl: Workload, ranked: list[Candidate]) -> list[str]:
    from .explain import explanation

    return explanation(model, hw, wl, ranked)


def plan_json(model_ref: str, quant: str | None, hw: Hardware, context: int, users: int, engine: str | None,
              goal: str, min_user_tok_s: float, prompt_tokens: int = 512, output_tokens: int = 256,
              file_ref: str | None = None, kv: str | None = None, options: dict | None = None) -> dict:
    from .. import engines
    from ..sources.resolve import resolve_model

    model = resolve_model(model_ref, quant)
    wl = Workload(context=context, prompt_tokens=min(prompt_tokens, context), output_tokens=output_tokens,
                  users=users, goal=goal, min_user_tok_s=min_user_tok_s)
    cands = candidates(model, hw, wl, engine, kv=kv, options=options)
    ranked = rank(cands, wl, hw)
    _verdicts(ranked, wl)
    best = ranked[0]
    out = candidate_json(best, hw, model.spec.n_layers)
    from ..perf.engine_profiles import described

    eng = described(best.plan)
    out.update({"engine_settings": eng["settings"], "engine_defaults": eng["defaults_assumed"]})
    out.update({"model": model.spec.id, "quant": model.quant.id, "goal": goal,
                "workload": {"context": context, "users": users, "prompt_tokens": wl.prompt_tokens,
                             "output_tokens": output_tokens, "min_user_tok_s": min_user_tok_s}})
    if best.fits:
        ref = file_ref or (model_ref if model_ref.endswith(".gguf") else None)
        launch = engines.launch_for(best.plan, model, hw, wl, ref)
        out["commands"] = {name: cmd.text for name, cmd in launch.items()}
        out["launch"] = {name: cmd.model_dump() for name, cmd in launch.items()}
        out["unsupported_engines"] = engines.explain_unsupported(best.plan, model, hw, wl)
    else:
        out["commands"] = {}
        out["launch"] = {}
        out["unsupported_engines"] = {}
    out["alternatives"] = [candidate_json(c, hw, model.spec.n_layers) for c in ranked[1:]]
    out["explanation"] = explain(model, hw, wl, ranked)
    if best.decode:
        out["time_to_first_token_s"] = round(wl.prompt_tokens / best.prefill.value, 3) if best.prefill else None
    return out
