"""Engine memory profiles (perf/engine_memory.yaml) and the settings a plan runs with: the
engine's defaults, overridden by what the user stated (flash attention, swa_full, n_ubatch,
gpu_memory_utilization). Every default that decides an answer is listed in `assumed`, so that
`fit --json` and `plan --json` can name it."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict

from ..types import Engine, Plan

MIB = 2**20
LLAMA_FAMILY = (Engine.LLAMA_CPP, Engine.LLAMA_CPP_PYTHON, Engine.OLLAMA)
PAGED = (Engine.VLLM, Engine.SGLANG, Engine.TRT_LLM, Engine.TGI)


class Defaults(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    flash_attn: Literal["on", "off", "auto"] = "on"
    swa_full: bool = False
    n_ubatch: int = 512
    n_batch: int = 2048
    kv_type: str = "f16"
    logits_all: bool = False
    kv_unified: bool = False
    extra_bufts: bool = True
    mmap: bool = True
    gpu_memory_utilization: float | None = None
    block_size: int = 1
    max_num_batched_tokens: int = 2048
    max_num_seqs: int = 256


class Allocation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    what: str
    where: str
    source: str


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    engine: str
    program: str
    version: str
    defaults: Defaults
    ctx_multiple: int = 1
    gpu_context_mib: float = 0.0  # CUDA/HIP context and library workspaces per GPU
    gpu_reserve_mib: float = 0.0  # kept free per GPU by the engine's scheduler (Ollama)
    fit_margin_mib: float = 0.0  # llama-server --fit's target free memory per device
    cuda_graphs_mib: float = 0.0
    sources: dict[str, str]
    allocations: list[Allocation]


@lru_cache(maxsize=1)
def profiles() -> dict[str, Profile]:
    path = Path(__file__).with_name("engine_memory.yaml")
    return {p["engine"]: Profile(**p) for p in yaml.safe_load(path.read_text())}


def profile(engine: Engine) -> Profile:
    return profiles()[engine.value]


@dataclass(frozen=True)
class Settings:
    """What an engine runs a plan with, and which of it the user did not state."""

    engine: Engine
    flash_attn: bool
    swa_full: bool
    n_ubatch: int
    n_batch: int
    logits_all: bool
    extra_bufts: bool
    mmap: bool
    gpu_memory_utilization: float | None
    block_size: int
    max_num_batched_tokens: int
    max_num_seqs: int
    ctx_multiple: int
    assumed: tuple[tuple[str, str], ...]  # (setting, value and why) for the defaults taken


def settings(plan: Plan, host_layers: bool = False) -> Settings:
    """The plan's engine settings. Flash attention "auto" (llama.cpp, Ollama) resolves to on,
    except with repeating layers in host RAM, where llama-server's auto turns it off when the
    attention node lands on another device than its layer (ollama PR #17477)."""
    p = profile(plan.engine)
    d = p.defaults
    assumed: list[tuple[str, str]] = []
    if plan.flash_attention is None:
        fa = d.flash_attn != "off" and not (d.flash_attn == "auto" and host_layers)
        why = f"{p.program} default {d.flash_attn}" + (" (off with layers in RAM)" if d.flash_attn == "auto" and host_layers else "")
        assumed.append(("flash_attn", f"{'on' if fa else 'off'}: {why}"))
    else:
        fa = plan.flash_attention
    if plan.engine in LLAMA_FAMILY and plan.kv_type not in ("f16", "bf16", "f32") and not fa:
        fa = True  # a quantized V cache needs flash attention (llama-context.cpp refuses it otherwise)
        assumed.append(("flash_attn", f"on: the {plan.kv_type} V cache needs it"))
    swa = d.swa_full if plan.swa_full is None else plan.swa_full
    if plan.swa_full is None and plan.engine in LLAMA_FAMILY:
        assumed.append(("swa_full", f"{str(swa).lower()}: {p.program} default"))
    ub = d.n_ubatch if plan.n_ubatch is None else plan.n_ubatch
    if plan.n_ubatch is None and plan.engine in LLAMA_FAMILY:
        assumed.append(("n_ubatch", f"{ub}: {p.program} default"))
    util = d.gpu_memory_utilization if plan.gpu_memory_utilization is None else plan.gpu_memory_utilization
    if plan.gpu_memory_utilization is None and util is not None:
        assumed.append(("gpu_memory_utilization", f"{util}: {p.program} default"))
    repack = d.extra_bufts if plan.repack is None else plan.repack
    if d.logits_all:
        assumed.append(("logits_all", f"true: {p.program} default (an n_ctx x n_vocab float32 array in RAM)"))
    if plan.engine in PAGED:
        assumed.append(("max_num_batched_tokens", f"{d.max_num_batched_tokens}: {p.program} default, sizes the "
                                                  "activation peak of its profiling run"))
    return Settings(plan.engine, fa, swa, ub, max(d.n_batch, ub), d.logits_all, repack, d.mmap, util,
                    d.block_size, d.max_num_batched_tokens, d.max_num_seqs, max(p.ctx_multiple, 1), tuple(assumed))
