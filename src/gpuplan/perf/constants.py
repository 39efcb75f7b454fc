"""Constants of the performance model, kept apart from the physics and from spec data.

The physics (perf/speed.py) takes everything it can from spec sheets (perf/rates.py): peak and
GPU-reachable bandwidth, compute units x clock, FP32/FP16/INT8 rates, CPU cores, threads and
SIMD width. What no spec sheet gives is here: how well each kernel family uses those resources.
Every constant is per kernel family (a llama.cpp backend: cuda, rocm, vulkan, metal, sycl, cpu;
or an engine with its own kernels: mlx, vllm, tensorrt-llm, lmdeploy, exllamav2), per weight
format family (float, legacy blocks, k-quants, i-quants), or physical (link sync costs); none
is per GPU model.

The values in `fitted.yaml` beside this file override the defaults below; `fitted.yaml` says
what they were fitted on (scripts/fit_constants.py) and with what loss. Defaults no published
row moves are priors, each with its reason beside it. `gpuplan calibrate` refits the few a
user's own measurements pin down and writes a file that later estimates load over these.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path


def _d(**kw):
    return field(default_factory=lambda: dict(kw))


# Kernel families a llama.cpp build can run on (OpenCL: the CLBlast backend of 2023-24), and
# engines with their own kernels.
LLAMA_BACKENDS = ("cuda", "rocm", "vulkan", "opencl", "metal", "sycl", "cpu")
GRAPH_ENGINES = ("vllm", "sglang", "tensorrt-llm", "lmdeploy")  # decode runs as a captured CUDA graph
# A family with no value of its own in a table takes its kin's: a backend no published row has
# pinned down is predicted with CUDA's kernel efficiencies applied to its own spec sheet (lanes,
# clock, bandwidth), which is what "spec-derived" means for a card class with no rows.
KIN = {"rocm": "cuda", "vulkan": "cuda", "sycl": "cuda", "opencl": "vulkan",
       "mlx": "metal", "vllm": "cuda", "sglang": "vllm", "tgi": "vllm", "lmdeploy": "vllm",
       "tensorrt-llm": "lmdeploy", "exllamav2": "cuda"}


@dataclass(frozen=True)
class Constants:
    # Share of the reachable bandwidth (peak; Apple GPUs: the measured GPU bandwidth; CPUs: the
    # platform peak, before the per-core limit) that a decode step's weight stream reaches.
    stream_eff: dict = _d(cuda=0.90, metal=0.85, cpu=0.80)
    # Dequantisation + dot-product work: legacy-block weights (Q4_0, Q8_0, ...) one vector lane
    # dequantises and multiplies per cycle (lanes: perf/rates.py; CPUs: FP32 FMA lanes of the
    # threads used). The slower of this and the weight stream binds.
    dot_weights_per_lane_cycle: dict = _d(cuda=0.12, metal=0.1, cpu=0.25)
    # Work per weight of each format family relative to legacy blocks (perf/context.py quant_family):
    # k-quants unpack super-block scales, i-quants look codes up in lattice tables (IQ2/IQ3) or a
    # non-linear grid (IQ4, MXFP4), floats only convert.
    dot_cost: dict = _d(float=1.0, legacy=1.0, kquant=0.9, iq=1.6, iq4=1.1, int4=0.8, fp8=0.6)
    # How a stream and its arithmetic overlap: time = (t_mem^p + t_dot^p)^(1/p). GPUs keep both
    # busy (p large: close to the slower of the two); CPU threads do both in turn (p near 1).
    overlap_gpu: float = 4.0
    overlap_cpu: float = 1.6
    # Fixed costs per decode step at REF_CLOCK_HZ (perf/rates.py), scaling as REF / clock: per
    # layer (kernel launches, waits) and per step (graph build, sampling, host sync). llama.cpp
    # CUDA replays a CUDA graph for one sequence on Ampere and newer from 2024-05 (graph_layer_share);
    # before that, for row split and on ROCm, Vulkan, SYCL every kernel is launched from the CPU.
    # Graph engines (vLLM & co) replay one graph per step; their per-step cost is their scheduler.
    layer_fixed_s: dict = _d(cuda=6e-5, metal=1e-4, cpu=1e-5, vllm=1e-5, lmdeploy=8e-6)
    # A replayed CUDA graph costs this share of launching the same kernels one by one (llama.cpp
    # PR 6766 measured 116 -> 128 tok/s on an RTX 3090 for LLaMA 2 7B Q4_0).
    graph_layer_share: float = 0.4
    token_fixed_s: dict = _d(cuda=2e-4, metal=5e-4, cpu=2e-4, vllm=1.0e-3, lmdeploy=4e-4)
    # A MoE layer launches more kernels (router, top-k, gather, one matmul per expert group).
    moe_layer_fixed_factor: float = 2.0
    # CPU memory: what one core's outstanding misses draw (GB/s), per CPU segment; the platform
    # share (stream_eff.cpu) caps the sum. Server cores sit behind a mesh with longer latency.
    core_bw_gb_s: dict = _d(**{"desktop-cpu": 25.0, "server-cpu": 10.0, "apple": 60.0})
    # CPU prompts: formats with a tiled GEMM path (llamafile sgemm: F32/F16/BF16, Q8_0, Q4_0 from
    # b2702) reach this share of the FP32 FMA peak; the others run the decode dot product per
    # token, `cpu_batch_gain` times faster per weight than one token (activations stay in cache).
    cpu_gemm_eff: float = 0.6
    cpu_batch_gain: float = 1.2
    # Two-die parts: the GPU reads memory across the die-to-die bridge (Apple Ultra).
    multi_die_mem_eff: float = 0.75
    # Apple GPUs without a measured GPU bandwidth in the catalog: share of the memory peak.
    apple_gpu_reach: float = 0.85
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
    # Prefill: share of the matmul peak (FP16 tensor rate; INT8 MMQ; Apple/AMD the FP16 rate)
    # large GEMMs reach, per kernel family.
    prefill_eff: dict = _d(cuda=0.45, metal=0.70, vllm=0.5, lmdeploy=0.5, **{"tensorrt-llm": 0.55})
    # Attention FLOPs of a prompt run at this share of the GEMM rate, per kernel family (llama.cpp
    # without flash attention materialises the scores; MLX and the engines use fused kernels).
    attn_eff: dict = _d(cuda=0.35, metal=0.35, cpu=0.5, mlx=0.9, vllm=0.6)
    # A MoE prompt splits each micro-batch over the experts it touches; a tiled matmul computes at
    # least this many columns per expert however few tokens it got (llama.cpp's MMQ picks tiles
    # of 8 to 128 columns, ggml-cuda/mmq.cuh), so tiny shares waste the rest of the tile.
    moe_tile_tokens: float = 8.0
    # llama.cpp runs a MoE prompt's expert matmuls expert by expert (mul_mat_id): three launches
    # (gate, up, down) per touched expert per MoE layer per micro-batch, each a host-side kernel
    # launch of a few microseconds (CUDA/HIP launch latency is 5-10 us). Decode's mat-vec reads
    # the expert ids on the GPU and pays none of it.
    expert_launch_s: float = 5e-6
    # llama.cpp CUDA before MMQ became the default (b3250, 2024-06): quantized prompts are
    # dequantized to F16 first; extra bytes moved per weight per ubatch.
    dequant_bytes_per_weight: float = 2.0
    # llama.cpp CUDA prompt speed by era (YYYY-MM start), relative to 2024 builds.
    era_prefill: dict = _d(**{"2023-01": 0.75, "2024-01": 1.0})
    fitted_on: str = "defaults"

    def of(self, table: str, family: str, default: float) -> float:
        """A per-family constant, following KIN where the family has no value of its own."""
        values = getattr(self, table)
        seen = set()
        while family not in values and family in KIN and family not in seen:
            seen.add(family)
            family = KIN[family]
        return values.get(family, default)

    def with_overrides(self, data: dict) -> "Constants":
        known = asdict(self)
        unknown = set(data) - set(known)
        if unknown:
            from ..errors import InputError

            raise InputError(f"calibration has unknown constants {sorted(unknown)}; known: {sorted(known)}")
        from .constant_ranges import check_overrides

        data = check_overrides(data, known)  # finite and in range (efficiencies in (0, 1], costs >= 0)
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
    try:
        c = (base or Constants()).with_overrides(data["constants"])
    except InputError as e:
        raise InputError(f"calibration file {path}: {e}", input=e.input, value=e.value, accepted=e.accepted) from None
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
    from ..errors import InputError

    c = load_constants(SHIPPED) if SHIPPED.is_file() else Constants()
    user = user_calibration_path()
    if user is not None and user.is_file():
        try:
            c = load_constants(user, base=c)
        except InputError as e:  # a file from an older gpuplan: estimates go on without it, and say so
            import sys

            sys.stderr.write(f"warning: {e}; using the shipped constants\n")
            c = replace(c, fitted_on=f"{c.fitted_on} (calibration {user} not used: {e})")
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
