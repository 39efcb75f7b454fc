"""The explanation: the article's decision tree (fits on one GPU? one user or many? longer
context? NVLink or PCIe?) walked with this model's numbers, saying what decided each step.

Every ratio printed here is computed from the two figures printed beside it (as rounded), and a
plan is never compared with itself."""

from __future__ import annotations

from ..perf.memory import max_context
from ..types import Hardware, LoadedModel, Split, Workload
from .search import Candidate


def _name(hw: Hardware, c: Candidate) -> str:
    from .report import describe_hw

    return describe_hw(hw, c.plan.device_ids)


def _k(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def _vs(a: float, b: float) -> tuple[str, str, float]:
    """Two speeds as printed (one decimal) and the ratio of the printed figures."""
    ra, rb = round(a, 1), round(b, 1)
    return f"{ra:,.1f}", f"{rb:,.1f}", (ra / rb if rb else 0.0)


def _t(x: float) -> str:
    return f"{round(x, 1):,.1f}"


def _single(cands: list[Candidate]) -> list[Candidate]:
    return [c for c in cands if c.plan.split == Split.NONE and c.plan.replicas == 1 and c.plan.gpu_layers is None
            and not c.plan.experts_on_host and c.plan.kv_type == "f16"]


def _best(cands, pred, key=lambda c: c.decode.value):
    """The best fitting plan of a kind, a quantized KV cache discounted as the ranking discounts it."""
    from .defaults import KV_QUANT_MIN_GAIN
    from .search import kv_level

    pool = [c for c in cands if c.fits and pred(c)]
    return max(pool, key=lambda c: key(c) / (1 + KV_QUANT_MIN_GAIN) ** kv_level(c)) if pool else None


def _same(a: Candidate | None, b: Candidate | None) -> bool:
    return a is b or (a is not None and b is not None and a.plan.description == b.plan.description
                      and a.plan.device_ids == b.plan.device_ids)


def explanation(model: LoadedModel, hw: Hardware, wl: Workload, ranked: list[Candidate]) -> list[str]:
    from .defaults import shortfall

    out: list[str] = []
    best = ranked[0]
    link = hw.link.name if hw.link else "no link"
    singles = _single(ranked)
    one = max((c for c in singles if c.fits), key=lambda c: c.decode.value, default=None)
    if one is not None:
        free = min(m.free for m in one.memory) / 1e9
        if one.concurrent < wl.users:
            out.append(f"Fits on one {_name(hw, one)}: after {model.weights.total_bytes / 1e9:.1f} GB of weights"
                       f" its KV cache has room for {one.concurrent} of the {wl.users} sequences at"
                       f" {_k(wl.context)} context; the others wait.")
        else:
            out.append(f"Fits on one {_name(hw, one)} with {free:.1f} GB free at {_k(wl.context)} context"
                       f" x {wl.users} sequence(s).")
    elif singles:
        c = max(singles, key=lambda c: min(m.free for m in c.memory))
        out.append(f"Does not fit on one {_name(hw, c)} at {_k(wl.context)} context x {wl.users} sequence(s):"
                   f" {shortfall(c.memory, c.plan.engine)}.")
    multi = hw.n > 1
    if one is not None and wl.users <= 1:
        two = _best(ranked, lambda c: len(c.plan.device_ids) > 1 and c.plan.replicas == 1 and c.plan.kv_type == "f16")
        a = _t(one.decode.value)
        line = f"One user: one {_name(hw, one)} gives {a} tok/s"
        if two is not None and not _same(two, one):
            b, a, r = _vs(two.decode.value, one.decode.value)
            if r < 1.05:
                line += (f"; {len(two.plan.device_ids)} GPUs ({two.plan.description}) over {link} would give {b} tok/s"
                         f" ({r:.2f}x of {a}): don't add it. Decode reads every weight once per token; splitting"
                         " adds a hand-off between cards without adding bandwidth to a single stream")
            else:
                line += f"; {len(two.plan.device_ids)} GPUs ({two.plan.description}) give {b} tok/s ({r:.2f}x of {a})"
        out.append(line + ".")
    if one is not None and wl.users > 1:
        rep = _best(ranked, lambda c: c.plan.replicas > 1, key=lambda c: c.throughput.value)
        split = _best(ranked, lambda c: c.plan.replicas == 1 and len(c.plan.device_ids) > 1,
                      key=lambda c: c.throughput.value)
        total = _t(one.throughput.value)
        line = (f"{wl.users} users: one card serves {total} tok/s in total"
                f" ({one.concurrent} sequences at once, {one.per_user_tok_s:.1f} tok/s each)")
        gain = None
        if rep is not None:
            b, a, gain = _vs(rep.throughput.value, one.throughput.value)
            line += f"; {rep.plan.replicas} replicas give {b} tok/s ({gain:.2f}x of {a})"
        if split is not None:
            b = _t(split.throughput.value)
            line += f"; one copy split over {len(split.plan.device_ids)} ({split.plan.description}) gives {b} tok/s"
        out.append(line + ".")
        if gain is not None:
            why = ("each step reads the weights once for every sequence in the batch, so one card already"
                   " turns extra users into throughput until its KV cache room or compute runs out; replicas"
                   " pay off when the batch one card can hold is the limit" if gain < 1.5 else
                   "one card's KV cache room or compute is the limit at this load, so a second copy of the"
                   " model roughly doubles what can be served")
            out.append(f"Why: {why}.")
    if one is not None and multi:
        from dataclasses import replace

        wl1 = replace(wl, users=1)
        c1 = max_context(model, hw, one.plan, wl1)
        call = _best(ranked, lambda c: len(c.plan.device_ids) == hw.n and c.plan.replicas == 1
                     and c.plan.kv_type == one.plan.kv_type, key=lambda c: c.decode.value)
        if call is not None and not _same(call, one):
            c2 = max_context(model, hw, call.plan, wl1)
            if c2 > c1 * 1.2:
                out.append(f"Longer context: one card holds up to {_k(c1)} tokens per sequence; all {hw.n} GPUs"
                           f" hold {_k(c2)} (more KV cache room), so add GPUs for context, not for speed.")
    if one is None and best.fits:
        off = _best(ranked, lambda c: c.plan.gpu_layers is not None)
        gpu_only = _best(ranked, lambda c: c.plan.gpu_layers is None and len(c.plan.device_ids) > 1)
        if gpu_only is not None:
            g = _t(gpu_only.decode.value)
            line = f"Multi-GPU helps here: {gpu_only.plan.description} keeps everything in VRAM at {g} tok/s"
            if off is not None:
                g, o, r = _vs(gpu_only.decode.value, off.decode.value)
                line += (f", {r:.2f}x the {o} tok/s of {off.plan.description} (layers in RAM run at host-memory"
                         " bandwidth)")
            out.append(line + ".")
            layer = gpu_only if gpu_only.plan.split == Split.LAYER else _best(
                ranked, lambda c: c.plan.split == Split.LAYER and c.plan.gpu_layers is None and c.plan.replicas == 1)
            tp = _best(ranked, lambda c: c.plan.split in (Split.TENSOR, Split.ROW) and c.plan.replicas == 1)
            if tp is not None and layer is not None and not _same(tp, layer):
                t, ly, r = _vs(tp.decode.value, layer.decode.value)
                nv = "" if (hw.link and "nvlink" in hw.link.id) else \
                    " NVLink would help tensor/row split most: they synchronise inside every layer, while layer" \
                    " split sends one small activation per card boundary."
                out.append(f"Over {link}, {tp.plan.description} gives {t} tok/s vs {ly} for {layer.plan.description}"
                           f" ({r:.2f}x).{nv}")
        elif off is not None:
            o = _t(off.decode.value)
            out.append(f"Only partial offload fits: {off.plan.description} at {o} tok/s; each layer left in RAM is"
                       " read at host-memory bandwidth. A second GPU would keep it in VRAM.")
    if not best.fits:
        out.append(_no_fit(model, hw, wl, ranked))
        return out
    out += _article_note(model, hw, wl)
    d = best.decode
    if d is not None:
        read = sum(v for k, v in d.bytes_read.items()) / 1e9
        out.append(f"Recommended: {best.plan.description} on {_name(hw, best)}; decode is bound by {d.bound},"
                   f" reading {read:.2f} GB per token, at {d.roofline_fraction:.0%} of the hardware's"
                   " bandwidth limit.")
    return out


def _no_fit(model: LoadedModel, hw: Hardware, wl: Workload, ranked: list[Candidate]) -> str:
    """What does not fit (the closest attempt: which device, by how much, after overheads) and the
    options that would change it; a smaller format is offered only when it is smaller."""
    from .defaults import shortfall

    closest = ranked[0]  # rank puts the non-fitting plan with the most room left first
    options = []
    smaller = _smaller_quant(model)
    if smaller:
        options.append(f"a smaller quantization (--quant {smaller})")
    options += ["a shorter context or fewer users"]
    llama = closest.plan.engine.value in ("llama.cpp", "llama-cpp-python", "ollama")
    if closest.plan.kv_type in ("f16", "bf16"):
        options.append(f"a quantized KV cache (--kv {'q8_0' if llama else 'fp8'})")
    from .defaults import reserve_fraction

    reserve = reserve_fraction(closest.plan.engine)
    if reserve:
        options.append(f"a higher memory share for {closest.plan.engine.value} (it leaves {reserve:.0%} of each card"
                       " unused by default)")
    if llama and not any(d.kind in ("apple", "cpu") for d in hw.devices):
        options.append("RAM offload (give --ram and --ram-gib)")
    options.append("more GPUs")
    return (f"Does not fit: in the closest plan, {closest.plan.description} on {_name(hw, closest)},"
            f" {shortfall(closest.memory, closest.plan.engine)}. Options: {', '.join(options)}.")


def _smaller_quant(model: LoadedModel) -> str | None:
    """Q4_K_M when it is smaller than the current format and not already it."""
    from ..perf.weights import estimate_weights
    from .. import catalog

    if model.quant.id == "Q4_K_M":
        return None
    try:
        q4 = estimate_weights(model.spec, catalog.quant("Q4_K_M")).total_bytes
    except Exception:  # an architecture llama.cpp's mix rules cannot place: offer nothing
        return None
    return "Q4_K_M" if q4 < model.weights.total_bytes * 0.95 else None


def _article_note(model: LoadedModel, hw: Hardware, wl: Workload) -> list[str]:
    """Where the article gave rough figures for this very setup, set the published measurement
    beside them (and so beside ours)."""
    from .compare import SCENARIOS

    ids = {d.id for d in hw.devices}
    for name, sc in SCENARIOS.items():
        same_model = model.spec.id == sc["model"] and model.quant.id == sc["quant"]
        same_cards = ids <= {"rtx-4090", "rtx-3090"}
        serving = name == "serving"
        if same_model and same_cards and (wl.users > 1) == serving:
            return [f"{sc['article']} {sc['measured']} (`gpuplan compare --scenario {name}`)"]
    return []
