"""One schema for every catalog file. Unknown keys are rejected; every number has its unit
in its name; every entry names where its numbers come from.

Units: bandwidths in GB/s (10^9 bytes per second, per direction for links), memory
capacities in GiB (what vendors print as "GB" on VRAM and unified memory is binary), caches
in MiB, clocks in MHz, memory data rates in MT/s, throughput in TFLOPS/TOPS (dense, no
sparsity), power in W, prices in USD. Counts (compute units, cores, threads, channels) and
shares carry no unit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MemoryType = Literal[
    "GDDR5", "GDDR5X", "GDDR6", "GDDR6X", "GDDR7",
    "HBM2", "HBM2e", "HBM3", "HBM3e",
    "LPDDR4X", "LPDDR5", "LPDDR5X",
    "DDR4", "DDR5",
]


class Entry(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


SimdIsa = Literal["avx2", "avx512", "neon", "sve", "sve2"]
MatrixIsa = Literal["amx", "sme"]


class Device(Entry):
    """A GPU, an Apple chip (its GPU and unified memory), another unified-memory APU/SoC or
    accelerator, or a CPU used as an inference device."""

    id: str
    name: str
    vendor: Literal["nvidia", "amd", "intel", "apple"]
    kind: Literal["gpu", "apple", "cpu"]  # unified-memory APUs that are not Apple: gpu + unified_memory
    segment: Literal["consumer", "workstation", "datacenter", "apple", "embedded", "desktop-cpu", "server-cpu"]
    architecture: str
    # hpu: Intel Gaudi (Habana) accelerators, run by vLLM/TGI forks through the Habana stack
    backend: Literal["cuda", "rocm", "metal", "sycl", "cpu", "hpu"]
    release_date: str = Field(pattern=r"^\d{4}-\d{2}$")
    # Memory. GPUs: VRAM. Apple and other unified-memory chips: the default/largest option is
    # memory_gib, all options in memory_options_gib, and the GPU may use gpu_share() of it
    # (gpu_share_default at memory_gib; Apple's share depends on the memory size and macOS
    # version: gpu_share.yaml). CPUs: memory_gib is null (the host memory decides); bandwidth
    # is the platform maximum.
    memory_gib: float | None = Field(default=None, gt=0)
    memory_options_gib: list[float] | None = None
    unified_memory: bool = False  # CPU and GPU share one memory (Apple, Strix Halo, Jetson, GB10, MI300A)
    gpu_share_default: float | None = Field(default=None, gt=0, le=1)
    memory_bandwidth_gb_s: float = Field(gt=0)
    memory_type: MemoryType
    memory_bus_bits: int | None = None
    memory_speed_mt_s: int | None = Field(default=None, gt=0)  # data rate per pin (19.5 Gbps = 19500)
    memory_channels: int | None = Field(default=None, gt=0)  # CPUs: 64-bit channels (a DDR5 DIMM = 1)
    # Apple: what the GPU alone reaches in a published bandwidth test (sources[...] says how)
    gpu_bandwidth_measured_gb_s: float | None = Field(default=None, gt=0)
    # Compute, dense. fp16_tflops: FP16 tensor/matrix throughput with FP16 accumulate
    # (the rate cuBLAS/llama.cpp F16 GEMMs use); on chips without tensor cores the plain
    # FP16 rate. fp16_fp32acc_tflops: the same with FP32 accumulate (what PyTorch engines
    # use): half of fp16_tflops on GeForce, equal on datacenter/workstation cards; chips with
    # no fast FP16 run it on the FP32 units. int8_tops: INT8 tensor (or DP4A) rate.
    # fp8_tflops: where the chip has FP8.
    fp32_tflops: float = Field(gt=0)
    fp16_tflops: float = Field(gt=0)
    fp16_fp32acc_tflops: float | None = Field(default=None, gt=0)
    int8_tops: float | None = Field(default=None, gt=0)
    fp8_tflops: float | None = Field(default=None, gt=0)
    cores: int | None = None  # CUDA cores / stream processors / Apple GPU cores / CPU cores
    # Compute units: NVIDIA SMs, AMD CUs, Intel Xe cores, Apple GPU cores, Gaudi MMEs+TPCs are
    # described in the note; CPUs: physical cores (efficiency_cores of them are small cores).
    compute_units: int | None = Field(default=None, gt=0)
    dies: int = 1  # GPU dies software sees as separate memory domains (Apple Ultra = 2 fused Max dies, MI250X = 2)
    compute_dies: int | None = Field(default=None, gt=0)  # dies holding the compute units (MI300X 8 XCDs, B200 2)
    base_clock_mhz: float | None = Field(default=None, gt=0)
    boost_clock_mhz: float | None = Field(default=None, gt=0)  # GPUs: boost; CPUs: max boost (note says)
    all_core_clock_mhz: float | None = Field(default=None, gt=0)  # CPUs: all-core turbo where published
    # Caches. l2_cache_mib: GPU L2 (all dies). infinity_cache_mib: AMD's memory-side cache
    # (RDNA 2+ Infinity Cache, MI300 Infinity Cache, Strix Halo MALL). llc_mib: CPU L3 and
    # Apple's system-level cache (the last level before DRAM, shared by CPU and GPU).
    l2_cache_mib: float | None = Field(default=None, gt=0)
    infinity_cache_mib: float | None = Field(default=None, gt=0)
    llc_mib: float | None = Field(default=None, gt=0)
    # CPUs: hardware threads, the widest vector ISA llama.cpp uses, the width of one FMA
    # datapath (Zen 4 runs AVX-512 on 256-bit units), matrix extensions and the resulting
    # peak FP32 FLOP per clock of one (big) core.
    threads: int | None = Field(default=None, gt=0)
    efficiency_cores: int | None = Field(default=None, ge=0)
    simd: SimdIsa | None = None
    simd_width_bits: int | None = Field(default=None, gt=0)
    matrix_isa: MatrixIsa | None = None
    fp32_flops_per_clock_per_core: int | None = Field(default=None, gt=0)
    tdp_w: float = Field(gt=0)
    pcie_gen: int | None = None
    pcie_lanes: int | None = None
    nvlink: str | None = None  # a link id from links.yaml (bridge or SXM NVLink) that fits this device
    launch_price_usd: float | None = Field(default=None, gt=0)
    used_price_usd: float | None = Field(default=None, gt=0)
    used_price_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    street_price_usd: float | None = Field(default=None, gt=0)  # new, from resellers, at street_price_date
    street_price_date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}$")
    aliases: list[str] = []  # other names (NVML / marketing) that map to this id
    source: str  # main spec page
    sources: dict[str, str] = {}  # field -> source, where it differs from `source`
    note: str | None = None

    @model_validator(mode="after")
    def _memory_present(self):
        if self.kind != "cpu" and self.memory_gib is None:
            raise ValueError(f"{self.id}: memory_gib is required for kind {self.kind}")
        if self.used_price_usd is not None and self.used_price_date is None:
            raise ValueError(f"{self.id}: used_price_usd needs used_price_date")
        if self.street_price_usd is not None and self.street_price_date is None:
            raise ValueError(f"{self.id}: street_price_usd needs street_price_date")
        if self.unified and self.gpu_share_default is None:
            raise ValueError(f"{self.id}: a unified-memory device needs gpu_share_default")
        return self

    @property
    def unified(self) -> bool:
        """CPU and GPU share one memory: layers 'offloaded to RAM' add no capacity."""
        return self.kind == "apple" or self.unified_memory

    def gpu_share(self, memory_gib: float | None = None, os_table: str | None = None) -> float | None:
        """Share of `memory_gib` (default: memory_gib) the GPU may use; None for devices with
        their own VRAM. Apple: macOS's default wired limit for that memory size (gpu_share.yaml,
        `os_table` picks a macOS version, default the current one)."""
        if not self.unified:
            return None
        if self.kind == "apple":
            from . import gpu_share_for

            return gpu_share_for(memory_gib or self.memory_gib, os_table) or self.gpu_share_default
        return self.gpu_share_default


class GpuShareTable(Entry):
    """macOS's default GPU wired-memory limit (Metal recommendedMaxWorkingSetSize, the
    iogpu.wired_limit_mb default) as a share of unified memory, by memory size in GiB. A size
    between keys takes the share of the nearest smaller key (the smallest key below all)."""

    id: str
    name: str
    default: bool = False  # the table gpu_share() uses when none is named
    share_by_memory_gib: dict[float, float]
    measured_memory_gib: list[float]  # keys read from published logs; the rest are interpolated
    source: str
    sources: dict[str, str] = {}  # memory size (as text) -> source of that measurement
    note: str

    @model_validator(mode="after")
    def _shares(self):
        for gib, share in self.share_by_memory_gib.items():
            if not (gib > 0 and 0 < share <= 1):
                raise ValueError(f"{self.id}: share {share} at {gib} GiB is out of range")
        missing = set(self.measured_memory_gib) - set(self.share_by_memory_gib)
        if missing:
            raise ValueError(f"{self.id}: measured sizes {sorted(missing)} have no share")
        return self

    def share(self, memory_gib: float) -> float:
        keys = sorted(self.share_by_memory_gib)
        below = [k for k in keys if k <= memory_gib]
        return self.share_by_memory_gib[below[-1] if below else keys[0]]


class Link(Entry):
    """A connection between devices, or between nodes."""

    id: str
    name: str
    kind: Literal["pcie", "nvlink-bridge", "nvlink", "nvswitch", "infinity-fabric", "infiniband", "ethernet"]
    scope: Literal["intra-node", "inter-node"]
    bandwidth_gb_s: float = Field(gt=0)  # usable per direction, between one pair of devices
    latency_us: float = Field(gt=0)  # one small message, typical
    # Device ids this link physically fits (bridges, SXM/OAM fabrics); empty: any device with
    # the right slot (PCIe) or port (networks). A pair of devices not listed cannot use it.
    fits_devices: list[str] = []
    source: str
    note: str | None = None

    def fits(self, device_id: str) -> bool:
        """Whether this link can join devices of this id (a bridge or fabric made for other cards cannot)."""
        return not self.fits_devices or device_id in self.fits_devices


class HostMemory(Entry):
    """System RAM: where offloaded layers live and CPU inference reads from."""

    id: str
    name: str
    memory_type: MemoryType
    module: Literal["dimm", "mrdimm", "soldered"] = "dimm"  # soldered: LPDDR on the package/board
    speed_mt_s: int = Field(gt=0)
    channels: int = Field(gt=0)  # 64-bit channels (a 256-bit LPDDR5X bus = 4)
    bandwidth_gb_s: float = Field(gt=0)  # theoretical peak: MT/s x 8 bytes x channels
    source: str
    note: str | None = None


LayerType = Literal["full_attention", "sliding_attention", "chunked_attention", "linear_attention", "mamba",
                    "hybrid", "none"]
FfnType = Literal["dense", "moe", "none"]

# Physical bounds for architecture numbers: the largest real models sit far inside them (Llama 3.1
# 405B: 126 layers, hidden 16384; DeepSeek-V3 and Kimi K2: 256-384 experts; Gemma 3: 262k vocabulary;
# Llama 4 Scout: 10M context). They turn a hostile or corrupt config into one clear error instead of
# a table sized by it.
LAYERS = Field(ge=1, le=1000)
WIDTH = Field(ge=1, le=10**6)
HEADS = Field(ge=1, le=100_000)
TOKENS = Field(ge=1, le=10**9)


class ModelSpec(Entry):
    """A model's architecture, with fields named as in its config.json where one exists.

    The flat fields describe the uniform case; the per-layer lists (layer_types, ffn_types,
    intermediate_sizes, kv_heads_per_layer) are given only where layers differ. sources/arch.py
    turns both into one description per layer."""

    id: str  # Hugging Face repository id
    name: str
    architecture: str  # config.json model_type: llama, qwen3_next, nemotron_h, ...
    n_layers: int = LAYERS  # num_hidden_layers
    hidden_size: int = WIDTH
    n_heads: int = HEADS  # num_attention_heads
    n_kv_heads: int = HEADS  # num_key_value_heads
    head_dim: int = Field(ge=1, le=100_000)  # of queries and keys
    v_head_dim: int | None = Field(default=None, ge=1, le=100_000)  # when values differ from keys
    intermediate_size: int = Field(ge=1, le=10**7)  # dense MLP width (for MoE: of the dense layers)
    vocab_size: int = Field(ge=1, le=10**8)
    tied_embeddings: bool = False
    mlp_gated: bool = True  # SwiGLU/GeGLU: 3 matrices per MLP
    attention_bias: bool = False  # q/k/v biases (Qwen2, gpt-oss)
    qk_norm: bool | None = None  # per-head q/k RMSNorm; None: the architecture's default
    attention_sinks: bool = False  # gpt-oss
    attention_output_gate: bool = False  # Qwen3-Next: sigmoid gate from a doubled q_proj
    # Mixture of experts
    n_experts: int = Field(default=0, ge=0, le=10_000)
    n_experts_active: int = Field(default=0, ge=0, le=10_000)
    moe_intermediate_size: int | None = Field(default=None, ge=1, le=10**7)  # width of one routed expert
    n_shared_experts: int = Field(default=0, ge=0, le=1000)
    shared_expert_intermediate_size: int | None = Field(default=None, ge=1, le=10**7)  # all shared experts
    n_dense_layers: int = Field(default=0, ge=0, le=1000)  # leading dense layers (DeepSeek first_k_dense_replace)
    # Sliding-window attention: n_sliding_layers of n_layers attend to sliding_window tokens
    sliding_window: int | None = Field(default=None, ge=1, le=10**9)
    n_sliding_layers: int = Field(default=0, ge=0, le=1000)
    attention_chunk_size: int | None = Field(default=None, ge=1, le=10**9)  # Llama 4 chunked attention
    kv_shared_layers: int = Field(default=0, ge=0, le=1000)  # Gemma 3n: last layers reuse earlier caches
    # Per-layer structure where layers differ (lists of n_layers entries)
    layer_types: list[LayerType] | None = Field(default=None, max_length=1000)
    ffn_types: list[FfnType] | None = Field(default=None, max_length=1000)
    intermediate_sizes: list[int] | None = Field(default=None, max_length=1000)  # 0: no FFN
    kv_heads_per_layer: list[int] | None = Field(default=None, max_length=1000)  # 0: no attention
    # Recurrent blocks (linear attention / SSM), in llama.cpp's ssm_* terms
    ssm_kind: Literal["gated_deltanet", "mamba", "mamba2"] | None = None
    ssm_d_inner: int | None = Field(default=None, ge=1, le=10**6)
    ssm_d_state: int | None = Field(default=None, ge=1, le=100_000)
    ssm_n_groups: int = Field(default=0, ge=0, le=100_000)
    ssm_dt_rank: int | None = Field(default=None, ge=1, le=100_000)  # SSM / value heads (Mamba-1: dt rank)
    ssm_d_conv: int | None = Field(default=None, ge=1, le=1000)
    # Gemma 3n
    per_layer_embedding_dim: int | None = Field(default=None, ge=1, le=100_000)  # hidden_size_per_layer_input
    per_layer_embedding_vocab: int | None = Field(default=None, ge=1, le=10**8)  # vocab_size_per_layer_input
    altup_inputs: int | None = Field(default=None, ge=1, le=64)
    laurel_rank: int | None = Field(default=None, ge=1, le=100_000)
    # Multi-head latent attention (DeepSeek-V2/V3): the KV cache holds a compressed latent
    mla_kv_lora_rank: int | None = Field(default=None, ge=1, le=100_000)
    mla_q_lora_rank: int | None = Field(default=None, ge=1, le=100_000)
    mla_qk_rope_head_dim: int | None = Field(default=None, ge=1, le=100_000)
    mla_qk_nope_head_dim: int | None = Field(default=None, ge=1, le=100_000)
    mla_v_head_dim: int | None = Field(default=None, ge=1, le=100_000)
    max_context: int = TOKENS  # max_position_embeddings
    native_dtype: Literal["BF16", "F16", "F32", "FP8", "MXFP4"] = "BF16"
    params_b_published: float | None = None  # total parameters as the model card states, billions
    active_params_b_published: float | None = None
    source: str  # config.json URL
    aliases: list[str] = []
    note: str | None = None

    @model_validator(mode="after")
    def _consistent(self):
        n = self.n_layers
        for name in ("layer_types", "ffn_types", "intermediate_sizes", "kv_heads_per_layer"):
            v = getattr(self, name)
            if v is not None and len(v) != n:
                raise ValueError(f"{name} lists {len(v)} layers, num_hidden_layers is {n}")
        for name in ("intermediate_sizes", "kv_heads_per_layer"):
            v = getattr(self, name)
            if v is not None and any(not 0 <= x <= 10**7 for x in v):
                raise ValueError(f"{name} values must be 0 to 10,000,000")
        if self.n_experts_active > self.n_experts:
            raise ValueError(f"{self.n_experts_active} active experts of {self.n_experts}")
        # grouped-query attention: each KV head serves a whole group of query heads
        for kv in {self.n_kv_heads, *(self.kv_heads_per_layer or ())} - {0}:
            if kv > self.n_heads or self.n_heads % kv:
                raise ValueError(f"{kv} KV heads for {self.n_heads} attention heads; accepted: a divisor of "
                                 f"the attention heads (each KV head serves a group of query heads)")
        if self.n_dense_layers > n or self.n_sliding_layers > n or self.kv_shared_layers >= n:
            raise ValueError("more dense, sliding or KV-sharing layers than layers")
        kinds = set(self.layer_types or ())
        if kinds & {"linear_attention", "mamba", "hybrid"} and not (
                self.ssm_kind and self.ssm_d_inner and self.ssm_d_state and self.ssm_dt_rank and self.ssm_d_conv):
            raise ValueError("recurrent layers need ssm_kind, ssm_d_inner, ssm_d_state, ssm_dt_rank and ssm_d_conv")
        if "moe" in (self.ffn_types or ()) and not self.n_experts:
            raise ValueError("MoE layers need n_experts")
        return self


class Quant(Entry):
    """A weight format. GGUF entries name a ggml block type and, used for a whole file, the
    llama.cpp file type (llama-quantize's name), whose per-tensor choices are perf/gguf_types.py's
    port of llama-quant.cpp. Checkpoint formats give their layout: bits per weight including
    scales, or a block of block_weights weights in block_bytes bytes."""

    id: str
    name: str
    kind: Literal["float", "gguf", "gguf-mix", "int", "awq", "gptq", "exl2", "fp8", "mxfp4", "nvfp4",
                  "mlx", "nf4"]
    aliases: list[str] = []
    block_weights: int | None = None  # weights per block (GGUF, MX/NV FP4, NF4)
    block_bytes: int | None = None  # bytes per block, scales included
    bits_per_weight: float = Field(gt=0)  # exact for block types; for mixes: of Llama 3 8B, as computed
    base: str | None = None  # for mixes: the type most tensors get (llama_ftype_get_default_type)
    ftype: str | None = None  # the llama.cpp file type when it differs from the id (Q4_K -> Q4_K_M)
    group_size: int | None = None  # AWQ/GPTQ/MLX groups; FP8 block-scaled tile side
    engines: list[str] = []  # engines that load it, where only some do
    kv_cache: bool = False  # usable as a KV cache type
    source: str

    @model_validator(mode="after")
    def _layout(self):
        if self.kind == "gguf" and (self.block_weights is None or self.block_bytes is None):
            raise ValueError(f"{self.id}: gguf types need block_weights and block_bytes")
        if self.kind == "gguf-mix" and not self.base:
            raise ValueError(f"{self.id}: mixed types need a base type")
        return self


class Build(Entry):
    """A whole machine people buy for local inference (used by `gpuplan builds`)."""

    id: str
    name: str
    gpus: str  # hardware spec string, e.g. "2x rtx-3090"
    link: str | None = None
    host_memory: str | None = None
    price_usd: float = Field(gt=0)  # the GPUs (or the whole Mac) at the stated date
    price_kind: Literal["new", "used", "launch"]
    price_date: str = Field(pattern=r"^\d{4}-\d{2}$")
    price_scope: Literal["gpus", "system"] = "gpus"  # what price_usd buys: the GPUs alone or the whole machine
    power_w: float = Field(gt=0)  # whole system under inference load
    notes: str
    source: str
    sources: dict[str, str] = {}  # field -> source, where it differs from `source`
