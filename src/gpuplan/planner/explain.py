"""The explanation: the article's decision tree (fits on one GPU? one user or many? longer
context? NVLink or PCIe?) walked with this model's numbers, saying what decided each step."""

from __future__ import annotations

from ..perf.memory import kv_bytes_per_token, max_context
from ..types import Hardware, LoadedModel, Split, Workload
from .search import Candidate


def _name(hw: Hardware, c: Candidate) -> str:
    from .report import describe_hw

    return describe_hw(hw, c.plan.device_ids)


def _k(n: int) -> str:
    return f"{n // 1024}K" if n >= 1024 and n % 1024 == 0 else f"{n:,}"


def _single(cands: list[Candidate]) -> list[Candidate]:
    return [c for c in cands if c.plan.split == Split.NONE and c.plan.replicas == 1 and c.plan.gpu_layers is None
            and not c.plan.experts_on_host and c.plan.kv_type == "f16"]


def _best(cands, pred, key=lambda c: c.decode.value):
    pool = [c for c in cands if c.fits and pred(c)]
    return max(pool, key=key) if pool else None


def explanation(model: LoadedModel, hw: Hardware, wl: Workload, ranked: list[Candidate]) -> list[str]:
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
        gpu_rows = [m for m in c.memory if m.name != "host RAM"]
        need = sum(m.total for m in gpu_rows) / 1e9
        cap = sum(m.capacity for m in gpu_rows) / 1e9
        out.append(f"Does not fit on one {_name(hw, c)}: needs {need:.1f} GB, the card has {cap:.1f} GB"
                   f" (weights {model.weights.total_bytes / 1e9:.1f} GB, KV cache"
                   f" {kv_bytes_per_token(model.spec, 'f16') * wl.context * wl.users / 1e9:.1f} GB at {_k(wl.context)}).")
    multi = hw.n > 1
    if one is not None and wl.users <= 1:
        two = _best(ranked, lambda c: len(c.plan.device_ids) > 1 and c.plan.replicas == 1)
        line = f"One user: one {_name(hw, one)} gives {one.decode.value:.0f} tok/s"
        if two is not None:
            r = two.decode.value / one.decode.value
            verdict = "don't add it" if r < 1.05 else "worth it"
            line += (f"; {len(two.plan.device_ids)} GPUs ({two.plan.strategy}) over {link} would give"
                     f" {two.decode.value:.0f} tok/s ({r:.2f}x): {verdict}. Decode reads every weight once per"
                     " token; splitting adds a hand-off between cards without adding bandwidth to a single stream"
                     if r < 1.05 else f" {len(two.plan.device_ids)} GPUs give {two.decode.value:.0f} tok/s ({r:.2f}x)")
        out.append(line + ".")
    if one is not None and wl.users > 1:
        rep = _best(ranked, lambda c: c.plan.replicas > 1, key=lambda c: c.throughput.value)
        split = _best(ranked, lambda c: c.plan.replicas == 1 and len(c.plan.device_ids) > 1,
                      key=lambda c: c.throughput.value)
        line = (f"{wl.users} users: one card serves {one.throughput.value:.0f} tok/s in total"
                f" ({one.concurrent} sequences at once, {one.per_user_tok_s:.0f} tok/s each)")
        if rep is not None:
            line += f"; {rep.plan.replicas} replicas give {rep.throughput.value:.0f} tok/s" \
                    f" ({rep.throughput.value / one.throughput.value:.2f}x)"
        if split is not None:
            line += f"; one copy split over {len(split.plan.device_ids)} ({split.plan.strategy}) gives" \
                    f" {split.throughput.value:.0f} tok/s"
        out.append(line + ".")
        if rep is not None:
            gain = rep.throughput.value / one.throughput.value
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
        call = _best(ranked, lambda c: len(c.plan.device_ids) == hw.n and c.plan.replicas == 1,
                     key=lambda c: c.decode.value)
        if call is not None:
            c2 = max_context(model, hw, call.plan, wl1)
            if c2 > c1 * 1.2:
                out.append(f"Longer context: one card holds up to {_k(c1)} tokens per sequence; all {hw.n} GPUs"
                           f" hold {_k(c2)} (more KV cache room), so add GPUs for context, not for speed.")
    if one is None and best.fits:
        off = _best(ranked, lambda c: c.plan.gpu_layers is not None)
        gpu_only = _best(ranked, lambda c: c.plan.gpu_layers is None and len(c.plan.device_ids) > 1)
        if gpu_only is not None:
            line = f"Multi-GPU helps here: {gpu_only.plan.strategy} keeps everything in VRAM at" \
                   f" {gpu_only.decode.value:.1f} tok/s"
            if off is not None:
                line += (f", {gpu_only.decode.value / off.decode.value:.1f}x the {off.decode.value:.1f} tok/s of"
                         f" {off.plan.strategy} (layers in RAM run at host-memory bandwidth)")
            out.append(line + ".")
            tp = _best(ranked, lambda c: c.plan.split in (Split.TENSOR, Split.ROW) and c.plan.replicas == 1)
            if tp is not None:
                nv = "" if (hw.link and "nvlink" in hw.link.id) else \
                    " NVLink would help tensor/row split most: they synchronise inside every layer, while layer" \
                    " split sends one small activation per card boundary."
                out.append(f"Over {link}, {tp.plan.strategy} gives {tp.decode.value:.1f} tok/s vs layer split"
                           f" {gpu_only.decode.value:.1f}.{nv}")
        elif off is not None:
            out.append(f"Only partial offload fits: {off.plan.strategy} at {off.decode.value:.1f} tok/s;"
                       " each layer left in RAM is read at host-memory bandwidth. A second GPU would keep it in VRAM.")
    if not best.fits:
        need = min((sum(m.total for m in c.memory if m.name != "host RAM") for c in ranked), default=0) / 1e9
        have = sum(hw.memory_gib) * 2**30 / 1e9
        out.append(f"Does not fit: needs at least {need:.1f} GB, you have {have:.1f} GB. Options: a smaller"
                   " quantization (e.g. Q4_K_M), a shorter context or fewer users, a quantized KV cache"
                   " (--kv q8_0), RAM offload (give --ram), or more GPUs.")
        return out
    out += _article_note(model, hw, wl)
    d = best.decode
    if d is not None:
        read = sum(v for k, v in d.bytes_read.items()) / 1e9
        out.append(f"Recommended: {best.plan.strategy} on {_name(hw, best)}; decode is bound by {d.bound},"
                   f" reading {read:.2f} GB per token, at {d.roofline_fraction:.0%} of the hardware's"
                   " bandwidth limit.")
    return out


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
