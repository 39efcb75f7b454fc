"""Each defect issue 9 found, as a user meets it: the real command line with --json (the contract
other tools read), asserting what the answer must say. Every test here failed on the main branch
the issue was filed against (see the issue's list; run with PYTHONPATH pointing at that tree)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
L3_8B, L3_70B = "meta-llama/Meta-Llama-3-8B", "meta-llama/Meta-Llama-3-70B"


def run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.environ.get("GPUPLAN_SRC", str(ROOT / "src")), GPUPLAN_CALIBRATION="",
               COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "gpuplan.cli", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def ask(*args: str) -> dict:
    p = run(*args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


# ---------------------------------------------------------------- defaults that gave false verdicts
def test_f16_on_a_geforce_card_is_llama_cpp_and_the_verdict_is_true():
    r = ask("fit", L3_8B, "--quant", "F16", "--gpus", "1x rtx-4080")
    assert r["engine"] == "llama.cpp"
    assert r["assumptions"]["engine"]["source"] == "default" and "GGUF" in r["assumptions"]["engine"]["why"]
    dev = r["devices"][0]
    if "weights alone" in r["verdict"]:
        assert dev["weights_gb"] > dev["capacity_gb"]
    # another engine's different verdict is said
    other = {o["engine"]: o for o in r["assumptions"]["other_engines"]}
    assert "vllm" in other and other["vllm"]["fits"] != r["fits"]


def test_no_quant_means_the_native_format_gpt_oss():
    r = ask("plan", "openai/gpt-oss-120b", "--gpus", "1x h100-sxm-80gb")
    assert r["quant"].startswith("MXFP4") and r["fits"]
    q = r["assumptions"]["quant"]
    assert q["source"] == "default" and "MXFP4" in q["why"]


def test_no_quant_means_the_native_format_deepseek_fp8_on_8_gpus():
    r = ask("plan", "deepseek-ai/DeepSeek-V3", "--gpus", "8x h200-sxm-141gb")
    assert r["quant"] == "FP8" and r["fits"]
    assert r["plan"]["engine"] == "vllm" and len(r["plan"]["devices"]) * r["plan"]["replicas"] == 8


def test_the_typed_model_id_is_kept_in_commands():
    r = ask("plan", "meta-llama/Llama-3.1-8B-Instruct", "--quant", "BF16", "--gpus", "1x h100-sxm-80gb")
    assert "vllm serve meta-llama/Llama-3.1-8B-Instruct " in r["commands"]["vllm"]
    assert r["model_label"] == "meta-llama/Llama-3.1-8B-Instruct" and r["model"] == "meta-llama/Llama-3.1-8B"
    # every engine that pulls a Hugging Face repository names the one the user typed
    for engine in ("sglang", "tgi", "lmdeploy", "tensorrt-llm"):
        assert "meta-llama/Llama-3.1-8B-Instruct " in r["commands"][engine], (engine, r["commands"][engine])


def test_ram_size_and_bandwidth_are_stated_when_not_given():
    r = ask("plan", L3_70B, "--quant", "Q4_K_M", "--gpus", "rtx-4090")
    assert r["fits"] and r["plan"]["gpu_layers"] is not None  # layers in RAM
    a = r["assumptions"]
    assert a["ram_gib"]["source"] == "default" and a["ram_gib"]["value"] > 0 and "--ram" in a["ram_gib"]["why"]
    assert a["ram_bandwidth_gb_s"]["source"] == "default" and a["ram_bandwidth_gb_s"]["value"] > 0
    for k in ("engine", "quant", "kv_type", "flash_attention", "link", "context_per_slot", "slots"):
        assert a[k]["why"], k


# ---------------------------------------------------------------- output that contradicted itself
def test_compare_verdict_ratio_is_the_ratio_of_the_column_shown():
    c = ask("compare", "--scenario", "does-not-fit")
    shown = "per_user_tok_s"  # one user: the table's "tok/s per user" column
    base = next(r for r in c["rows"] if r["fits"])
    for r in c["rows"]:
        if r["fits"] and r is not base:
            assert r["vs_first"] == pytest.approx(r[shown] / base[shown], abs=0.006), r["setup"]
            assert f"{r['vs_first']:.2f}x" in r["verdict"]


def test_a_plan_is_never_compared_with_itself():
    r = ask("plan", L3_70B, "--quant", "FP16", "--gpus", "8x h100-sxm-80gb")
    for line in r["explanation"]:
        m = re.search(r"gives ([\d.,]+) tok/s vs (?:layer split )?([\d.,]+)", line)
        assert not (m and m.group(1) == m.group(2)), line
        assert "vs layer split" not in line or any(a["plan"]["split"] == "layer" for a in r["alternatives"])


def test_does_not_fit_says_which_device_is_short_and_by_how_much():
    r = ask("plan", L3_70B, "--quant", "AWQ", "--gpus", "2x rtx-3090")
    assert not r["fits"]
    text = " ".join(r["explanation"])
    for m in re.finditer(r"needs (?:at least )?([\d.]+) GB, you have ([\d.]+) GB", text):
        assert float(m.group(1)) > float(m.group(2)), m.group(0)
    assert re.search(r"rtx-3090 #\d is short by [\d.]+ GB", text)


def test_q4_k_m_is_offered_only_when_smaller_and_not_chosen():
    awq = ask("plan", L3_70B, "--quant", "AWQ", "--gpus", "2x rtx-3090")  # AWQ is smaller than Q4_K_M
    q4 = ask("plan", "meta-llama/Llama-3.1-405B", "--quant", "Q4_K_M", "--gpus", "2x rtx-3090")
    big = ask("plan", "meta-llama/Llama-3.1-405B", "--quant", "Q8_0", "--gpus", "2x rtx-3090")
    assert not awq["fits"] and not q4["fits"] and not big["fits"]
    assert "Q4_K_M" not in " ".join(awq["explanation"])
    assert "--quant Q4_K_M" not in " ".join(q4["explanation"])
    assert "Q4_K_M" in " ".join(big["explanation"])


def test_plans_that_do_not_fit_carry_no_speeds():
    r = ask("plan", "meta-llama/Llama-3.1-405B-Instruct", "--quant", "FP16", "--gpus", "rtx-3060-12gb")
    for a in [r] + r["alternatives"]:
        assert not a["fits"]
        assert a["decode_tok_s"] is None and a["prefill_tok_s"] is None and a["throughput_tok_s"] is None


def test_builds_budget_excludes_and_vram_is_the_builds():
    r = ask("builds", L3_70B, "--quant", "Q4_K_M", "--budget", "5000", "--users", "4")
    assert all(b["price_usd"] <= 5000 for b in r["builds"])
    assert r["over_budget"] and all(b["price_usd"] > 5000 for b in r["over_budget"])
    two = next(b for b in r["builds"] if b["gpus"] == "2x rtx-3090")
    assert two["vram_gb"] == pytest.approx(2 * 24 * 2**30 / 1e9, abs=0.1)
    assert two["vram_used_gb"] <= two["vram_gb"]
    text = run("builds", L3_70B, "--quant", "Q4_K_M", "--budget", "5000").stdout  # piped: no styling
    table, _, rest = text.partition("over the $5,000 budget")
    assert rest and all(b["name"] not in table for b in r["over_budget"])


def test_a_quantized_kv_cache_is_not_chosen_for_a_tiny_gain():
    r = ask("plan", "Qwen/Qwen2.5-32B-Instruct", "--quant", "Q4_K_M", "--gpus", "2x rtx-3090", "--context", "32768")
    assert r["fits"]
    kv = r["assumptions"]["kv_type"]
    if r["plan"]["kv_type"] not in ("f16", "bf16"):
        assert kv["source"] == "chosen" and ("fits" in kv["why"] or "x the best plan" in kv["why"])
    else:
        assert kv["source"] == "default"
    quantized = [a for a in r["alternatives"] if a["fits"] and a["plan"]["kv_type"] != "f16"]
    best_f16 = max((a["decode_tok_s"] for a in [r] + r["alternatives"] if a["fits"] and a["plan"]["kv_type"] == "f16"),
                   default=0)
    if r["plan"]["kv_type"] != "f16" and best_f16:
        assert r["decode_tok_s"] >= 1.10 * best_f16
    assert r["plan"]["kv_type"] == "f16" or not quantized or best_f16 == 0


def test_no_strategy_listed_twice():
    r = ask("plan", L3_70B, "--quant", "Q4_K_M", "--gpus", "2x rtx-3090", "--context", "32768")
    seen = [(a["plan"]["strategy"], a["plan"]["hardware"]) for a in [r] + r["alternatives"]]
    assert len(seen) == len(set(seen)), seen


def test_compare_scenario_honours_context_and_users():
    c = ask("compare", "--scenario", "serving", "--context", "100000", "--users", "1")
    assert c["context"] == 100000 and c["users"] == 1


# ---------------------------------------------------------------- impossible hardware
@pytest.mark.parametrize("spec, words", [
    ("2x rtx-4090 nvlink-bridge-3090", ["nvlink-bridge-3090", "rtx-4090", "rtx-3090"]),
    ("2x rtx-4090 nvlink4", ["nvlink4", "rtx-4090", "h100"]),
    ("2x rtx-3090 nvlink-bridge-a6000", ["nvlink-bridge-a6000", "rtx-3090 takes nvlink-bridge-3090"]),
    ("rtx-4090 + ddr5-6000-2ch:0gb", ["RAM", "0gb", "1 to 65536"]),
    ("2x rtx-3090 pcie4-x8 nvlink-bridge-3090", ["two links", "pcie4-x8", "nvlink-bridge-3090"]),
])
def test_impossible_hardware_is_one_line_exit_2(spec, words):
    p = run("fit", L3_8B, "--quant", "Q4_K_M", "--gpus", spec)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    for w in words:
        assert w in lines[0], (w, lines[0])


def test_errors_under_json_are_structured():
    p = run("plan", L3_8B, "--gpus", "rtx-4090", "--context", "0", "--json")
    assert p.returncode == 2
    err = json.loads(p.stdout)["error"]
    assert err["input"] == "context" and err["accepted"] == "2 to 10,000,000" and "context" in err["message"]
