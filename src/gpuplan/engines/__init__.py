"""Engines: a plan -> how to start it, one module each (interface in base.py).

launch_for(plan, model, hw, workload, model_ref) -> {engine name: LaunchCommand} for every
engine that can run the plan; commands_for(...) -> {engine name: shell text} (the plan JSON's
`commands`); explain_unsupported(plan, model, hw, workload) -> {engine name: reason} for the others.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..types import Hardware, LoadedModel, Plan, Workload
from . import exllamav2, llama_cpp, lmdeploy, mlx, ollama, sglang, tgi, trtllm, vllm
from .base import LaunchCommand, Process


class _Entry(NamedTuple):
    supports: Callable[..., str | None]
    launch: Callable[..., LaunchCommand]
    multi_node: bool = False


ENGINES: dict[str, _Entry] = {
    llama_cpp.NAME: _Entry(llama_cpp.supports, llama_cpp.launch),
    llama_cpp.PY_NAME: _Entry(llama_cpp.python_supports, llama_cpp.python_launch),
    ollama.NAME: _Entry(ollama.supports, ollama.launch),
    vllm.NAME: _Entry(vllm.supports, vllm.launch, vllm.MULTI_NODE),
    sglang.NAME: _Entry(sglang.supports, sglang.launch, sglang.MULTI_NODE),
    tgi.NAME: _Entry(tgi.supports, tgi.launch),
    exllamav2.NAME: _Entry(exllamav2.supports, exllamav2.launch),
    lmdeploy.NAME: _Entry(lmdeploy.supports, lmdeploy.launch),
    trtllm.NAME: _Entry(trtllm.supports, trtllm.launch),
    mlx.NAME: _Entry(mlx.supports, mlx.launch),
}
NOT_RENDERED: dict[str, str] = {}


def explain_unsupported(plan: Plan, model: LoadedModel, hw: Hardware | None = None,
                        workload: Workload | None = None) -> dict[str, str]:
    out = {}
    for name, e in ENGINES.items():
        reason = e.supports(plan, model, hw, workload)
        if reason is None and hw is not None and hw.nodes > 1 and not e.multi_node:
            reason = f"{name} runs on one machine; this plan spans {hw.nodes} nodes"
        if reason:
            out[name] = reason
    return {**out, **NOT_RENDERED}


# engines whose KV cache is a shared pool of pages: their sequence limit (--max-num-seqs and kin)
# caps concurrency only, it allocates nothing, so a serving answer may raise it
PAGED = ("vllm", "sglang", "tensorrt-llm", "lmdeploy")


def launch_for(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
               model_ref: str | None = None, paged_seqs: dict[str, int] | None = None) -> dict[str, LaunchCommand]:
    """Every engine's command for the plan. `paged_seqs` (engine -> sequences per replica, from
    the serving simulator's answer) sets the paged engines' sequence limit to the load the plan
    was found to hold, where that is more than the plan's own slots."""
    from dataclasses import replace

    from .base import slots

    skip = explain_unsupported(plan, model, hw, workload)
    out = {}
    for name, e in ENGINES.items():
        if name in skip:
            continue
        p = plan
        want = (paged_seqs or {}).get(name)
        if name in PAGED and want and want > slots(plan, workload):
            p = replace(plan, slots=int(want))
        out[name] = e.launch(p, model, hw, workload, model_ref)
    return out


def commands_for(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
                 model_ref: str | None = None) -> dict[str, str]:
    return {name: cmd.text for name, cmd in launch_for(plan, model, hw, workload, model_ref).items()}


__all__ = ["ENGINES", "LaunchCommand", "Process", "commands_for", "explain_unsupported", "launch_for"]
