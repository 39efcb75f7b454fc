"""The per-layer description (sources/arch.py) of the families whose memory does not grow like a
plain transformer's, and what reads it: KV per layer, recurrent state, where per-layer
embeddings live, attention FLOPs and KV reads, TP divisibility. The real config.json files of
the models are read from tests/fixtures/configs; llama.cpp agreement is in test_arch_llama_cpp.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuplan import catalog
from gpuplan.perf.memory import device_memory, kv_bytes_per_token, kv_layer_bytes, recurrent_state_bytes
from gpuplan.sources.arch import describe, tp_problem
from gpuplan.sources.hardware import parse_hardware
from gpuplan.sources.hf_config import read_config
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Plan, Split, Workload

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
K128 = 131072
GIB = 2**30


def cfg(name):
    return read_config(CONFIGS / f"{name}.json")


def test_qwen3_next_128k_kv_only_on_its_12_full_attention_layers():
    s = cfg("Qwen3-Next-80B-A3B-Instruct")
    a = describe(s)
    assert (a.count("full"), a.count("recurrent")) == (12, 36)
    assert [ly.index for ly in a.layers if ly.kind == "full"] == list(range(3, 48, 4))
    per_layer = kv_layer_bytes(s, "f16", K128, 1)
    full = 2 * 2 * 256 * 2 * K128  # 2 kv heads x (K 256 + V 256) x 2 bytes per token
    assert [b for b, ly in zip(per_layer, a.layers) if ly.kind == "full"] == [full] * 12
    # a Gated DeltaNet layer: conv state 3 x (2 x 16 x 128 + 4096) and a 32 x 128 x 128 delta-rule
    # state per sequence, in F32 as llama.cpp keeps them; the same at 4K and at 128K
    state = (3 * (2 * 16 * 128 + 4096) + 128 * 4096) * 4
    assert [b for b, ly in zip(per_layer, a.layers) if ly.kind == "recurrent"] == [state] * 36
    assert kv_layer_bytes(s, "f16", 4096, 1)[0] == state
    total = sum(per_layer)
    assert total == 12 * full + 36 * state  # 3.0 GiB of KV + 75 MiB of state per sequence
    assert total / GIB == pytest.approx(3.074, abs=0.001)
    # every layer at full attention would need 4x the KV
    assert kv_bytes_per_token(s) * K128 == 12 * full
    # the state scales with sequences, not with context
    assert recurrent_state_bytes(s) == 36 * state
    assert sum(kv_layer_bytes(s, "f16", 1024, 4)) == 4 * (12 * 2 * 2 * 256 * 2 * 1024 + 36 * state)


def test_llama4_chunked_layers_capped_at_their_chunk():
    s = cfg("Llama-4-Scout-17B-16E-Instruct")
    a = describe(s)
    assert (a.count("chunked"), a.count("full"), a.window) == (36, 12, 8192)
    assert [ly.kind for ly in a.layers[:4]] == ["chunked", "chunked", "chunked", "full"]  # NoPE every 4th
    per_token = 8 * (128 + 128) * 2
    per_layer = kv_layer_bytes(s, "f16", K128, 1)
    assert {b for b, ly in zip(per_layer, a.layers) if ly.kind == "chunked"} == {per_token * 8192}
    assert {b for b, ly in zip(per_layer, a.layers) if ly.kind == "full"} == {per_token * K128}
    # below one chunk every layer holds the whole context
    assert set(kv_layer_bytes(s, "f16", 4096, 1)) == {per_token * 4096}
    # a chunked layer's query reads back to its chunk start, not a sliding window
    att = a.layers[0].attention
    assert [att.attended(n) for n in (1, 8192, 8193, 10000)] == [1, 8192, 1, 1808]
    assert a.windowed_tokens(10000) == 1808


def test_llama4_moe_layout():
    scout, mav = cfg("Llama-4-Scout-17B-16E-Instruct"), cfg("Llama-4-Maverick-17B-128E-Instruct")
    assert all(ly.ffn.kind == "moe" for ly in describe(scout).layers)
    kinds = [ly.ffn.kind for ly in describe(mav).layers]
    assert kinds[:4] == ["dense", "moe", "dense", "moe"] and kinds.count("moe") == 24
    moe = describe(mav).layers[1].ffn
    assert (moe.n_experts, moe.n_active, moe.width, moe.shared_width) == (128, 1, 8192, 8192)
    assert describe(mav).layers[0].ffn.width == 16384


def _plan(engine, n=1):
    return Plan(split=Split.NONE if n == 1 else Split.LAYER, engine=engine, device_ids=tuple(range(n)))


def test_gemma3n_per_layer_embeddings_sit_where_the_engine_keeps_them():
    """llama.cpp marks per_layer_token_embd as an input tensor (llama-arch.cpp LLM_TENSOR_LAYER_INPUT),
    kept in host memory like token_embd; a GPU engine keeps it on the GPU."""
    m = resolve_model(str(CONFIGS / "gemma-3n-E4B-it.json"), "Q8_0")
    a = describe(m.spec)
    vocab, width = a.per_layer_embedding
    assert (vocab, width) == (262144, 256)
    ple_elems = vocab * width * 35
    assert ple_elems == 2_348_810_240
    assert m.weights.embed_bytes == pytest.approx((ple_elems + 262400 * 2048) * 34 / 32, rel=1e-6)  # Q8_0
    hw = parse_hardware("rtx-4090")
    wl = Workload(context=8192)
    llama = device_memory(m, hw, _plan(Engine.LLAMA_CPP), wl)
    vllm = device_memory(m, hw, _plan(Engine.VLLM), wl)
    assert llama[-1].name == "host RAM" and llama[-1].weights >= m.weights.embed_bytes
    # the tied output head: llama.cpp copies token_embd (not the per-layer table) to the GPU that
    # holds the output layer; vLLM's lm_head is the embedding itself, on the GPU with the rest
    tok = 262400 * 2048 * 34 / 32
    assert vllm[0].weights - llama[0].weights == pytest.approx(m.weights.embed_bytes - tok, rel=0.01)


def test_gemma3n_last_layers_reuse_earlier_caches():
    s = cfg("gemma-3n-E4B-it")
    a = describe(s)
    own = [ly.index for ly in a.layers if ly.kv_elements_per_token]
    assert own == list(range(20))  # 35 - num_kv_shared_layers 15; llama.cpp's n_layer_kv_from_start 20
    per_layer = kv_layer_bytes(s, "f16", 32768, 1)
    tok = 2 * (256 + 256) * 2
    assert per_layer[4] == tok * 32768 and per_layer[0] == tok * 512  # global, then sliding (512)
    assert per_layer[20:] == [0.0] * 15


def test_nemotron_h_kv_on_four_attention_blocks_and_mamba_state():
    s = cfg("NVIDIA-Nemotron-Nano-9B-v2")
    a = describe(s)
    assert (a.count("full"), a.count("recurrent"), a.count("ffn")) == (4, 27, 25)
    per_layer = kv_layer_bytes(s, "f16", K128, 1)
    assert sum(b for b, ly in zip(per_layer, a.layers) if ly.kind == "full") == 4 * 8 * 256 * 2 * K128
    rec = a.layers[0].recurrent
    # Mamba-2: d_inner 128 x 80, 8 groups of state 128, conv 4 (vLLM mamba2_state_shape, llama.cpp n_embd_r/s)
    assert (rec.d_inner, rec.n_groups, rec.d_state, rec.n_heads) == (10240, 8, 128, 128)
    assert rec.conv_elements == 3 * (10240 + 2 * 8 * 128)
    assert rec.state_elements == 128 * 80 * 128
    assert all(ly.ffn is None for ly in a.layers if ly.kind != "ffn")


def test_prefill_attention_flops_follow_each_layers_reach():
    s = cfg("Qwen3-Next-80B-A3B-Instruct")
    a = describe(s)
    # 12 full layers attend everything; the 36 linear ones cost a constant per token
    att = a.layers[3].attention
    full = 12 * att.flops_per_key * (K128 * (K128 + 1) // 2)
    rec = 36 * a.layers[0].recurrent.flops_per_token * K128
    assert a.attention_flops(0, K128) == full + rec
    oss = catalog.model("openai/gpt-oss-20b")
    ao = describe(oss)
    sl, fl = ao.layers[0].attention, ao.layers[1].attention
    assert ao.attention_flops(0, 1000) == 12 * sl.flops_per_key * (128 * 129 // 2 + 872 * 128) \
        + 12 * fl.flops_per_key * 1000 * 1001 // 2


def test_tp_divisibility():
    assert tp_problem(catalog.model("meta-llama/Meta-Llama-3-8B"), 8) is None
    assert "divide" in tp_problem(catalog.model("meta-llama/Meta-Llama-3-8B"), 3)
    q3n = cfg("Qwen3-Next-80B-A3B-Instruct")  # 16 heads, 2 KV heads: TP 4 replicates KV heads
    assert tp_problem(q3n, 4) is None and tp_problem(q3n, 8) is None
    nem = cfg("NVIDIA-Nemotron-Nano-9B-v2")  # 40 heads, 8 KV heads, 128 Mamba heads
    assert tp_problem(nem, 8) is None
    assert "attention heads" in tp_problem(nem, 16)


def test_uniform_models_unchanged():
    """A model without per-layer lists is what the flat fields say: Llama 3 8B, Gemma 3's 5:1."""
    l3 = catalog.model("meta-llama/Meta-Llama-3-8B")
    assert {ly.kind for ly in describe(l3).layers} == {"full"}
    g = describe(catalog.model("google/gemma-3-27b-it"))
    assert [ly.kind for ly in g.layers[:6]] == ["sliding"] * 5 + ["full"]
    assert (g.count("sliding"), g.window) == (52, 1024)


def test_fit_reports_the_architectures_kv():
    """`fit` carries it through: Qwen3-Next at 128K holds 12 layers of KV plus the DeltaNet state;
    Llama 4 Scout's chunked layers stop at their 8192-token chunk: llama-server (swa_full off)
    keeps chunk + n_ubatch cells, rounded up to 256 (8192 + 512 = 8704)."""
    import answers

    r = answers.fit("Qwen/Qwen3-Next-80B-A3B-Instruct", "h100-sxm-80gb", quant="Q4_K_M", context=K128)
    kv = sum(d["kv_cache_gb"] for d in r["devices"])
    want = (12 * 2 * 2 * 256 * 2 * K128 + 36 * (3 * 8192 + 128 * 4096) * 4) / 1e9
    assert kv == pytest.approx(want, abs=0.011)
    r = answers.fit("meta-llama/Llama-4-Scout-17B-16E-Instruct", "2x h100-sxm-80gb", quant="Q4_K_M", context=K128)
    kv = sum(d["kv_cache_gb"] for d in r["devices"])
    assert kv == pytest.approx((12 * K128 + 36 * (8192 + 512)) * 8 * 256 * 2 / 1e9, abs=0.011)


def test_every_catalog_model_describes():
    """`gpuplan models show ID` for every entry: the JSON the command prints, per-layer kinds included."""
    from gpuplan.commands.listing import describe as show

    for mid in catalog.models():
        d = show(resolve_model(mid))
        assert d["params_b"] > 0 and sum(d["layer_kinds"].values()) == d["n_layers"], mid
