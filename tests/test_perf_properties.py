"""Properties the speed model must keep for any real catalog model and device (hypothesis):
more bandwidth never slows decode, bigger models and higher-bit quants are never faster,
offloading more layers never speeds things up, a layer split never beats one card for one
user, replicas and batching never lower aggregate throughput (until memory runs out), and
every decode estimate carries a breakdown, a bound and a roofline fraction in (0, 1]."""

from __future__ import annotations

from dataclasses import replace
from functools import lru_cache

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gpuplan import catalog
from gpuplan.perf import speed
from gpuplan.perf.predict import max_batch_for
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Hardware, Plan, Split

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
REL = 1e-9  # "never" means never, up to float rounding

# GGUF models run on llama.cpp; the rest on vLLM
MODELS = [
    ("meta-llama/Meta-Llama-3-8B", "Q4_K_M"),
    ("meta-llama/Meta-Llama-3-8B", "Q8_0"),
    ("meta-llama/Meta-Llama-3-70B", "Q4_K_M"),
    ("Qwen/Qwen3-14B", "Q4_K_M"),
    ("Qwen/Qwen2.5-7B-Instruct", "Q6_K"),
    ("google/gemma-3-12b-it", "Q4_K_M"),
    ("mistralai/Mixtral-8x7B-v0.1", "Q4_K_M"),
    ("meta-llama/Meta-Llama-3-8B", "FP16"),
    ("Qwen/Qwen3-30B-A3B", "FP8"),
]
GPUS = ["rtx-3060-12gb", "rtx-3090", "rtx-4090", "rtx-5090", "a10", "tesla-p40", "rx-7900-xtx",
        "a100-sxm-80gb", "h100-sxm-80gb", "mi300x", "arc-a770-16gb"]
CHIPS = GPUS + ["apple-m2-max-38c", "apple-m4-max-40c", "apple-m2-ultra-76c"]
LINKS = ["pcie3-x4", "pcie4-x8", "pcie4-x16", "pcie5-x16", "nvlink-bridge-3090", "nvlink4"]


@lru_cache(maxsize=None)
def model(mid: str, quant: str):
    return resolve_model(mid, quant)


def engine_for(quant: str) -> Engine:
    return Engine.VLLM if quant in ("FP16", "BF16", "FP8", "AWQ", "GPTQ", "INT8") else Engine.LLAMA_CPP


def hardware(dev, n: int = 1, link: str | None = None, host: str | None = None) -> Hardware:
    mem = dev.memory_gib or 64.0
    return Hardware(devices=(dev,) * n, memory_gib=(mem,) * n,
                    link=catalog.link(link) if link else (catalog.link("pcie4-x16") if n > 1 else None),
                    host=catalog.host_memory(host) if host else None)


def one(engine: Engine, **kw) -> Plan:
    return Plan(split=Split.NONE, engine=engine, device_ids=(0,), **kw)


def known(st_list):
    return st.sampled_from(st_list)


models = known(MODELS)
gpus = known(GPUS)
chips = known(CHIPS)
depths = st.integers(min_value=0, max_value=16384)


def _le(a: float, b: float) -> bool:
    return a <= b * (1 + REL)


# ---------------------------------------------------------------- bandwidth
@SETTINGS
@given(mq=models, gpu=chips, factor=st.floats(min_value=1.0, max_value=8.0), depth=depths,
       batch=st.integers(min_value=1, max_value=256))
def test_more_bandwidth_never_slows_anything(mq, gpu, factor, depth, batch):
    m = model(*mq)
    dev = catalog.device(gpu)
    fast = dev.model_copy(update={"memory_bandwidth_gb_s": dev.memory_bandwidth_gb_s * factor})
    plan = one(engine_for(mq[1]))
    slow_hw, fast_hw = hardware(dev), hardware(fast)
    assert _le(speed.decode(m, slow_hw, plan, depth=depth).value, speed.decode(m, fast_hw, plan, depth=depth).value)
    assert _le(speed.prefill(m, slow_hw, plan, prompt=512, depth=depth).value,
               speed.prefill(m, fast_hw, plan, prompt=512, depth=depth).value)
    assert _le(speed.throughput(m, slow_hw, plan, batch, 512, 128).value,
               speed.throughput(m, fast_hw, plan, batch, 512, 128).value)


@SETTINGS
@given(gpu=gpus, factor=st.floats(min_value=1.0, max_value=8.0), n=st.integers(2, 4), link=known(LINKS),
       depth=depths)
def test_more_bandwidth_on_every_card_never_slows_a_split(gpu, factor, n, link, depth):
    m = model("meta-llama/Meta-Llama-3-70B", "Q4_K_M")
    dev = catalog.device(gpu)
    fast = dev.model_copy(update={"memory_bandwidth_gb_s": dev.memory_bandwidth_gb_s * factor})
    for split in (Split.LAYER, Split.ROW):
        plan = Plan(split=split, engine=Engine.LLAMA_CPP, device_ids=tuple(range(n)))
        a = speed.decode(m, hardware(dev, n, link), plan, depth=depth).value
        b = speed.decode(m, hardware(fast, n, link), plan, depth=depth).value
        assert _le(a, b), (split, a, b)


@SETTINGS
@given(mq=known([x for x in MODELS if engine_for(x[1]) == Engine.LLAMA_CPP]), gpu=gpus,
       frac=st.floats(0.0, 0.95), slow_ram=known(["ddr4-3200-2ch", "ddr5-5600-2ch"]),
       fast_ram=known(["ddr5-6000-2ch", "ddr5-4800-8ch"]))
def test_faster_host_ram_never_slows_offload(mq, gpu, frac, slow_ram, fast_ram):
    m = model(*mq)
    dev = catalog.device(gpu)
    assert catalog.host_memory(fast_ram).bandwidth_gb_s >= catalog.host_memory(slow_ram).bandwidth_gb_s
    plan = one(Engine.LLAMA_CPP, gpu_layers=int(m.spec.n_layers * frac))
    a = speed.decode(m, hardware(dev, host=slow_ram), plan).value
    b = speed.decode(m, hardware(dev, host=fast_ram), plan).value
    assert _le(a, b)


# ---------------------------------------------------------------- bigger models
SIZES = [("meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B"),
         ("meta-llama/Llama-3.1-8B", "meta-llama/Llama-3.1-70B"),
         ("meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B"),
         ("meta-llama/Llama-2-7b-hf", "meta-llama/Llama-2-13b-hf"),
         ("meta-llama/Llama-2-13b-hf", "meta-llama/Llama-2-70b-hf"),
         ("Qwen/Qwen3-8B", "Qwen/Qwen3-32B"),
         ("Qwen/Qwen3-4B", "Qwen/Qwen3-14B"),
         ("Qwen/Qwen2.5-14B-Instruct", "Qwen/Qwen2.5-72B-Instruct"),
         ("google/gemma-3-4b-it", "google/gemma-3-27b-it")]


@SETTINGS
@given(pair=known(SIZES), quant=known(["Q4_K_M", "Q8_0", "Q5_K_M", "FP16", "FP8"]), gpu=chips, depth=depths,
       batch=st.integers(1, 64))
def test_larger_model_same_family_never_faster(pair, quant, gpu, depth, batch):
    small, big = model(pair[0], quant), model(pair[1], quant)
    assert big.weights.total_bytes > small.weights.total_bytes
    hw = hardware(catalog.device(gpu))
    plan = one(engine_for(quant))
    assert _le(speed.decode(big, hw, plan, depth=depth).value, speed.decode(small, hw, plan, depth=depth).value)
    assert _le(speed.prefill(big, hw, plan, prompt=512, depth=depth).value,
               speed.prefill(small, hw, plan, prompt=512, depth=depth).value)
    assert _le(speed.throughput(big, hw, plan, batch, 512, 128).value,
               speed.throughput(small, hw, plan, batch, 512, 128).value)


QUANT_LADDER = ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_M", "Q6_K", "Q8_0", "F16"]


@SETTINGS
@given(mid=known(["meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B", "Qwen/Qwen3-14B",
                  "google/gemma-3-12b-it", "mistralai/Mixtral-8x7B-v0.1"]),
       ij=st.tuples(st.integers(0, len(QUANT_LADDER) - 1), st.integers(0, len(QUANT_LADDER) - 1)),
       gpu=chips, depth=depths)
def test_higher_bit_quant_never_decodes_faster(mid, ij, gpu, depth):
    lo, hi = sorted(ij)
    a, b = model(mid, QUANT_LADDER[lo]), model(mid, QUANT_LADDER[hi])
    assert a.weights.total_bytes <= b.weights.total_bytes
    hw = hardware(catalog.device(gpu))
    plan = one(Engine.LLAMA_CPP)
    assert _le(speed.decode(b, hw, plan, depth=depth).value, speed.decode(a, hw, plan, depth=depth).value)


# ---------------------------------------------------------------- offload
@SETTINGS
@given(mq=known([x for x in MODELS if engine_for(x[1]) == Engine.LLAMA_CPP]), gpu=gpus,
       fr=st.tuples(st.floats(0, 1), st.floats(0, 1)), depth=depths,
       ram=known(["ddr4-3200-2ch", "ddr5-6000-2ch", "ddr5-6400-2ch", "ddr4-3200-4ch"]))
def test_offloading_more_layers_never_faster(mq, gpu, fr, depth, ram):
    """Desktop RAM (2-4 channels); 8-channel server RAM can rival an old card like the P40."""
    m = model(*mq)
    n = m.spec.n_layers
    fewer, more = sorted(int(round(f * n)) for f in fr)  # layers on the GPU
    hw = hardware(catalog.device(gpu), host=ram)
    d_few = speed.decode(m, hw, one(Engine.LLAMA_CPP, gpu_layers=fewer), depth=depth).value
    d_more = speed.decode(m, hw, one(Engine.LLAMA_CPP, gpu_layers=more), depth=depth).value
    d_all = speed.decode(m, hw, one(Engine.LLAMA_CPP), depth=depth).value
    assert _le(d_few, d_more) and _le(d_more, d_all)
    p_few = speed.prefill(m, hw, one(Engine.LLAMA_CPP, gpu_layers=fewer), prompt=512).value
    p_more = speed.prefill(m, hw, one(Engine.LLAMA_CPP, gpu_layers=more), prompt=512).value
    p_all = speed.prefill(m, hw, one(Engine.LLAMA_CPP), prompt=512).value
    assert _le(p_few, p_more) and _le(p_more, p_all)


# ---------------------------------------------------------------- splits
@SETTINGS
@given(mq=models, gpu=gpus, n=st.integers(2, 8), link=known(LINKS), depth=depths)
def test_layer_split_never_faster_for_one_user_than_one_card(mq, gpu, n, link, depth):
    m = model(*mq)
    dev = catalog.device(gpu)
    eng = Engine.LLAMA_CPP if engine_for(mq[1]) == Engine.LLAMA_CPP else Engine.EXLLAMAV2
    single = speed.decode(m, hardware(dev), Plan(split=Split.NONE, engine=eng, device_ids=(0,)), depth=depth)
    split = speed.decode(m, hardware(dev, n, link),
                         Plan(split=Split.LAYER, engine=eng, device_ids=tuple(range(n))), depth=depth)
    assert _le(split.value, single.value), (split.value, single.value)


@SETTINGS
@given(gpu=gpus, n=st.integers(2, 8), depth=depths)
def test_pipeline_parallel_never_faster_for_one_user_than_one_card(gpu, n, depth):
    m = model("meta-llama/Meta-Llama-3-8B", "FP16")
    dev = catalog.device(gpu)
    single = speed.decode(m, hardware(dev), one(Engine.VLLM), depth=depth).value
    pp = speed.decode(m, hardware(dev, n), Plan(split=Split.TENSOR, engine=Engine.VLLM,
                                                 device_ids=tuple(range(n)), tp=1, pp=n), depth=depth).value
    assert _le(pp, single)


# ---------------------------------------------------------------- replicas and batching
def _replica_curve(mq, gpu, users, rmax, context):
    m = model(*mq)
    hw = hardware(catalog.device(gpu), rmax)
    base = one(engine_for(mq[1]))
    room = max_batch_for(m, hw, base, context)
    if room == 0:
        return []  # the model does not fit one card: replicas of it are not a plan
    return [speed.throughput(m, hw, replace(base, replicas=r), users, 512, 128, max_batch=room).value
            for r in range(1, rmax + 1)]


@SETTINGS
@given(mq=models, gpu=known(["rtx-3090", "rtx-4090", "a100-sxm-80gb", "h100-sxm-80gb"]),
       k=st.integers(1, 40), rmax=st.integers(2, 4), context=known([2048, 4096, 8192]))
def test_replicas_never_lower_aggregate_throughput(mq, gpu, k, rmax, context):
    """Users a multiple of every replica count (12 k), so each replica gets the same share."""
    curve = _replica_curve(mq, gpu, 12 * k, rmax, context)
    for r in range(1, len(curve)):
        assert _le(curve[r - 1], curve[r]), (r + 1, curve)


@SETTINGS
@given(mq=models, gpu=known(["rtx-3090", "rtx-4090", "a100-sxm-80gb", "h100-sxm-80gb"]),
       users=st.integers(1, 512), rmax=st.integers(2, 8), context=known([2048, 4096, 8192]))
def test_replicas_never_lower_aggregate_throughput_any_user_count(mq, gpu, users, rmax, context):
    curve = _replica_curve(mq, gpu, users, rmax, context)
    for r in range(1, len(curve)):
        assert _le(curve[r - 1], curve[r]), (r + 1, curve)


@SETTINGS
@given(mq=models, gpu=known(["rtx-3090", "rtx-4090", "a100-sxm-80gb", "h100-sxm-80gb", "apple-m2-max-38c"]),
       seq=known([1024, 4096, 8192]), bs=st.tuples(st.integers(1, 4096), st.integers(1, 4096)))
def test_throughput_never_falls_as_batch_grows_until_memory_runs_out(mq, gpu, seq, bs):
    m = model(*mq)
    hw = hardware(catalog.device(gpu))
    plan = one(engine_for(mq[1]))
    limit = max_batch_for(m, hw, plan, seq)
    if limit < 2:
        return
    b1, b2 = sorted(min(b, limit) for b in bs)
    prompt, gen = seq // 2, seq // 2
    t1 = speed.throughput(m, hw, plan, b1, prompt, gen, max_batch=limit).value
    t2 = speed.throughput(m, hw, plan, b2, prompt, gen, max_batch=limit).value
    assert _le(t1, t2), (b1, b2, t1, t2)


def test_batching_helps_a_lot_before_memory_runs_out():
    """Not only never lower: weights read once per step for all sequences make 32 users far
    more productive than one (decode of an 8B model on a 4090 is bandwidth bound)."""
    m = model("meta-llama/Meta-Llama-3-8B", "Q4_K_M")
    hw = hardware(catalog.device("rtx-4090"))
    plan = one(Engine.LLAMA_CPP)
    assert max_batch_for(m, hw, plan, 1024) >= 32
    t1 = speed.throughput(m, hw, plan, 1, 512, 512).value
    t32 = speed.throughput(m, hw, plan, 32, 512, 512).value
    assert t32 > 8 * t1


def test_replicas_do_not_invent_users():
    m = model("meta-llama/Meta-Llama-3-8B", "Q4_K_M")
    hw = hardware(catalog.device("rtx-4090"), 8)
    one_rep = speed.throughput(m, hw, one(Engine.LLAMA_CPP), 1, 512, 256).value
    eight = speed.throughput(m, hw, one(Engine.LLAMA_CPP, replicas=8), 1, 512, 256).value
    assert eight <= one_rep * 1.01


# ---------------------------------------------------------------- every estimate explains itself
SINGLE_OR_LAYER = st.one_of(
    st.tuples(models, chips, st.just(1), st.just(Split.NONE)),
    st.tuples(models, gpus, st.integers(2, 4), st.just(Split.LAYER)),
)


@SETTINGS
@given(case=SINGLE_OR_LAYER, depth=depths, offload=st.floats(0.0, 1.0))
def test_decode_estimate_has_breakdown_bound_and_roofline(case, depth, offload):
    mq, gpu, n, split = case
    m = model(*mq)
    eng = engine_for(mq[1]) if split == Split.NONE else Engine.LLAMA_CPP
    gl = None
    if eng == Engine.LLAMA_CPP and offload < 0.5:
        gl = int(m.spec.n_layers * offload * 2)
    plan = Plan(split=split, engine=eng, device_ids=tuple(range(n)), gpu_layers=gl)
    e = speed.decode(m, hardware(catalog.device(gpu), n, host="ddr5-6000-2ch"), plan, depth=depth)
    assert e.value > 0
    assert e.seconds and all(v >= 0 for v in e.seconds.values())
    # the components add up to the time of one token
    assert sum(e.seconds.values()) == pytest.approx(1.0 / e.value, rel=1e-6)
    assert isinstance(e.bound, str) and e.bound
    assert 0.0 < e.roofline_fraction <= 1.0, e.roofline_fraction


@SETTINGS
@given(mq=models, gpu=chips, prompt=st.integers(1, 8192), batch=st.integers(1, 64))
def test_prefill_and_throughput_estimates_have_breakdown_and_bound(mq, gpu, prompt, batch):
    m = model(*mq)
    hw = hardware(catalog.device(gpu))
    plan = one(engine_for(mq[1]))
    for e in (speed.prefill(m, hw, plan, prompt=prompt), speed.throughput(m, hw, plan, batch, prompt, 64)):
        assert e.value > 0
        assert e.seconds and all(v >= 0 for v in e.seconds.values()) and sum(e.seconds.values()) > 0
        assert isinstance(e.bound, str) and e.bound


def test_prefill_and_throughput_carry_a_roofline_fraction():
    m = model("meta-llama/Meta-Llama-3-8B", "Q4_K_M")
    hw = hardware(catalog.device("rtx-4090"))
    plan = one(Engine.LLAMA_CPP)
    for e in (speed.prefill(m, hw, plan, prompt=512), speed.throughput(m, hw, plan, 8, 512, 128)):
        assert 0.0 < e.roofline_fraction <= 1.0


def test_tensor_parallel_roofline_fraction_at_most_one():
    m = model("meta-llama/Meta-Llama-3-70B", "FP16")
    dev = catalog.device("h100-sxm-80gb")
    plan = Plan(split=Split.TENSOR, engine=Engine.VLLM, device_ids=(0, 1, 2, 3), tp=4)
    e = speed.decode(m, hardware(dev, 4, "nvlink4"), plan)
    assert 0.0 < e.roofline_fraction <= 1.0
