"""What every engine module shares: quant families, device lists, flag tables, rendering.

An engine module exposes NAME, supports(plan, model) -> reason | None and
command(plan, model, hw, workload, model_ref) -> str. Flags live in a per-engine table
(plan field -> flag); `argv` turns (field, value) pairs into arguments and `render`
joins them with shlex.join, so no flag string is ever concatenated by hand.
"""

from __future__ import annotations

import math
import shlex

from ..types import Hardware, LoadedModel, Plan, Split, Workload

GGUF_KINDS = ("gguf", "gguf-mix")
HF_KINDS = ("float", "awq", "gptq", "fp8", "int", "mxfp4", "nvfp4", "nf4")  # safetensors checkpoints vLLM/SGLang/TGI load
PREQUANT_KINDS = ("awq", "gptq", "int", "mxfp4", "nvfp4", "nf4")  # method read from the checkpoint's config.json


def family(model: LoadedModel) -> str:
    """gguf | float | awq | gptq | fp8 | exl2 | int: what loads the weights."""
    return "gguf" if model.quant.kind in GGUF_KINDS else model.quant.kind


def multi_node(plan: Plan, hw: Hardware) -> bool:
    return hw.nodes > 1


def per_replica_users(plan: Plan, workload: Workload) -> int:
    return max(1, math.ceil(workload.users / max(1, plan.replicas)))


def replica_devices(plan: Plan, hw: Hardware) -> list[tuple[int, ...]]:
    """Devices of each replica: the first uses plan.device_ids, the next ones take the
    following unused device indices, as many as the first."""
    groups = [tuple(plan.device_ids)]
    free = [i for i in range(hw.n) if i not in plan.device_ids]
    k = len(plan.device_ids)
    for _ in range(1, plan.replicas):
        take, free = free[:k], free[k:]
        groups.append(tuple(take) if len(take) == k else tuple(plan.device_ids))
    return groups


def visible_env(ids: tuple[int, ...], hw: Hardware) -> list[str]:
    """['CUDA_VISIBLE_DEVICES=0,1'] (HIP_ for ROCm); nothing on a one-GPU, Apple or CPU box."""
    if hw.n <= 1 or not ids:
        return []
    backend = hw.devices[ids[0]].backend
    var = {"cuda": "CUDA_VISIBLE_DEVICES", "rocm": "HIP_VISIBLE_DEVICES"}.get(backend)
    return [f"{var}={','.join(str(i) for i in ids)}"] if var else []


def shares_text(plan: Plan, sep: str = ",") -> str | None:
    """Plan shares as proportions with 2 decimals, in CUDA_VISIBLE_DEVICES order."""
    if len(plan.shares) < 2:
        return None
    return sep.join(f"{s:.2f}" for s in plan.shares)


def main_index(plan: Plan) -> int:
    """Index (after CUDA_VISIBLE_DEVICES remapping) of the device with the largest share."""
    if not plan.shares:
        return 0
    return max(range(len(plan.shares)), key=lambda i: plan.shares[i])


def uneven(plan: Plan, tol: float = 0.02) -> bool:
    return bool(plan.shares) and max(plan.shares) - min(plan.shares) > tol


def layer_counts(plan: Plan, n_layers: int) -> list[int]:
    """Whole layers per device from the shares (largest remainder)."""
    shares = plan.shares or tuple(1 / len(plan.device_ids) for _ in plan.device_ids)
    total = sum(shares)
    raw = [s / total * n_layers for s in shares]
    counts = [int(r) for r in raw]
    for i in sorted(range(len(raw)), key=lambda i: raw[i] - counts[i], reverse=True):
        if sum(counts) >= n_layers:
            break
        counts[i] += 1
    return counts


def gguf_placeholder(model: LoadedModel) -> str:
    base = model.spec.id.split("/")[-1]
    return f"/models/{base}-{model.quant.id}.gguf"


def argv(table: dict[str, str], pairs: list[tuple[str, object]]) -> list[str]:
    """Arguments from (field, value) pairs through a flag table. None/False: left out;
    True: the bare flag; a list: the flag followed by each item."""
    out: list[str] = []
    for field, value in pairs:
        if value is None or value is False:
            continue
        flag = table[field]
        if value is True:
            out.append(flag)
        elif isinstance(value, (list, tuple)):
            out += [flag, *(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


def render(args: list[str], env: list[str] = ()) -> str:
    return shlex.join([*env, *args])


def comment(text: str) -> str:
    return f"# {text}"


def is_split(plan: Plan) -> bool:
    return len(plan.device_ids) > 1 or plan.split not in (Split.NONE,)
