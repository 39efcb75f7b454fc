"""config.json reading against the catalog, safetensors index totals, and bad inputs.

fixtures/configs/*.json are the real config.json files of the repositories they are named after
(meta-llama/Meta-Llama-3-8B, mistralai/Mixtral-8x7B-v0.1, deepseek-ai/DeepSeek-V3,
Qwen/Qwen3-30B-A3B, google/gemma-3-27b-it, openai/gpt-oss-20b).
"""

import json
import shutil
from pathlib import Path

import pytest

from gpuplan import catalog
from gpuplan.errors import InputError
from gpuplan.sources.hf_config import read_config, safetensors_weights
from gpuplan.sources.resolve import resolve_model

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
FIELDS = ("architecture", "n_layers", "hidden_size", "n_heads", "n_kv_heads", "head_dim", "intermediate_size",
          "vocab_size", "tied_embeddings", "attention_bias", "n_experts", "n_experts_active", "moe_intermediate_size",
          "n_shared_experts", "n_dense_layers", "sliding_window", "n_sliding_layers", "mla_kv_lora_rank",
          "mla_q_lora_rank", "mla_qk_rope_head_dim", "mla_qk_nope_head_dim", "mla_v_head_dim", "max_context",
          "native_dtype")


@pytest.mark.parametrize("fixture,model_id", [
    ("Meta-Llama-3-8B.json", "meta-llama/Meta-Llama-3-8B"),
    ("Mixtral-8x7B-v0.1.json", "mistralai/Mixtral-8x7B-v0.1"),
    ("DeepSeek-V3.json", "deepseek-ai/DeepSeek-V3"),
    ("Qwen3-30B-A3B.json", "Qwen/Qwen3-30B-A3B"),
    ("gemma-3-27b-it.json", "google/gemma-3-27b-it"),
    ("gpt-oss-20b.json", "openai/gpt-oss-20b"),
])
def test_config_matches_catalog(fixture, model_id):
    got = read_config(CONFIGS / fixture)
    want = catalog.model(model_id)
    diff = {f: (getattr(got, f), getattr(want, f)) for f in FIELDS if getattr(got, f) != getattr(want, f)}
    assert not diff


def _model_dir(tmp_path, fixture, total_size=None):
    d = tmp_path / fixture.removesuffix(".json")
    d.mkdir()
    shutil.copy(CONFIGS / fixture, d / "config.json")
    if total_size is not None:
        (d / "model.safetensors.index.json").write_text(
            json.dumps({"metadata": {"total_size": total_size}, "weight_map": {}}))
    return d


def test_directory_and_safetensors_index(tmp_path):
    total = 16_060_522_496  # Meta-Llama-3-8B/model.safetensors.index.json metadata.total_size
    d = _model_dir(tmp_path, "Meta-Llama-3-8B.json", total)
    assert read_config(d).n_layers == 32
    w = safetensors_weights(d, read_config(d))
    assert w.total_bytes == total and w.origin == "safetensors"
    assert len(set(w.layer_bytes)) == 1 and w.embed_bytes == pytest.approx(w.output_bytes, rel=1e-6)
    m = resolve_model(str(d))
    assert m.quant.id == "BF16" and m.weights.total_bytes == total
    q = resolve_model(str(d / "config.json"), "Q4_K_M")
    assert q.weights.total_bytes / 1e9 == pytest.approx(4.92, rel=0.02)


def test_moe_index_keeps_expert_share(tmp_path):
    d = _model_dir(tmp_path, "Mixtral-8x7B-v0.1.json", 93_405_585_408)
    w = safetensors_weights(d, read_config(d))
    assert w.total_bytes == 93_405_585_408
    assert 0.9 < w.layer_expert_bytes[0] / w.layer_bytes[0] < 1


def test_no_index_means_estimate(tmp_path):
    d = _model_dir(tmp_path, "Qwen3-30B-A3B.json")
    assert safetensors_weights(d, read_config(d)) is None
    assert resolve_model(str(d)).weights.origin == "estimate"


def _bad(path, match):
    with pytest.raises(InputError, match=match) as e:
        read_config(path)
    assert str(path) in str(e.value) and "\n" not in str(e.value)


def test_not_json(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("{ this is not json")
    _bad(p, "not JSON")


def test_missing_fields_are_named(tmp_path):
    cfg = json.loads((CONFIGS / "Meta-Llama-3-8B.json").read_text())
    del cfg["hidden_size"], cfg["vocab_size"]
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg))
    _bad(p, "hidden_size, vocab_size")


def test_unsupported_architecture(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "mamba", "hidden_size": 768}))
    _bad(p, "model_type 'mamba' is not supported; accepted: llama")


def test_missing_config(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_config(tmp_path)
    with pytest.raises(InputError, match="no config.json"):
        resolve_model(str(tmp_path))


# ---------------------------------------------------------------- families and hostile input
def _write(tmp_path, cfg, name="config.json"):
    p = tmp_path / name
    p.write_text(json.dumps(cfg))
    return p


LLAMA = json.loads((CONFIGS / "Meta-Llama-3-8B.json").read_text())


@pytest.mark.parametrize("key,value,match", [
    ("num_hidden_layers", -3, "outside 1..1,000"),
    ("num_hidden_layers", 0, "outside 1..1,000"),
    ("num_hidden_layers", 10**12, "outside 1..1,000"),
    ("num_hidden_layers", "32", "not a whole number"),
    ("num_hidden_layers", 32.5, "not a whole number"),
    ("num_hidden_layers", True, "not a whole number"),
    ("num_hidden_layers", [32], "not a whole number"),
    ("hidden_size", float("nan"), "not a whole number"),
    ("hidden_size", float("inf"), "not a whole number"),
    ("hidden_size", 10**9, "outside 1..1,000,000"),
    ("num_key_value_heads", 0, "outside 1..100,000"),
    ("vocab_size", -1, "outside 1..100,000,000"),
    ("intermediate_size", {"a": 1}, "not a whole number"),
    ("max_position_embeddings", 10**15, "outside"),
    ("tie_word_embeddings", "yes", "not true or false"),
])
def test_hostile_values_are_one_line(tmp_path, key, value, match):
    cfg = {**LLAMA, key: value}
    p = tmp_path / "config.json"
    p.write_text(json.dumps(cfg, allow_nan=True))
    _bad(p, f"{key} = .*{match}")


def test_hostile_family_fields_are_one_line(tmp_path):
    q3n = json.loads((CONFIGS / "Qwen3-Next-80B-A3B-Instruct.json").read_text())
    for key, value in (("linear_num_value_heads", -1), ("num_experts", 10**9), ("full_attention_interval", 0),
                       ("num_experts_per_tok", 513), ("linear_conv_kernel_dim", "4")):
        p = _write(tmp_path, {**q3n, key: value})
        with pytest.raises(InputError) as e:
            read_config(p)
        assert str(p) in str(e.value) and "\n" not in str(e.value), (key, e.value)
    nem = json.loads((CONFIGS / "NVIDIA-Nemotron-Nano-9B-v2.json").read_text())
    _bad(_write(tmp_path, {**nem, "hybrid_override_pattern": "M*"}), "hybrid_override_pattern")


def test_hostile_config_through_the_command_line(tmp_path):
    import subprocess
    import sys

    p = _write(tmp_path, {**LLAMA, "num_hidden_layers": 10**12})
    r = subprocess.run([sys.executable, "-m", "gpuplan.cli", "fit", str(p), "--gpus", "rtx-4090"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1
    assert "num_hidden_layers" in r.stderr and "Traceback" not in r.stderr


def test_huge_or_deep_json_is_refused(tmp_path):
    p = tmp_path / "config.json"
    p.write_text("[" * 100_000 + "]" * 100_000)
    _bad(p, "not JSON|not a config")
    p.write_text(json.dumps({**LLAMA, "pad": "x" * (17 * 2**20)}))
    _bad(p, "is not a config.json")


def test_unknown_model_type_with_usual_fields_reads_with_a_note(tmp_path):
    s = read_config(_write(tmp_path, {**LLAMA, "model_type": "brand_new_llm"}))
    assert s.architecture == "llama" and s.n_layers == 32 and "brand_new_llm" in s.note


def test_multimodal_wrappers_read_their_text_model():
    scout = read_config(CONFIGS / "Llama-4-Scout-17B-16E-Instruct.json")
    assert (scout.architecture, scout.n_layers, scout.hidden_size, scout.vocab_size) == ("llama4", 48, 5120, 202048)
    g = read_config(CONFIGS / "gemma-3n-E4B-it.json")
    assert (g.architecture, g.n_layers, g.kv_shared_layers, g.per_layer_embedding_dim) == ("gemma3n", 35, 15, 256)


ENTRY_ONLY = {"id", "name", "source", "aliases", "note", "params_b_published", "active_params_b_published"}


@pytest.mark.parametrize("fixture,model_id", [
    ("Qwen3-Next-80B-A3B-Instruct.json", "Qwen/Qwen3-Next-80B-A3B-Instruct"),
    ("Llama-4-Scout-17B-16E-Instruct.json", "meta-llama/Llama-4-Scout-17B-16E-Instruct"),
    ("Llama-4-Maverick-17B-128E-Instruct.json", "meta-llama/Llama-4-Maverick-17B-128E-Instruct"),
    ("gemma-3n-E4B-it.json", "google/gemma-3n-E4B-it"),
    ("gemma-3n-E2B-it.json", "google/gemma-3n-E2B-it"),
    ("NVIDIA-Nemotron-Nano-9B-v2.json", "nvidia/NVIDIA-Nemotron-Nano-9B-v2"),
    ("Qwen3-4B-Instruct-2507.json", "Qwen/Qwen3-4B-Instruct-2507"),
    ("Qwen3-30B-A3B-Instruct-2507.json", "Qwen/Qwen3-30B-A3B-Instruct-2507"),
    ("Qwen3-235B-A22B-Instruct-2507.json", "Qwen/Qwen3-235B-A22B-Instruct-2507"),
    ("Qwen3-Coder-30B-A3B-Instruct.json", "Qwen/Qwen3-Coder-30B-A3B-Instruct"),
    ("Qwen3-Coder-480B-A35B-Instruct.json", "Qwen/Qwen3-Coder-480B-A35B-Instruct"),
    ("Qwen2.5-Coder-32B-Instruct.json", "Qwen/Qwen2.5-Coder-32B-Instruct"),
    ("DeepSeek-R1-Distill-Qwen-32B.json", "deepseek-ai/DeepSeek-R1-Distill-Qwen-32B"),
    ("DeepSeek-R1-Distill-Llama-8B.json", "deepseek-ai/DeepSeek-R1-Distill-Llama-8B"),
    ("GLM-4.5.json", "zai-org/GLM-4.5"),
    ("GLM-4.5-Air.json", "zai-org/GLM-4.5-Air"),
    ("GLM-4.6.json", "zai-org/GLM-4.6"),
    ("Kimi-K2-Instruct.json", "moonshotai/Kimi-K2-Instruct"),
    ("MiniMax-M2.json", "MiniMaxAI/MiniMax-M2"),
    ("gpt-oss-120b.json", "openai/gpt-oss-120b"),
    ("Phi-4-mini-instruct.json", "microsoft/Phi-4-mini-instruct"),
    ("SmolLM3-3B.json", "HuggingFaceTB/SmolLM3-3B"),
    ("Mistral-Small-3.2-24B-Instruct-2506.json", "mistralai/Mistral-Small-3.2-24B-Instruct-2506"),
    ("ERNIE-4.5-21B-A3B-PT.json", "baidu/ERNIE-4.5-21B-A3B-PT"),
    ("Hunyuan-A13B-Instruct.json", "tencent/Hunyuan-A13B-Instruct"),
])
def test_catalog_entry_is_its_config(fixture, model_id):
    """Every architecture field of the catalog entry is what the published config.json says."""
    got = read_config(CONFIGS / fixture).model_dump()
    want = catalog.model(model_id).model_dump()
    diff = {k: (got[k], want[k]) for k in got if k not in ENTRY_ONLY and got[k] != want[k]}
    assert not diff


# ---------------------------------------------------------------- published parameter counts
# (fixture, catalog id, published total B, published active B or None, how the publisher counts active,
#  where the figures come from). Active conventions: "all" counts every weight a token multiplies or
# looks up (Mistral's 12.9 B for Mixtral); "no_embed_head" leaves out the embedding and output head
# (GLM, MiniMax, Qwen3-Next); "no_embed" leaves out the embedding only (OpenAI for gpt-oss).
# A published figure is met within 1 %, or within half a unit of its last digit where it is given to
# fewer digits than that (Qwen3-Next's "3B"). Qwen's 3.3 B for the 30B-A3B models cuts 3.35 B short
# (its total, 30.5 B, and non-embedding 29.9 B agree with this count to 0.1 %), so those three
# active counts are held to 2 %.
PUBLISHED = [
    ("Meta-Llama-3-8B.json", 8.03, None, None, "model card"),
    ("Mixtral-8x7B-v0.1.json", 46.7, 12.9, "all", "Mistral AI announcement"),
    ("Qwen3-30B-A3B.json", 30.5, 3.3, "all~2", "model card: 30.5B in total and 3.3B activated"),
    ("gpt-oss-20b.json", 20.9, 3.61, "no_embed", "OpenAI model card table"),
    ("gpt-oss-120b.json", 116.8, 5.13, "no_embed", "OpenAI model card table"),
    ("Qwen3-Next-80B-A3B-Instruct.json", 80, 3, "no_embed_head", "model card: 80B in total and 3B activated"),
    ("Llama-4-Maverick-17B-128E-Instruct.json", 400, 17, "all", "Meta model card (text model; vision adds ~1 B)"),
    ("NVIDIA-Nemotron-Nano-9B-v2.json", 8.89, None, None, "Hugging Face model page parameter count"),
    ("gemma-3n-E4B-it.json", 6.9, None, None, "LM Studio's text-only GGUF listing"),
    ("Qwen3-4B-Instruct-2507.json", 4.0, None, None, "model card: 4.0B"),
    ("Qwen3-30B-A3B-Instruct-2507.json", 30.5, 3.3, "all~2", "model card"),
    ("Qwen3-235B-A22B-Instruct-2507.json", 235, 22, "all", "model card"),
    ("Qwen3-Coder-30B-A3B-Instruct.json", 30.5, 3.3, "all~2", "model card"),
    ("Qwen3-Coder-480B-A35B-Instruct.json", 480, 35, "all", "model card"),
    ("Qwen2.5-Coder-32B-Instruct.json", 32.5, None, None, "model card: 32.5B"),
    ("DeepSeek-R1-Distill-Qwen-32B.json", 32.5, None, None, "its base Qwen2.5-32B's card: 32.5B"),
    ("DeepSeek-R1-Distill-Llama-8B.json", 8.03, None, None, "its base Llama 3.1 8B's card"),
    ("GLM-4.5.json", 355, 32, "no_embed_head", "Z.ai model card"),
    ("GLM-4.5-Air.json", 106, 12, "no_embed_head", "Z.ai model card"),
    ("GLM-4.6.json", 355, 32, "no_embed_head", "Z.ai model card (GLM-4.5's architecture)"),
    ("MiniMax-M2.json", 230, 10, "no_embed_head", "MiniMax model card"),
    ("Phi-4-mini-instruct.json", 3.8, None, None, "Microsoft model card: 3.8B"),
    ("SmolLM3-3B.json", 3.08, None, None, "Hugging Face model page parameter count"),
    ("ERNIE-4.5-21B-A3B-PT.json", 21.8, 3, "all", "checkpoint count 21.8 B; Baidu's card: 3B activated"),
    ("Hunyuan-A13B-Instruct.json", 80, 13, "all", "Tencent model card: 80B total, 13B active"),
]


def _close(ours: float, published: float, rel: float = 0.01) -> bool:
    text = f"{published:g}"
    decimals = len(text.split(".")[1]) if "." in text else 0
    half_unit = 0.5 * 10.0 ** -decimals  # "3" -> 0.5, "3.3" -> 0.05
    return abs(ours - published) <= max(rel * published, half_unit) + 1e-9


@pytest.mark.parametrize("fixture,total,active,convention,source", PUBLISHED)
def test_parameter_counts_match_published(fixture, total, active, convention, source):
    from gpuplan.sources.tensors import param_count, tensor_list

    spec = read_config(CONFIGS / fixture)
    t, a = param_count(spec)
    assert _close(t / 1e9, total), (t / 1e9, total, source)
    if active is None:
        return
    tables = {x.kind: x.n_elements for x in tensor_list(spec) if x.layer is None and x.kind in ("token_embd", "output")}
    embed = tables.get("token_embd", 0)
    head = tables.get("output", embed)  # a tied head is the embedding, counted once
    convention, _, rel = convention.partition("~")
    drop = {"all": 0, "no_embed": embed, "no_embed_head": embed + (head if "output" in tables else 0)}[convention]
    assert _close((a - drop) / 1e9, active, float(rel or 1) / 100), ((a - drop) / 1e9, active, source)


def test_close_is_strict_where_the_figure_is():
    assert _close(30.4, 30.5) and not _close(30.1, 30.5)
    assert _close(3.4, 3) and not _close(3.6, 3) and _close(80.7, 80) and not _close(81, 80)
    assert not _close(3.36, 3.3) and _close(3.34, 3.3)


# ---------------------------------------------------------------- KV cache per family, by hand
# Bytes per sequence of f16 KV at 32,768 tokens, from each config's numbers without gpuplan:
# layers-with-cache x (K + V elements) x 2 bytes x tokens held.
CTX = 32768
KV_BY_HAND = {
    "Meta-Llama-3-8B.json": 32 * 2 * 8 * 128 * 2 * CTX,  # GQA 8 KV heads
    "Qwen3-Next-80B-A3B-Instruct.json": 12 * 2 * 2 * 256 * 2 * CTX,  # 12 full layers of 48
    "Llama-4-Scout-17B-16E-Instruct.json": (12 * CTX + 36 * 8192) * 2 * 8 * 128 * 2,  # chunk 8192 on 36
    "gpt-oss-20b.json": (12 * CTX + 12 * 128) * 2 * 8 * 64 * 2,  # window 128 on every other layer
    "gemma-3-27b-it.json": (10 * CTX + 52 * 1024) * 2 * 16 * 128 * 2,  # 5 local (1024) : 1 global
    "gemma-3n-E4B-it.json": (4 * CTX + 16 * 512) * 2 * 2 * 256 * 2,  # 20 own caches, 1 in 5 global
    "DeepSeek-V3.json": 61 * (512 + 64) * 2 * CTX,  # MLA latent + RoPE key
    "Kimi-K2-Instruct.json": 61 * (512 + 64) * 2 * CTX,
    "NVIDIA-Nemotron-Nano-9B-v2.json": 4 * 2 * 8 * 128 * 2 * CTX,  # 4 attention blocks of 56
    "GLM-4.5.json": 92 * 2 * 8 * 128 * 2 * CTX,
    "MiniMax-M2.json": 62 * 2 * 8 * 128 * 2 * CTX,
    "Phi-4-mini-instruct.json": 32 * 2 * 8 * 128 * 2 * CTX,  # its 262144 window never bites
    "ERNIE-4.5-21B-A3B-PT.json": 28 * 2 * 4 * 128 * 2 * CTX,
    "Hunyuan-A13B-Instruct.json": 32 * 2 * 8 * 128 * 2 * CTX,
    "Qwen3-235B-A22B-Instruct-2507.json": 94 * 2 * 4 * 128 * 2 * CTX,
}
STATE_BY_HAND = {  # recurrent state per sequence, F32: layers x (conv + SSM state) x 4 bytes
    "Qwen3-Next-80B-A3B-Instruct.json": 36 * (3 * (4096 + 2 * 16 * 128) + 128 * 4096) * 4,
    "NVIDIA-Nemotron-Nano-9B-v2.json": 27 * (3 * (128 * 80 + 2 * 8 * 128) + 128 * 128 * 80) * 4,
}


@pytest.mark.parametrize("fixture", sorted(KV_BY_HAND))
def test_kv_per_family_by_hand(fixture):
    from gpuplan.perf.memory import kv_layer_bytes, recurrent_state_bytes

    spec = read_config(CONFIGS / fixture)
    state = recurrent_state_bytes(spec)
    assert state == STATE_BY_HAND.get(fixture, 0)
    assert sum(kv_layer_bytes(spec, "f16", CTX, 1)) - state == KV_BY_HAND[fixture]
