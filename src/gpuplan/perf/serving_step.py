"""The cost of one engine step: a forward pass over the decode tokens of the running sequences
and any prompt chunks scheduled with them.

Built once per plan from the speed model's per-part physics (perf/speed.py: effective
bandwidth, compute rate and fixed costs of every part of the model, perf/layout.py: which bytes
live where), then evaluated many times, on numpy arrays, by the simulator. A step
- streams the weights once per forward pass (routed experts at the share a step's tokens touch),
- reads the KV cache of every decoding sequence (its whole context) and writes the new tokens',
- computes the matrix multiplies for every token and attention over each token's context,
- on a GPU overlaps memory and compute (the slower bounds), on a CPU adds them,
- synchronises tensor-parallel shards twice per layer and hands activations across
  pipeline stages,
- pays the speed model's fixed launch costs, and the engine's host-side cost per step and per
  sequence (fitted, perf/serving_constants.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..types import Engine, Hardware, LoadedModel, Plan, Split
from . import speed
from .constants import DEFAULT, Constants
from .context import Ctx
from .serving_constants import SERVING, ServingConstants
from .serving_engines import Scheduler

# Engines that run FP8 (and FP4) checkpoints on the tensor cores' FP8/FP4 path where the chip has
# one; llama.cpp and MLX dequantize to 16-bit. Architectures with FP8 matrix units: NVIDIA Ada,
# Hopper, Blackwell (whitepapers), AMD CDNA 3 (MI300 ISA guide).
TORCH_ENGINES = {"vllm", "sglang", "tensorrt-llm", "lmdeploy", "tgi"}
FP8_ARCHS = ("ada", "hopper", "blackwell", "cdna 3", "cdna 4", "cdna3", "cdna4")
FP4_ARCHS = ("blackwell", "cdna 4", "cdna4")  # FP4 matrix units


@dataclass(frozen=True)
class Stage:
    """One pipeline stage (its slowest tensor-parallel shard), in seconds."""

    weights_s: float  # dense weights, one pass
    experts_s: float  # every routed expert, one pass (a step reads the touched share)
    kv_s: float  # per token of context per sequence, full-attention layers
    swa_s: float  # per token of window per sequence, sliding-window layers
    linear_s: float  # matrix multiplies per token
    attn_s: float  # attention per token per token of context
    fixed_s: float  # launch costs per pass
    cpu: bool


def _peak_ratio(model: LoadedModel, dev, engine: str) -> float:
    """How much faster than FP16 the engine's GEMMs run for this weight format on this chip: FP8
    checkpoints on chips with FP8 matrix units (W8A8), FP4 (MXFP4/NVFP4) on chips with FP4 units
    at twice their FP8 rate (NVIDIA Blackwell datasheets: B200 9 PFLOPS FP4 vs 4.5 FP8 dense; AMD
    CDNA 4: MI355X 10 PFLOPS MXFP4 vs 5 FP8), unless the catalog gives fp4_tflops."""
    if dev is None or engine not in TORCH_ENGINES:
        return 1.0
    arch = (dev.architecture or "").lower()
    base = max(dev.fp16_tflops, dev.fp32_tflops)
    kind = model.quant.kind
    if kind in ("mxfp4", "nvfp4") and any(a in arch for a in FP4_ARCHS):
        fp4 = getattr(dev, "fp4_tflops", None) or (2.0 * dev.fp8_tflops if dev.fp8_tflops else None)
        if fp4:
            return fp4 / base
    if kind == "fp8" and dev.fp8_tflops and any(a in arch for a in FP8_ARCHS):
        return dev.fp8_tflops / base
    return 1.0


def _first_of_stage(x, p):
    for q in x.parts:
        if q.stage == p.stage and not q.on_host:
            return q
    return p


def _mesh(link) -> bool:
    """Links that join every GPU to every other directly (AMD Infinity Fabric / xGMI)."""
    if link is None:
        return False
    return link.kind == "infinity-fabric" or "xgmi" in (link.id or "").lower()


def allreduce_s(nbytes, n: int, link, consumer: bool, c: Constants, sc: ServingConstants):
    """One all-reduce of `nbytes` per GPU over `n` GPUs: the faster of one-shot (every GPU reads
    every peer's buffer: latency-bound small messages, vLLM/TRT-LLM custom all-reduce) and ring
    (2(n-1)/n of the data over each GPU's links: NCCL/RCCL for large messages)."""
    if n <= 1:
        return 0.0 * nbytes
    lat = (link.latency_us * 1e-6 if link else 5e-6) + c.allreduce_s
    bw = (link.bandwidth_gb_s * 1e9 if link else 16e9) * sc.allreduce_eff
    if _mesh(link):
        bw *= n - 1  # one link to each peer, all used at once
    if consumer and (link is None or link.kind == "pcie"):
        bw *= 0.5  # GeForce has no peer-to-peer over PCIe: copies go through host memory
    one_shot = lat + (n - 1) * nbytes / bw
    ring = 2 * (n - 1) * lat + 2.0 * (n - 1) / n * nbytes / bw
    return np.minimum(one_shot, ring)


def _gemm_share(x: Ctx, p) -> float:
    """The share of the matmul peak the speed model gives this part's prompt GEMMs (Ctx.flops)."""
    return x.c.of("prefill_eff", x.part_family(p), 0.4) * x.era_pf


def _params(x: Ctx, p) -> float:
    """Matrix parameters a token multiplies through on this part: routed experts at their active
    share, and the output head (every decode token computes logits)."""
    return p.dense_params + p.head_params + p.expert_params * x.expert_frac


class StepCost:
    """Seconds for one engine step, vectorised over arrays of step compositions."""

    def __init__(self, model: LoadedModel, hw: Hardware, plan: Plan, sched: Scheduler,
                 c: Constants = DEFAULT, sc: ServingConstants = SERVING, date: str | None = None):
        x = Ctx(model, hw, plan, c, date)
        self.x, self.c, self.sc, self.sched, self.plan = x, c, sc, sched, plan
        spec = model.spec
        eng = sched.engine
        self.engine = eng
        attn_flops = 4.0 * spec.n_heads * spec.head_dim  # QK^T and PV per token per context token per layer
        backend = x.hw_backend
        gemm = sc.get("gemm_eff", eng, backend)
        kv_eff = sc.get("kv_eff", eng, backend) or c.kv_read_eff
        attn_eff_sc = sc.get("attn_eff", eng, backend)
        stages: dict[int, Stage] = {}
        # a tensor-parallel shard computes attention for its share of the query heads (its part's
        # weights and KV are already its share; the attention FLOPs per token pair are the model's)
        head_share = 1.0 / plan.tp if plan.split == Split.TENSOR and plan.tp > 1 else 1.0
        for p in x.parts:
            bw = x.bw(p)
            cpu = p.on_host or p.device is None or p.device.kind == "cpu"
            f = x.flops(p)
            if gemm is not None and not cpu:
                f = f / max(_gemm_share(x, p), 1e-9) * gemm
            f_lin = f * _peak_ratio(model, p.device, eng)
            attn_eff = attn_eff_sc or c.of("attn_eff", x.part_family(p), 0.5)
            s = Stage(weights_s=p.dense_bytes / bw, experts_s=p.expert_bytes / bw,
                      kv_s=p.kv_bytes_per_ctx / (bw * kv_eff),
                      swa_s=p.swa_kv_bytes / (bw * kv_eff),
                      linear_s=2.0 * _params(x, p) / f_lin,
                      attn_s=attn_flops * p.layers * head_share / (f * attn_eff),
                      fixed_s=x.layer_fixed(p, 2) if (p.device is None or p is _first_of_stage(x, p)) else 0.0,
                      cpu=cpu)
            key = p.stage if not p.on_host else -100 - len(stages)
            old = stages.get(key)
            if old is None or s.weights_s + s.kv_s > old.weights_s + old.kv_s:
                stages[key] = s if old is None else Stage(
                    max(s.weights_s, old.weights_s), max(s.experts_s, old.experts_s), max(s.kv_s, old.kv_s),
                    max(s.swa_s, old.swa_s), max(s.linear_s, old.linear_s), max(s.attn_s, old.attn_s),
                    max(s.fixed_s, old.fixed_s), s.cpu or old.cpu)
        self.stages = list(stages.values())
        # the stages as columns, so that one set of numpy operations costs every stage of a run
        # of steps: GPU stages (memory and compute overlap) apart from CPU ones (they add)
        gpu = [st for st in self.stages if not st.cpu]
        cpu_st = [st for st in self.stages if st.cpu]
        self._gpu_cols = ({f: np.array([getattr(st, f) for st in gpu]) for f in Stage.__dataclass_fields__
                           if f != "cpu"} if gpu else None)
        self._cpu_sums = ({f: sum(getattr(st, f) for st in cpu_st) for f in Stage.__dataclass_fields__
                           if f != "cpu"} if cpu_st else None)
        self._comm_memo: dict[float, float] = {}
        # how much of a token's KV sits in sliding-window layers (those keep only the window)
        full = sum(p.kv_bytes_per_ctx for p in x.parts)
        swa = sum(p.swa_kv_bytes for p in x.parts)
        self.kv_swa_frac = swa / (full + swa) if full + swa > 0 else 0.0
        self.expert_frac = x.expert_frac
        self.window = spec.sliding_window
        self.hidden = spec.hidden_size
        self.n_layers = spec.n_layers
        self.token_fixed = x.token_fixed()
        self.pp = plan.pp if plan.split == Split.TENSOR else 1
        self.tp = plan.tp if plan.split == Split.TENSOR else 1
        self.consumer = any(d.segment == "consumer" for d in hw.devices)
        self.link = hw.link
        self.step_s = sc.get("step_s", eng, backend) or 0.0
        self.seq_s = sc.get("seq_s", eng, backend) or 0.0
        self.ubatch = sched.ubatch
        self.is_llama = plan.engine in (Engine.LLAMA_CPP, Engine.OLLAMA)

    # -- pieces
    def _comm(self, tokens):
        """Synchronisation between devices for a pass of `tokens` tokens."""
        if np.ndim(tokens) == 0:
            key = float(tokens)
            v = self._comm_memo.get(key)
            if v is None:
                if len(self._comm_memo) > 4096:
                    self._comm_memo.clear()
                v = self._comm_memo[key] = float(self._comm_of(tokens))
            return v
        return self._comm_of(tokens)

    def _comm_of(self, tokens):
        x = self.x
        if self.tp > 1:
            nbytes = tokens * self.hidden * 2.0  # bf16 activations
            t = 2 * self.n_layers * allreduce_s(nbytes, self.tp, self.link, self.consumer, self.c, self.sc)
            if self.pp > 1:
                link = x.hw.node_link if x.hw.nodes > 1 and x.hw.node_link is not None else self.link
                lat = link.latency_us * 1e-6 if link else 5e-6
                lbw = link.bandwidth_gb_s * 1e9 if link else 16e9
                t = t + (self.pp - 1) * (lat + nbytes / lbw)
            return t
        if isinstance(tokens, np.ndarray):
            return np.array([speed._decode_comm(x, int(max(v, 1))) for v in tokens.ravel()]).reshape(tokens.shape)
        return speed._decode_comm(x, int(max(tokens, 1)))

    def _pass(self, tokens, kv_tokens, swa_tokens, attn_tokens, passes):
        """GPU time of `passes` forward passes carrying `tokens` tokens in all, that read
        `kv_tokens` (and `swa_tokens` of sliding windows) of cached context and attend over
        `attn_tokens` (token x context pairs). The matrix multiplies stream the weights while they
        compute (the slower of the two), attention is a kernel of its own that streams the KV
        cache while it computes; on a CPU every part adds."""
        per_pass = tokens / passes
        if np.ndim(tokens) == 0 and np.ndim(kv_tokens) == 0 and np.ndim(swa_tokens) == 0 \
                and np.ndim(attn_tokens) == 0 and np.ndim(passes) == 0:
            return self._pass_scalar(float(tokens), float(kv_tokens), float(swa_tokens), float(attn_tokens),
                                     float(passes))
        touched = 1.0 - (1.0 - self.expert_frac) ** np.maximum(per_pass, 1.0) if self.expert_frac < 1 else 1.0
        total = 0.0
        c = self._cpu_sums
        if c is not None:
            total = (passes * (c["weights_s"] + c["experts_s"] * touched + c["fixed_s"]) + c["linear_s"] * tokens
                     + c["kv_s"] * (kv_tokens + tokens) + c["swa_s"] * swa_tokens + c["attn_s"] * attn_tokens)
        g = self._gpu_cols
        if g is not None:  # the stage axis last: inputs of any shape broadcast against it
            passes_, touched_ = np.asarray(passes)[..., None], np.asarray(touched)[..., None]
            tokens_ = np.asarray(tokens)[..., None]
            w = passes_ * (g["weights_s"] + g["experts_s"] * touched_)
            kv = g["kv_s"] * (np.asarray(kv_tokens)[..., None] + tokens_) + g["swa_s"] * np.asarray(swa_tokens)[..., None]
            t = (np.maximum(w, g["linear_s"] * tokens_) + np.maximum(kv, g["attn_s"] * np.asarray(attn_tokens)[..., None])
                 + passes_ * g["fixed_s"])
            total = total + t.sum(axis=-1)
        return total

    def _pass_scalar(self, tokens: float, kv_tokens: float, swa_tokens: float, attn_tokens: float,
                     passes: float) -> float:
        """_pass for one step (plain floats: the simulator's single steps)."""
        touched = 1.0 - (1.0 - self.expert_frac) ** max(tokens / passes, 1.0) if self.expert_frac < 1 else 1.0
        total = 0.0
        for s in self.stages:
            w = passes * (s.weights_s + s.experts_s * touched)
            lin = s.linear_s * tokens
            kv = s.kv_s * (kv_tokens + tokens) + s.swa_s * swa_tokens
            att = s.attn_s * attn_tokens
            t = w + lin + kv + att if s.cpu else max(w, lin) + max(kv, att)
            total += t + passes * s.fixed_s
        return total

    def time(self, tokens, n_seqs, kv_tokens, swa_tokens=0.0, attn_tokens=None):
        """Seconds for steps carrying `tokens` new tokens for `n_seqs` sequences whose cached
        context adds up to `kv_tokens`. `attn_tokens` defaults to the decode case (each token
        attends over its sequence's context)."""
        if attn_tokens is None:
            attn_tokens = kv_tokens
        if (np.ndim(tokens) == 0 and np.ndim(n_seqs) == 0 and np.ndim(kv_tokens) == 0 and np.ndim(swa_tokens) == 0
                and np.ndim(attn_tokens) == 0):
            return self._time_scalar(float(tokens), float(n_seqs), float(kv_tokens), float(swa_tokens),
                                     float(attn_tokens))
        tokens = np.maximum(tokens, 1)
        if self.pp > 1:  # pp micro-batches in flight: each token's pass is one stage's share of the batch
            tokens_m = np.ceil(tokens / self.pp)
            scale = tokens_m / tokens
            kv_tokens, swa_tokens, attn_tokens, tokens = kv_tokens * scale, swa_tokens * scale, attn_tokens * scale, tokens_m
        passes = np.ceil(tokens / self.ubatch) if self.ubatch else 1
        gpu = self._pass(tokens, kv_tokens, swa_tokens, attn_tokens, passes)
        return gpu + self._comm(tokens) + self.token_fixed * passes + self.step_s + self.seq_s * n_seqs

    def _time_scalar(self, tokens: float, n_seqs: float, kv_tokens: float, swa_tokens: float,
                     attn_tokens: float) -> float:
        """time() of one step (plain floats)."""
        tokens = max(tokens, 1.0)
        if self.pp > 1:
            tokens_m = math.ceil(tokens / self.pp)
            scale = tokens_m / tokens
            kv_tokens, swa_tokens, attn_tokens, tokens = (kv_tokens * scale, swa_tokens * scale,
                                                          attn_tokens * scale, float(tokens_m))
        passes = float(math.ceil(tokens / self.ubatch)) if self.ubatch else 1.0
        gpu = self._pass_scalar(tokens, kv_tokens, swa_tokens, attn_tokens, passes)
        return gpu + self._comm(tokens) + self.token_fixed * passes + self.step_s + self.seq_s * n_seqs

    def decode(self, batch, ctx):
        """Seconds for a decode step of `batch` sequences, each at context `ctx` (arrays allowed)."""
        swa = batch * np.minimum(ctx, self.window) if self.window else 0.0
        return self.time(batch, batch, batch * ctx, swa)

    def mixed(self, n_dec, dec_kv, dec_swa, pf_tokens, pf_kv, pf_attn, n_pf):
        """One step with `n_dec` decode tokens (context `dec_kv`) and `pf_tokens` prompt tokens
        (reading `pf_kv` cached tokens, `pf_attn` token x context pairs) of `n_pf` prompts."""
        if pf_tokens <= 0:
            return float(self.time(n_dec, n_dec, dec_kv, dec_swa))
        if self.sched.fused or n_dec == 0:
            t = self.time(n_dec + pf_tokens, n_dec + n_pf, dec_kv + pf_kv, dec_swa, dec_kv + pf_attn)
            return float(t)
        # prompt (context) work, then a decode step of the running sequences, in one iteration
        return float(self.time(pf_tokens, n_pf, pf_kv, 0.0, pf_attn) + self.time(n_dec, n_dec, dec_kv, dec_swa))

    def mixed_array(self, n_dec, dec_kv, dec_swa, pf_tokens, pf_kv, pf_attn):
        """mixed() for steps that each carry one prompt chunk of `pf_tokens`, with arrays of the
        decode context, the chunk's cached tokens and its attention pairs."""
        if self.sched.fused or n_dec == 0:
            return self.time(n_dec + pf_tokens, n_dec + 1, dec_kv + pf_kv, dec_swa, dec_kv + pf_attn)
        return self.time(pf_tokens, 1, pf_kv, 0.0, pf_attn) + self.time(n_dec, n_dec, dec_kv, dec_swa)

    def breakdown(self, batch: int, ctx: float) -> dict[str, float]:
        """Seconds of one decode step of `batch` sequences at context `ctx`, by component
        (the components of the slowest side of each stage; they add up to the step)."""
        out = {"weights": 0.0, "kv_cache": 0.0, "compute": 0.0, "communication": 0.0, "fixed": 0.0,
               "engine_overhead": 0.0}
        tokens = batch
        kv = batch * ctx
        swa = batch * min(ctx, self.window) if self.window else 0.0
        if self.pp > 1:
            tokens = math.ceil(batch / self.pp)
            kv, swa = kv * tokens / batch, swa * tokens / batch
        passes = math.ceil(tokens / self.ubatch) if self.ubatch else 1
        touched = 1.0 - (1.0 - self.expert_frac) ** max(tokens / passes, 1.0) if self.expert_frac < 1 else 1.0
        for s in self.stages:
            w = passes * (s.weights_s + s.experts_s * touched)
            lin = s.linear_s * tokens
            k = s.kv_s * (kv + tokens) + s.swa_s * swa
            att = s.attn_s * kv
            if s.cpu:
                out["weights"] += w
                out["kv_cache"] += k
                out["compute"] += lin + att
            else:  # each kernel is bound by its slower side
                out["weights" if w >= lin else "compute"] += max(w, lin)
                out["kv_cache" if k >= att else "compute"] += max(k, att)
            out["fixed"] += passes * s.fixed_s
        out["communication"] = float(self._comm(tokens))
        out["fixed"] += self.token_fixed * passes
        out["engine_overhead"] = self.step_s + self.seq_s * batch
        return out

    def roofline_step(self, batch: int, ctx: float) -> float:
        """The physical limit of a decode step of `batch` sequences at context `ctx`: per stage
        every byte (weights at the touched expert share, KV of every sequence) at the memory's
        peak bandwidth, or every FLOP at the peak rate of the number format the engine uses,
        whichever is larger; stages one after another (each micro-batch passes them all)."""
        x = self.x
        attn = 4.0 * x.spec.n_heads * x.spec.head_dim
        tokens = math.ceil(batch / self.pp) if self.pp > 1 else batch
        touched = 1.0 - (1.0 - self.expert_frac) ** max(tokens, 1) if self.expert_frac < 1 else 1.0
        stages: dict[int, float] = {}
        for p in x.parts:
            dev = p.device
            if p.on_host or dev is None or dev.kind == "cpu":
                bw = speed._peak_bw(x, p)
                peak = (dev.fp32_tflops if dev is not None else 1.5) * 1e12
            else:
                bw = dev.memory_bandwidth_gb_s * 1e9
                peak = max(dev.fp16_tflops, dev.fp32_tflops, dev.int8_tops or 0.0 if x.quantized else 0.0) * 1e12
                peak *= max(_peak_ratio(x.model, dev, self.engine), 1.0)
            nbytes = p.dense_bytes + p.expert_bytes * touched + tokens * (
                p.kv_bytes_per_ctx * ctx + p.swa_kv_bytes * (min(ctx, self.window) if self.window else 0.0))
            flops = tokens * (2.0 * _params(x, p) + attn * p.layers * ctx)
            t = max(nbytes / bw, flops / peak)
            key = p.stage if not p.on_host else -100 - len(stages)
            stages[key] = max(stages.get(key, 0.0), t)
        return sum(stages.values())
