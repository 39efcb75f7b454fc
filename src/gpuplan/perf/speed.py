"""Speed physics: decode, prefill and serving throughput for any plan.

Decode streams every active weight byte and the KV cache through memory once per step
(gpt-fast's bound: tok/s <= bandwidth / bytes per token), plus a fixed cost per token and
per layer, plus communication: layer split pays one hop per device boundary, row and tensor
split synchronise inside every layer. Prefill is bounded by compute (and by re-reading the
weights once per micro-batch). Batching reads weights once per step for all sequences.
"""

from __future__ import annotations

import math

from ..sources.arch import Arch, describe
from ..types import Engine, Estimate, Hardware, LoadedModel, Metric, Plan, Split
from .constants import DEFAULT, Constants, era_factor
from .layout import Part, backend_key, parts

LLAMA_CPP_UBATCH = 512  # llama.cpp -ub default
LLAMA_CPP_BATCH = 2048  # llama.cpp -b default: ubatches of one batch pipeline across devices
MMQ_DEFAULT_DATE = "2024-06"  # llama.cpp b3250 made int8 MMQ the default for quantized prompts


def _pcie_bw(device) -> float:
    """Host-to-GPU copy bandwidth (bytes/s): about 80% of the slot's per-direction peak
    (PCIe 4.0 x16: 31.5 GB/s peak, ~25 GB/s pinned copies)."""
    per_lane = {3: 0.985, 4: 1.969, 5: 3.938}.get(device.pcie_gen or 4, 1.969)
    return per_lane * (device.pcie_lanes or 16) * 0.8 * 1e9


def _host_bw(hw: Hardware, part_device) -> tuple[float, str]:
    """Bandwidth (GB/s) and memory type of system RAM."""
    if hw.host is not None:
        return hw.host.bandwidth_gb_s, hw.host.memory_type
    cpu = part_device if part_device is not None and part_device.kind == "cpu" else None
    if cpu is not None:
        return cpu.memory_bandwidth_gb_s, cpu.memory_type
    return 83.2, "DDR5"  # DDR5-5200 dual channel: a typical desktop when nothing is said


class Ctx:
    """Everything one estimate needs, computed once."""

    def __init__(self, model: LoadedModel, hw: Hardware, plan: Plan, c: Constants, date: str | None):
        self.model, self.hw, self.plan, self.c, self.date = model, hw, plan, c, date
        self.spec = model.spec
        self.arch = describe(model.spec)
        self.parts = parts(model, hw, plan)
        gpu = next((p.device for p in self.parts if p.device is not None), None)
        self.lead = gpu
        self.backend = backend_key(plan.engine, gpu)
        self.hw_backend = gpu.backend if gpu is not None else "cpu"
        is_llama = plan.engine in (Engine.LLAMA_CPP, Engine.LLAMA_CPP_PYTHON, Engine.OLLAMA)
        # engine-era factors were measured on CUDA (the same NVIDIA cards, 2023 vs 2024 vs 2025
        # builds); other backends have no such evidence and keep their fitted values
        era = is_llama and self.hw_backend == "cuda"
        self.era_fixed = era_factor(c.era_fixed, date) if era else 1.0
        self.era_pf = era_factor(c.era_prefill, date) if era else 1.0
        self.is_llama = is_llama
        self.pre_mmq = is_llama and (date or "9999") < MMQ_DEFAULT_DATE
        self.quantized = model.quant.kind in ("gguf", "gguf-mix") and model.quant.id not in ("F16", "BF16", "F32")
        self.expert_frac = (self.spec.n_experts_active / self.spec.n_experts) if self.spec.n_experts else 1.0

    # -- bandwidth and compute of one part
    def bw(self, p: Part) -> float:
        """Effective bytes/s a decode step streams from this part's memory."""
        c = self.c
        if p.on_host or p.device is None or p.device.kind == "cpu":
            bw, mtype = _host_bw(self.hw, p.device)
            key = "llama.cpp/cpu"
        else:
            bw, mtype = p.device.memory_bandwidth_gb_s, p.device.memory_type
            key = self.backend
        eff = c.mem_eff.get(mtype, 0.8) * c.engine_eff.get(key, 0.9)
        if p.device is not None and p.device.dies > 1:
            eff *= c.multi_die_mem_eff
        return bw * 1e9 * min(eff, 1.0)

    def flops(self, p: Part) -> float:
        """Dense GEMM FLOP/s this part reaches on big batches."""
        c = self.c
        dev = p.device
        if p.on_host or dev is None:
            cpu_tflops = dev.fp32_tflops if dev is not None else 1.5  # a desktop CPU, AVX2, 8 cores
            return cpu_tflops * 1e12 * c.prefill_eff.get("llama.cpp/cpu", 0.5)
        peak = max(dev.fp16_tflops, dev.fp32_tflops)
        if not self.is_llama and dev.vendor == "nvidia" and dev.segment == "consumer":
            # PyTorch engines accumulate FP16/BF16 GEMMs in FP32, which GeForce cards run at half
            # their FP16-accumulate tensor rate (NVIDIA Ada/Ampere GPU architecture whitepapers)
            peak = max(dev.fp16_tflops / 2, dev.fp32_tflops)
        if self.quantized and dev.backend == "cuda" and dev.int8_tops and (
                not self.pre_mmq or dev.fp16_tflops < dev.fp32_tflops):
            # llama.cpp's MMQ multiplies quantized weights with int8 dot products (DP4A / int8 MMA);
            # the scales and dequant work let it reach a share of the int8 rate
            peak = max(peak, dev.int8_tops * c.int8_share)
        key = self.backend if dev.kind != "cpu" else "llama.cpp/cpu"
        return peak * 1e12 * c.prefill_eff.get(key, 0.4) * self.era_pf

    def fixed(self, p: Part) -> float:
        hb = "cpu" if (p.on_host or p.device is None) else p.device.backend
        return p.layers * self.c.layer_fixed_s.get(hb, 1e-4) * self.era_fixed


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


def decode_step(x: Ctx, batch: int, ctx: float) -> tuple[float, dict, dict]:
    """Seconds for one decode step of `batch` sequences at average context `ctx`, with breakdown."""
    c, spec = x.c, x.spec
    secs = {"weights": 0.0, "kv_cache": 0.0, "compute": 0.0, "host": 0.0, "communication": 0.0, "fixed": 0.0}
    nbytes = {"weights": 0.0, "kv_cache": 0.0, "host": 0.0}
    touched = _touched(x.expert_frac, batch)
    flops_per_tok = 2.0 * _active_params(x)
    stages: dict[int, float] = {}
    for p in x.parts:
        wbytes = p.dense_bytes + p.expert_bytes * touched
        kvb = _kv_read(p, ctx, x.arch) * batch
        bw = x.bw(p)
        t_mem = wbytes / bw + kvb / (bw * c.kv_read_eff)
        share = (wbytes / max(x.model.weights.total_bytes, 1.0))
        t_comp = batch * flops_per_tok * share / x.flops(p)
        cpu = p.on_host or p.device is None or p.device.kind == "cpu"
        # GPUs overlap loads with math; CPU threads do both, so their times add
        t = t_mem + t_comp if cpu else max(t_mem, t_comp)
        if p.on_host:
            secs["host"] += t
            nbytes["host"] += wbytes + kvb
        else:
            nbytes["weights"] += wbytes
            nbytes["kv_cache"] += kvb
            if cpu or t_comp <= t_mem:
                secs["weights"] += wbytes / bw
                secs["kv_cache"] += kvb / (bw * c.kv_read_eff)
            if cpu or t_comp > t_mem:
                secs["compute"] += t_comp if cpu else t
        key = p.stage
        if p.on_host:
            stages[-100 - len(stages)] = t  # host work runs in sequence with the GPUs
        else:
            stages[key] = max(stages.get(key, 0.0), t)  # TP/row shards of one stage run together
        secs["fixed"] += x.fixed(p) if p.device is None or p is _first_of_stage(x, p) else 0.0
    total_mem = sum(stages.values())
    secs["fixed"] += c.token_fixed_s.get(x.hw_backend, 5e-4) * x.era_fixed
    secs["communication"] = _decode_comm(x, batch)
    # bookkeeping: the sums above split each stage's time by component
    t = total_mem + secs["fixed"] + secs["communication"]
    comp_sum = secs["weights"] + secs["kv_cache"] + secs["compute"] + secs["host"]
    if comp_sum > 0:  # rescale so components add up to the stage-max time
        k = total_mem / comp_sum
        for key in ("weights", "kv_cache", "compute", "host"):
            secs[key] *= k
    return t, secs, nbytes


def _first_of_stage(x: Ctx, p: Part) -> Part:
    for q in x.parts:
        if q.stage == p.stage and not q.on_host:
            return q
    return p


def _active_params(x: Ctx, head: bool = True) -> float:
    """Parameters a token multiplies through (routed experts at their active share), with the
    output head (decode computes logits every token; a prompt only for its last token)."""
    w = x.model.weights
    bpw = 8.0 * w.total_bytes / max(_total_params(x.spec), 1.0)
    dense = sum(w.layer_bytes) - sum(w.layer_expert_bytes)
    out = (w.output_bytes or (w.embed_bytes if x.spec.tied_embeddings else 0)) if head else 0
    return (dense + sum(w.layer_expert_bytes) * x.expert_frac + out) * 8.0 / bpw


_PARAMS: dict[int, tuple[object, float]] = {}


def _total_params(spec) -> float:
    """Total parameters, cached per spec object (tensor_list walks every tensor)."""
    hit = _PARAMS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    from ..sources.tensors import param_count

    n = float(param_count(spec)[0])
    if len(_PARAMS) > 512:
        _PARAMS.clear()
    _PARAMS[id(spec)] = (spec, n)
    return n


def _link(x: Ctx):
    return x.hw.link


def _decode_comm(x: Ctx, batch: int) -> float:
    """Per-step communication: layer-split hops, row-split per-matmul syncs, TP all-reduces."""
    c, spec, plan = x.c, x.spec, x.plan
    link = _link(x)
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


def prefill_time(x: Ctx, prompt: int, depth: int = 0, seqs: int = 1) -> tuple[float, dict]:
    """Seconds to process `seqs` prompts of `prompt` tokens each, starting at `depth`."""
    c, spec, plan = x.c, x.spec, x.plan
    tokens = prompt * seqs
    is_llama = plan.engine in (Engine.LLAMA_CPP, Engine.LLAMA_CPP_PYTHON, Engine.OLLAMA)
    ub = LLAMA_CPP_UBATCH if is_llama else 8192
    n_ub = max(1, math.ceil(tokens / ub))
    mm_flops = 2.0 * _active_params(x, head=False) * tokens
    # every layer at its own reach (sources/arch.py): full, window, chunk, or a recurrent constant
    attn = seqs * x.arch.attention_flops(depth, depth + prompt)
    total_bytes = max(x.model.weights.total_bytes, 1.0)
    dequant = x.quantized and x.pre_mmq and x.hw_backend == "cuda" and x.lead is not None \
        and x.lead.fp16_tflops >= x.lead.fp32_tflops
    secs = {"compute": 0.0, "weights": 0.0, "host": 0.0, "communication": 0.0}
    stage_t: dict[int, float] = {}
    for p in x.parts:
        share = (p.dense_bytes + p.expert_bytes) / total_bytes
        layer_share = p.layers / max(spec.n_layers, 1)
        f = x.flops(p)
        t_c = mm_flops * share / f + attn * layer_share / (f * c.attn_eff)
        wbytes = p.dense_bytes + p.expert_bytes * _touched(x.expert_frac, ub)
        if p.on_host:
            if x.lead is not None:
                # llama.cpp uploads RAM-resident weights to the GPU for big batches (over PCIe)
                # and computes there; the CPU alone would be far slower
                link_bw = (x.hw.link.bandwidth_gb_s * 1e9) if x.hw.link else _pcie_bw(x.lead)
                gpu = next(q for q in x.parts if not q.on_host)
                t = n_ub * wbytes / link_bw + mm_flops * share / x.flops(gpu)
            else:
                t = t_c + n_ub * wbytes / x.bw(p)
            secs["host"] += t
            stage_t[-100 - len(stage_t)] = t
            continue
        t_m = n_ub * wbytes / x.bw(p)
        if dequant:
            params = wbytes * 8.0 / max(8.0 * total_bytes / _total_params(spec), 1e-9)
            t_m += n_ub * params * c.dequant_bytes_per_weight / x.bw(p)
        t = t_c + t_m
        secs["compute"] += t_c
        secs["weights"] += t_m
        stage_t[p.stage] = max(stage_t.get(p.stage, 0.0), t)
    gpu_stage_times = [v for k, v in sorted(stage_t.items()) if k >= 0]
    host_times = [v for k, v in stage_t.items() if k < 0]
    link = x.hw.link
    lat = (link.latency_us * 1e-6) if link else 5e-6
    lbw = (link.bandwidth_gb_s * 1e9) if link else 16e9
    S = len(gpu_stage_times)
    if S > 1:  # pipeline: ubatches of one batch flow through the stages together
        per_batch = max(1, LLAMA_CPP_BATCH // ub) if is_llama else 1
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
    total = t_gpu + sum(host_times)
    return total, secs


def _peak_bw(x: Ctx, p: Part) -> float:
    if p.on_host or p.device is None or p.device.kind == "cpu":
        return _host_bw(x.hw, p.device)[0] * 1e9
    return p.device.memory_bandwidth_gb_s * 1e9


def _peak_flops(x: Ctx, p: Part) -> float:
    dev = p.device
    if dev is None:
        return 1.5e12
    peak = max(dev.fp16_tflops, dev.fp32_tflops, dev.int8_tops or 0.0 if x.quantized else 0.0)
    return peak * 1e12


def _roofline_step(x: Ctx, batch: int, ctx: float) -> float:
    """The physical limit of one decode step: every byte at peak bandwidth or every FLOP at peak
    compute, whichever is larger, per device; shards of one stage run at the same time."""
    stages: dict[int, float] = {}
    host = 0.0
    total = max(x.model.weights.total_bytes, 1.0)
    flops_tok = 2.0 * _active_params(x)
    for p in x.parts:
        wbytes = p.dense_bytes + p.expert_bytes * _touched(x.expert_frac, batch)
        mem = (wbytes + batch * _kv_read(p, ctx, x.arch)) / _peak_bw(x, p)
        comp = batch * flops_tok * (wbytes / total) / _peak_flops(x, p)
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
    """Every FLOP of the prompt at peak compute (stages of a layer split can overlap)."""
    total = max(x.model.weights.total_bytes, 1.0)
    flops = 2.0 * _active_params(x, head=False) * prompt
    stages: dict[int, float] = {}
    for p in x.parts:
        share = (p.dense_bytes + p.expert_bytes) / total
        t = flops * share / _peak_flops(x, p)
        stages[p.stage] = max(stages.get(p.stage, 0.0), t)
    return max(stages.values()) if stages else 0.0


def _bound(secs: dict) -> str:
    names = {"weights": "memory bandwidth (weights)", "kv_cache": "memory bandwidth (KV cache)",
             "compute": "compute", "host": "host RAM bandwidth", "communication": "interconnect",
             "fixed": "fixed per-token cost (launches, sync)"}
    k = max(secs, key=lambda s: secs[s])
    return names.get(k, k)


def decode(model: LoadedModel, hw: Hardware, plan: Plan, depth: int = 0, n_gen: int = 128,
           c: Constants = DEFAULT, date: str | None = None) -> Estimate:
    """One user's generation speed (tok/s) over n_gen tokens starting at `depth` tokens of context."""
    x = Ctx(model, hw, plan, c, date)
    ctx = depth + n_gen / 2.0
    t, secs, nbytes = decode_step(x, 1, ctx)
    roof = roofline_decode_tok_s(x, ctx)
    return Estimate(value=1.0 / t, metric=Metric.DECODE, seconds=secs, bytes_read=nbytes,
                    bound=_bound(secs), roofline_fraction=min((1.0 / t) / roof, 1.0) if roof else 0.0)


def prefill(model: LoadedModel, hw: Hardware, plan: Plan, prompt: int = 512, depth: int = 0,
            c: Constants = DEFAULT, date: str | None = None) -> Estimate:
    x = Ctx(model, hw, plan, c, date)
    t, secs = prefill_time(x, prompt, depth)
    roof = _roofline_prefill_s(x, prompt, depth)
    return Estimate(value=prompt / t, metric=Metric.PREFILL, seconds=secs, bound=_bound(secs),
                    roofline_fraction=min(roof / t, 1.0) if roof else 0.0)


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
    return Estimate(value=tok_s, metric=Metric.THROUGHPUT_TOTAL if count_prompt else Metric.THROUGHPUT,
                    seconds=secs, bytes_read=nbytes, bound=_bound(secs),
                    roofline_fraction=min(tok_s / roof_tok_s, 1.0) if roof_tok_s else 0.0,
                    notes=(f"{conc} concurrent sequences per replica, {waves} wave(s)",))
