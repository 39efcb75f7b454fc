"""ExLlamaV2 through TabbyAPI: a `config.yml` snippet (EXL2 weights only).

Keys: https://github.com/theroyallab/tabbyAPI/blob/main/config_sample.yml
(gpu_split in GB per device, tensor_parallel, max_seq_len, cache_mode FP16/Q8/Q6/Q4).
"""

from __future__ import annotations

import math

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base

NAME = "exllamav2"
PORT = 5000
CACHE_MODE = {"f16": "FP16", "q8_0": "Q8", "q6": "Q6", "q4_0": "Q4"}
HEADROOM_GB = 0.5  # autosplit fills devices in order; a little slack keeps the last layer


def supports(plan: Plan, model: LoadedModel) -> str | None:
    if base.family(model) != "exl2":
        return f"ExLlamaV2/TabbyAPI loads EXL2 weights; {model.quant.id} is not EXL2"
    if plan.split == Split.ROW or plan.pp > 1:
        return "ExLlamaV2 splits by layers (gpu_split) or tensor parallel, on one machine"
    if plan.gpu_layers is not None or plan.experts_on_host or plan.n_cpu_moe:
        return "ExLlamaV2 keeps every weight in VRAM (no RAM offload)"
    if plan.kv_type not in CACHE_MODE:
        return f"ExLlamaV2 cache modes are FP16/Q8/Q6/Q4, not {plan.kv_type}"
    return None


def gpu_split_gb(plan: Plan, model: LoadedModel, hw: Hardware) -> list[float]:
    """Weights per device (GB) from the shares, plus headroom, capped at the device."""
    n = len(plan.device_ids)
    shares = plan.shares or tuple(1 / n for _ in range(n))
    total_gb = model.weights.total_bytes / 1e9
    out = []
    for i, s in zip(plan.device_ids, shares):
        gb = math.ceil((s / sum(shares) * total_gb + HEADROOM_GB) * 10) / 10
        out.append(min(gb, round(hw.memory_gib[i] * 1.073741824, 1)))
    return out


def command(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
            model_ref: str | None = None) -> str:
    folder = model_ref or f"{model.spec.id.split('/')[-1]}-exl2-{model.bits_per_weight_override or model.quant.bits_per_weight}bpw"
    lines = []
    for r, ids in enumerate(base.replica_devices(plan, hw)):
        env = base.visible_env(ids, hw)
        lines.append(base.comment(f"TabbyAPI{f' replica {r}' if plan.replicas > 1 else ''}: "
                                  "start with " + base.render(["python", "main.py"], env)))
    multi = len(plan.device_ids) > 1
    lines += [
        "network:",
        f"  port: {PORT}",
        "model:",
        f"  model_name: {folder}",
        f"  max_seq_len: {workload.context}",
        f"  max_batch_size: {base.per_replica_users(plan, workload)}",
        f"  cache_mode: {CACHE_MODE[plan.kv_type]}",
        f"  cache_size: {math.ceil(workload.context * base.per_replica_users(plan, workload) / 256) * 256}",
        f"  tensor_parallel: {'true' if plan.split == Split.TENSOR and multi else 'false'}",
        f"  gpu_split_auto: {'false' if multi else 'true'}",
    ]
    if multi:
        lines.append(f"  gpu_split: [{', '.join(f'{g:g}' for g in gpu_split_gb(plan, model, hw))}]")
    if plan.replicas > 1:
        lines.append(base.comment("one TabbyAPI per replica, each with its own port; "
                                  "put a load balancer in front"))
    return "\n".join(lines)
