"""Chart data: how speed scales with GPU count, context length and users."""

from __future__ import annotations

from dataclasses import replace

from ..errors import InputError
from ..types import Engine, Plan, Split, Workload

CONTEXTS = (1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072)
USERS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def scaling_json(model_ref: str, gpu: str, quant: str | None, context: int, users: int, max_gpus: int,
                 link: str | None) -> dict:
    from ..perf import speed
    from ..perf.memory import device_memory, fits
    from ..perf.predict import max_batch_for
    from ..sources.hardware import parse_hardware
    from ..sources.resolve import resolve_model

    if not (1 <= max_gpus <= 16):
        raise InputError(f"max GPUs {max_gpus} is out of range; accepted: 1 to 16")
    model = resolve_model(model_ref, quant)
    wl = Workload(context=context, prompt_tokens=min(512, context), output_tokens=256, users=users)
    series = {"gpus": [], "layer_split": [], "tensor_parallel": [], "replicas_throughput": [],
              "layer_split_throughput": []}

    def run(plan, hw):
        room = max_batch_for(model, hw, plan, context)
        if room < 1 or not fits(device_memory(model, hw, plan, replace(wl, users=max(plan.replicas, 1)))):
            return None, None
        conc = max(1, min(-(-users // max(plan.replicas, 1)), room))
        d = speed.decode(model, hw, plan, depth=wl.prompt_tokens, n_gen=wl.output_tokens).value
        t = speed.throughput(model, hw, plan, users, wl.prompt_tokens, wl.output_tokens, max_batch=conc).value
        return round(d, 1), round(t, 1)

    for n in range(1, max_gpus + 1):
        hw = parse_hardware(f"{n}x {gpu}", link=link)
        ids = tuple(range(n))
        if n == 1:  # one card: every strategy is the same plan
            dl, tl = run(Plan(split=Split.NONE, engine=Engine.LLAMA_CPP, device_ids=ids), hw)
            dt, tr = dl, tl
        else:
            layer = Plan(split=Split.LAYER, engine=Engine.LLAMA_CPP, device_ids=ids, shares=tuple([1.0] * n))
            tp = Plan(split=Split.TENSOR, engine=Engine.VLLM, device_ids=ids, tp=n)
            rep = Plan(split=Split.NONE, engine=Engine.LLAMA_CPP, device_ids=(0,), replicas=n)
            dl, tl = run(layer, hw)
            dt, _ = run(tp, hw) if model.spec.n_heads % n == 0 else (None, None)
            _, tr = run(rep, hw)
        series["gpus"].append(n)
        series["layer_split"].append(dl)
        series["tensor_parallel"].append(dt)
        series["replicas_throughput"].append(tr)
        series["layer_split_throughput"].append(tl)

    # context and users sweeps on the fewest GPUs that hold the model
    hw_n = next((n for n, v in zip(series["gpus"], series["layer_split"]) if v is not None), None)
    ctx_series, user_series = [], []
    if hw_n:
        hw = parse_hardware(f"{hw_n}x {gpu}", link=link)
        plan = Plan(split=Split.NONE if hw_n == 1 else Split.LAYER, engine=Engine.LLAMA_CPP,
                    device_ids=tuple(range(hw_n)), shares=() if hw_n == 1 else tuple([1.0] * hw_n))
        for c in CONTEXTS:
            if c > model.spec.max_context:
                break
            ok = fits(device_memory(model, hw, plan, Workload(context=c, users=1)))
            v = speed.decode(model, hw, plan, depth=c, n_gen=1).value if ok else None
            ctx_series.append({"context": c, "decode_tok_s": round(v, 1) if v else None})
        room = max_batch_for(model, hw, plan, context)
        for u in USERS:
            conc = max(1, min(u, room))
            v = speed.throughput(model, hw, plan, u, wl.prompt_tokens, wl.output_tokens, max_batch=conc).value
            user_series.append({"users": u, "throughput_tok_s": round(v, 1), "concurrent": conc})
    return {"model": model.spec.id, "quant": model.quant.id, "gpu": gpu, "context": context, "users": users,
            "by_gpus": series, "by_context": ctx_series, "by_users": user_series, "sweep_gpus": hw_n}
