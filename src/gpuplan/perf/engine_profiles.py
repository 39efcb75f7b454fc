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
    utilization_of: Literal["total", "free"] = "total"  # vLLM: of the card; TensorRT-LLM: of what is free after weights
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
    from_date: str = "2000-01"  # "YYYY-MM" release these rules apply from (until the next entry's)
    defaults: Defaults
    ctx_multiple: int = 1
    gpu_context_mib: float = 0.0  # CUDA/HIP context and library workspaces per GPU
    context_mib_per_sm: float | None = None  # when set: the context is this per SM (compute unit) where known
    gpu_reserve_mib: float = 0.0  # kept free per GPU by the engine's scheduler (Ollama)
    fit_margin_mib: float = 0.0  # llama-server --fit's target free memory per device
    cuda_graphs_mib: float = 0.0
    tp_comm_mib: float = 0.0  # NCCL communicator buffers per GPU when tensor parallel
    sources: dict[str, str]
    allocations: list[Allocation]


@lru_cache(maxsize=1)
def versions() -> dict[str, list[Profile]]:
    """Every profile per engine, oldest first."""
    path = Path(__file__).with_name("engine_memory.yaml")
    out: dict[str, list[Profile]] = {}
    for p in yaml.safe_load(path.read_text()):
        out.setdefault(p["engine"], []).append(Profile(**p))
    return {k: sorted(v, key=lambda p: p.from_date) for k, v in out.items()}


def profiles() -> dict[str, Profile]:
    """The current profile of every engine."""
    return {k: v[-1] for k, v in versions().items()}


def gpu_context_bytes(p: Profile, device, tp: int = 1) -> float:
    """The engine's fixed cost on one GPU: its CUDA/HIP context (per SM where the profile says so
    and the catalog knows the SM count), its scheduler's reserve, CUDA graphs, NCCL buffers for TP."""
    ctx = p.gpu_context_mib
    if p.context_mib_per_sm and getattr(device, "compute_units", None) and device.vendor == "nvidia":
        ctx = p.context_mib_per_sm * device.compute_units
    return (ctx + p.gpu_reserve_mib + p.cuda_graphs_mib + (p.tp_comm_mib if tp > 1 else 0.0)) * MIB


def profile(engine: Engine, when: str | None = None) -> Profile:
    """The engine's rules as of `when` ("YYYY-MM", a measurement's date), else the current ones."""
    vs = versions()[engine.value]
    if when:
        past = [p for p in vs if p.from_date <= when[:7]]
        if past:
            return past[-1]
    return vs[-1]


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
    utilization_of: str
    assumed: tuple[tuple[str, str], ...]  # (setting, value and why) for the defaults taken


def settings(plan: Plan, host_layers: bool = False) -> Settings:
    """The plan's engine settings. Flash attention "auto" (llama.cpp, Ollama) resolves to on: llama.cpp
    turns it off only where a layer's device has no kernel for it (llama_context::resolve_fused_ops
    compares the device of each attention node with its layer's), which the CPU, CUDA and Metal
    backends have for the models gpuplan knows. host_layers is kept for engines whose rule differs."""
    p = profile(plan.engine, plan.engine_date)
    d = p.defaults
    assumed: list[tuple[str, str]] = []
    if plan.flash_attention is None:
        fa = d.flash_attn != "off"
        assumed.append(("flash_attn", f"{'on' if fa else 'off'}: {p.program} default {d.flash_attn}"))
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
                    d.block_size, d.max_num_batched_tokens, d.max_num_seqs, max(p.ctx_multiple, 1), d.utilization_of,
                    tuple(assumed))


FLASH_ATTN = {"on": True, "off": False, "auto": None}


def engine_options(flash_attn: str | None = None, swa_full: bool | None = None, ubatch: int | None = None,
                   gpu_memory_utilization: float | None = None) -> dict:
    """Plan fields from the user's engine options, checked once at the edge. `--flash-attn auto`
    (or nothing) leaves the engine's default; so does an unset option."""
    from ..errors import InputError

    out: dict = {}
    if flash_attn is not None:
        key = str(flash_attn).strip().lower()
        if key not in FLASH_ATTN:
            raise InputError(f"--flash-attn '{flash_attn}' is not accepted; accepted: on, off, auto")
        out["flash_attention"] = FLASH_ATTN[key]
    if swa_full is not None:
        out["swa_full"] = bool(swa_full)
    if ubatch is not None:
        if not 1 <= int(ubatch) <= 65536:
            raise InputError(f"--ubatch {ubatch} is out of range; accepted: 1 to 65536 tokens")
        out["n_ubatch"] = int(ubatch)
    if gpu_memory_utilization is not None:
        if not 0.05 <= float(gpu_memory_utilization) <= 1.0:
            raise InputError(f"--gpu-memory-utilization {gpu_memory_utilization:g} is out of range; "
                             "accepted: 0.05 to 1.0 (the share of each GPU the engine may take)")
        out["gpu_memory_utilization"] = float(gpu_memory_utilization)
    return out


def described(plan: Plan) -> dict:
    """The settings a plan's memory was computed with, and the defaults among them, for JSON."""
    st = settings(plan, host_layers=plan.gpu_layers is not None)
    p = profile(plan.engine, plan.engine_date)
    values = {"engine_program": p.program, "engine_version": p.version, "flash_attn": st.flash_attn,
              "kv_type": plan.kv_type}
    if plan.engine in LLAMA_FAMILY:
        values.update(swa_full=st.swa_full, n_ubatch=st.n_ubatch, n_batch=st.n_batch, ctx_multiple=st.ctx_multiple,
                      repack=st.extra_bufts, logits_all=st.logits_all)
    else:
        values.update(gpu_memory_utilization=st.gpu_memory_utilization, block_size=st.block_size,
                      max_num_batched_tokens=st.max_num_batched_tokens)
    return {"settings": values, "defaults_assumed": dict(st.assumed)}
