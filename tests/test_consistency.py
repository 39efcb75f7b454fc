"""Build 4 of issue 9: the answers agree with themselves, over a fixed grid of questions
(8 models x 7 hardware setups x 2 user counts x 2 contexts = 224 plans), and over compare and
builds answers. The properties are in invariants.py; each test here asks one of them of every
answer in the grid, and names the questions that break it."""

from __future__ import annotations

import itertools

import pytest

import answers
import invariants
from gpuplan.sources.hardware import parse_hardware
from gpuplan.sources.resolve import resolve_model

MODELS = [("meta-llama/Meta-Llama-3-8B", "Q4_K_M"), ("meta-llama/Meta-Llama-3-70B", "Q4_K_M"),
          ("Qwen/Qwen3-30B-A3B", "Q4_K_M"), ("mistralai/Mixtral-8x7B-v0.1", "Q4_K_M"),
          ("google/gemma-3-270m-it", None), ("openai/gpt-oss-20b", None),
          ("meta-llama/Llama-3.1-8B-Instruct", "AWQ"), ("Qwen/Qwen3-235B-A22B", "Q4_K_M")]
HARDWARE = ["rtx-4090", "2x rtx-3090", "rtx-4090,rtx-3060-12gb", "apple-m2-max-38c:96gb", "8x h100-sxm-80gb",
            "rtx-4090 + ddr5-6000-2ch:64gb", "4x rtx-3090 nvlink-bridge-3090"]
USERS = [1, 16]
CONTEXTS = [4096, 32768]
GRID = list(itertools.product(MODELS, HARDWARE, USERS, CONTEXTS))


@pytest.fixture(scope="module")
def grid():
    """Every question of the grid with its answer (the JSON `--json` prints) and the model and
    hardware the physics bounds are computed for."""
    out = []
    for (model, quant), gpus, users, context in GRID:
        r = answers.plan(model, gpus, quant=quant, users=users, context=context)
        out.append(((model, quant, gpus, users, context), r, resolve_model(model, quant), parse_hardware(gpus)))
    return out


def _violations(grid, name: str) -> list:
    bad = []
    for q, r, model, hw in grid:
        bad += [(q, v) for v in invariants.check_plan(r, model, hw)[name]]
    return bad


def test_grid_is_big_enough(grid):
    assert len(grid) >= 200
    assert sum(r["fits"] for _q, r, *_ in grid) >= 100  # most questions have an answer to check
    assert sum(not r["fits"] for _q, r, *_ in grid) >= 5  # and some do not fit


def test_every_printed_ratio_is_the_ratio_of_the_printed_figures(grid):
    bad = _violations(grid, "ratios")
    assert not bad, bad[:10]


def test_no_plan_that_does_not_fit_carries_a_speed(grid):
    bad = _violations(grid, "no_speed")
    assert not bad, bad[:10]


def test_no_strategy_is_listed_twice(grid):
    bad = _violations(grid, "unique")
    assert not bad, bad[:10]


def test_commands_agree_with_the_memory_table(grid):
    bad = _violations(grid, "commands")
    assert not bad, bad[:10]
    checked = [r for _q, r, *_ in grid if r["fits"] and "llama.cpp" in r["commands"]]
    assert len(checked) > 50 and any("vllm" in r["commands"] for _q, r, *_ in grid)


def test_prefill_and_decode_never_beat_the_physical_bounds(grid):
    bad = _violations(grid, "physics")
    assert not bad, bad[:10]


def test_the_physics_check_can_fail():
    """The bounds are real: a plan 10x faster than its hardware allows is caught."""
    r = answers.plan("meta-llama/Meta-Llama-3-8B", "rtx-4090", quant="Q4_K_M")
    model, hw = resolve_model("meta-llama/Meta-Llama-3-8B", "Q4_K_M"), parse_hardware("rtx-4090")
    assert invariants.physics(r, model, hw) == []
    fast = {**r, "alternatives": [], "decode_tok_s": r["decode_tok_s"] * 10, "prefill_tok_s": r["prefill_tok_s"] * 100}
    assert len(invariants.physics(fast, model, hw)) >= 2


def test_the_ratio_check_can_fail():
    assert invariants.sentence_ratios("one card gives 100.0 tok/s; two give 90.0 tok/s (0.90x).") == []
    assert invariants.sentence_ratios("one card gives 100.0 tok/s; two give 90.0 tok/s (7.38x).")


# ---------------------------------------------------------------- compare and builds
COMPARES = [dict(scenario="fits-on-one"), dict(scenario="does-not-fit"), dict(scenario="serving"),
            dict(scenario="serving", context=100_000, users=1),
            dict(model="meta-llama/Meta-Llama-3-70B", quant="Q4_K_M",
                 setups=["1x rtx-4090 + ddr5-6000-2ch offload", "2x rtx-3090 nvlink-bridge-3090 row", "rtx-3060-12gb"]),
            dict(model="meta-llama/Meta-Llama-3-8B", quant="Q4_K_M", users=8,
                 setups=["rtx-4090", "2x rtx-4090 replicas", "2x rtx-4090 pcie4-x8 layer"])]


@pytest.mark.parametrize("kw", COMPARES)
def test_compare_is_consistent(kw):
    kw = dict(kw)
    c = answers.compare(kw.pop("model", None), kw.pop("setups", ()), **kw)
    assert invariants.compare_ratios(c) == []
    assert invariants.no_speed_without_fit(c["rows"], "compare") == []
    for row in c["rows"]:
        if row["fits"] and row["verdict"] != "baseline":
            assert row["vs_baseline"]["metric"] == c["compared_on"]


@pytest.mark.parametrize("model, quant, budget, users", [
    ("meta-llama/Meta-Llama-3-70B", "Q4_K_M", 5000, 4), ("meta-llama/Meta-Llama-3-8B", None, None, 1),
    ("Qwen/Qwen3-30B-A3B", "Q4_K_M", 2000, 16)])
def test_builds_are_consistent(model, quant, budget, users):
    b = answers.builds(model, quant=quant, budget=budget, users=users)
    rows = b["builds"] + b["over_budget"]
    assert invariants.no_speed_without_fit(rows, "builds") == []
    for r in b["builds"]:
        assert budget is None or r["price_usd"] <= budget
        assert r["vram_used_gb"] is None or r["vram_used_gb"] <= r["vram_gb"] + 0.05
    assert all(r["price_usd"] > budget for r in b["over_budget"]) if budget else not b["over_budget"]


@pytest.mark.parametrize("context", [2, 3, 100, 700])
def test_builds_on_a_context_shorter_than_the_default_request(context):
    """builds plans its default 512 + 256 request; on a shorter context that request is cut to
    it (and the note says so), so several users get a finite, positive throughput and cost, not a
    division by zero (a 500 the web fuzz found with context 1 and users 2)."""
    b = answers.builds("meta-llama/Meta-Llama-3-8B", quant="Q4_K_M", context=context, users=2)
    fitting = [r for r in b["builds"] if r["fits"]]
    assert fitting and all(r["throughput_tok_s"] > 0 and r["usd_per_million_tokens_3y"] > 0 for r in fitting)
    assert "cut to the" in b["note"] and f"{context:,}-token context" in b["note"]
