"""Acceptance tests for `fit`: KV cache arithmetic (GQA, KV quantization, sliding windows, MLA),
the classic fits / does-not-fit cases, the JSON contract, uneven splits over mixed cards,
Apple unified memory, and agreement with every llama.cpp run in the dev measurement set
(a run that was measured did fit its hardware)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import answers
from gpuplan import catalog
from gpuplan.cli import app
from gpuplan.errors import InputError
from gpuplan.perf.memory import (GIB, device_memory, fits, kv_bytes_per_token, kv_layer_bytes,
                                 kv_type_bytes)
from gpuplan.planner.shares import proportional_shares
from gpuplan.sources.hardware import parse_hardware
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Plan, Split, Workload

L3_8B = "meta-llama/Meta-Llama-3-8B"
L3_70B = "meta-llama/Meta-Llama-3-70B"
DEV_CSV = Path(__file__).resolve().parents[1] / "data" / "measurements" / "dev.csv"

runner = CliRunner()


def spec(mid):
    return catalog.models()[mid]


def kv_total(mid, context, kv="f16"):
    return sum(kv_layer_bytes(spec(mid), kv, context, 1))


# ---------------------------------------------------------------- KV cache arithmetic
def test_llama3_8b_kv_per_token_is_128_kib():
    assert kv_bytes_per_token(spec(L3_8B), "f16") == 128 * 1024


def test_gqa_llama3_8b_kv_at_8k_is_1_gib_not_4():
    s = spec(L3_8B)
    assert s.n_kv_heads == 8 and s.n_heads == 32
    assert kv_total(L3_8B, 8192) == pytest.approx(1 * GIB, rel=1e-9)
    without_gqa = s.n_layers * 2 * s.n_heads * s.head_dim * 2 * 8192
    assert without_gqa == 4 * GIB  # what a tool that ignores GQA would say


def test_gqa_reaches_fit_json():
    r = answers.fit(L3_8B, "rtx-4090", quant="Q4_K_M", context=8192)
    assert r["devices"][0]["kv_cache_gb"] == pytest.approx(GIB / 1e9, abs=0.01)


@pytest.mark.parametrize("kv, ratio", [("q8_0", 34 / 64), ("q4_0", 18 / 64), ("fp8", 0.5), ("f16", 1.0)])
def test_kv_quantization_scales_kv(kv, ratio):
    f16 = kv_bytes_per_token(spec(L3_8B), "f16")
    assert kv_bytes_per_token(spec(L3_8B), kv) / f16 == pytest.approx(ratio, rel=1e-6)


def test_kv_q8_0_about_half_of_f16_in_fit():
    a = answers.fit(L3_8B, "rtx-4090", quant="Q4_K_M", context=32768, users=4)
    b = answers.fit(L3_8B, "rtx-4090", quant="Q4_K_M", context=32768, users=4, kv="q8_0")
    ka, kb = a["devices"][0]["kv_cache_gb"], b["devices"][0]["kv_cache_gb"]
    assert kb / ka == pytest.approx(0.53, abs=0.01)
    assert b["kv_type"] == "q8_0"
    # the weights do not change with the KV type
    assert a["devices"][0]["weights_gb"] == b["devices"][0]["weights_gb"]


def test_kv_type_case_insensitive_and_unknown_rejected():
    assert kv_type_bytes("Q8_0") == kv_type_bytes("q8_0")
    with pytest.raises(InputError, match="q3"):
        kv_type_bytes("q3")


@pytest.mark.parametrize("gemma", ["google/gemma-2-9b-it", "google/gemma-2-27b-it",
                                   "google/gemma-3-12b-it", "google/gemma-3-27b-it"])
def test_sliding_window_shrinks_kv(gemma):
    s = spec(gemma)
    assert s.sliding_window and s.n_sliding_layers
    full = s.model_copy(update={"sliding_window": None, "n_sliding_layers": 0})
    with_window = sum(kv_layer_bytes(s, "f16", 32768, 1))
    without = sum(kv_layer_bytes(full, "f16", 32768, 1))
    assert with_window < 0.8 * without
    # exactly: the global layers keep 32K tokens, the local ones only the window
    per = kv_bytes_per_token(s, "f16") / s.n_layers
    expect = per * ((s.n_layers - s.n_sliding_layers) * 32768 + s.n_sliding_layers * s.sliding_window)
    assert with_window == pytest.approx(expect, rel=1e-9)
    # below the window there is nothing to save
    assert sum(kv_layer_bytes(s, "f16", 512, 1)) == sum(kv_layer_bytes(full, "f16", 512, 1))


@pytest.mark.parametrize("gemma, full_attention", [
    ("google/gemma-3-12b-it", "Qwen/Qwen3-14B"),
    ("google/gemma-3-12b-it", "Qwen/Qwen2.5-14B-Instruct"),
    ("google/gemma-3-27b-it", "Qwen/Qwen3-32B"),
    ("google/gemma-2-27b-it", "Qwen/Qwen2.5-32B-Instruct"),
])
def test_sliding_window_kv_smaller_than_same_size_full_attention_at_32k(gemma, full_attention):
    assert abs(spec(gemma).params_b_published - spec(full_attention).params_b_published) < 6
    assert kv_total(gemma, 32768) < kv_total(full_attention, 32768)


def test_sliding_window_reaches_fit_json():
    g = answers.fit("google/gemma-3-27b-it", "rtx-4090", quant="Q4_K_M", context=32768)
    q = answers.fit("Qwen/Qwen3-32B", "rtx-4090", quant="Q4_K_M", context=32768)
    assert g["devices"][0]["kv_cache_gb"] < 0.5 * q["devices"][0]["kv_cache_gb"]


def test_mla_deepseek_v3_kv_per_token():
    s = spec("deepseek-ai/DeepSeek-V3")
    mha = s.n_layers * 2 * s.n_heads * s.head_dim * 2
    mla = kv_bytes_per_token(s, "f16")
    assert mla == s.n_layers * (s.mla_kv_lora_rank + s.mla_qk_rope_head_dim) * 2  # 70,272 B
    assert mla < mha / 50


# ---------------------------------------------------------------- fits / does not fit
@pytest.mark.parametrize("gpu", ["rtx-3090", "rtx-4090"])
def test_llama3_70b_q4_does_not_fit_one_24gb_card(gpu):
    r = answers.fit(L3_70B, gpu, quant="Q4_K_M", context=8192)
    assert r["fits"] is False
    card = r["devices"][0]
    assert card["total_gb"] > card["capacity_gb"]
    assert card["weights_gb"] > 38  # ~42.5 GB of Q4_K_M weights


def test_llama3_70b_q4_fits_two_3090s():
    r = answers.fit(L3_70B, "2x rtx-3090", quant="Q4_K_M", context=8192)
    assert r["fits"] is True
    gpus = [d for d in r["devices"] if d["name"] == "rtx-3090"]
    assert len(gpus) == 2 and all(d["fits"] for d in gpus)
    assert r["plan"]["split"] == "layer"
    assert r["max_context"] >= 8192


def test_llama3_8b_q4_fits_4090_with_room():
    r = answers.fit(L3_8B, "rtx-4090", quant="Q4_K_M", context=8192)
    assert r["fits"] is True
    d = r["devices"][0]
    assert d["free_gb"] > 15
    assert d["capacity_gb"] - d["total_gb"] > 15
    assert 4.3 < d["weights_gb"] < 5.1  # Q4_K_M file is ~4.9 GB incl. embeddings


def test_max_context_shrinks_when_it_does_not_fit():
    r = answers.fit("meta-llama/Llama-3.1-8B", "rtx-3060-12gb", quant="Q8_0", context=131072)
    assert r["fits"] is False
    assert 0 < r["max_context"] < 131072
    ok = answers.fit("meta-llama/Llama-3.1-8B", "rtx-3060-12gb", quant="Q8_0", context=r["max_context"])
    assert ok["fits"] is True
    over = answers.fit("meta-llama/Llama-3.1-8B", "rtx-3060-12gb", quant="Q8_0", context=r["max_context"] + 64)
    assert over["fits"] is False


# ---------------------------------------------------------------- JSON contract
DEVICE_KEYS = {"weights_gb", "kv_cache_gb", "overhead_gb", "total_gb", "capacity_gb"}


def _cli_json(args):
    r = runner.invoke(app, args)
    assert r.exit_code == 0, (r.stdout, r.exception)
    return json.loads(r.stdout)


def test_fit_json_keys():
    d = _cli_json(["fit", L3_8B, "--quant", "Q4_K_M", "--gpus", "rtx-4090", "--json"])
    assert {"fits", "devices", "max_context"} <= set(d)
    assert isinstance(d["fits"], bool) and isinstance(d["max_context"], int)
    assert d["devices"] and all(DEVICE_KEYS <= set(x) for x in d["devices"])
    for x in d["devices"]:
        assert x["total_gb"] == pytest.approx(x["weights_gb"] + x["kv_cache_gb"] + x["overhead_gb"], abs=0.02)
    assert d == answers.fit(L3_8B, "rtx-4090", quant="Q4_K_M")  # the CLI is a thin layer over the API


def test_gpus_json_list_of_objects_with_id():
    d = _cli_json(["gpus", "--json"])
    assert isinstance(d, list) and len(d) > 20
    assert all(isinstance(x, dict) and x.get("id") for x in d)
    ids = {x["id"] for x in d}
    assert {"rtx-4090", "rtx-3090", "rtx-3060-12gb", "apple-m2-max-38c"} <= ids


def test_gpus_json_filter():
    d = _cli_json(["gpus", "4090", "--json"])
    assert d and all("4090" in x["id"] or "4090" in x["name"] for x in d)


def test_models_json_list_of_objects_with_id():
    d = _cli_json(["models", "--json"])
    assert isinstance(d, list) and len(d) > 20
    assert all(isinstance(x, dict) and x.get("id") for x in d)
    assert {L3_8B, L3_70B, "deepseek-ai/DeepSeek-V3"} <= {x["id"] for x in d}


# ---------------------------------------------------------------- mixed cards
MIXED = "rtx-4090,rtx-3060-12gb"


@pytest.mark.parametrize("model, quant, context", [
    (L3_8B, "Q4_K_M", 8192),
    (L3_70B, "Q3_K_S", 8192),
    ("Qwen/Qwen2.5-32B-Instruct", "Q6_K", 8192),
])
def test_mixed_cards_shares_proportional_to_room(model, quant, context):
    m = resolve_model(model, quant)
    hw = parse_hardware(MIXED)
    wl = Workload(context=context)
    plan = Plan(split=Split.LAYER, engine=Engine.LLAMA_CPP, device_ids=(0, 1))
    shares = proportional_shares(m, hw, plan, wl)
    assert len(shares) == 2 and sum(shares) == pytest.approx(1.0, abs=1e-3)
    assert shares[0] > 0.6 and shares[1] < 0.4  # uneven, the 24 GB card takes more
    # proportional to room: the share ratio follows the capacity ratio after fixed costs
    # (24 GB / 12 GB = 2, a little more since the 12 GB card also holds the output head)
    assert 2.0 <= shares[0] / shares[1] <= 2.6
    mem = device_memory(m, hw, replace_shares(plan, shares), wl)
    assert fits(mem)
    # same shares through api.fit, and both cards fit
    r = answers.fit(model, MIXED, quant=quant, context=context)
    assert r["plan"]["shares"] == pytest.approx(list(shares), abs=1e-3)
    assert r["fits"] is True
    cards = r["devices"][:2]
    assert [c["name"] for c in cards] == ["rtx-4090", "rtx-3060-12gb"]
    assert all(c["fits"] for c in cards)
    # room left is balanced: neither card is near full while the other is near empty
    frac = [c["free_gb"] / c["capacity_gb"] for c in cards]
    assert abs(frac[0] - frac[1]) < 0.25


def replace_shares(plan, shares):
    from dataclasses import replace

    return replace(plan, shares=tuple(shares))


def test_even_split_would_overflow_the_small_card():
    """Why the shares matter: 70B Q3_K_S split evenly overflows the 12 GB card."""
    m = resolve_model(L3_70B, "Q3_K_S")
    hw = parse_hardware(MIXED)
    even = Plan(split=Split.LAYER, engine=Engine.LLAMA_CPP, device_ids=(0, 1), shares=(0.5, 0.5))
    mem = device_memory(m, hw, even, Workload(context=8192))
    assert mem[1].free < 0 < mem[0].free


# ---------------------------------------------------------------- Apple unified memory
def test_apple_memory_option_times_gpu_share():
    dev = catalog.device("apple-m2-max-38c")
    r = answers.fit(L3_8B, "apple-m2-max-38c:96gb", quant="Q4_K_M")
    chip = r["devices"][0]
    assert chip["name"] == "apple-m2-max-38c"
    assert chip["capacity_gb"] == pytest.approx(96 * GIB * dev.gpu_share(96) / 1e9, abs=0.01)
    r64 = answers.fit(L3_8B, "apple-m2-max-38c:64gb", quant="Q4_K_M")
    # macOS lets the GPU wire a smaller share of a smaller memory (catalog gpu_share.yaml)
    assert r64["devices"][0]["capacity_gb"] == pytest.approx(64 * GIB * dev.gpu_share(64) / 1e9, abs=0.01)
    assert dev.gpu_share(64) < dev.gpu_share(96) == dev.gpu_share_default


def test_apple_100gb_is_not_an_option():
    with pytest.raises(InputError, match=r"100"):
        answers.fit(L3_8B, "apple-m2-max-38c:100gb", quant="Q4_K_M")
    with pytest.raises(InputError):
        parse_hardware("apple-m2-max-38c:100gb")


def test_apple_unified_memory_is_not_counted_twice():
    r = answers.fit(L3_8B, "apple-m2-max-38c:96gb", quant="Q4_K_M")
    assert sum(d["capacity_gb"] for d in r["devices"]) <= 96 * GIB / 1e9 + 0.01


def test_llama3_70b_q4_does_not_fit_a_32gb_mac():
    r = answers.plan(L3_70B, "apple-m2-max-38c:32gb", quant="Q4_K_M", context=8192)
    used = sum(m["total_gb"] for m in r["memory"])
    assert r["fits"] is False or used <= 32 * GIB / 1e9


# ---------------------------------------------------------------- the dev measurement set
def _dev_rows():
    from gpuplan.bench.measurements import read_measurements

    rows, errors = read_measurements([str(DEV_CSV)])
    assert not errors
    return [(i, m) for i, m in enumerate(rows) if m is not None]


# llama-65b F16 on 6 cards, row split, Dec 2023 `./main` with a ~500-token prompt and 1024 generated
# tokens. The row does not record n_ctx: ./main's default then was 512 (gpt_params.n_ctx), and it
# generated past it by shifting the context. At 512 cells the run fits; at depth + n_gen = 1524
# (what the row's tokens would need without a shift) the main GPU, which holds the whole KV cache
# under row split, is 0.5 GB short.
CONTEXT_SHIFTED = {320: 512, 336: 512}


def _fits_row(m, context=None):
    from dataclasses import replace as _replace

    from gpuplan.perf.predict import row_setup

    model, hw, plan, wl = row_setup(m)
    if context is not None:
        wl = _replace(wl, context=context)
    mem = device_memory(model, hw, plan, wl)
    return fits(mem), mem, hw


def test_every_run_in_dev_set_fits_its_hardware_with_its_engine():
    """Every published run was measured, so it fit: with the engine it ran on (llama.cpp,
    TensorRT-LLM, vLLM, ExLlamaV2, each by the rules of its version at the row's date) at the
    context it used."""
    rows = _dev_rows()
    assert len(rows) > 500
    kinds, engines, bad = set(), set(), []
    for i, m in rows:
        ok, mem, hw = _fits_row(m, CONTEXT_SHIFTED.get(i))
        kinds.add(hw.devices[0].kind)
        engines.add(m.engine)
        if not ok:
            worst = min(mem, key=lambda d: d.free)
            bad.append(f"row {i}: {m.engine} {m.model} {m.quant} on {m.n_gpus}x {m.gpu} {m.split} depth={m.n_depth} "
                       f"n_prompt={m.n_prompt} n_gen={m.n_gen} batch={m.batch}: {worst.name} short by "
                       f"{-worst.free / 1e9:.2f} GB")
    assert not bad, "measured runs our memory model says do not fit:\n" + "\n".join(bad)
    assert {"gpu", "apple"} <= kinds
    assert engines >= {"llama.cpp", "tensorrt-llm", "vllm", "exllamav2"}


@pytest.mark.parametrize("index", sorted(CONTEXT_SHIFTED))
def test_row_split_65b_runs_fit_at_main_default_context(index):
    rows = dict(_dev_rows())
    m = rows[index]
    assert m.model == "huggyllama/llama-65b" and m.split == "row" and m.date == "2023-12"
    assert _fits_row(m, 512)[0]
    assert not _fits_row(m)[0]  # depth + n_gen = 1524 cells of KV on the main GPU would not
