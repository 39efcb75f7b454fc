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
])
def test_catalog_entry_is_its_config(fixture, model_id):
    """Every architecture field of the catalog entry is what the published config.json says."""
    got = read_config(CONFIGS / fixture).model_dump()
    want = catalog.model(model_id).model_dump()
    diff = {k: (got[k], want[k]) for k in got if k not in ENTRY_ONLY and got[k] != want[k]}
    assert not diff
