"""Probe: NVML readings recorded from real machines (tests/fixtures/nvml), and this machine."""

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from gpuplan.sources.probe import gpus_from_nvml, match_device, probe

FX = Path(__file__).parent / "fixtures" / "nvml"


def load(name):
    return json.loads((FX / name).read_text())


def test_fixtures_cite_their_source():
    for p in FX.glob("*.json"):
        assert json.loads(p.read_text())["source"].startswith("https://"), p.name


def test_two_3090_on_pcie():
    gpus, p2p, nvl = gpus_from_nvml(load("2x_rtx3090_pcie4_x8.json"))
    assert [g.device_id for g in gpus] == ["rtx-3090", "rtx-3090"]
    assert gpus[0].memory_total_gib == 24.0 and gpus[0].pcie_width == 8 and gpus[0].pcie_gen_max == 4
    assert nvl == [] and p2p == []


def test_h100_sxm_node_on_nvswitch():
    gpus, p2p, nvl = gpus_from_nvml(load("8x_h100_sxm_nvswitch.json"))
    assert {g.device_id for g in gpus} == {"h100-sxm-80gb"} and len(gpus) == 8
    assert all(g.nvlink_active == 18 for g in gpus)
    assert len(nvl) == 28 and len(p2p) == 28  # every pair of 8


def test_mixed_box_keeps_unknown_gpu_name():
    res = probe(measure_bandwidth=False, nvml=load("rtx3090_gtx1080_pcie_x4.json"))
    assert res.gpu_spec() == ["rtx-3090", match_device("NVIDIA GeForce GTX 1080") or "NVIDIA GeForce GTX 1080"]
    assert res.driver_version == "580.159.03" and res.cuda_version == "13.0"
    hw = yaml.safe_load(res.to_hardware_yaml())
    assert set(hw) == {"gpus", "link", "host_memory", "cpu"}


def test_hardware_yaml_spec_string():
    res = probe(measure_bandwidth=False, nvml=load("8x_h100_sxm_nvswitch.json"))
    hw = yaml.safe_load(res.to_hardware_yaml())
    assert hw["gpus"] == "8x h100-sxm-80gb"
    assert hw["host_memory"]["ram_gib"] > 0 and hw["cpu"]["threads"] >= 1


@pytest.mark.parametrize("name,want", [("NVIDIA GeForce RTX 3090", "rtx-3090"), ("NVIDIA H100 80GB HBM3", "h100-sxm-80gb"),
                                       ("GeForce RTX 4090", "rtx-4090"), ("Some Future GPU", None)])
def test_match_device(name, want):
    assert match_device(name) == want


def test_probe_this_machine_cli(tmp_path):
    import typer

    from gpuplan.bench.commands import register

    app = typer.Typer()
    register(app)
    out = tmp_path / "hw.yaml"
    r = CliRunner().invoke(app, ["probe", "--save", str(out)])
    assert r.exit_code == 0, r.output
    assert "CPU:" in r.output and "RAM:" in r.output
    hw = yaml.safe_load(out.read_text())
    assert hw["host_memory"]["bandwidth_gb_s"] > 0
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:  # no driver: the no-GPU line must be there
        assert "no GPU or GPU driver found" in r.output
        assert hw["gpus"] is None
    r = CliRunner().invoke(app, ["probe", "--json", "--no-bandwidth"])
    assert r.exit_code == 0 and json.loads(r.output)["cpu_threads"] >= 1


def test_first_ram_bandwidth_figure_is_warm():
    """The first figure a fresh process reports (what `gpuplan probe` prints) is within 2x of later
    ones: the copy is timed only after both buffers' pages are mapped (issue: 0.5 GB/s first,
    20-32 GB/s after). Runs the real probe in new processes on this machine. This shared machine
    sometimes halves one measurement, so up to three fresh processes are tried; with the defect
    every first figure is page-fault bound (0.2 against 8.8 GB/s here), so retries cannot hide it."""
    import subprocess
    import sys

    code = ("from gpuplan.sources.probe import probe, host_bandwidth_gb_s\n"
            "first = probe(measure_bandwidth=True).host_bandwidth_gb_s\n"
            "print(first, *(host_bandwidth_gb_s() for _ in range(3)))\n")
    tries = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, check=True)
        first, *later = (float(x) for x in out.stdout.split())
        assert first > 0 and all(v > 0 for v in later)
        typical = sorted(later)[1]  # the median of three later runs
        tries.append((first, later))
        if typical / 2 <= first <= typical * 2:
            return
    pytest.fail(f"first RAM copy figure not within 2x of later ones in {len(tries)} fresh processes: {tries}")


def test_ram_copy_is_timed_after_its_pages_are_touched():
    """With no time budget (one timed round) the probe's first figure in a fresh process is within
    2x of a copy between buffers this test warmed itself. A copy into a fresh buffer pays a page fault
    per 4 KiB page: before the fix the first figure was 0.6 GB/s on this machine, whatever its load."""
    import subprocess
    import sys

    code = ("import time, numpy as np\n"
            "from gpuplan.sources.probe import host_bandwidth_gb_s as h\n"
            "first = h(budget_s=0)\n"
            "a = np.ones(32 * 2**20); b = np.ones(32 * 2**20); np.copyto(b, a)\n"
            "best = 0.0\n"
            "for _ in range(5):\n"
            "    t = time.perf_counter(); np.copyto(b, a); best = max(best, 2 * a.nbytes / (time.perf_counter() - t) / 1e9)\n"
            "print(first, best)\n")
    tries = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
        first, warm = (float(x) for x in out.stdout.split())
        tries.append((first, round(warm, 1)))
        if first >= warm / 2:
            return
    pytest.fail(f"first copy figure far below a warm copy in {len(tries)} fresh processes: {tries}")
