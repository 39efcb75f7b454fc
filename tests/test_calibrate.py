"""`gpuplan calibrate`: refuses too little data, fits a user's measurements, and later
estimates use the file it writes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[1]
HEADER = ("source,engine,date,model,quant,gpu,n_gpus,split,interconnect,n_gpu_layers,host_mem,n_depth,"
          "n_prompt,n_gen,batch,metric,tok_s,note\n")


def _rows(n_decode: int, slow: float) -> str:
    """Measurements of a card that runs `slow` times our prediction (as a user's own box might)."""
    from gpuplan.bench.measurements import parse_row
    from gpuplan.perf.predict import predict_row

    out = HEADER
    for i in range(n_decode):
        gen = 128 * (i + 1)
        raw = {"source": "https://example.org/mine", "engine": "llama.cpp", "date": "2024-05",
               "model": "meta-llama/Meta-Llama-3-8B", "quant": "Q4_K_M", "gpu": "rtx-4080", "n_gpus": "1",
               "split": "none", "interconnect": "none", "n_gpu_layers": "", "host_mem": "", "n_depth": "0",
               "n_prompt": "0", "n_gen": str(gen), "batch": "1", "metric": "decode", "tok_s": "1", "note": ""}
        pred = predict_row(parse_row(raw))
        raw["tok_s"] = f"{pred * slow:.2f}"
        out += ",".join(raw.values()) + "\n"
    return out


def _cli(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "GPUPLAN_CALIBRATION": ""}
    return subprocess.run([sys.executable, "-m", "gpuplan.cli", *args], capture_output=True, text=True, env=env)


def test_refuses_too_little_data(tmp_path):
    f = tmp_path / "two.csv"
    f.write_text(_rows(2, 0.8))
    r = _cli("calibrate", str(f), "--out", str(tmp_path / "c.yaml"))
    assert r.returncode == 2 and "too little data" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "c.yaml").exists()


def test_fits_and_later_estimates_use_it(tmp_path):
    f = tmp_path / "mine.csv"
    f.write_text(_rows(12, 0.8))  # this card is 20% slower than the shipped constants say
    cal = tmp_path / "c.yaml"
    r = _cli("calibrate", str(f), "--out", str(cal), "--json")
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert res["median_ape_before"] > 0.2 and res["median_ape_after"] < 0.05
    assert yaml.safe_load(cal.read_text())["constants"]
    before = json.loads(_cli("validate", str(f), "--json").stdout)["summary"]["overall"]["median_ape"]
    after = json.loads(_cli("validate", str(f), "--json", "--calibration", str(cal)).stdout)
    assert after["summary"]["overall"]["median_ape"] < before / 4
