"""`gpuplan validate`: the JSON contract, per-row errors, and the accuracy the issue asks for
on the published dev set."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DEV = ROOT / "data" / "measurements" / "dev.csv"
HEADER = ("source,engine,date,model,quant,gpu,n_gpus,split,interconnect,n_gpu_layers,host_mem,n_depth,"
          "n_prompt,n_gen,batch,metric,tok_s,note\n")
ROW = "https://example.org,llama.cpp,2024-05,meta-llama/Meta-Llama-3-8B,Q4_K_M,{gpu},1,none,none,,,0,{p},{g},1,{m},{v},\n"


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "gpuplan.cli", *args], capture_output=True, text=True,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")})


def test_json_contract_rows_in_file_order_with_reasons(tmp_path):
    f = tmp_path / "m.csv"
    f.write_text(HEADER
                 + ROW.format(gpu="rtx-4090", p=0, g=128, m="decode", v=130)
                 + ROW.format(gpu="rtx-9999", p=0, g=128, m="decode", v=50)  # unknown GPU: null + reason
                 + ROW.format(gpu="rtx-3090", p=512, g=0, m="prefill", v="fast")  # unreadable
                 + ROW.format(gpu="rtx-3090", p=512, g=0, m="prefill", v=4000))
    r = _cli("validate", str(f), "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert [row["index"] for row in out["rows"]] == [0, 1, 2, 3]
    for row in out["rows"]:
        assert set(row) >= {"index", "metric", "measured", "predicted", "reason"}
    assert out["rows"][0]["predicted"] > 0 and out["rows"][0]["reason"] is None
    assert out["rows"][1]["predicted"] is None and "rtx-9999" in out["rows"][1]["reason"]
    assert out["rows"][2]["predicted"] is None and out["rows"][2]["reason"]
    assert out["rows"][3]["metric"] == "prefill" and out["rows"][3]["predicted"] > 0
    s = out["summary"]
    assert s["rows"] == 4 and s["predicted"] == 2 and s["unreadable"] == 1
    assert "median_ape" in s["overall"] and "decode" in s["by_metric"]


def test_nothing_readable_is_exit_2(tmp_path):
    f = tmp_path / "x.csv"
    f.write_text("hello world\n")
    r = _cli("validate", str(f))
    assert r.returncode == 2 and r.stderr.startswith("error:") and "Traceback" not in r.stderr


def test_accuracy_on_dev_set_meets_the_targets():
    from gpuplan.bench.validate import validate

    res = validate([str(DEV)])
    s = res["summary"]
    assert s["unpredicted"] == 0 and s["unreadable"] == 0, "every row gets a prediction"
    dec, pre = s["by_metric"]["decode"], s["by_metric"]["prefill"]
    assert dec["median_ape"] <= 0.10 and dec["p90_ape"] <= 0.25, dec
    assert pre["median_ape"] <= 0.20, pre
    assert s["direction"]["agreement"] >= 0.95 and s["direction"]["pairs"] > 100, s["direction"]


def test_validate_plot_writes_a_png(tmp_path):
    out = tmp_path / "v.png"
    r = _cli("validate", str(DEV), "--plot", str(out))
    assert r.returncode == 0, r.stderr
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
