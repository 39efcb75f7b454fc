"""A CPU as an inference device, described from what this machine reports (the catalog has
named CPUs; a probed one is built here from its core count, clock, SIMD width and the
memory bandwidth measured by `gpuplan probe`)."""

from __future__ import annotations

import os
import re

from ..catalog.schema import Device

# FP32 FLOPs per core per cycle: two FMA pipes x vector lanes x 2 (multiply + add).
# AVX-512 on Intel: 2 x 16 x 2 = 64. AMD Zen 4 runs AVX-512 on 256-bit pipes: 32, as AVX2+FMA.
# AVX only: 16. Arm NEON (2 x 128-bit FMA): 16.
FLOPS_PER_CYCLE = {"avx512-intel": 64, "avx512-amd": 32, "avx2": 32, "avx": 16, "neon": 16, "none": 8}
COPY_SHARE_OF_PEAK = 0.65
SOURCE = "https://en.wikipedia.org/wiki/FLOPS#FLOPs_per_cycle_for_various_processors"


def _cpuinfo() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return f.read()
    except OSError:
        return ""


def simd_class(info: str | None = None) -> str:
    info = _cpuinfo() if info is None else info
    m = re.search(r"^(flags|Features)\s*:\s*(.*)$", info, re.M)
    flags = set(m.group(2).split()) if m else set()
    vendor = "amd" if "AuthenticAMD" in info or "AMD" in info else "intel"
    if "avx512f" in flags:
        return f"avx512-{vendor}"
    if "avx2" in flags and "fma" in flags:
        return "avx2"
    if "avx" in flags:
        return "avx"
    if "asimd" in flags or os.uname().machine in ("arm64", "aarch64"):
        return "neon"
    return "none"


def clock_ghz(info: str | None = None) -> float:
    info = _cpuinfo() if info is None else info
    m = re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)
    return float(m.group(1)) / 1000 if m else 3.0


def cpu_device(model: str, cores: int, bandwidth_gb_s: float | None, simd: str | None = None,
               ghz: float | None = None) -> Device:
    simd = simd or simd_class()
    ghz = ghz or clock_ghz()
    tflops = max(cores, 1) * ghz * FLOPS_PER_CYCLE.get(simd, 8) / 1000
    # The probe's one-thread copy reaches about 65% of the memory's peak (sources/probe.py);
    # record the peak it implies, so the model's DDR efficiency applies as to catalog memories.
    bw = bandwidth_gb_s / COPY_SHARE_OF_PEAK if bandwidth_gb_s else 60.0  # dual-channel desktop order
    return Device(id="probed-cpu", name=f"{model} ({cores} cores)", vendor="intel" if "intel" in simd else "amd",
                  kind="cpu", segment="desktop-cpu", architecture=simd, backend="cpu", release_date="2020-01",
                  memory_bandwidth_gb_s=round(bw, 1), memory_type="DDR5", fp32_tflops=round(tflops, 4),
                  fp16_tflops=round(tflops, 4), cores=cores, tdp_w=65.0, source=SOURCE,
                  note=f"built from this machine: {cores} cores x {ghz:.2f} GHz x {FLOPS_PER_CYCLE.get(simd, 8)}"
                       f" FP32 FLOP/cycle ({simd}); memory bandwidth "
                       + ("measured by gpuplan probe" if bandwidth_gb_s else "assumed 40 GB/s"))
