"""Physical invariants over random but valid inputs (hypothesis; issue 11). The bounds are computed
here from first principles, not from the speed model's own breakdown:

- decode <= memory bandwidth / bytes one token must read: every block's non-expert tensors,
  n_experts_active / n_experts of its routed experts, and the output head (the embedding table
  when tied); the KV cache only adds to it;
- prefill <= the chip's fastest published matrix rate / (2 x active parameters of the blocks):
  the head and the embedding lookup are left out (llama.cpp runs the head on the last token only),
  attention FLOPs only add;
- more VRAM never fits less; a shorter context, fewer users or a smaller KV type never needs more
  memory nor fits less; a deeper context never decodes faster.

Tests/test_perf_properties.py holds the monotonicity of the speed model in bandwidth, model size,
quant, offload, splits, replicas and batch."""

from __future__ import annotations

from functools import lru_cache

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuplan import api, catalog
from gpuplan.perf import speed
from gpuplan.requests import FitRequest
from gpuplan.sources.resolve import resolve_model
from gpuplan.sources.tensors import tensor_list
from gpuplan.types import Engine, Hardware, Plan, Split

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
REL = 1e-9

# dense, MoE (Mixtral, Qwen3-30B-A3B, gpt-oss), sliding window (Gemma 3), hybrid (Granite 4 H)
MODELS = ["meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B", "Qwen/Qwen3-14B", "google/gemma-3-12b-it",
          "mistralai/Mixtral-8x7B-v0.1", "Qwen/Qwen3-30B-A3B", "openai/gpt-oss-20b", "ibm-granite/granite-4.0-h-tiny",
          "google/gemma-3-270m-it"]
GGUF_QUANTS = ["Q4_K_M", "Q8_0", "Q6_K", "F16"]
CHIPS = ["rtx-3060-12gb", "rtx-3090", "rtx-4090", "rtx-5090", "a10", "tesla-p40", "rx-7900-xtx", "a100-sxm-80gb",
         "h100-sxm-80gb", "mi300x", "arc-a770-16gb", "apple-m2-max-38c", "apple-m4-max-40c"]
KV_ORDER = ["q4_0", "q8_0", "f16"]  # bytes per element, smallest first


@lru_cache(maxsize=None)
def model(mid: str, quant: str):
    return resolve_model(mid, quant)


def hardware(dev) -> Hardware:
    return Hardware(devices=(dev,), memory_gib=(dev.memory_gib or 64.0,))


LLAMA = Plan(split=Split.NONE, engine=Engine.LLAMA_CPP, device_ids=(0,))


def bytes_per_token_at_least(m) -> float:
    """What one decoded token must read from memory, at the least."""
    w, s = m.weights, m.spec
    expert_frac = s.n_experts_active / s.n_experts if s.n_experts else 1.0
    blocks = sum(lb - eb + eb * expert_frac for lb, eb in zip(w.layer_bytes, w.layer_expert_bytes))
    return blocks + (w.output_bytes or w.embed_bytes)


def block_params_active(spec) -> float:
    frac = spec.n_experts_active / spec.n_experts if spec.n_experts else 1.0
    return sum(t.n_elements * (frac if t.expert else 1.0) for t in tensor_list(spec) if t.layer is not None)


def peak_flops(dev) -> float:
    rates = [dev.fp32_tflops, dev.fp16_tflops, dev.fp16_fp32acc_tflops, dev.int8_tops, dev.fp8_tflops]
    return max(r for r in rates if r) * 1e12


@SETTINGS
@given(mid=st.sampled_from(MODELS), quant=st.sampled_from(GGUF_QUANTS), chip=st.sampled_from(CHIPS),
       depth=st.integers(0, 32768))
def test_decode_never_beats_memory_bandwidth(mid, quant, chip, depth):
    m, dev = model(mid, quant), catalog.device(chip)
    e = speed.decode(m, hardware(dev), LLAMA, depth=depth)
    limit = dev.memory_bandwidth_gb_s * 1e9 / bytes_per_token_at_least(m)
    assert 0 < e.value <= limit * (1 + REL), (e.value, limit)


@SETTINGS
@given(mid=st.sampled_from(MODELS), quant=st.sampled_from(GGUF_QUANTS), chip=st.sampled_from(CHIPS),
       prompt=st.integers(1, 16384), depth=st.integers(0, 16384))
def test_prefill_never_beats_peak_flops(mid, quant, chip, prompt, depth):
    m, dev = model(mid, quant), catalog.device(chip)
    e = speed.prefill(m, hardware(dev), LLAMA, prompt=prompt, depth=depth)
    limit = peak_flops(dev) / (2 * block_params_active(m.spec))
    assert 0 < e.value <= limit * (1 + REL), (e.value, limit)


@SETTINGS
@given(mid=st.sampled_from(MODELS), chip=st.sampled_from(CHIPS), d1=st.integers(0, 32768), d2=st.integers(0, 32768))
def test_deeper_context_never_decodes_faster(mid, chip, d1, d2):
    m, hw = model(mid, "Q4_K_M"), hardware(catalog.device(chip))
    lo, hi = sorted((d1, d2))
    assert speed.decode(m, hw, LLAMA, depth=hi).value <= speed.decode(m, hw, LLAMA, depth=lo).value * (1 + REL)


# ---------------------------------------------------------------- memory, through the API
def fit(mid: str, gpus: str, **kw):
    return api.fit(FitRequest.parse(model=mid, quant="Q4_K_M", gpus=gpus, engine="llama.cpp", **kw))


def total_gb(r) -> float:
    return sum(d.total_gb for d in r.devices)


@SETTINGS
@given(mid=st.sampled_from(MODELS), gb=st.lists(st.integers(2, 24), min_size=2, max_size=2),
       context=st.sampled_from([2048, 8192, 32768]))
def test_more_vram_never_fits_less(mid, gb, context):
    small, big = (fit(mid, f"rtx-4090:{g}gb", context=context) for g in sorted(gb))
    assert big.fits or not small.fits
    assert big.max_context >= small.max_context


@SETTINGS
@given(mid=st.sampled_from(MODELS), gpus=st.sampled_from(["rtx-3060-12gb", "rtx-4090", "2x rtx-3090"]),
       c=st.lists(st.integers(2, 131072), min_size=2, max_size=2), u=st.lists(st.integers(1, 32), min_size=2, max_size=2),
       kv=st.lists(st.sampled_from(KV_ORDER), min_size=2, max_size=2))
def test_less_context_users_or_kv_never_needs_more(mid, gpus, c, u, kv):
    (c1, c2), (u1, u2) = sorted(c), sorted(u)
    k1, k2 = sorted(kv, key=KV_ORDER.index)
    less = fit(mid, gpus, context=c1, users=u1, kv=k1)
    more = fit(mid, gpus, context=c2, users=u2, kv=k2)
    assert total_gb(less) <= total_gb(more) + 0.011  # results are rounded to 0.01 GB per device
    assert sum(d.kv_cache_gb for d in less.devices) <= sum(d.kv_cache_gb for d in more.devices) + 0.011
    assert less.fits or not more.fits
