"""Where llama.cpp puts each layer, and the flags that make it put them where the plan says.

llama.cpp has n_layer+1 slots (src/llama-model.cpp, load_tensors): the repeating layers 0..n-1
and the output layer n. `-ngl G` keeps the last G slots on the GPUs (i_gpu_start = n+1-G), so
`-ngl 10` is the output layer and 9 repeating layers. `--tensor-split` divides those G slots:
slot s (counted from i_gpu_start) goes to the first device whose cumulative share, as float32,
exceeds s/G. Whole-slot counts as the split reproduce a placement exactly, with no rounding.

gpuplan's plans (perf/memory.py) put `gpu_layers` repeating layers on the GPUs and the output
head in RAM when layers are offloaded, on the last GPU otherwise. llama-server reproduces that
with `-ngl gpu_layers+1` and `-ot` pinning the head to the CPU; llama-cpp-python and Ollama have
no `-ot`, so they keep the head on the GPU and, to stay within the planned memory, as many
layers fewer as the head weighs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..perf.memory import layers_per_device, row_main_device
from ..types import Hardware, LoadedModel, Plan, Split
from .facts import LLAMA_SERVER

ALL = 999  # -ngl value that offloads every slot, on every llama.cpp version
MAX_DEVICES = int(LLAMA_SERVER["max_devices"].value)  # --tensor-split takes fewer values than this
MAX_GPUS = int(LLAMA_SERVER["max_gpus"].value)  # what llama.cpp runs on: 15 GPUs + the CPU


@dataclass(frozen=True)
class Placement:
    ngl: int  # -ngl / n_gpu_layers / num_gpu
    tensor_split: str | None  # --tensor-split value
    head_on_cpu: bool  # -ot pins the output head to RAM
    slots: tuple[int, ...]  # llama.cpp slots per device: repeating layers, + the output on the last
    fewer_layers: int = 0  # layers left off the GPU to make room for the head (no -ot)


def assign(split: list[float], n_slots: int) -> list[int]:
    """Slots per device as llama.cpp computes them from --tensor-split values for n_slots
    offloaded slots (float32 cumulative shares, std::upper_bound)."""
    s = np.asarray(split, dtype=np.float32)
    cum = np.cumsum(s, dtype=np.float32)
    cum = cum / cum[-1]
    counts = [0] * len(split)
    for slot in range(n_slots):
        x = np.float32(slot) / np.float32(n_slots)
        counts[int(np.searchsorted(cum, x, side="right"))] += 1
    return counts


def _gpu_layers(plan: Plan, model: LoadedModel) -> tuple[int, bool]:
    """(repeating layers on the GPUs, whether the output head is on a GPU), as perf/memory.py."""
    n = model.spec.n_layers
    if plan.gpu_layers is None or plan.gpu_layers > n:
        return n, True
    return max(0, plan.gpu_layers), False


def plan_layers(plan: Plan, model: LoadedModel) -> list[int]:
    """Repeating layers per device of a layer split (or one device), as the plan's memory table."""
    g, _ = _gpu_layers(plan, model)
    shares = plan.shares if plan.shares else tuple([1.0] * len(plan.device_ids))
    return layers_per_device(g, shares)


def _row_split(plan: Plan) -> str | None:
    if len(plan.device_ids) < 2 or not plan.shares:
        return None
    return ",".join(f"{s:.4g}" for s in plan.shares)


def llama_server(plan: Plan, model: LoadedModel) -> Placement:
    g, head_gpu = _gpu_layers(plan, model)
    if g == 0:
        return Placement(ngl=0, tensor_split=None, head_on_cpu=False, slots=(0,) * len(plan.device_ids))
    ngl = ALL if head_gpu else g + 1
    if plan.split in (Split.ROW, Split.TENSOR) and len(plan.device_ids) > 1:
        return Placement(ngl=ngl, tensor_split=_row_split(plan), head_on_cpu=not head_gpu,
                         slots=(g + 1,) * len(plan.device_ids))
    counts = plan_layers(plan, model)
    counts[-1] += 1  # the output slot is on the last device (pinned to RAM by -ot when offloading)
    ts = ",".join(map(str, counts)) if len(counts) > 1 else None
    return Placement(ngl=ngl, tensor_split=ts, head_on_cpu=not head_gpu, slots=tuple(counts))


def without_override(plan: Plan, model: LoadedModel) -> Placement:
    """For llama-cpp-python and Ollama (no -ot): the output head goes to the GPU with the
    offloaded layers, so the last device takes as many layers fewer as the head weighs."""
    place = llama_server(plan, model)
    if not place.head_on_cpu:
        return place
    w, n = model.weights, model.spec.n_layers
    head = w.output_bytes or (w.embed_bytes if model.spec.tied_embeddings else 0)
    counts = list(place.slots)
    last = counts[-1] - 1  # repeating layers on the last device
    g = sum(counts) - 1
    smallest = min(w.layer_bytes[n - g:]) if g else 1
    fewer = min(last, math.ceil(head / max(smallest, 1)))
    counts[-1] -= fewer
    ts = ",".join(map(str, counts)) if len(counts) > 1 else None
    return Placement(ngl=g - fewer + 1, tensor_split=ts, head_on_cpu=False, slots=tuple(counts),
                     fewer_layers=fewer)


def head_too_big(plan: Plan, model: LoadedModel, engine: str) -> str | None:
    """Why an engine without -ot cannot stay within the plan: the output head it puts on the GPU
    weighs more than the layers planned on the last GPU (it would need them all and more)."""
    g, head_gpu = _gpu_layers(plan, model)
    if head_gpu or g == 0:
        return None
    w, n = model.weights, model.spec.n_layers
    head = w.output_bytes or (w.embed_bytes if model.spec.tied_embeddings else 0)
    last = plan_layers(plan, model)[-1]
    smallest = min(w.layer_bytes[n - g:])
    if math.ceil(head / max(smallest, 1)) > last:
        return (f"{engine} has no -ot to keep the output head in RAM, and the head ({head / 1e6:.0f} MB) "
                f"outweighs the {last} layers planned on the GPU; use llama-server")
    return None


def unplaceable(plan: Plan, model: LoadedModel) -> str | None:
    """Why llama.cpp cannot run this plan, or None: it runs at most 15 GPUs (its scheduler holds
    16 backends and the CPU is always one; --tensor-split also takes at most 15 values)."""
    k = len(plan.device_ids)
    if k > MAX_GPUS:
        return (f"llama.cpp runs at most {MAX_GPUS} GPUs: ggml's scheduler holds {MAX_DEVICES} backends "
                f"and the CPU is always one (16 GPUs abort at start), and --tensor-split takes at most "
                f"{MAX_DEVICES - 1} values; this plan has {k}")
    return None


def main_gpu(plan: Plan, hw: Hardware) -> int:
    """--main-gpu for a row split: the device holding the KV cache in the plan's memory table,
    as an index among the devices the process sees (CUDA_VISIBLE_DEVICES order)."""
    return row_main_device(plan, hw)


def notes(plan: Plan, model: LoadedModel, exact: bool, split_flag: str | None = "--tensor-split") -> list[str]:
    """What the layer flags mean, for people. exact: llama-server (with -ot); split_flag: how the
    engine spells the split (None: it takes none)."""
    n = model.spec.n_layers
    place = llama_server(plan, model) if exact else without_override(plan, model)
    out = []
    g, head_gpu = _gpu_layers(plan, model)
    if 0 < g and not head_gpu:
        if exact:
            out.append(f"-ngl {place.ngl}: llama.cpp counts the output layer as slot {n + 1} after the "
                       f"{n} repeating layers, so this is the last {g} layers on the GPU; -ot keeps the "
                       "output head in RAM, as planned")
        else:
            out.append(f"{place.ngl} GPU layers: llama.cpp counts the output layer as one, so this is "
                       f"the last {place.ngl - 1} layers and the output head on the GPU ("
                       f"{place.fewer_layers} fewer than planned, to make room for the head)")
    if place.tensor_split and plan.split == Split.LAYER and split_flag:
        layers = list(place.slots)
        layers[-1] -= 1
        out.append(f"{split_flag} {place.tensor_split.replace(',', ' ' if split_flag.startswith('--tensor_') else ',')}: whole llama.cpp slots per GPU, the output "
                   f"layer counted on the last: {', '.join(map(str, layers))} layers")
    return out
