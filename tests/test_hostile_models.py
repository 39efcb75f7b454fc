"""Hostile model descriptions through the real entry point (issue 11): config.json values no
model has, a safetensors index with a negative size, a GGUF header with more KV heads than
attention heads. Each is one line naming the key and exit 2; on the old main each was either a
traceback or a plan that "fit" (negative KV, 304 tok/s for a -5-byte checkpoint)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from test_hostile_cli import one_line_error, run_cli

CONFIGS = Path(__file__).parent / "fixtures" / "configs"
LLAMA = json.loads((CONFIGS / "Meta-Llama-3-8B.json").read_text())
MIXTRAL = json.loads((CONFIGS / "Mixtral-8x7B-v0.1.json").read_text())
MISTRAL = {**LLAMA, "model_type": "mistral", "sliding_window": 4096}

CASES = [
    ("experts 10^6", MIXTRAL, {"num_local_experts": 10**6}, "num_local_experts"),
    ("experts -1", MIXTRAL, {"num_local_experts": -1}, "num_local_experts"),
    ("more KV heads than heads", LLAMA, {"num_key_value_heads": 64}, "64 KV heads for 32 attention heads"),
    ("KV heads not a divisor", LLAMA, {"num_key_value_heads": 5}, "5 KV heads for 32 attention heads"),
    ("negative sliding window", MISTRAL, {"sliding_window": -4096}, "sliding_window"),
    ("10^12 layers", LLAMA, {"num_hidden_layers": 10**12}, "num_hidden_layers"),
    ("NaN hidden size", LLAMA, {"hidden_size": float("nan")}, "hidden_size"),
    ("string heads", LLAMA, {"num_attention_heads": "32"}, "num_attention_heads"),
    ("list vocabulary", LLAMA, {"vocab_size": [128256]}, "vocab_size"),
    ("number as torch_dtype", LLAMA, {"torch_dtype": 5}, "torch_dtype = 5 is not a type name"),
    ("list as torch_dtype", LLAMA, {"torch_dtype": ["bfloat16"]}, "torch_dtype"),
]


def test_an_unknown_torch_dtype_is_taken_as_bf16_and_said(tmp_path):
    """Not silently: the weight-format assumption says what was read and what was taken."""
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**LLAMA, "torch_dtype": "float77"}))
    p = run_cli("plan", str(d / "config.json"), "--gpus", "h100-sxm-80gb", "--json")
    assert p.returncode == 0, p.stderr
    quant = json.loads(p.stdout)["assumptions"]["quant"]
    assert quant["value"] == "BF16" and "torch_dtype 'float77'" in quant["why"]


@pytest.mark.parametrize("name,base,change,words", CASES, ids=[c[0] for c in CASES])
def test_hostile_config_json(tmp_path, name, base, change, words):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({**base, **change}, allow_nan=True))
    for cmd in ("fit", "plan"):
        line = one_line_error(run_cli(cmd, str(d / "config.json"), "--gpus", "rtx-4090"))
        assert words in line and "config.json" in line, line


def test_negative_total_size_in_a_safetensors_index(tmp_path):
    d = tmp_path / "m"
    d.mkdir()
    (d / "config.json").write_text(json.dumps(LLAMA))
    (d / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": -5}, "weight_map": {}}))
    line = one_line_error(run_cli("plan", str(d / "config.json"), "--gpus", "rtx-4090"))
    assert "metadata.total_size = -5 is not a checkpoint size" in line


def test_gguf_with_more_kv_heads_than_heads(tmp_path):
    from gguf_writer import write_gguf

    from gpuplan import catalog
    from gpuplan.catalog.schema import ModelSpec

    good = catalog.model("meta-llama/Llama-3.2-1B")
    bad = ModelSpec.model_construct(**{**good.model_dump(), "n_layers": 2, "n_kv_heads": good.n_heads * 2})
    p = tmp_path / "bad.gguf"
    write_gguf(bad, p)
    line = one_line_error(run_cli("fit", str(p), "--gpus", "rtx-4090"))
    assert f"{good.n_heads * 2} KV heads for {good.n_heads} attention heads" in line, line
