"""Published rows that no physics explains, each with its reason: they are reported, not fitted.

A row is set aside when what it states contradicts what it names: the file size its note gives
is not the size of the model and format the row names (another model or file was measured), or
the model with its cache does not fit the memory of the device it names (the run swapped).
"""

from __future__ import annotations

import re

_GIB = re.compile(r"(\d+(?:\.\d+)?)\s*GiB\b")
SIZE_TOLERANCE = 0.15
MEMORY_MARGIN = 0.05


def stated_size_gib(note: str) -> float | None:
    m = _GIB.search(note or "")
    return float(m.group(1)) if m else None


def unexplained(m, setup) -> str | None:
    """Why this row cannot be a measurement of what it names, or None."""
    from ..perf.memory import device_memory

    model, hw, plan, wl = setup
    size = stated_size_gib(getattr(m, "note", ""))
    ours = model.weights.total_bytes / 2**30
    if size and abs(ours - size) / size > SIZE_TOLERANCE:
        return (f"the note gives a {size:g} GiB file; {model.spec.id} in {model.quant.id} is {ours:.2f} GiB,"
                " so another model or file was measured")
    if hw.devices[0].kind != "cpu" and plan.gpu_layers is None:
        mem = device_memory(model, hw, plan, wl)
        # beyond the memory model's own error (a few %): the run cannot have been what the row says
        if any(d.total > d.capacity * (1 + MEMORY_MARGIN) for d in mem):
            return (f"{model.spec.id} {model.quant.id} with a {wl.context}-token cache does not fit"
                    f" {hw.n}x {hw.devices[0].id}: the run swapped or offloaded")
    return None


# Rows whose figures contradict the same software on the same kind of hardware elsewhere in the
# published sets; found by inspection, kept here with the reason so they are reported, not fitted.
KNOWN = [
    {"source": "GPU-Benchmarks-on-LLM-Inference/blob/eafac9d", "gpu": "rtx-3090", "split": "row", "metric": "prefill",
     "reason": "December 2023 row-split prompt figures on the RTX 3090 rigs are 4-30x below any PCIe model and"
               " below the RTX 4090 rigs on identical software: those rigs' links were far slower (risers)"},
    {"source": "GPU-Benchmarks-on-LLM-Inference", "gpu": "apple-m1-max-24c", "quant": "F16", "model_has": "13b",
     "reason": "13B F16 on the 32 GB M1 Max 24-core machine of that table exceeds the GPU's wired memory and swaps"},
]


def known(m) -> str | None:
    for k in KNOWN:
        if k["source"] not in (m.source or ""):
            continue
        if any(k[f] != getattr(m, f, None) for f in ("gpu", "split", "quant") if f in k):
            continue
        if "metric" in k and k["metric"] != m.metric.value:
            continue
        if "model_has" in k and k["model_has"] not in m.model.lower():
            continue
        return k["reason"]
    return None


def reason(m, setup) -> str | None:
    """Why a row is set aside (rule or known list), or None."""
    return unexplained(m, setup) or known(m)


def family(m, setup=None) -> str:
    """The device family a row belongs to: vendor, architecture and segment of its device
    (NVIDIA Ampere consumer and the A100's Ampere datacenter are different families)."""
    if setup is not None:
        dev = setup[1].devices[0]
    else:
        from ..perf.predict import row_cpu, row_device

        dev = row_cpu(m)[0] if (m.gpu or "").lower() == "cpu" else row_device(m.gpu)
    if dev.kind == "apple":
        return dev.architecture  # Apple M1, Apple M2, ...
    seg = {"desktop-cpu": "CPU", "server-cpu": "server CPU"}.get(dev.segment, dev.segment)
    return f"{dev.vendor.upper() if dev.vendor in ('amd', 'nvidia') else dev.vendor.title()} {dev.architecture} {seg}"
