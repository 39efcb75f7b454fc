"""`gpuplan compare`: the article's tables for your model — one row per setup, each using all
the hardware it names — and the article's three scenarios built in."""

from __future__ import annotations

from ..errors import InputError
from ..requests import CompareRequest
from ..results import CompareResult, CompareRow
from ..types import Split, Workload

STRATEGY_WORDS = {"layer": Split.LAYER, "row": Split.ROW, "tensor": Split.TENSOR, "tp": Split.TENSOR,
                  "replicas": "replicas", "replicate": "replicas", "offload": "offload", "split": "split"}

# Published measurements to set beside the article's rough figures (llama-bench tg512, May 2024).
_XD = "https://github.com/XiongjieDai/GPU-Benchmarks-on-LLM-Inference (README at aa72e0e)"
SCENARIOS = {
    "fits-on-one": {
        "title": "Model fits on one GPU: does a second one help? (Llama 3 8B Q4_K_M, one user)",
        "model": "meta-llama/Meta-Llama-3-8B", "quant": "Q4_K_M", "context": 8192, "users": 1,
        "setups": ["1x rtx-4090", "2x rtx-4090 pcie4-x8 layer", "2x rtx-4090 pcie4-x8 row"],
        "article": "The article puts one RTX 4090 at ~100 tok/s and two over PCIe at ~90-100 tok/s.",
        "measured": f"Published: 130.6 tok/s on one RTX 4090 and 124.7 tok/s on two (layer split), {_XD}.",
    },
    "does-not-fit": {
        "title": "Model does not fit on one 24 GB card: RAM offload vs two GPUs (Llama 3 70B Q4_K_M)",
        "model": "meta-llama/Meta-Llama-3-70B", "quant": "Q4_K_M", "context": 8192, "users": 1,
        "setups": ["1x rtx-4090 + ddr5-6000-2ch offload", "2x rtx-3090 pcie4-x8 layer",
                   "2x rtx-3090 nvlink-bridge-3090 layer", "2x rtx-3090 pcie4-x8 row",
                   "2x rtx-3090 nvlink-bridge-3090 row"],
        "article": "The article gives ~10-15 tok/s with RAM offload, ~35-40 on 2x RTX 3090 over PCIe and"
                   " ~45-50 with NVLink.",
        "measured": f"Published: 16.6 tok/s on 2x RTX 3090 (layer split) and 19.2 on 2x RTX 4090, {_XD};"
                    " the article's two-GPU figures are about twice what was measured.",
    },
    "serving": {
        "title": "Serving a team: replicate or split? (Llama 3 8B Q4_K_M, 128 users, 4K context)",
        "model": "meta-llama/Meta-Llama-3-8B", "quant": "Q4_K_M", "context": 4096, "users": 128,
        "setups": ["1x rtx-4090", "2x rtx-4090 replicas", "2x rtx-4090 pcie4-x8 layer"],
        "article": "The article gives ~50 tok/s in total on one GPU, ~100 with two replicas, ~80 split.",
        "measured": "Batching makes one card serve far more than one user's speed: TensorRT-LLM measured"
                    " 5,586 tok/s on one A100 with 384 sequences (Llama 2 7B FP16, TensorRT-LLM"
                    " docs/source/performance.md v0.6.1); the article's totals are single-stream figures.",
    },
}


def parse_setup(text: str):
    """'2x rtx-4090 pcie4-x8 layer' -> (hardware spec '2x rtx-4090 pcie4-x8', strategy or None)."""
    words = text.replace("+", " + ").split()
    strategy = None
    keep = []
    for w in words:
        if w.lower() in STRATEGY_WORDS:
            if strategy is not None:
                raise InputError(f"setup '{text}' names two strategies; give one of: {', '.join(STRATEGY_WORDS)}")
            strategy = STRATEGY_WORDS[w.lower()]
        else:
            keep.append(w)
    return " ".join(keep), strategy


def _matches(c, hw, strategy) -> bool:
    p = c.plan
    uses_all = len(p.device_ids) * max(p.replicas, 1) == hw.n
    if not uses_all:
        return False
    if strategy is None:
        return True
    if strategy == "replicas":
        return p.replicas > 1
    if strategy == "offload":
        return p.gpu_layers is not None or p.experts_on_host or p.split == Split.NONE
    if strategy == "split":
        return p.replicas == 1 and len(p.device_ids) > 1
    return p.split == strategy and p.replicas == 1


def compare(req: CompareRequest) -> CompareResult:
    """Each setup's best plan of the kind it names, using all the hardware it names; the verdict
    of each row is its ratio to the first fitting row on the column the table shows (tok/s per
    user for one user, total tok/s for several)."""
    from ..sources.hardware import parse_hardware
    from ..sources.resolve import resolve_model
    from .defaults import engine_choice
    from .report import candidate_result
    from .search import candidates, rank

    info, model_ref, setups, quant = {}, req.model, list(req.setup), req.quant
    context, users = req.context, req.users
    if req.scenario:
        if req.scenario not in SCENARIOS:
            raise InputError(f"unknown scenario '{req.scenario}'; accepted: {', '.join(SCENARIOS)}",
                             input="scenario", value=req.scenario, accepted=", ".join(SCENARIOS))
        info = SCENARIOS[req.scenario]
        model_ref = model_ref or info["model"]
        quant = quant or info["quant"]
        setups = setups or info["setups"]
        context = context if context is not None else info["context"]  # the user's options win
        users = users if users is not None else info["users"]
    context = context if context is not None else 8192
    users = users if users is not None else 1
    if not model_ref:
        raise InputError("give a model (catalog id, .gguf or config.json) or --scenario", input="model",
                         accepted="a catalog id, a .gguf file, a config.json, or --scenario NAME")
    if not setups:
        raise InputError("give at least one --setup, e.g. --setup '1x rtx-4090' --setup '2x rtx-4090 pcie4-x8'",
                         input="setup", accepted="one or more hardware setups")
    model = resolve_model(model_ref, quant)
    goal = "throughput" if users > 1 else "latency"
    wl = Workload(context=context, prompt_tokens=min(512, context), output_tokens=256, users=users, goal=goal)
    metric = "throughput_tok_s" if users > 1 else "per_user_tok_s"
    rows: list[CompareRow] = []
    for s in setups:
        spec, strategy = parse_setup(s)
        hw = parse_hardware(spec)
        engine, _why, _ = engine_choice(model, hw, None)
        ranked = rank([c for c in candidates(model, hw, wl, [engine]) if _matches(c, hw, strategy)], wl, hw)
        if not ranked:
            rows.append(CompareRow(setup=s, fits=False, verdict="no plan of that kind for this hardware"))
            continue
        best = ranked[0]
        d = candidate_result(best, hw, model.spec.n_layers)
        gpu_mem = [m for m in d.memory if m.name != "host RAM"]
        rows.append(CompareRow(setup=s, **d.model_dump(exclude={"verdict", "vs_recommended", "roofline_fraction",
                                                                "breakdown_ms_per_token", "plan"}),
                               plan=d.plan, verdict=best.reason or "" if not best.fits else "",
                               memory_used_gb=round(sum(m.total_gb for m in gpu_mem), 1),
                               memory_capacity_gb=round(sum(m.capacity_gb for m in gpu_mem), 1)))
    _verdicts(rows, metric)
    title = info.get("title")
    if title and (context, users) != (info["context"], info["users"]):  # the title states the scenario's own
        title += f"; here with {context:,} tokens of context and {users} user(s)"
    return CompareResult(model=model.spec.id, model_label=model.label, quant=model.quant.id, context=context,
                         users=users, scenario=req.scenario, title=title, compared_on=metric,
                         rows=rows, article=info.get("article"), measured=info.get("measured"))


def _verdicts(rows: list[CompareRow], metric: str) -> None:
    from ..results import METRIC_WORDS
    from .report import fig_text, ratio

    base = next((r for r in rows if r.fits), None)
    for r in rows:
        if not r.fits:
            r.verdict = r.verdict or "does not fit"
            continue
        if r is base:
            r.verdict = "baseline"
            r.vs_first = 1.0
            continue
        q = ratio(getattr(r, metric), getattr(base, metric), metric, "the first setup that fits")
        if q is None:
            r.verdict = "the baseline serves 0 tok/s"
            continue
        r.vs_first, r.vs_baseline = q.ratio, q
        figs = f"{METRIC_WORDS[metric]} {fig_text(q.value, metric)} vs {fig_text(q.baseline, metric)}"
        word = "slower" if q.ratio < 0.95 else "no benefit" if q.ratio < 1.05 else "some benefit" if q.ratio < 1.5 else "much better"
        r.verdict = f"{q.ratio:.2f}x ({figs}): {word}"
