"""Hardware spec strings and hardware files -> Hardware.

Grammar (items separated by ',', '+' or spaces):
  [N x] DEVICE_ID [:NNgb]    a device, N of them; ':NNgb' picks an Apple/CPU memory size
  LINK_ID                    how the GPUs connect (pcie4-x8, nvlink-bridge-3090, ...)
  HOST_MEMORY_ID             system RAM for offload (ddr5-6000-2ch, ...), optionally :NNgb
Examples: "2x rtx-3090", "rtx-4090,rtx-3060-12gb", "apple-m2-max-38c:96gb",
"2x rtx-4090 pcie4-x8", "1x rtx-4090 + ddr5-6000-2ch:64gb".
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from .. import catalog
from ..errors import InputError, suggest
from ..types import Hardware

_ITEM = re.compile(r"^(?:(\d+)\s*x\s*)?([a-z0-9][a-z0-9._-]*)(?::(\d+(?:\.\d+)?)\s*(gb|gib))?$", re.I)
MAX_DEVICES = 4096
DEFAULT_HOST_RAM_GIB = 64.0  # assumed when RAM size isn't given (a common desktop)


def _tokens(spec: str) -> list[str]:
    spec = re.sub(r"(\d+)\s+x\s+", r"\1x ", spec.strip())  # "2 x rtx-3090" -> "2x rtx-3090"
    spec = re.sub(r"(\d+x)\s+", r"\1", spec)  # "2x rtx-3090" -> "2xrtx-3090"
    return [t for t in re.split(r"[,+\s]+", spec) if t]


def parse_hardware(spec: str, link: str | None = None, ram: str | None = None,
                   ram_gib: float | None = None, nodes: int = 1, node_link: str | None = None) -> Hardware:
    if not spec or not spec.strip():
        raise InputError("hardware spec is empty; give e.g. --gpus '2x rtx-3090' or 'rtx-4090,rtx-3060-12gb'")
    devices, mem = [], []
    link_obj = catalog.link(link) if link else None
    host = catalog.host_memory(ram) if ram else None
    for tok in _tokens(spec):
        m = _ITEM.match(tok)
        if not m:
            raise InputError(f"hardware spec item '{tok}' is malformed; expected [Nx]DEVICE_ID[:NNgb], "
                             "e.g. 2x rtx-3090 or apple-m2-max-38c:96gb")
        count_s, ident, size_s, _unit = m.groups()
        ident = ident.lower()
        if ident in catalog.links() and not count_s:
            link_obj = catalog.link(ident)
            continue
        if ident in catalog.host_memories() and not count_s:
            host = catalog.host_memory(ident)
            if size_s:
                ram_gib = float(size_s)
            continue
        if ident not in catalog.devices() and not catalog._alias_index("device").get(ident):
            every = list(catalog.devices()) + list(catalog.links()) + list(catalog.host_memories())
            raise InputError(f"unknown device '{ident}' in hardware spec item '{tok}'{suggest(ident, every)}; "
                             "see `gpuplan gpus` for ids")
        dev = catalog.device(ident)
        count = int(count_s) if count_s else 1
        if count < 1 or count > MAX_DEVICES:
            raise InputError(f"device count {count} for {ident} is out of range; accepted: 1 to {MAX_DEVICES}")
        size = float(size_s) if size_s else None
        if size is not None and not (0 < size <= 65536):
            raise InputError(f"memory size {size_s}gb for {ident} is out of range; accepted: 1 to 65536 GB")
        if size is not None and dev.kind == "gpu" and dev.memory_options_gib is None and size > dev.memory_gib:
            raise InputError(f"{ident} has {dev.memory_gib:g} GB; ':{size_s}gb' asks for more than it has")
        if size is not None and dev.memory_options_gib and size not in dev.memory_options_gib:
            opts = ", ".join(f"{o:g}" for o in dev.memory_options_gib)
            raise InputError(f"{ident} comes with {opts} GB; ':{size_s}gb' is not one of them")
        cap = size if size is not None else (dev.memory_gib if dev.kind != "cpu" else None)
        if dev.kind == "cpu":
            cap = size if size is not None else (ram_gib or DEFAULT_HOST_RAM_GIB)
        for _ in range(count):
            devices.append(dev)
            mem.append(cap)
    if not devices:
        raise InputError(f"hardware spec '{spec}' names no device; give e.g. '2x rtx-3090'")
    kinds = {d.kind for d in devices}
    if len(kinds) > 1 and "gpu" not in kinds:
        raise InputError(f"hardware spec '{spec}' mixes Apple chips and CPUs; give one machine's devices")
    if "apple" in kinds and len(devices) > 1:
        raise InputError(f"hardware spec '{spec}': a Mac has one Apple chip; give one apple-... device")
    if nodes < 1 or nodes > 1024:
        raise InputError(f"--nodes {nodes} is out of range; accepted: 1 to 1024")
    if len(devices) % nodes:
        raise InputError(f"{len(devices)} devices cannot be spread evenly over {nodes} nodes")
    nl = catalog.link(node_link) if node_link else (catalog.link("ib-ndr") if nodes > 1 else None)
    if link_obj is None and len(devices) > 1:
        link_obj = _default_link(devices)
    return Hardware(devices=tuple(devices), memory_gib=tuple(mem), link=link_obj, host=host,
                    host_ram_gib=ram_gib, nodes=nodes, node_link=nl)


def _default_link(devices) -> "object | None":
    """Several GPUs and no link given: SXM parts talk over their NVLink, others over PCIe
    at the slowest card's generation with x8 lanes (two x16 slots on a desktop split to x8/x8)."""
    first = devices[0]
    if all(d.id == first.id for d in devices) and first.nvlink and not first.nvlink.startswith("nvlink-bridge"):
        return catalog.link(first.nvlink)
    gens = [d.pcie_gen for d in devices if d.pcie_gen]
    gen = min(gens) if gens else 4
    gen = max(3, min(gen, 5))
    lanes = 16 if all(d.segment == "datacenter" for d in devices) else 8
    return catalog.link(f"pcie{gen}-x{lanes}")


def load_hardware_file(path: str | Path) -> Hardware:
    """A hardware file written by `gpuplan probe --save` (or by hand):
    gpus: "2x rtx-3090"   link: pcie4-x16   host_memory: ddr5-6000-2ch   ram_gib: 64"""
    from ..errors import read_yaml_file

    data = read_yaml_file(path, "hardware file")
    if not isinstance(data, dict) or not (data.get("gpus") or isinstance(data.get("cpu"), dict)):
        raise InputError(f"hardware file {path} needs a 'gpus' entry, e.g. gpus: \"2x rtx-3090\", "
                         "or a 'cpu' entry as `gpuplan probe --save` writes")
    return hardware_from_dict(data, str(path))


def hardware_from_dict(data: dict, where: str = "hardware") -> Hardware:
    """The hardware file's mapping (also what `gpuplan probe` finds) -> Hardware. No GPU: the CPU
    itself is the device, with the memory bandwidth the probe measured."""
    hm = data.get("host_memory")
    if not data.get("gpus"):
        from .cpu_device import cpu_device

        cpu = data.get("cpu") or {}
        bw = hm.get("bandwidth_gb_s") if isinstance(hm, dict) else None
        ram = (hm.get("ram_gib") if isinstance(hm, dict) else None) or data.get("ram_gib") or DEFAULT_HOST_RAM_GIB
        try:
            dev = cpu_device(str(cpu.get("model", "CPU")), int(cpu.get("cores") or os.cpu_count() or 1), bw)
        except (TypeError, ValueError):
            raise InputError(f"{where}: the 'cpu' entry needs a numeric 'cores'") from None
        return Hardware(devices=(dev,), memory_gib=(float(ram),), host_ram_gib=float(ram))
    gpus = data["gpus"]
    if isinstance(gpus, list):
        gpus = ",".join(str(g) for g in gpus)
    ram = hm if isinstance(hm, str) else None
    ram_gib = data.get("ram_gib") or (hm.get("ram_gib") if isinstance(hm, dict) else None)
    return parse_hardware(str(gpus), link=data.get("link"), ram=ram, ram_gib=ram_gib,
                          nodes=int(data.get("nodes", 1)))
