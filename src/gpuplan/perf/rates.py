"""What a device can do, read from its spec sheet: the bandwidth a weight stream can reach,
how many unit-cycles per second it has for dequantising and dot products, its clock (fixed
launch costs scale with it), and for CPUs how that changes with the thread count.

Every figure here comes from catalog fields that spec sheets give for every device (bandwidth,
compute units, boost clock, FP32 rate, cores, threads, SIMD width, memory channels, Apple's
GPU-reachable bandwidth where it has been measured). Fields a catalog entry lacks fall back
to what the others imply (a clock from FP32 rate / lanes); none is fitted per device.
"""

from __future__ import annotations

import re

REF_CLOCK_HZ = 1.8e9  # fixed costs are fitted at this clock and scale as REF / clock

# FP32 lanes per compute unit, to read units from the `cores` count when compute_units is not
# in the catalog (NVIDIA architecture whitepapers): SMs of GP102, GA10x, AD10x, GH100 and GB have
# 128 FP32 lanes, those of Volta, Turing and the HBM chips GP100 and GA100 64; AMD CUs 64 (RDNA 3
# and CDNA 3 count dual issue in their TFLOPS, not in their stream processors); Intel Xe-cores
# 128 (16 vector engines x 8); Apple's catalog counts GPU cores.
_LANES_PER_UNIT = {"nvidia": 128, "amd": 64, "intel": 128}
# ISA vector width in bits the catalog's SIMD names stand for
SIMD_BITS = {"avx2": 256, "avx": 256, "avx512": 512, "avx-512": 512, "neon": 128, "sve": 128, "sve2": 128,
             "amx": 512}


def field(dev, name: str):
    """A catalog field that newer catalogs have and older ones may not (None when absent)."""
    return getattr(dev, name, None) if dev is not None else None


def clock_hz(dev) -> float:
    """Boost clock. Without one in the catalog: FP32 rate / (2 x lanes), since every lane does one
    FMA per clock (AMD's dual-issue halves that again); for CPUs 32 FP32 FLOP/clock/core (AVX2)."""
    mhz = (field(dev, "all_core_clock_mhz") if dev is not None and dev.kind == "cpu" else None) \
        or field(dev, "boost_clock_mhz")
    if mhz:
        return float(mhz) * 1e6
    if dev is None:
        return 4.0e9
    cores = dev.cores or 0
    if dev.kind == "cpu":
        return min(max(dev.fp32_tflops * 1e12 / (max(cores, 1) * 32.0), 2.0e9), 5.7e9) if cores else 4.0e9
    if dev.kind == "apple":
        return dev.fp32_tflops * 1e12 / (max(cores, 1) * 256.0) if cores else 1.3e9
    if cores:
        hz = dev.fp32_tflops * 1e12 / (2.0 * cores)
        if dev.vendor == "amd" and hz > 3.2e9:  # dual-issue counted in the TFLOPS figure
            hz /= 2.0
        return min(max(hz, 0.8e9), 3.2e9)
    return REF_CLOCK_HZ


def units(dev) -> float:
    """Compute units: SMs, CUs, Xe-cores, Apple GPU cores; CPU cores."""
    cu = field(dev, "compute_units")
    if cu:
        return float(cu)
    if dev is None:
        return 8.0
    cores = dev.cores or 0
    if dev.kind in ("apple", "cpu"):
        return float(max(cores, 1))
    lanes = _LANES_PER_UNIT.get(dev.vendor, 128)
    arch = dev.architecture.lower()
    hbm = dev.memory_type.startswith("HBM")
    if dev.vendor == "nvidia" and (arch in ("volta", "turing") or (hbm and arch in ("pascal", "ampere"))):
        lanes = 64
    return max(cores / lanes, 1.0) if cores else 8.0


def unit_cycles(dev) -> float:
    """Compute-unit cycles per second."""
    return units(dev) * clock_hz(dev)


def int_lanes_per_unit(dev) -> int:
    """Vector lanes per unit that do the integer work of dequantisation (architecture
    whitepapers): an NVIDIA SM has 64 INT32 lanes from Volta to Hopper (GA10x/AD10x's second FP32
    datapath does no integer work; GP102's 128 cores do both), an AMD CU 64, an Intel Xe-core
    128 (16 or 8 vector engines of 8 or 16 lanes), an Apple GPU core 128 ALUs."""
    if dev is None:
        return 64
    if dev.kind == "apple":
        return 128
    if dev.vendor == "nvidia":
        arch = dev.architecture.lower()
        return 128 if arch == "pascal" and not dev.memory_type.startswith("HBM") else 64
    return {"amd": 64, "intel": 128}.get(dev.vendor, 64)


def lane_cycles(dev) -> float:
    """Integer vector lane-cycles per second: the budget dequantisation and dot products draw on."""
    return units(dev) * int_lanes_per_unit(dev) * clock_hz(dev)


def cpu_cores(dev) -> int:
    return int(dev.cores or 8) if dev is not None else 8


def cpu_threads_hw(dev) -> int:
    t = field(dev, "threads")
    return int(t) if t else cpu_cores(dev)


def datapath_bits(dev) -> int:
    """Width of one of the CPU's FMA datapaths (Zen 4 runs AVX-512 on 256-bit units)."""
    w = field(dev, "simd_width_bits")
    if w:
        return int(w)
    chip = str(field(dev, "simd") or "").lower()
    arch = (dev.architecture if dev is not None else "").lower()
    if not chip:
        chip = "avx512" if "avx-512" in arch or "avx512" in arch else ("neon" if "arm" in arch else "avx2")
    return SIMD_BITS.get(chip.replace("_", "").replace(" ", ""), 256)


def build_factor(dev, build_simd: str | None) -> float:
    """Share of the chip's vector throughput a build compiled for `build_simd` uses: an AVX2 build
    on 512-bit datapaths (Zen 5, Sapphire Rapids) uses half of each."""
    if not build_simd:
        return 1.0
    width = datapath_bits(dev)
    return min(SIMD_BITS.get(build_simd.lower().replace("_", ""), width), width) / width


def cpu_active_cores(dev, threads: int | None) -> float:
    """Cores doing work with `threads` threads: one per thread up to the core count; SMT threads
    beyond it add little to SIMD-bound work (the two threads share the core's vector units)."""
    cores = cpu_cores(dev)
    t = threads or cores
    if t <= cores:
        return float(t)
    return cores * (1.0 + 0.1 * min(t - cores, cores) / cores)


def cpu_vector_rate(dev, threads: int | None, build_simd: str | None = None) -> float:
    """FP32 FMA lane-cycles per second for `threads` threads: the catalog's FP32 peak scaled to
    the cores used and to the build's vector width."""
    if dev is None:
        return 0.5e12
    full = dev.fp32_tflops * 1e12 / 2.0
    return full * (cpu_active_cores(dev, threads) / cpu_cores(dev)) * build_factor(dev, build_simd)


def apple_gpu_bandwidth(dev) -> float | None:
    """GB/s the GPU of an Apple chip reaches in measurements, where the catalog has it."""
    v = field(dev, "gpu_bandwidth_measured_gb_s")
    return float(v) if v else None


_THREADS = [re.compile(r"(?:^|\s)-t\s*(\d+)\b"), re.compile(r"\b(\d+)\s+threads?\b", re.I),
            re.compile(r"\bthreads?\s*[=:]\s*(\d+)\b", re.I)]
_SIMD = [("avx-512", "avx512"), ("avx512", "avx512"), ("avx2", "avx2"), ("neon", "neon")]


def threads_from_note(note: str) -> int | None:
    """`-t 8`, "8 threads" or "threads: 8" in a published row's note; None when absent or unclear."""
    found = set()
    for pat in _THREADS:
        found.update(int(m) for m in pat.findall(note or ""))
    found.discard(0)
    return found.pop() if len(found) == 1 else None


def build_simd_from_note(note: str) -> str | None:
    """"AVX2 build" and the like: the vector ISA a CPU build was compiled for."""
    t = (note or "").lower()
    m = re.search(r"\b(avx-?512|avx2|neon)\b[^;,.]*\bbuild\b", t)
    if not m:
        return None
    word = m.group(1)
    return next(v for k, v in _SIMD if k == word or k.replace("-", "") == word.replace("-", ""))
