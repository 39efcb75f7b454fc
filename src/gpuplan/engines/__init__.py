"""Engines: a plan -> ready-to-run launch commands (or config snippets), one module each.

commands_for(plan, model, hw, workload, model_ref) -> {engine name: command text} for every
engine that can run the plan; explain_unsupported(plan, model) -> {engine name: reason} for
the others. Each engine module has supports(plan, model) and command(...).
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from ..types import Hardware, LoadedModel, Plan, Workload
from . import exllamav2, llama_cpp, ollama, sglang, tgi, vllm


class _Entry(NamedTuple):
    supports: Callable[[Plan, LoadedModel], str | None]
    command: Callable[..., str]
    multi_node: bool = False


ENGINES: dict[str, _Entry] = {
    llama_cpp.NAME: _Entry(llama_cpp.supports, llama_cpp.command),
    llama_cpp.PY_NAME: _Entry(llama_cpp.python_supports, llama_cpp.python_command),
    ollama.NAME: _Entry(ollama.supports, ollama.command),
    vllm.NAME: _Entry(vllm.supports, vllm.command, vllm.MULTI_NODE),
    sglang.NAME: _Entry(sglang.supports, sglang.command, sglang.MULTI_NODE),
    tgi.NAME: _Entry(tgi.supports, tgi.command),
    exllamav2.NAME: _Entry(exllamav2.supports, exllamav2.command),
}
NOT_RENDERED = {"tensorrt-llm": "gpuplan does not render TensorRT-LLM commands yet "
                                "(it needs an engine build step per model and GPU)",
                "mlx": "gpuplan does not render mlx_lm.server commands yet (its memory is modelled)"}


def explain_unsupported(plan: Plan, model: LoadedModel, hw: Hardware | None = None) -> dict[str, str]:
    out = {}
    for name, e in ENGINES.items():
        reason = e.supports(plan, model)
        if reason is None and hw is not None and hw.nodes > 1 and not e.multi_node:
            reason = f"{name} runs on one machine; this plan spans {hw.nodes} nodes"
        if reason:
            out[name] = reason
    return {**out, **NOT_RENDERED}


def commands_for(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
                 model_ref: str | None = None) -> dict[str, str]:
    skip = explain_unsupported(plan, model, hw)
    return {name: e.command(plan, model, hw, workload, model_ref)
            for name, e in ENGINES.items() if name not in skip}


__all__ = ["ENGINES", "commands_for", "explain_unsupported"]
