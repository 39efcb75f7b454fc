"""The estimators people use today, implemented from their published formulas, so that
docs/accuracy.md can score them on the same rows as gpuplan.

- gpu_poor (https://github.com/RahulSChand/gpu_poor, src/App.js token_per_second_logic_GPU /
  _CPU): GGML size from its per-block byte factors and its parameter formula (no GQA), decode
  time = max(memory, compute) with its fudge factors (x1.5 memory for GGML, x2 for Q2_K, x1.6
  on CPUs, 0.85 of FP32 compute), x1.25/N for N GPUs; prompt time = its FLOP count / (0.85
  compute) x 1.8 plus 0.008% per MB of weights.
- plain bandwidth roofline: every active weight byte and the KV cache once at peak bandwidth
  (decode); every FLOP at peak compute (prefill).
- a fixed share of the roofline: the roofline times one share per metric, the share that is
  best in hindsight on the scored rows (generous to the baseline).
- llm-analysis (https://github.com/cli99/llm-analysis, llm_analysis/analysis.py): per layer
  max(FLOPs / (peak x flops_efficiency), bytes / (bandwidth x hbm_memory_efficiency)) with its
  default efficiencies (1 and 1, llm_analysis/constant.py), weights at the 4/8/16 bits its dtype
  configs allow, the GEMM at the FP16 peak (activations are 16-bit).
Each returns tok/s, or None where the tool has no answer for the row (gpu_poor knows only some
GGML types and llama.cpp-style inference).
"""

from __future__ import annotations

GB = 1024 ** 3
MB = 1024 ** 2

# gpu_poor computeModelSizeGGML: bytes per 32-weight block, per 64-weight block, and mixes
_GP_32 = {"Q4_0": 18, "Q4_1": 20, "Q5_0": 22, "Q5_1": 24, "Q8_0": 34}
_GP_64 = {"Q6_K": 54.0}
_GP_MIX = {"Q3_K_L": (38.0, 26.0), "Q3_K_M": (46.0, 26.0), "Q4_K_S": (46.0, 38.0), "Q4_K_M": (54.0, 38.0),
           "Q5_K_M": (54.0, 46.0), "Q2_K": (26.0, 22.0)}


def _gp_params(spec) -> tuple[float, float]:
    """gpu_poor's totalParams and the 'v/down' part its mixes give more bits (no GQA, no MoE)."""
    v, L, h, f = spec.vocab_size, spec.n_layers, spec.hidden_size, spec.intermediate_size
    total = v * h * 2 + L * 4 * h * h + L * 3 * f * h
    v_down = L * h * h + L * h * f
    return total, v_down


def _gp_model_bytes(spec, quant_id: str) -> float | None:
    total, v_down = _gp_params(spec)
    if quant_id in ("F16", "BF16", "FP16"):
        return 2.0 * total
    if quant_id in _GP_32:
        return _GP_32[quant_id] * total / 32
    if quant_id in _GP_64:
        return _GP_64[quant_id] * total / 64
    if quant_id in _GP_MIX:
        hi, lo = _GP_MIX[quant_id]
        if quant_id == "Q2_K":  # its other_params_Q2K: all but 2 h^2 per layer and both embeddings
            more = total - (spec.hidden_size ** 2 * spec.n_layers * 2 + 2 * spec.vocab_size * spec.hidden_size)
        else:
            more = v_down
        return ((total - more) * lo + more * hi) / 64
    return None


def gpu_poor(m, setup) -> float | None:
    model, hw, plan, wl = setup
    if m.engine not in ("llama.cpp", "ollama") or model.spec.n_experts:
        return None
    spec = model.spec
    size = _gp_model_bytes(spec, model.quant.id)
    if size is None:
        return None
    dev = hw.devices[0]
    n = len(plan.device_ids)
    mem_t = size / 2.0  # its "memoryTransfer" (bytes / 2; doubled again below)
    L, h = spec.n_layers, spec.hidden_size
    if m.metric.value == "prefill":
        prompt = wl.prompt_tokens
        flops = 2 * prompt * mem_t + 2 * L * h * h * 2 * prompt
        if dev.kind == "cpu":
            t = flops / (dev.fp32_tflops * 1e12 * 0.5) + (2 * mem_t / MB) * (0.008 / 1000)
        else:
            t = flops / (dev.fp32_tflops * 1e12 * 0.85) * 1.8 + (2 * mem_t / MB) * (0.008 / 100)
        return prompt / t
    total_len = wl.depth + wl.prompt_tokens + wl.output_tokens
    kv = 2 * 2 * L * h * total_len
    if dev.kind == "cpu":
        bw = (hw.host.bandwidth_gb_s if hw.host else dev.memory_bandwidth_gb_s)
        t_mem = ((2 * mem_t + kv) / GB) / bw * 1.6
        flops = 2 * mem_t + 2 * total_len * h * 2 * L * 2 * 2
        t_comp = flops / (dev.fp32_tflops * 1e12 * 0.5) * 1.6
        return 1.0 / max(t_mem, t_comp)
    extra = 2.0 if model.quant.id == "Q2_K" else 1.5
    t_mem = ((2 * mem_t * extra + kv * extra) / GB) / dev.memory_bandwidth_gb_s
    flops = 2 * mem_t + total_len * h * 2 * L * 2 * 2
    t_comp = flops / (dev.fp32_tflops * 1e12 * 0.85)
    t = max(t_mem, t_comp)
    if n > 1:
        t = t * 1.25 / n
    return 1.0 / t


def roofline(m, setup) -> float | None:
    from ..perf.constants import DEFAULT
    from ..perf.speed import Ctx, _roofline_prefill_s, roofline_decode_tok_s

    model, hw, plan, wl = setup
    x = Ctx(model, hw, plan, DEFAULT, m.date or None)
    if m.metric.value == "decode":
        return roofline_decode_tok_s(x, wl.depth + wl.output_tokens / 2.0)
    t = _roofline_prefill_s(x, wl.prompt_tokens, wl.depth)
    return wl.prompt_tokens / t if t > 0 else None


def _la_bits(bpw: float) -> int:
    return min((4, 8, 16), key=lambda b: abs(b - bpw))


def llm_analysis(m, setup) -> float | None:
    """Per layer max(compute / peak, bytes / bandwidth), efficiencies 1 (the defaults)."""
    from ..perf.layout import layer_params
    from ..perf.memory import kv_bytes_per_token
    from ..sources.tensors import param_count

    model, hw, plan, wl = setup
    spec = model.spec
    dev = hw.devices[0]
    n = len(plan.device_ids) if plan.split in (plan.split.TENSOR, plan.split.ROW) else 1
    bpw = 8.0 * model.weights.total_bytes / max(param_count(spec)[0], 1)
    wbits = _la_bits(bpw)
    dense, expert, head, _ = layer_params(spec)
    frac = spec.n_experts_active / spec.n_experts if spec.n_experts else 1.0
    bw = (hw.host.bandwidth_gb_s if (dev.kind == "cpu" and hw.host) else dev.memory_bandwidth_gb_s) * 1e9 * n
    peak = dev.fp16_tflops * 1e12 * n
    if m.metric.value == "decode":
        tokens, ctx = 1, wl.depth + wl.output_tokens / 2.0
    else:
        tokens, ctx = wl.prompt_tokens, wl.depth + wl.prompt_tokens / 2.0
    kv_layer = kv_bytes_per_token(spec) / spec.n_layers * ctx
    t = 0.0
    for d, e in zip(dense, expert):
        active = d + e * frac
        flops = 2.0 * active * tokens + 4.0 * spec.n_heads * spec.head_dim * tokens * ctx
        read = (d + e * (frac if tokens == 1 else 1.0)) * wbits / 8 + kv_layer
        t += max(flops / peak, read / bw)
    t += max(2.0 * head / peak, head * 2.0 / bw)  # lm_head (embedding bits 16)
    return tokens / t if t > 0 else None


def fixed_share(m, setup, share: float) -> float | None:
    r = roofline(m, setup)
    return r * share if r else None


BASELINES = {
    "gpu_poor": gpu_poor,
    "bandwidth roofline": roofline,
    "llm-analysis (default efficiencies)": llm_analysis,
}
