"""Shared bits of the command layer: resolving inputs and formatting numbers."""

from __future__ import annotations

from ..errors import InputError

GB = 1e9


def gb(x: float) -> float:
    return round(x / GB, 2)


def check_range(name: str, value: float, lo: float, hi: float) -> None:
    if not (lo <= value <= hi):
        def fmt(v):
            return f"{v:,}" if float(v).is_integer() else f"{v:g}"

        raise InputError(f"{name} {fmt(value)} is out of range; accepted: {fmt(lo)} to {fmt(hi)}")


def resolve_hardware(gpus: str | None, hardware: str | None, link: str | None = None,
                     ram: str | None = None, nodes: int = 1):
    from ..sources.hardware import load_hardware_file, parse_hardware

    if gpus and hardware:
        raise InputError("give either --gpus or --hardware, not both")
    if hardware:
        hw = load_hardware_file(hardware)
        if link or ram:
            from dataclasses import replace

            from .. import catalog

            hw = replace(hw, link=catalog.link(link) if link else hw.link,
                         host=catalog.host_memory(ram) if ram else hw.host)
        return hw
    if not gpus:
        return probed_hardware(link, ram)
    return parse_hardware(gpus, link=link, ram=ram, nodes=nodes)


def probed_hardware(link=None, ram=None):
    """No --gpus: use this machine as `gpuplan probe` sees it (the CPU when it has no GPU)."""
    from dataclasses import replace

    from .. import catalog
    from ..sources.hardware import hardware_from_dict
    from ..sources.probe import probe

    result = probe(measure_bandwidth=True)
    hw = hardware_from_dict(result.to_hardware(), "probed machine")
    if link or ram:
        hw = replace(hw, link=catalog.link(link) if link else hw.link,
                     host=catalog.host_memory(ram) if ram else hw.host)
    return hw


def default_engine(model, engine: str | None):
    from ..types import Engine

    if engine:
        return Engine.parse(engine)
    kind = model.quant.kind
    if kind in ("gguf", "gguf-mix"):
        return Engine.LLAMA_CPP
    if kind == "exl2":
        return Engine.EXLLAMAV2
    if kind == "mlx":
        return Engine.MLX
    return Engine.VLLM
