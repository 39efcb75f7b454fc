"""What is in this machine: GPUs (NVML, Apple, AMD), links between them, CPU, RAM, RAM bandwidth.

`probe()` returns a ProbeResult; `ProbeResult.to_hardware_yaml()` writes a hardware file the
spec parser reads with `--hardware hw.yaml`:

    gpus: 2x rtx-3090          # "Nx id" when all GPUs are the same, else a list of ids;
                               # a GPU the catalog does not know keeps its driver name
    link: nvlink-3090-bridge   # a catalog link id, or null when unknown / one GPU
    host_memory:
      bandwidth_gb_s: 38.2     # measured copy bandwidth (numpy), null when not measured
      ram_gib: 64.0
    cpu:
      model: AMD Ryzen 9 7950X 16-Core Processor
      cores: 16                # physical cores where known, else logical CPUs
      threads: 32

The NVML part is split in two so it can be tested on recorded readings: `read_nvml()` turns
the live library into an NvmlReadings dict (see tests/fixtures/nvml/*.json for its shape),
and `gpus_from_nvml(readings)` maps that dict to GpuInfo rows and link facts.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from dataclasses import asdict, dataclass, field
from typing import Any

NvmlReadings = dict[str, Any]
_GIB = 1024**3


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str  # as the driver reports it
    device_id: str | None  # catalog id, None when the catalog has no match
    vendor: str
    memory_total_gib: float
    memory_free_gib: float | None = None
    pcie_gen: int | None = None  # current link generation (idle GPUs often drop to gen 1)
    pcie_gen_max: int | None = None
    pcie_width: int | None = None
    pcie_width_max: int | None = None
    nvlink_active: int = 0  # active NVLink links
    measured_bandwidth_gb_s: float | None = None  # torch device copy, when measured


@dataclass
class ProbeResult:
    gpus: list[GpuInfo] = field(default_factory=list)
    driver_version: str | None = None
    cuda_version: str | None = None
    p2p_pairs: list[tuple[int, int]] = field(default_factory=list)  # peer access both ways
    nvlink_pairs: list[tuple[int, int]] = field(default_factory=list)
    link_id: str | None = None
    cpu_model: str = "unknown"
    cpu_cores: int | None = None
    cpu_threads: int | None = None
    ram_gib: float | None = None
    host_bandwidth_gb_s: float | None = None
    messages: list[str] = field(default_factory=list)  # what could not be probed, and why

    def gpu_spec(self) -> str | list[str] | None:
        ids = [g.device_id or g.name for g in self.gpus]
        if not ids:
            return None
        return f"{len(ids)}x {ids[0]}" if len(set(ids)) == 1 else ids

    def to_dict(self) -> dict:
        d = asdict(self)
        d["gpu_spec"] = self.gpu_spec()
        return d

    def to_hardware(self) -> dict:
        return {"gpus": self.gpu_spec(), "link": self.link_id,
                "host_memory": {"bandwidth_gb_s": self.host_bandwidth_gb_s, "ram_gib": self.ram_gib},
                "cpu": {"model": self.cpu_model, "cores": self.cpu_cores, "threads": self.cpu_threads}}

    def to_hardware_yaml(self) -> str:
        import yaml

        head = "# written by `gpuplan probe`\n" + "".join(f"# {m}\n" for m in self.messages)
        return head + yaml.safe_dump(self.to_hardware(), sort_keys=False)


def match_device(name: str) -> str | None:
    """Catalog device id for a driver name ("NVIDIA GeForce RTX 3090" -> "rtx-3090"), or None."""
    try:
        from .. import catalog

        index = catalog._alias_index("device")
    except Exception:  # catalog files missing or invalid: nothing to match against
        return None
    n = " ".join(name.lower().split())
    tries = [n, n.removeprefix("nvidia "), n.replace("geforce ", ""),
             n.removeprefix("nvidia ").replace("geforce ", ""), n.removeprefix("amd ")]
    tries.append(re.sub(r"[^a-z0-9]+", "-", tries[3]).strip("-"))  # "rtx 3090" -> "rtx-3090"
    for t in tries:
        if t in index:
            return index[t]
    return None


# ---- NVIDIA ---------------------------------------------------------------------------------

def read_nvml() -> NvmlReadings:
    """Live NVML -> readings dict. Raises RuntimeError when there is no driver or no GPU."""
    import pynvml as nv

    try:
        nv.nvmlInit()
    except Exception as e:  # NVMLError_LibraryNotFound / DriverNotLoaded
        raise RuntimeError(f"no NVIDIA driver ({e})") from None
    try:
        count = nv.nvmlDeviceGetCount()
        handles = [nv.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        cuda = nv.nvmlSystemGetCudaDriverVersion_v2()
        out: NvmlReadings = {
            "driver_version": _s(nv.nvmlSystemGetDriverVersion()),
            "cuda_version": f"{cuda // 1000}.{cuda % 1000 // 10}", "devices": [], "p2p": []}
        for i, h in enumerate(handles):
            mem = nv.nvmlDeviceGetMemoryInfo(h)
            links = []
            for link in range(getattr(nv, "NVML_NVLINK_MAX_LINKS", 18)):
                try:
                    active = nv.nvmlDeviceGetNvLinkState(h, link) == nv.NVML_FEATURE_ENABLED
                    remote = _s(nv.nvmlDeviceGetNvLinkRemotePciInfo_v2(h, link).busId) if active else None
                except nv.NVMLError:
                    break  # no more links (or no NVLink at all)
                links.append({"link": link, "active": active, "remote_bus_id": remote})
            out["devices"].append({
                "index": i, "name": _s(nv.nvmlDeviceGetName(h)),
                "bus_id": _s(nv.nvmlDeviceGetPciInfo(h).busId),
                "memory_total_bytes": mem.total, "memory_free_bytes": mem.free,
                "pcie": {"gen_current": _try(nv.nvmlDeviceGetCurrPcieLinkGeneration, h),
                         "gen_max": _try(nv.nvmlDeviceGetMaxPcieLinkGeneration, h),
                         "width_current": _try(nv.nvmlDeviceGetCurrPcieLinkWidth, h),
                         "width_max": _try(nv.nvmlDeviceGetMaxPcieLinkWidth, h)},
                "nvlink": links})
        names = {0: "OK", 1: "CNS", 2: "GNS", 3: "DR", 4: "NS", 5: "TNS", 6: "U"}  # nvml.h order
        for a in handles:
            row = []
            for b in handles:
                if a is b:
                    row.append("X")
                    continue
                st = _try(nv.nvmlDeviceGetP2PStatus, a, b, nv.NVML_P2P_CAPS_INDEX_READ)
                row.append(names.get(st, "U") if st is not None else "U")
            out["p2p"].append(row)
        return out
    finally:
        nv.nvmlShutdown()


def _s(v) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception:  # a field this GPU/driver does not report
        return None


def gpus_from_nvml(r: NvmlReadings) -> tuple[list[GpuInfo], list[tuple[int, int]], list[tuple[int, int]]]:
    """Readings -> (GPUs, pairs with peer access, pairs joined by active NVLink)."""
    gpus, bus_to_index = [], {}
    for d in r.get("devices", []):
        pcie = d.get("pcie") or {}
        free = d.get("memory_free_bytes")
        gpus.append(GpuInfo(
            index=d["index"], name=d["name"], device_id=match_device(d["name"]), vendor="nvidia",
            memory_total_gib=round(d["memory_total_bytes"] / _GIB, 2),
            memory_free_gib=None if free is None else round(free / _GIB, 2),
            pcie_gen=pcie.get("gen_current"), pcie_gen_max=pcie.get("gen_max"),
            pcie_width=pcie.get("width_current"), pcie_width_max=pcie.get("width_max"),
            nvlink_active=sum(1 for ln in d.get("nvlink") or [] if ln.get("active"))))
        if d.get("bus_id"):
            bus_to_index[d["bus_id"].lower()[-12:]] = d["index"]  # domains print 4 or 8 digits
    nvl, switched = set(), set()
    for d in r.get("devices", []):
        for ln in d.get("nvlink") or []:
            other = bus_to_index.get((ln.get("remote_bus_id") or "").lower()[-12:])
            if ln.get("active") and other is not None and other != d["index"]:
                nvl.add(tuple(sorted((d["index"], other))))
            elif ln.get("active"):
                switched.add(d["index"])  # remote is an NVSwitch (HGX/DGX) or was not recorded
    # GPUs on NVSwitches reach each other through them: every pair is NVLink-connected.
    nvl |= {(a, b) for a in switched for b in switched if a < b}
    p2p = []
    m = r.get("p2p") or []
    for i in range(len(m)):
        for j in range(i + 1, len(m)):
            if m[i][j] == "OK" and m[j][i] == "OK":
                p2p.append((i, j))
    return gpus, p2p, sorted(nvl)


def link_for(gpus: list[GpuInfo], nvlink_pairs) -> str | None:
    """Catalog link id between the GPUs: their NVLink when every GPU has one, else PCIe."""
    if len(gpus) < 2:
        return None
    try:
        from .. import catalog

        links, devs = catalog.links(), catalog.devices()
    except Exception:
        return None
    if nvlink_pairs and all(g.nvlink_active for g in gpus):
        ids = {getattr(devs.get(g.device_id), "nvlink", None) for g in gpus}
        if len(ids) == 1 and None not in ids:
            return ids.pop()
    gen = min((g.pcie_gen_max or 0) for g in gpus)
    width = min((g.pcie_width or g.pcie_width_max or 0) for g in gpus)
    for cand in (f"pcie{gen}-x{width}", f"pcie{gen}x{width}", f"pcie{gen}"):
        if cand in links:
            return cand
    return None


# ---- Apple, AMD -------------------------------------------------------------------------------

def _run(cmd: list[str]) -> str | None:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return p.stdout if p.returncode == 0 else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def probe_apple() -> list[GpuInfo]:
    chip = (_run(["sysctl", "-n", "machdep.cpu.brand_string"]) or "").strip()  # "Apple M2 Max"
    mem = int((_run(["sysctl", "-n", "hw.memsize"]) or "0").strip() or 0)
    cores = None
    import json

    try:
        disp = json.loads(_run(["system_profiler", "SPDisplaysDataType", "-json"]) or "{}")
        cores = int(disp["SPDisplaysDataType"][0]["sppci_cores"])
    except (KeyError, IndexError, ValueError, TypeError):
        pass
    if not chip.startswith("Apple"):
        return []
    key = re.sub(r"[^a-z0-9]+", "-", chip.lower()).strip("-") + (f"-{cores}c" if cores else "")
    return [GpuInfo(0, f"{chip} ({cores or '?'}-core GPU)", match_device(key) or match_device(chip),
                    "apple", round(mem / _GIB, 1))]


def probe_amd() -> list[GpuInfo]:
    try:
        import amdsmi  # ROCm's Python bindings

        amdsmi.amdsmi_init()
        try:
            out = []
            for i, h in enumerate(amdsmi.amdsmi_get_processor_handles()):
                name = amdsmi.amdsmi_get_gpu_asic_info(h)["market_name"]
                total = amdsmi.amdsmi_get_gpu_memory_total(h, amdsmi.AmdSmiMemoryType.VRAM)
                out.append(GpuInfo(i, name, match_device(name), "amd", round(total / _GIB, 2)))
            return out
        finally:
            amdsmi.amdsmi_shut_down()
    except Exception:  # no amdsmi or no device: try the command-line tool
        pass
    import json

    text = _run(["rocm-smi", "--showproductname", "--showmeminfo", "vram", "--json"])
    if not text:
        return []
    out = []
    for i, (card, v) in enumerate(sorted(json.loads(text).items())):
        if not card.startswith("card"):
            continue
        name = v.get("Card Series") or v.get("Card series") or card
        total = float(v.get("VRAM Total Memory (B)", 0))
        out.append(GpuInfo(i, name, match_device(name), "amd", round(total / _GIB, 2)))
    return out


# ---- CPU, RAM, bandwidth ------------------------------------------------------------------------

def cpu_info() -> tuple[str, int | None, int | None, float | None]:
    """(model, physical cores, logical CPUs, RAM GiB) from /proc on Linux, sysctl on macOS."""
    threads = os.cpu_count()
    model, cores, ram = platform.processor() or "unknown", None, None
    try:
        text = open("/proc/cpuinfo").read()
        m = re.search(r"^model name\s*:\s*(.+)$", text, re.M)
        model = m.group(1).strip() if m else model
        phys = set(re.findall(r"^physical id\s*:\s*(\d+)[\s\S]*?^core id\s*:\s*(\d+)", text, re.M))
        cores = len(phys) or None
        mem = re.search(r"^MemTotal:\s*(\d+) kB", open("/proc/meminfo").read(), re.M)
        ram = round(int(mem.group(1)) * 1024 / _GIB, 1) if mem else None
    except OSError:
        brand = _run(["sysctl", "-n", "machdep.cpu.brand_string"])
        model = brand.strip() if brand else model
        c = _run(["sysctl", "-n", "hw.physicalcpu"])
        cores = int(c) if c and c.strip().isdigit() else None
        m = _run(["sysctl", "-n", "hw.memsize"])
        ram = round(int(m) / _GIB, 1) if m and m.strip().isdigit() else None
    return model, cores or threads, threads, ram


def host_bandwidth_gb_s(size_mib: int = 256, budget_s: float = 1.0, min_runs: int = 3) -> float:
    """Copy bandwidth of system RAM (read + write bytes per second): the best of several copies
    within about `budget_s` (at least `min_runs`).

    Both buffers are written once before any copy is timed: a fresh buffer's pages are mapped by
    the kernel on first touch, and a copy that pays those page faults measured 0.5 GB/s on a
    machine that copies at 20-30 GB/s. A single-threaded numpy copy underestimates what many
    cores can pull (a dual-channel DDR5 desktop reaches 60-70% of peak this way), so treat it as
    a lower bound."""
    import numpy as np

    src = np.ones(size_mib * 1024 * 1024 // 8)
    dst = np.zeros_like(src)
    dst.fill(1.0)  # touch every page (np.zeros may map them lazily)
    np.copyto(dst, src)  # and one untimed copy: caches, TLB, CPU clock up
    best, start, runs = 0.0, time.perf_counter(), 0
    while runs < min_runs or time.perf_counter() - start < budget_s:
        t0 = time.perf_counter()
        np.copyto(dst, src)
        dt = time.perf_counter() - t0
        best = max(best, 2 * src.nbytes / dt / 1e9)
        runs += 1
    return round(best, 1)


def torch_bandwidth(res: ProbeResult) -> None:
    """Device-memory copy bandwidth per GPU with torch, when torch with CUDA is importable."""
    try:
        import torch

        if not torch.cuda.is_available():
            return
    except Exception:
        return
    for i, g in enumerate(res.gpus):
        if i >= torch.cuda.device_count():
            break
        x = torch.empty(256 * 1024 * 1024, dtype=torch.uint8, device=f"cuda:{i}")
        y = torch.empty_like(x)
        y.copy_(x)
        torch.cuda.synchronize(i)
        t0 = time.perf_counter()
        for _ in range(10):
            y.copy_(x)
        torch.cuda.synchronize(i)
        bw = 2 * x.numel() * 10 / (time.perf_counter() - t0) / 1e9
        res.gpus[i] = GpuInfo(**{**asdict(g), "measured_bandwidth_gb_s": round(bw, 1)})


def probe(measure_bandwidth: bool = True, nvml: NvmlReadings | None = None) -> ProbeResult:
    """Everything above; `nvml` readings replace the live library (tests)."""
    res = ProbeResult()
    try:
        readings = nvml if nvml is not None else read_nvml()
        res.gpus, res.p2p_pairs, res.nvlink_pairs = gpus_from_nvml(readings)
        res.driver_version, res.cuda_version = readings.get("driver_version"), readings.get("cuda_version")
        if not res.gpus:
            res.messages.append("NVIDIA driver found but no GPU")
    except (RuntimeError, ImportError) as e:
        res.messages.append(f"no NVIDIA GPU: {e}")
    if not res.gpus and platform.system() == "Darwin":
        res.gpus = probe_apple()
    if not res.gpus:
        res.gpus = probe_amd()
    if not res.gpus:
        res.messages.append("no GPU or GPU driver found; CPU and RAM only")
    res.link_id = link_for(res.gpus, res.nvlink_pairs)
    for g in res.gpus:
        if g.device_id is None:
            res.messages.append(f"GPU {g.index} '{g.name}' is not in the catalog; "
                                "see `gpuplan gpus` and edit the gpus line")
    res.cpu_model, res.cpu_cores, res.cpu_threads, res.ram_gib = cpu_info()
    if measure_bandwidth:
        res.host_bandwidth_gb_s = host_bandwidth_gb_s()
        torch_bandwidth(res)
    return res
