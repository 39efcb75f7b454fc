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
from typing import Annotated, Optional

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

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
        raise InputError("hardware spec is empty; give e.g. --gpus '2x rtx-3090' or 'rtx-4090,rtx-3060-12gb'",
                         input="gpus", value=spec, accepted="a hardware spec such as 2x rtx-3090")
    devices, mem = [], []
    links = [catalog.link(link)] if link else []
    hosts = [catalog.host_memory(ram)] if ram else []
    sizes = [float(ram_gib)] if ram_gib is not None else []
    for tok in _tokens(spec):
        m = _ITEM.match(tok)
        if not m:
            raise InputError(f"hardware spec item '{tok}' is malformed; expected [Nx]DEVICE_ID[:NNgb], "
                             "e.g. 2x rtx-3090 or apple-m2-max-38c:96gb", input="gpus", value=tok,
                             accepted="[Nx]DEVICE_ID[:NNgb]")
        count_s, ident, size_s, _unit = m.groups()
        ident = ident.lower()
        if ident in catalog.links() and not count_s:
            links.append(catalog.link(ident))
            continue
        if ident in catalog.host_memories() and not count_s:
            hosts.append(catalog.host_memory(ident))
            if size_s:
                sizes.append(_ram_size(float(size_s), tok))
            continue
        if ident not in catalog.devices() and not catalog._alias_index("device").get(ident):
            every = list(catalog.devices()) + list(catalog.links()) + list(catalog.host_memories())
            raise InputError(f"unknown device '{ident}' in hardware spec item '{tok}'{suggest(ident, every)}; "
                             "see `gpuplan gpus` for ids", input="gpus", value=ident,
                             accepted="catalog device, link and host memory ids (`gpuplan gpus`)")
        dev = catalog.device(ident)
        count = int(count_s) if count_s else 1
        if count < 1 or count > MAX_DEVICES:
            raise InputError(f"device count {count} for {ident} is out of range; accepted: 1 to {MAX_DEVICES}",
                             input="gpus", value=count, accepted=f"1 to {MAX_DEVICES}")
        size = float(size_s) if size_s else None
        if size is not None and not (1 <= size <= 65536):
            raise InputError(f"memory size {size_s}gb for {ident} is out of range; accepted: 1 to 65536 GB",
                             input="gpus", value=tok, accepted="1 to 65536 GB")
        if size is not None and dev.kind == "gpu" and dev.memory_options_gib is None and size > dev.memory_gib:
            raise InputError(f"{ident} has {dev.memory_gib:g} GB; ':{size_s}gb' asks for more than it has",
                             input="gpus", value=tok, accepted=f"up to {dev.memory_gib:g} GB")
        if size is not None and dev.memory_options_gib and size not in dev.memory_options_gib:
            opts = ", ".join(f"{o:g}" for o in dev.memory_options_gib)
            raise InputError(f"{ident} comes with {opts} GB; ':{size_s}gb' is not one of them", input="gpus",
                             value=tok, accepted=f"{opts} GB")
        for _ in range(count):
            devices.append(dev)
            mem.append(size)
    if not devices:
        raise InputError(f"hardware spec '{spec}' names no device; give e.g. '2x rtx-3090'", input="gpus",
                         value=spec, accepted="at least one device id")
    link_obj = _one("link", links, spec)
    host = _one("host memory", hosts, spec)
    ram_gib = _one("RAM size", sizes, spec)
    kinds = {d.kind for d in devices}
    if len(kinds) > 1 and "gpu" not in kinds:
        raise InputError(f"hardware spec '{spec}' mixes Apple chips and CPUs; give one machine's devices",
                         input="gpus", value=spec, accepted="one Apple chip, one CPU, or GPUs")
    if "apple" in kinds and len(devices) > 1:
        raise InputError(f"hardware spec '{spec}': a Mac has one Apple chip; give one apple-... device",
                         input="gpus", value=spec, accepted="one apple-... device")
    if nodes < 1 or nodes > 1024:
        raise InputError(f"--nodes {nodes} is out of range; accepted: 1 to 1024", input="nodes", value=nodes,
                         accepted="1 to 1024")
    if len(devices) % nodes:
        raise InputError(f"{len(devices)} devices cannot be spread evenly over {nodes} nodes", input="nodes",
                         value=nodes, accepted=f"a divisor of {len(devices)}")
    if link_obj is not None:
        check_link(link_obj, devices)
    mem = [s if s is not None else (d.memory_gib if d.kind != "cpu" else (ram_gib or DEFAULT_HOST_RAM_GIB))
           for d, s in zip(devices, mem)]
    nl = catalog.link(node_link) if node_link else (catalog.link("ib-ndr") if nodes > 1 else None)
    given = link_obj is not None
    if link_obj is None and len(devices) > 1:
        link_obj = _default_link(devices)
    return Hardware(devices=tuple(devices), memory_gib=tuple(mem), link=link_obj, host=host,
                    host_ram_gib=ram_gib, nodes=nodes, node_link=nl, link_given=given)


def _ram_size(size: float, tok: str) -> float:
    if not (1 <= size <= 65536):
        raise InputError(f"RAM size in '{tok}' is out of range; accepted: 1 to 65536 GB", input="ram",
                         value=tok, accepted="1 to 65536 GB")
    return size


def _one(what: str, items: list, spec: str):
    """The one link / host memory / RAM size a machine has; two different ones is a contradiction."""
    distinct = list({getattr(x, "id", x): x for x in items}.values())
    if len(distinct) > 1:
        names = " and ".join(getattr(x, "id", None) or f"{x:g} GB" for x in distinct)
        raise InputError(f"hardware '{spec}' names two {what}s ({names}); give one", input="gpus",
                         value=spec, accepted=f"one {what}")
    return distinct[0] if distinct else None


def link_fits(link, dev) -> bool:
    """Whether this card takes this link. PCIe fits any GPU; an NVLink bridge or NVLink fabric only
    the cards the catalog says take it (a bridge is made for one card family)."""
    if link.kind == "pcie":
        return True
    if link.fits_devices:
        return dev.id in link.fits_devices
    return dev.kind == "gpu" and dev.nvlink == link.id


def check_link(link, devices) -> None:
    """A link the devices cannot have is a bad input: say which cards take which bridge."""
    if link.scope == "inter-node":
        raise InputError(f"link '{link.id}' connects machines, not the GPUs inside one; between GPUs give a "
                         "PCIe or NVLink link (with --nodes N, machines are joined by InfiniBand NDR)",
                         input="link", value=link.id, accepted="an intra-node link: pcie4-x16, nvlink4, ...")
    if link.kind == "pcie":
        if any(d.kind != "gpu" for d in devices):
            raise InputError(f"link '{link.id}' joins GPUs; {devices[0].id} is not a GPU", input="link",
                             value=link.id, accepted="no link for an Apple chip or a CPU")
        return
    bad = list({d.id: d for d in devices if not link_fits(link, d)}.values())
    if not bad:
        return
    takers = sorted(d.id for d in catalog.devices().values() if link_fits(link, d))
    own = "; ".join(f"{d.id} takes {d.nvlink}" if d.nvlink else f"{d.id} has no {'NVLink' if 'nvlink' in link.kind else link.kind}"
                    for d in bad)
    raise InputError(f"link '{link.id}' does not fit {', '.join(d.id for d in bad)} ({own}); {link.id} fits "
                     f"{', '.join(takers) or 'no catalog card'}; otherwise give a PCIe link such as pcie4-x8",
                     input="link", value=link.id,
                     accepted=", ".join(sorted({d.nvlink for d in bad if d.nvlink} | {"pcie3-x16", "pcie4-x8"})))


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


class _Entry(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Cpu(_Entry):
    model: Optional[Annotated[str, Field(max_length=300)]] = None
    cores: Optional[Annotated[int, Field(ge=1, le=10_000)]] = None  # physical cores
    threads: Optional[Annotated[int, Field(ge=1, le=100_000)]] = None


class _HostMemory(_Entry):
    id: Optional[Annotated[str, Field(max_length=100)]] = None  # a catalog host memory id
    bandwidth_gb_s: Optional[Annotated[float, Field(gt=0, le=100_000, allow_inf_nan=False)]] = None
    ram_gib: Optional[Annotated[float, Field(gt=0, le=65536, allow_inf_nan=False)]] = None  # a probe's: any size


def _gpus_text(v):
    """gpus: "2x rtx-3090" or a list of such items (each text)."""
    if isinstance(v, list) and all(isinstance(x, str) for x in v):
        return ",".join(v)
    return v


def _host_memory(v):
    return {"id": v} if isinstance(v, str) else v


class HardwareFile(_Entry):
    """A hardware file, as `gpuplan probe --save` writes it or a person does: every key typed and
    in its physical range (a typo in a key is an error, not a silently ignored line)."""

    gpus: Annotated[Optional[Annotated[str, Field(max_length=10_000)]], BeforeValidator(_gpus_text)] = None
    link: Optional[Annotated[str, Field(max_length=100)]] = None
    host_memory: Annotated[Optional[_HostMemory], BeforeValidator(_host_memory)] = None
    ram_gib: Optional[Annotated[float, Field(gt=0, le=65536, allow_inf_nan=False)]] = None
    nodes: Annotated[int, Field(ge=1, le=1024)] = 1
    cpu: Optional[_Cpu] = None


def parse_hardware_file(data, where: str) -> HardwareFile:
    """The mapping of a hardware file as a HardwareFile, or one InputError naming the key."""
    from pydantic import ValidationError

    from ..requests import input_error

    if not isinstance(data, dict):
        raise InputError(f"{where} needs a mapping such as gpus: \"2x rtx-3090\" (as `gpuplan probe --save` "
                         "writes)", input="hardware", accepted="a YAML mapping")
    try:
        return HardwareFile(**{str(k): v for k, v in data.items()})
    except ValidationError as e:
        err = input_error(HardwareFile, e.errors(), "file")
        raise InputError(f"{where}: {err}", input=err.input, value=err.value, accepted=err.accepted) from None


def load_hardware_file(path: str | Path) -> Hardware:
    """A hardware file written by `gpuplan probe --save` (or by hand):
    gpus: "2x rtx-3090"   link: pcie4-x16   host_memory: ddr5-6000-2ch   ram_gib: 64"""
    from ..errors import read_yaml_file

    where = f"hardware file {path}"
    hf = parse_hardware_file(read_yaml_file(path, "hardware file"), where)
    if not hf.gpus and hf.cpu is None:
        raise InputError(f"{where} needs a 'gpus' entry, e.g. gpus: \"2x rtx-3090\", "
                         "or a 'cpu' entry as `gpuplan probe --save` writes", input="hardware",
                         accepted="a gpus or cpu entry")
    from dataclasses import replace

    return replace(hardware_from_dict(hf, where), origin="file")


def hardware_from_dict(data: "dict | HardwareFile", where: str = "hardware") -> Hardware:
    """The hardware file's mapping (also what `gpuplan probe` finds) -> Hardware. No GPU: the CPU
    itself is the device, with the memory bandwidth the probe measured."""
    hf = data if isinstance(data, HardwareFile) else parse_hardware_file(data, where)
    hm = hf.host_memory or _HostMemory()
    ram_gib = hf.ram_gib or hm.ram_gib
    if not hf.gpus:
        from .cpu_device import cpu_device

        cpu = hf.cpu or _Cpu()
        ram = ram_gib or DEFAULT_HOST_RAM_GIB
        dev = cpu_device(cpu.model or "CPU", cpu.cores or os.cpu_count() or 1, hm.bandwidth_gb_s)
        return Hardware(devices=(dev,), memory_gib=(float(ram),), host_ram_gib=float(ram))
    return parse_hardware(hf.gpus, link=hf.link, ram=hm.id, ram_gib=ram_gib, nodes=hf.nodes)


def resolve_hardware(req) -> Hardware:
    """The hardware a request names (a HardwareRequest: --gpus, --hardware, --link, --ram,
    --ram-gib, --nodes), or this machine as the probe sees it when it names none."""
    from dataclasses import replace

    if req.gpus and req.hardware:
        raise InputError("give either --gpus or --hardware, not both", input="gpus", value=req.gpus,
                         accepted="--gpus SPEC or --hardware FILE")
    if req.gpus:
        return parse_hardware(req.gpus, link=req.link, ram=req.ram, ram_gib=req.ram_gib, nodes=req.nodes)
    hw = load_hardware_file(req.hardware) if req.hardware else probed_hardware()
    if req.link:
        link = catalog.link(req.link)
        check_link(link, hw.devices)
        hw = replace(hw, link=link, link_given=True)
    if req.ram:
        hw = replace(hw, host=catalog.host_memory(req.ram))
    if req.ram_gib is not None:
        cpu_only = all(d.kind == "cpu" for d in hw.devices)
        hw = replace(hw, host_ram_gib=float(req.ram_gib),
                     memory_gib=tuple(float(req.ram_gib) for _ in hw.devices) if cpu_only else hw.memory_gib)
    if req.nodes != 1 and req.nodes != hw.nodes:
        hw = parse_hardware(",".join(d.id for d in hw.devices), link=hw.link.id if hw.link else None,
                            ram=hw.host.id if hw.host else None, ram_gib=hw.host_ram_gib, nodes=req.nodes)
    return hw


def probed_hardware() -> Hardware:
    """No --gpus: this machine as `gpuplan probe` sees it (the CPU when it has no GPU)."""
    from dataclasses import replace

    from .probe import probe

    return replace(hardware_from_dict(probe(measure_bandwidth=True).to_hardware(), "probed machine"),
                   origin="probed")
