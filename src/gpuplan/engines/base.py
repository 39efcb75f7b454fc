"""What every engine module shares: commands as data, quant families, device lists, flag tables.

An engine module exposes
  NAME                                   the engine's name in `commands` (e.g. "llama.cpp")
  supports(plan, model, hw, wl) -> str | None   why it cannot run the plan (None: it can)
  launch(plan, model, hw, wl, model_ref) -> LaunchCommand
and optionally MULTI_NODE = True. A LaunchCommand is processes (argv list, env dict, notes),
notes for the whole deployment and files to write (a Modelfile, a config.yml); its `text` is
rendered from them with shlex.join, so no command line is ever concatenated by hand.
"""

from __future__ import annotations

import math
import shlex

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..types import Hardware, LoadedModel, Plan, Split, Workload

GGUF_KINDS = ("gguf", "gguf-mix")
HF_KINDS = ("float", "awq", "gptq", "fp8", "int", "mxfp4", "nvfp4", "nf4")  # safetensors checkpoints vLLM/SGLang/TGI load
PREQUANT_KINDS = ("awq", "gptq", "int", "mxfp4", "nvfp4", "nf4")  # method read from the checkpoint's config.json
BIND = "127.0.0.1"  # every command listens on loopback; put a proxy in front to expose it


class Process(BaseModel):
    """One process to start: argv as a list, its environment additions, notes for people;
    `host` names the machine when a deployment spans several (None: this one)."""

    model_config = ConfigDict(frozen=True)
    argv: list[str]
    env: dict[str, str] = Field(default_factory=dict)
    notes: list[str] = Field(default_factory=list)
    cwd: str | None = None
    host: str | None = None

    def shell(self) -> str:
        return shlex.join([*(f"{k}={v}" for k, v in self.env.items()), *self.argv])


class LaunchCommand(BaseModel):
    """How one engine runs the plan: processes in start order, files to write first, notes;
    `text` is the shell text for people (comments, heredocs for files, one line per process)."""

    model_config = ConfigDict(frozen=True)
    engine: str
    processes: list[Process]
    notes: list[str] = Field(default_factory=list)
    files: dict[str, str] = Field(default_factory=dict)
    text: str = ""

    @model_validator(mode="after")
    def _render(self):
        if not self.text:
            object.__setattr__(self, "text", render(self))
        return self


def render(cmd: LaunchCommand) -> str:
    lines = [comment(n) for n in cmd.notes]
    for name, body in cmd.files.items():
        lines.append(f"cat > {shlex.quote(name)} <<'EOF'")
        lines += body.rstrip("\n").split("\n")
        lines.append("EOF")
    host = None
    for p in cmd.processes:
        if p.host and p.host != host:
            lines.append(comment(f"on {p.host}:"))
            host = p.host
        lines += [comment(n) for n in p.notes]
        lines.append(("cd " + shlex.quote(p.cwd) + " && " if p.cwd else "") + p.shell())
    return "\n".join(lines)


def comment(text: str) -> str:
    return f"# {text}"


def family(model: LoadedModel) -> str:
    """gguf | float | awq | gptq | fp8 | exl2 | int: what loads the weights."""
    return "gguf" if model.quant.kind in GGUF_KINDS else model.quant.kind


def slots(plan: Plan, workload: Workload) -> int:
    """Sequences each replica's KV cache holds: the concurrency the planner computed
    (plan.slots), else every user of the replica."""
    if getattr(plan, "slots", None):
        return int(plan.slots)
    return per_replica_users(plan, workload)


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


def visible_env(ids: tuple[int, ...], hw: Hardware) -> dict[str, str]:
    """Which devices a process sees: CUDA_VISIBLE_DEVICES (with CUDA_DEVICE_ORDER=PCI_BUS_ID so
    the indices are NVML's, the probe's order, not CUDA's fastest-first), HIP_VISIBLE_DEVICES
    for ROCm, ONEAPI_DEVICE_SELECTOR for Intel SYCL (pinned even with one card: an Intel iGPU
    is a SYCL device too). Nothing on a one-device CUDA/ROCm box, Apple or CPU."""
    if not ids:
        return {}
    backend = hw.devices[ids[0]].backend
    joined = ",".join(str(i) for i in ids)
    if backend == "sycl":
        return {"ONEAPI_DEVICE_SELECTOR": "level_zero:" + joined}
    if hw.n <= 1:
        return {}
    if backend == "cuda":
        return {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": joined}
    if backend == "rocm":
        return {"HIP_VISIBLE_DEVICES": joined}
    return {}


def is_split(plan: Plan) -> bool:
    return len(plan.device_ids) > 1 or plan.split not in (Split.NONE,)


def uneven(plan: Plan, tol: float = 0.02) -> bool:
    return bool(plan.shares) and max(plan.shares) - min(plan.shares) > tol


def hf_name(model: LoadedModel) -> str:
    """The Hugging Face repository the user named: a variant (Instruct, Chat, -it) shares its
    base model's architecture entry but not its name, so keep the alias as typed (catalog case)."""
    typed = (model.label or "").strip().lower()
    for name in (model.spec.id, *model.spec.aliases):
        if "/" in name and name.lower() == typed:
            return name
    return model.spec.id


def gguf_placeholder(model: LoadedModel) -> str:
    base = hf_name(model).split("/")[-1]
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


def over_trained_context(model: LoadedModel, workload: Workload) -> str | None:
    """A sentence when the context asked for is past the model's trained maximum."""
    top = model.spec.max_context
    if top and workload.context > top:
        return (f"context {workload.context} is above {model.spec.name}'s trained maximum of {top} "
                "tokens: quality past it is not guaranteed (RoPE positions never seen in training)")
    return None
