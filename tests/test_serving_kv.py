"""Issue 9, vLLM KV reservation: paged engines hold what each sequence has so far (prompt and
output), not max_model_len per sequence. 32 chat users on 2x RTX 4090 with BF16 Llama 3.1 8B at
8K max context all run at once (before: 4 sequences per card)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gpuplan.cli import app
from gpuplan.perf.serving_engines import kv_tokens_held
from gpuplan.types import Engine


def _plan(*args):
    r = CliRunner().invoke(app, ["plan", "meta-llama/Llama-3.1-8B-Instruct", "--quant", "BF16", "--gpus", "2x rtx-4090",
                                 "--context", "8192", "--users", "32", "--json", *args])
    assert r.exit_code == 0, r.output
    return json.loads(r.output)


def test_32_chat_users_on_two_4090s_all_run_at_once_in_vllm():
    res = _plan("--engine", "vllm")
    plans = [res] + [a for a in res["alternatives"] if a["fits"]]
    assert plans
    for p in plans:
        per = -(-32 // p["plan"]["replicas"])
        assert p["concurrent_per_replica"] >= min(per, 32), (p["plan"]["strategy"], p["concurrent_per_replica"])
        for m in p["memory"]:
            assert m["total_gb"] <= m["capacity_gb"]
    # the command starts as many sequences as the memory table holds
    assert "--max-num-seqs 32" in res["commands"]["vllm"] or "--max-num-seqs 16" in res["commands"]["vllm"]


def test_held_tokens_by_engine():
    assert kv_tokens_held(Engine.VLLM, 8192, 512, 256) == 768
    assert kv_tokens_held(Engine.SGLANG, 1024, 900, 400) == 1024  # never past the context
    assert kv_tokens_held(Engine.LLAMA_CPP, 8192, 512, 256) == 8192  # a slot reserves its context
