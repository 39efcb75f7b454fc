"""Speed physics: decode, prefill and serving throughput for any plan.

A decode step on each device is the slower of two things, blended where they overlap: streaming
its weight bytes (and KV cache) at the bandwidth its kernels reach, and doing the dequantisation
and dot products for them on the compute units it has (units x clock x the kernel family's
weights per unit-cycle); plus launch and sync costs per layer that scale with the clock, and a
per-step host cost. CPUs do the same with the threads given: bandwidth grows with the threads
until the memory channels saturate, dot products with threads x SIMD width x clock.
Communication: layer split pays one hop per device boundary, row and tensor split synchronise
inside every layer. A prompt is bounded by matmul compute, by re-reading the weights once per
micro-batch, and never beats one decode step (one pass over the weights with its launches).
Batching reads weights once per step for all sequences.

Interface for the serving simulator (perf/serving.py): Ctx(model, hw, plan, constants, date),
decode_step(ctx, batch, avg_context) -> (seconds, breakdown seconds, bytes), prefill_time(ctx,
prompt, depth, seqs) -> (seconds, breakdown), step_overhead(ctx) -> per-step engine seconds.
"""

from __future__ import annotations

import math

from ..sources.arch import Arch, describe
from ..types import Engine, Estimate, Hardware, LoadedModel, Metric, Plan, Split
from .constants import DEFAULT, Constants
from .context import ENGINE_CHUNK, LLAMA_CPP_BATCH, LLAMA_CPP_UBATCH, MLX_PREFILL_STEP, Ctx, host_bandwidth
from .layout import Part

__all__ = ["Ctx", "decode", "decode_step", "prefill", "prefill_time", "step_overhead", "throughput"]

_host_bw = host_bandwidth  # (bandwidth GB/s, memory type) of the RAM a CPU reads; planner/defaults.py uses it


def _pcie_bw(device) -> float:
    """Host-to-GPU copy bandwidth (bytes/s): about 80% of the slot's per-direction peak
    (PCIe 4.0 x16: 31.5 GB/s peak, ~25 GB/s pinned copies)."""
    per_lane = {3: 0.985, 4: 1.969, 5: 3.938}.get(device.pcie_gen or 4, 1.969)
    return per_lane * (device.pcie_lanes or 16) * 0.8 * 1e9


def _blend(a: float, b: float, p: float) -> float:
    """(a^p + b^p)^(1/p): the slower of two overlapping activities, plus what does not overlap."""
    if a <= 0 or b <= 0:
        return max(a, b)
    hi = max(a, b)
    return hi * ((a / hi) ** p + (b / hi) ** p) ** (1.0 / p)


def _touched(frac: float, batch: float) -> float:
    """Share of routed experts a step of `batch` tokens reads: 1 - (1 - k/E)^batch."""
    if frac >= 1.0:
        return 1.0
    return 1.0 - (1.0 - frac) ** max(batch, 1.0)


def _kv_read(p: Part, ctx: float, arch: Arch) -> float:
    """KV bytes one sequence's decode step reads from this part: full layers all of the context,
    windowed layers what their window / chunk reaches, recurrent layers their state (read, then
    written back)."""
    return p.kv_bytes_per_ctx * ctx + p.swa_kv_bytes * arch.windowed_tokens(ctx) + 2.0 * p.state_bytes


def _is_cpu(p: Part) -> bool:
    return p.on_host or p.device is None or p.device.kind == "cpu"


def step_overhead(x: Ctx) -> float:
    """Seconds of host work every step costs the engine (scheduling, sampling, graph replay)."""
    return x.token_fixed()


def _part_decode(x: Ctx, p: Part, batch: int, ctx: float, touched: float) -> tuple[float, float, float, float]:
    """(seconds, memory seconds, arithmetic seconds, KV bytes) of one part's share of a step."""
    c = x.c
    wbytes = p.dense_bytes + p.expert_bytes * touched
    params = p.dense_params + p.head_params + p.expert_params * touched
    kvb = _kv_read(p, ctx, x.arch) * batch
    bw = x.bw(p)
    t_mem = wbytes / bw + kvb / (bw * c.kv_read_eff)
    # dequant + dot products: llama.cpp's mat-vec kernels redo them per sequence (up to 8, then
    # tiled int8 matmuls take over); engines' GEMMs share the dequantised tile across the batch
    t_dot1 = params * x.dot_cost() / x.dot_rate(p)
    per_seq = x.is_llama or _is_cpu(p)
    t_dot = t_dot1 * (min(batch, 8) if per_seq else 1.0)
    # the matmul work of a batch: tensor cores (GPU) or tiled GEMM (CPU)
    active = p.dense_params + p.head_params + p.expert_params * x.expert_frac
    t_comp = 2.0 * active * batch / x.flops(p) if batch > 1 else 0.0
    t_work = max(t_dot, t_comp)
    t = _blend(t_mem, t_work, c.overlap_cpu if _is_cpu(p) else c.overlap_gpu)
    return t, t_mem, t_work, kvb


def decode_step(x: Ctx, batch: int, ctx: float) -> tuple[float, dict, dict]:
    """Seconds for one decode step of `batch` sequences at average context `ctx`, with breakdown
    (seconds per component, adding up to the total) and bytes read."""
    secs = {"weights": 0.0, "kv_cache": 0.0, "compute": 0.0, "host": 0.0, "communication": 0.0, "fixed": 0.0}
    nbytes = {"weights": 0.0, "kv_cache": 0.0, "host": 0.0}
    touched = _touched(x.expert_frac, batch)
    stages: dict[int, float] = {}
    first_of_stage: set[int] = set()
    for p in x.parts:
        t, t_mem, t_work, kvb = _part_decode(x, p, batch, ctx, touched)
        wbytes = p.dense_bytes + p.expert_bytes * touched
        if p.on_host:
            secs["host"] += t
            nbytes["host"] += wbytes + kvb
            stages[-100 - len(stages)] = t  # host work runs in sequence with the GPUs
        else:
            nbytes["weights"] += wbytes
            nbytes["kv_cache"] += kvb
            # split the part's time by each side's share of the blend: memory (weights vs KV) or arithmetic
            q = x.c.overlap_cpu if _is_cpu(p) else x.c.overlap_gpu
            mem_share = t_mem ** q / (t_mem ** q + t_work ** q) if t_mem + t_work > 0 else 1.0
            kv_t = kvb / (x.bw(p) * x.c.kv_read_eff)
            w_t = max(t_mem - kv_t, 0.0)
            if t_mem > 0:
                secs["weights"] += t * mem_share * w_t / t_mem
                secs["kv_cache"] += t * mem_share * kv_t / t_mem
            secs["compute"] += t * (1.0 - mem_share)
            stages[p.stage] = max(stages.get(p.stage, 0.0), t)  # TP/row shards of one stage run together
        # launches: once per stage (TP shards launch in parallel), host parts too
        if p.on_host or p.stage not in first_of_stage:
            secs["fixed"] += x.layer_fixed(p, batch)
            if not p.on_host:
                first_of_stage.add(p.stage)
    total_mem = sum(stages.values())
    secs["fixed"] += x.token_fixed()
    secs["communication"] = _decode_comm(x, batch)
    comp_sum = secs["weights"] + secs["kv_cache"] + secs["compute"] + secs["host"]
    if comp_sum > 0:  # rescale so components add up to the stage-max time
        k = total_mem / comp_sum
        for key in ("weights", "kv_cache", "compute", "host"):
            secs[key] *= k
    t = total_mem + secs["fixed"] + secs["communication"]
    return t, secs, nbytes


def _decode_comm(x: Ctx, batch: int) -> float:
    """Per-step communication: layer-split hops, row-split per-matmul syncs, TP all-reduces."""
    c, spec, plan = x.c, x.spec, x.plan
    link = x.hw.link
    lat = (link.latency_us * 1e-6) if link else 5e-6
    lbw = (link.bandwidth_gb_s * 1e9) if link else 16e9
    act = batch * spec.hidden_size * 4.0  # f32 activations between devices
    gpu_stages = len({p.stage for p in x.parts if not p.on_host})
    host_hops = 1 if any(p.on_host for p in x.parts) and gpu_stages else 0
    hop = lat + act / lbw + c.hop_sync_s
    t = (gpu_stages - 1 + host_hops) * hop
    if x.hw.nodes > 1 and x.hw.node_link is not None and plan.pp > 1:
        nl = x.hw.node_link
        t += (x.hw.nodes - 1) * (nl.latency_us * 1e-6 + act / (nl.bandwidth_gb_s * 1e9))
    n_tp = len(plan.device_ids) if plan.split == Split.ROW else plan.tp
    if plan.split == Split.ROW and n_tp > 1:
        # the main GPU scatters inputs and gathers results of every matmul, one peer after another
        mats = 7  # q, k, v, o, gate, up, down
        per = c.row_sync_s + (n_tp - 1) * (c.row_peer_s + lat) + act * (n_tp - 1) / lbw
        t += spec.n_layers * mats * per
    elif plan.split == Split.TENSOR and n_tp > 1:
        ar = lat + c.allreduce_s + 2 * (n_tp - 1) / n_tp * batch * spec.hidden_size * 2.0 / lbw
        t += spec.n_layers * 2 * ar
    return t


def _ubatch(x: Ctx) -> int:
    if x.is_llama:
        return LLAMA_CPP_UBATCH
    if x.plan.engine == Engine.MLX:
        return MLX_PREFILL_STEP
    return ENGINE_CHUNK


def _attn_flops(x: Ctx, depth: int, prompt: int, seqs: int, layers: int) -> float:
    """Attention FLOPs (QK^T and AV) of `seqs` prompts over `layers` of the model's layers, every
    layer at its own reach (sources/arch.py: full, window, chunk, or a recurrent constant)."""
    return seqs * x.arch.attention_flops(depth, depth + prompt) * layers / max(x.spec.n_layers, 1)


def _head_share(x: Ctx) -> float:
    """The share of the attention heads one device computes: 1/tp for tensor parallel (each shard
    holds tp-th of the query heads; its part's weights and KV are already its share), else all."""
    plan = x.plan
    return 1.0 / plan.tp if plan.split == Split.TENSOR and plan.tp > 1 else 1.0


def _cpu_prompt_compute(x: Ctx, p: Part, tokens: int, active: float) -> float:
    """Seconds of a CPU's matmul work for `tokens` prompt tokens: the tiled GEMM where the
    format has one, else the per-token dot product at the batch gain."""
    if x.cpu_gemm:
        return 2.0 * active * tokens / x.flops(p)
    return tokens * active * x.dot_cost() / (x.dot_rate(p) * x.c.cpu_batch_gain)


def prefill_time(x: Ctx, prompt: int, depth: int = 0, seqs: int = 1) -> tuple[float, dict]:
    """Seconds to process `seqs` prompts of `prompt` tokens each, starting at `depth`."""
    c, spec, plan = x.c, x.spec, x.plan
    tokens = max(prompt * seqs, 1)
    ub = _ubatch(x)
    n_ub = max(1, math.ceil(tokens / ub))
    dequant = x.quantized and x.pre_mmq and x.hw_backend == "cuda" and x.lead is not None \
        and x.lead.fp16_tflops >= x.lead.fp32_tflops
    touched = _touched(x.expert_frac, min(tokens, ub))
    secs = {"compute": 0.0, "weights": 0.0, "host": 0.0, "communication": 0.0, "fixed": 0.0}
    stage_t: dict[int, float] = {}
    gpu = next((q for q in x.parts if not q.on_host), None)
    for p in x.parts:
        # per prompt token; the output head runs for each sequence's last token only
        active = p.dense_params + p.expert_params * x.expert_frac + p.head_params * seqs / tokens
        wbytes = p.dense_bytes + p.expert_bytes * touched
        attn = _attn_flops(x, depth, prompt, seqs, p.layers) * _head_share(x)
        fixed = n_ub * x.layer_fixed(p, batch=ub)  # prompts are launched kernel by kernel
        if x.is_llama and p.moe_layers and x.spec.n_experts and not _is_cpu(p):
            per_ub = min(tokens, ub)
            n_touched = x.spec.n_experts * _touched(x.expert_frac, per_ub)
            fixed += n_ub * p.moe_layers * 3 * n_touched * c.expert_launch_s
        if p.on_host and gpu is not None and tokens >= 32:
            # llama.cpp uploads RAM-resident weights to the GPU for big batches (over PCIe)
            # and computes there; the CPU alone would be far slower
            link_bw = (x.hw.link.bandwidth_gb_s * 1e9) if x.hw.link else _pcie_bw(gpu.device)
            t = n_ub * wbytes / link_bw + (2.0 * active * tokens + attn) / x.flops(gpu) + fixed
            secs["host"] += t
            stage_t[-100 - len(stage_t)] = t
            continue
        f = x.flops(p)
        if _is_cpu(p):
            t_c = _cpu_prompt_compute(x, p, tokens, active) + attn / (f * c.of("attn_eff", "cpu", 0.5))
            t_m = n_ub * wbytes / x.bw(p)
            t = _blend(t_c, t_m, c.overlap_cpu) + fixed
            key = "host" if p.on_host else "compute"
            secs[key] += t
            stage_t[-100 - len(stage_t) if p.on_host else p.stage] = t
            continue
        fam = x.part_family(p)
        # routed experts: the touched experts share ubatch x k tokens, and a tiled matmul computes at
        # least a tile's width of columns for each, however few tokens it got
        waste = 1.0
        if p.expert_params and x.spec.n_experts:
            per_ub = min(tokens, ub)
            n_touched = max(x.spec.n_experts * touched, 1.0)
            t_e = per_ub * x.spec.n_experts_active / n_touched
            waste = max(t_e, c.moe_tile_tokens) / t_e
        t_c = 2.0 * tokens * (p.dense_params + p.head_params * seqs / tokens + p.expert_params * x.expert_frac * waste) / f \
            + attn / (f * c.of("attn_eff", fam, 0.35))
        t_m = n_ub * wbytes / x.bw(p)
        if dequant:
            t_m += n_ub * (p.dense_params + p.expert_params * touched) * c.dequant_bytes_per_weight / x.bw(p)
        t = _blend(t_c, t_m, c.overlap_gpu)
        share_c = t_c / (t_c + t_m) if t_c + t_m > 0 else 1.0
        secs["compute"] += t * share_c
        secs["weights"] += t * (1.0 - share_c)
        secs["fixed"] += fixed
        stage_t[p.stage] = max(stage_t.get(p.stage, 0.0), t + fixed)
    gpu_stage_times = [v for k, v in sorted(stage_t.items()) if k >= 0]
    host_times = [v for k, v in stage_t.items() if k < 0]
    link = x.hw.link
    lat = (link.latency_us * 1e-6) if link else 5e-6
    lbw = (link.bandwidth_gb_s * 1e9) if link else 16e9
    S = len(gpu_stage_times)
    if S > 1:  # pipeline: ubatches of one batch flow through the stages together
        per_batch = max(1, LLAMA_CPP_BATCH // ub) if x.is_llama else 1
        slowest = max(gpu_stage_times) / n_ub
        total = 0.0
        left = n_ub
        while left > 0:
            u = min(per_batch, left)
            total += sum(gpu_stage_times) / n_ub + (u - 1) * slowest
            left -= u
        hop = (S - 1) * n_ub * (lat + c.hop_sync_s + min(tokens, ub) * spec.hidden_size * 4.0 / lbw)
        secs["communication"] += hop
        t_gpu = total + hop
    else:
        t_gpu = sum(gpu_stage_times)
    n_tp = len(plan.device_ids) if plan.split == Split.ROW else plan.tp
    if plan.split == Split.ROW and n_tp > 1:
        # inputs and outputs of the 7 matmuls of a layer go main GPU <-> each peer in turn, as f32;
        # consumer cards have no peer access, so each copy crosses PCIe twice through host RAM
        mats_io = 7 * spec.hidden_size + 2 * spec.n_kv_heads * spec.head_dim + 3 * spec.intermediate_size \
            + spec.n_heads * spec.head_dim
        staged = 0.5 if any(d.segment == "consumer" for d in x.hw.devices) else 1.0
        per_layer = (tokens * mats_io * 4.0 * (n_tp - 1) / (lbw * staged)
                     + 7 * n_ub * (c.row_sync_s + (n_tp - 1) * (c.row_peer_s + lat)))
        comm = spec.n_layers * per_layer
        secs["communication"] += comm
        t_gpu += comm
    elif plan.split == Split.TENSOR and n_tp > 1:
        comm = spec.n_layers * 2 * (2 * (n_tp - 1) / n_tp * tokens * spec.hidden_size * 2.0 / lbw
                                    + n_ub * (lat + c.allreduce_s))
        secs["communication"] += comm
        t_gpu += comm
    total = t_gpu + sum(host_times) + n_ub * x.token_fixed()
    secs["fixed"] += n_ub * x.token_fixed()
    # a prompt never beats one decode step: every weight is read once, every layer launched
    floor, _, _ = decode_step(x, 1, depth + 1)
    if total < floor:
        secs["weights"] += floor - total
        total = floor
    return total, secs


# ---------------------------------------------------------------- physical limits
def _peak_bw(x: Ctx, p: Part) -> float:
    if _is_cpu(p):
        return host_bandwidth(x.hw, x._cpu_of(p))[0] * 1e9
    return p.device.memory_bandwidth_gb_s * 1e9


def _peak_flops(x: Ctx, p: Part) -> float:
    dev = p.device if not _is_cpu(p) else x._cpu_of(p)
    if dev is None:
        return 1.5e12
    peak = max(dev.fp16_tflops, dev.fp32_tflops, (dev.int8_tops or 0.0) if x.quantized else 0.0)
    return peak * 1e12


def _roofline_step(x: Ctx, batch: int, ctx: float) -> float:
    """The physical limit of one decode step: every byte at peak bandwidth or every FLOP at peak
    compute, whichever is larger, per device; shards of one stage run at the same time."""
    stages: dict[int, float] = {}
    host = 0.0
    touched = _touched(x.expert_frac, batch)
    for p in x.parts:
        wbytes = p.dense_bytes + p.expert_bytes * touched
        mem = (wbytes + batch * _kv_read(p, ctx, x.arch)) / _peak_bw(x, p)
        comp = batch * 2.0 * (p.dense_params + p.head_params + p.expert_params * x.expert_frac) / _peak_flops(x, p)
        t = max(mem, comp)
        if p.on_host:
            host += t
        else:
            stages[p.stage] = max(stages.get(p.stage, 0.0), t)
    return sum(stages.values()) + host


def roofline_decode_tok_s(x: Ctx, ctx: float) -> float:
    t = _roofline_step(x, 1, ctx)
    return 1.0 / t if t > 0 else 0.0


def _roofline_prefill_s(x: Ctx, prompt: int, depth: int) -> float:
    """Every FLOP of the prompt at peak compute, or every weight byte read once at peak bandwidth,
    whichever is larger (stages of a layer split can overlap)."""
    stages: dict[int, float] = {}
    for p in x.parts:
        flops = 2.0 * ((p.dense_params + p.expert_params * x.expert_frac) * prompt + p.head_params)
        mem = (p.dense_bytes + p.expert_bytes * _touched(x.expert_frac, prompt)) / _peak_bw(x, p)
        t = max(flops / _peak_flops(x, p), mem)
        stages[p.stage] = max(stages.get(p.stage, 0.0), t)
    return max(stages.values()) if stages else 0.0


def _bound(secs: dict) -> str:
    names = {"weights": "memory bandwidth (weights)", "kv_cache": "memory bandwidth (KV cache)",
             "compute": "compute (dequantisation and matmuls)", "host": "host RAM bandwidth",
             "communication": "interconnect", "fixed": "fixed per-token cost (launches, sync)"}
    k = max(secs, key=lambda s: secs[s])
    return names.get(k, k)


def _with_range(e: Estimate, x: Ctx) -> Estimate:
    from .uncertainty import attach

    return attach(e, x)


# ---------------------------------------------------------------- public estimates
def decode(model: LoadedModel, hw: Hardware, plan: Plan, depth: int = 0, n_gen: int = 128,
           c: Constants = DEFAULT, date: str | None = None) -> Estimate:
    """One user's generation speed (tok/s) over n_gen tokens starting at `depth` tokens of context."""
    x = Ctx(model, hw, plan, c, date)
    ctx = depth + n_gen / 2.0
    t, secs, nbytes = decode_step(x, 1, ctx)
    roof = roofline_decode_tok_s(x, ctx)
    return _with_range(Estimate(value=1.0 / t, metric=Metric.DECODE, seconds=secs, bytes_read=nbytes,
                                bound=_bound(secs),
                                roofline_fraction=min((1.0 / t) / roof, 1.0) if roof else 0.0), x)


def prefill(model: LoadedModel, hw: Hardware, plan: Plan, prompt: int = 512, depth: int = 0,
            c: Constants = DEFAULT, date: str | None = None) -> Estimate:
    x = Ctx(model, hw, plan, c, date)
    t, secs = prefill_time(x, prompt, depth)
    roof = _roofline_prefill_s(x, prompt, depth)
    return _with_range(Estimate(value=prompt / t, metric=Metric.PREFILL, seconds=secs, bound=_bound(secs),
                                roofline_fraction=min(roof / t, 1.0) if roof else 0.0), x)


def throughput(model: LoadedModel, hw: Hardware, plan: Plan, batch: int, prompt: int, n_gen: int,
               max_batch: int | None = None, c: Constants = DEFAULT, date: str | None = None,
               count_prompt: bool = False) -> Estimate:
    """Aggregate generated tok/s of `batch` requests (prompt + n_gen tokens each) under continuous
    batching, across all replicas. `max_batch` caps concurrent sequences per replica (KV room);
    extra requests wait for a later wave."""
    x = Ctx(model, hw, plan, c, date)
    reps = min(max(plan.replicas, 1), max(batch, 1))  # a replica without a user does nothing
    per_rep = math.ceil(batch / reps)
    conc = min(per_rep, max_batch) if max_batch else per_rep
    conc = max(conc, 1)
    waves = math.ceil(per_rep / conc)
    t_pf, _ = prefill_time(x, prompt, 0, conc)
    steps = max(n_gen, 1)
    t_dec, secs, nbytes = decode_step(x, conc, prompt + n_gen / 2.0)
    pp = plan.pp if plan.split == Split.TENSOR else 1
    if pp > 1 and conc >= pp:  # micro-batches keep every pipeline stage busy
        t_dec, secs, nbytes = decode_step(x, max(conc // pp, 1), prompt + n_gen / 2.0)
    t_wave = t_pf + steps * t_dec
    produced = batch * (n_gen + (prompt if count_prompt else 0))
    tok_s = produced / (waves * t_wave)  # the busiest replica finishes last
    roof = _roofline_step(x, conc, prompt + n_gen / 2.0)
    roof_tok_s = reps * conc / roof if roof else 0.0
    return _with_range(Estimate(value=tok_s, metric=Metric.THROUGHPUT_TOTAL if count_prompt else Metric.THROUGHPUT,
                                seconds=secs, bytes_read=nbytes, bound=_bound(secs),
                                roofline_fraction=min(tok_s / roof_tok_s, 1.0) if roof_tok_s else 0.0,
                                notes=(f"{conc} concurrent sequences per replica, {waves} wave(s)",)), x)

