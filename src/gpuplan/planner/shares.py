"""Layer shares for a split over cards of different sizes: each card gets layers in proportion
to the room it has after its own fixed costs (CUDA context, compute buffer, and on the last
card the output head and logits buffer), so the KV cache grows evenly and no card overflows
first. This is the manual --tensor-split that users ask tools to compute (ollama#17523)."""

from __future__ import annotations

from dataclasses import replace

from ..perf.memory import device_memory, kv_layer_bytes
from ..types import Hardware, LoadedModel, Plan, Workload


def proportional_shares(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload) -> tuple[float, ...]:
    n = len(plan.device_ids)
    if n == 1:
        return (1.0,)
    # fixed costs per device: measure with an even split and no layers' worth of difference
    probe = device_memory(model, hw, replace(plan, shares=tuple([1.0] * n)), wl)[:n]
    spec, w = model.spec, model.weights
    per_layer = (sum(w.layer_bytes) + sum(kv_layer_bytes(spec, plan.kv_type, wl.context,
                                                          max(wl.users, 1)))) / spec.n_layers
    out = w.output_bytes if w.output_bytes else (w.embed_bytes if spec.tied_embeddings else 0)
    room = []
    for i, m in enumerate(probe):
        fixed = m.overhead + (out if i == n - 1 else 0)
        room.append(max(m.capacity - fixed, per_layer * 0.5))
    total = sum(room)
    shares = [r / total for r in room]
    return tuple(round(s, 4) for s in shares)
