"""ExLlamaV2 through TabbyAPI: one `config.yml` per replica (EXL2 weights only).

TabbyAPI's main branch dropped ExLlamaV2 (it runs ExLlamaV3); EXL2 loads on its
`exl2-checkpoint` branch (facts.TABBYAPI). Keys: that branch's config_sample.yml (gpu_split in GB
per device, tensor_parallel, max_seq_len, cache_size a multiple of 256, cache_mode FP16/Q8/Q6/Q4).
"""

from __future__ import annotations

import math

import yaml

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base
from .facts import TABBYAPI

NAME = "exllamav2"
PORT = int(TABBYAPI["default_port"].value)
BRANCH = str(TABBYAPI["exl2_branch"].value)
CACHE_MODE = {"f16": "FP16", "q8_0": "Q8", "q6": "Q6", "q4_0": "Q4"}
HEADROOM_GB = 0.5  # autosplit fills devices in order; a little slack keeps the last layer


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
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


def config(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload, folder: str, port: int) -> dict:
    slots = base.slots(plan, wl)
    multi = len(plan.device_ids) > 1
    model_cfg = {
        "model_dir": "models", "model_name": folder, "backend": "exllamav2",
        "max_seq_len": wl.context, "max_batch_size": slots,
        "cache_mode": CACHE_MODE[plan.kv_type],
        "cache_size": math.ceil(wl.context * slots / 256) * 256,  # TabbyAPI: a multiple of 256
        "tensor_parallel": plan.split == Split.TENSOR and multi,
        "gpu_split_auto": not multi,
    }
    if multi:
        model_cfg["gpu_split"] = gpu_split_gb(plan, model, hw)
    return {"network": {"host": base.BIND, "port": port}, "model": model_cfg}


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    bpw = model.bits_per_weight_override or model.quant.bits_per_weight
    folder = model_ref or f"{base.hf_name(model).split('/')[-1]}-exl2-{bpw}bpw"
    groups = base.replica_devices(plan, hw)
    files, procs = {}, []
    for r, ids in enumerate(groups):
        name = "config.yml" if len(groups) == 1 else f"config-{r}.yml"
        files[f"tabbyAPI/{name}"] = yaml.safe_dump(config(plan, model, hw, wl, folder, PORT + r),
                                                   sort_keys=False)
        procs.append(base.Process(argv=["python", "main.py", "--config", name], cwd="tabbyAPI",
                                  env=base.visible_env(ids, hw),
                                  notes=[f"replica {r} on port {PORT + r}"] if len(groups) > 1 else []))
    notes = [f"once: git clone --branch {BRANCH} https://github.com/theroyallab/tabbyAPI (its main "
             f"branch no longer loads EXL2; the {BRANCH} branch does), model folder in tabbyAPI/models"]
    if len(groups) > 1:
        notes.append("one TabbyAPI per replica, each with its own port; put a load balancer in front")
    return base.LaunchCommand(engine=NAME, processes=procs, notes=notes, files=files)
