"""`gpuplan compare`: the article's tables for your model — one row per setup, each using all
the hardware it names — and the article's three scenarios built in."""

from __future__ import annotations

from ..errors import InputError
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


def compare_json(model_ref: str | None, setups: list[str], quant: str | None, context: int, users: int,
                 scenario: str | None) -> dict:
    from ..sources.hardware import parse_hardware
    from ..sources.resolve import resolve_model
    from .report import candidate_json
    from .search import candidates, rank

    info = {}
    if scenario:
        if scenario not in SCENARIOS:
            raise InputError(f"unknown scenario '{scenario}'; accepted: {', '.join(SCENARIOS)}")
        info = SCENARIOS[scenario]
        model_ref = model_ref or info["model"]
        quant = quant or info["quant"]
        setups = setups or info["setups"]
        context, users = info["context"], info["users"]
    if not model_ref:
        raise InputError("give a model (catalog id, .gguf or config.json) or --scenario")
    if not setups:
        raise InputError("give at least one --setup, e.g. --setup '1x rtx-4090' --setup '2x rtx-4090 pcie4-x8'")
    model = resolve_model(model_ref, quant)
    goal = "throughput" if users > 1 else "latency"
    wl = Workload(context=context, prompt_tokens=min(512, context), output_tokens=256, users=users, goal=goal)
    rows = []
    for s in setups:
        spec, strategy = parse_setup(s)
        hw = parse_hardware(spec)
        ranked = rank([c for c in candidates(model, hw, wl) if _matches(c, hw, strategy)], wl, hw)
        if not ranked:
            rows.append({"setup": s, "fits": False, "verdict": "no plan of that kind for this hardware"})
            continue
        best = ranked[0]
        d = candidate_json(best, hw, model.spec.n_layers)
        gpu_mem = [m for m in d["memory"] if m["name"] != "host RAM"]
        d.update({"setup": s, "memory_used_gb": round(sum(m["total_gb"] for m in gpu_mem), 1),
                  "memory_capacity_gb": round(sum(m["capacity_gb"] for m in gpu_mem), 1)})
        rows.append(d)
    _verdicts(rows, users)
    return {"model": model.spec.id, "quant": model.quant.id, "context": context, "users": users,
            "scenario": scenario, "title": info.get("title"), "rows": rows,
            "article": info.get("article"), "measured": info.get("measured")}


def _verdicts(rows: list[dict], users: int) -> None:
    key = "decode_tok_s" if users <= 1 else "throughput_tok_s"
    base = next((r for r in rows if r.get("fits")), None)
    for r in rows:
        if not r.get("fits"):
            r["verdict"] = r.get("verdict") or "does not fit"
            continue
        ratio = r[key] / base[key] if base and base[key] else 1.0
        r["vs_first"] = round(ratio, 2)
        if r is base:
            r["verdict"] = "baseline"
        elif ratio < 1.05:
            r["verdict"] = f"{ratio:.2f}x: no benefit"
        elif ratio < 1.5:
            r["verdict"] = f"{ratio:.2f}x: some benefit"
        else:
            r["verdict"] = f"{ratio:.2f}x: much better"
