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
