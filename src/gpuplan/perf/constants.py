"""Constants of the performance model, kept apart from the physics and from spec data.

The values in `fitted.yaml` beside this file override the defaults below. They were fitted by
`scripts/fit_constants.py` on data/measurements/dev.csv (573 published rows: llama.cpp
on RTX 30/40 series and Apple M1/M2, one P40 set, a few vLLM / TensorRT-LLM / ExLlamaV2 rows on
A100 and RTX 3090), minimising a robust mean |log error| of every row; `fitted.yaml` says when
and with what loss. None is specific to a GPU model: they are per engine backend, per memory
technology (kin share a value: GDDR7 with GDDR6X, all LPDDR together) or per engine era.

The defaults that no dev row can move are priors, not fits: HBM and GDDR5 efficiency, ROCm and
SYCL backends, vLLM/SGLang/TensorRT-LLM prefill shares and engine factors, the tensor-parallel
all-reduce latency, and the CPU values (set from gpuplan's own CI machine, see prefill_eff).
`gpuplan calibrate` refits the engine and memory efficiencies on a user's own measurements and
writes a file that later estimates load over these.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


def _d(**kw):
    return field(default_factory=lambda: dict(kw))


@dataclass(frozen=True)
class Constants:
    # Share of peak memory bandwidth that a decode step's weight stream reaches, by memory
    # technology (controllers, refresh, page misses). Fitted on RTX 30/40 (GDDR6/6X), Apple
    # M1/M2 (LPDDR), P40 (GDDR5), A100 (HBM2e); the others are set to their nearest kin.
    mem_eff: dict = _d(GDDR5=0.80, GDDR5X=0.80, GDDR6=0.84, GDDR6X=0.84, GDDR7=0.84,
                       HBM2=0.80, HBM2e=0.80, HBM3=0.80, HBM3e=0.80,
                       LPDDR4X=0.88, LPDDR5=0.88, LPDDR5X=0.88, DDR4=0.70, DDR5=0.70)
    # Engine backend factor on that stream (kernel quality: dequantising GEMV, fused ops).
    engine_eff: dict = _d(**{"llama.cpp/cuda": 1.0, "llama.cpp/metal": 1.0, "llama.cpp/cpu": 1.0,
                             "llama.cpp/rocm": 0.9, "llama.cpp/sycl": 0.7, "vllm/cuda": 0.9,
                             "exllamav2/cuda": 1.0, "tensorrt-llm/cuda": 0.95})
    # Fixed cost per generated token (s): launch + sync per token, and per layer.
    token_fixed_s: dict = _d(**{"cuda": 4e-4, "metal": 1.0e-3, "cpu": 1e-3, "rocm": 6e-4, "sycl": 1e-3})
    layer_fixed_s: dict = _d(**{"cuda": 6e-5, "metal": 1.0e-4, "cpu": 2e-5, "rocm": 8e-5, "sycl": 1e-4})
    # Two-die Apple "Ultra" chips: the GPU reads memory across the die-to-die bridge.
    multi_die_mem_eff: float = 0.75
    # llama.cpp layer split: cost of each device boundary per token beyond the link itself
    # (graph split, event sync, host round trip without peer access).
    hop_sync_s: float = 1.2e-4
    # llama.cpp row split: per matmul sync, and per extra device per matmul.
    row_sync_s: float = 2.5e-5
    row_peer_s: float = 1.5e-5
    # Share of the int8 tensor rate llama.cpp's quantized matmul (MMQ) reaches relative to FP16.
    int8_share: float = 0.5
    # Tensor parallel all-reduce fixed latency (NCCL launch + sync) per call.
    allreduce_s: float = 2.0e-5
    # Attention over the KV cache reads less efficiently than the weight stream.
    kv_read_eff: float = 0.6
    # Prefill: share of dense FP16 tensor peak reached by large GEMMs, per backend.
    # llama.cpp/cpu: set from gpuplan's own CI machine (2-core EPYC Zen 4 VM, Gemma 3 270M Q4_K_M,
    # llama-cpp-python server, idle machine: ~380 prompt tok/s = 0.46 of FP32 peak; README).
    prefill_eff: dict = _d(**{"llama.cpp/cuda": 0.45, "llama.cpp/metal": 0.70, "llama.cpp/cpu": 0.45,
                              "llama.cpp/rocm": 0.3, "llama.cpp/sycl": 0.2, "vllm/cuda": 0.5,
                              "exllamav2/cuda": 0.45, "tensorrt-llm/cuda": 0.55})
    # Attention FLOPs run at this share of the GEMM rate (worse without flash attention).
    attn_eff: float = 0.35
    # llama.cpp CUDA before MMQ became the default (b3250, 2024-06): quantized prompts are
    # dequantized to F16 first; extra bytes moved per weight per ubatch.
    dequant_bytes_per_weight: float = 2.0
    # llama.cpp releases got faster by era (YYYY-MM start): decode's fixed per-token and
    # per-layer costs are multiplied by era_fixed (CUDA graphs and fused kernels cut them),
    # prompt speed by era_prefill.
    era_fixed: dict = _d(**{"2023-01": 1.2, "2024-01": 1.0, "2025-01": 0.5})
    era_prefill: dict = _d(**{"2023-01": 0.75, "2024-01": 1.0, "2025-01": 1.0})
    fitted_on: str = "data/measurements/dev.csv (defaults)"

    def with_overrides(self, data: dict) -> "Constants":
        known = asdict(self)
        unknown = set(data) - set(known)
        if unknown:
            from ..errors import InputError

            raise InputError(f"calibration has unknown constants {sorted(unknown)}; known: {sorted(known)}")
        merged = {}
        for k, v in data.items():
            merged[k] = {**known[k], **v} if isinstance(known[k], dict) and isinstance(v, dict) else v
        return replace(self, **merged)


def load_constants(path, base: Constants | None = None) -> Constants:
    """Constants from a fitted file ({constants: {...}, fitted_on: ...}) over `base`
    (the built-in values when None)."""
    from ..errors import InputError, read_yaml_file

    data = read_yaml_file(path, "calibration file")
    if not isinstance(data, dict) or not isinstance(data.get("constants"), dict):
        raise InputError(f"calibration file {path} needs a 'constants' mapping (as `gpuplan calibrate` writes)")
    c = (base or Constants()).with_overrides(data["constants"])
    return replace(c, fitted_on=str(data.get("fitted_on", path)))


SHIPPED = Path(__file__).with_name("fitted.yaml")


def user_calibration_path() -> Path | None:
    """Where `gpuplan calibrate` writes by default: $GPUPLAN_CALIBRATION (empty: none), else
    ~/.config/gpuplan/calibration.yaml."""
    env = os.environ.get("GPUPLAN_CALIBRATION")
    if env is not None:
        return Path(env) if env else None
    return Path.home() / ".config" / "gpuplan" / "calibration.yaml"


def _shipped() -> Constants:
    c = load_constants(SHIPPED) if SHIPPED.is_file() else Constants()
    user = user_calibration_path()
    if user is not None and user.is_file():
        c = load_constants(user, base=c)
    return c


DEFAULT = _shipped()


def era_factor(table: dict, date: str | None) -> float:
    """The factor of the latest era that starts on or before `date` (YYYY-MM); today's when None."""
    keys = sorted(table)
    if not date:
        return table[keys[-1]]
    chosen = keys[0]
    for k in keys:
        if k <= date:
            chosen = k
    return table[chosen]
