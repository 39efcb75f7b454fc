"""The types that flow through gpuplan: resolve -> enumerate -> estimate -> rank/explain -> render.

Catalog entries (Device, Link, HostMemory, ModelSpec, Quant) live in catalog/schema.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

from .catalog.schema import Device, HostMemory, Link, ModelSpec, Quant


class Split(str, Enum):
    NONE = "none"  # one device
    LAYER = "layer"  # whole layers per device, run one after another (llama.cpp -sm layer)
    ROW = "row"  # every matrix split by rows, synchronised per layer (llama.cpp -sm row)
    TENSOR = "tensor"  # tensor parallel (vLLM/SGLang/TRT-LLM/ExLlamaV2 TP)
    PIPELINE = "pipeline"  # pipeline parallel with micro-batches (vLLM PP)


class Engine(str, Enum):
    LLAMA_CPP = "llama.cpp"  # llama-server
    LLAMA_CPP_PYTHON = "llama-cpp-python"  # the same library with other defaults (perf/engine_memory.yaml)
    OLLAMA = "ollama"
    VLLM = "vllm"
    SGLANG = "sglang"
    TRT_LLM = "tensorrt-llm"
    EXLLAMAV2 = "exllamav2"
    TGI = "tgi"
    MLX = "mlx"  # mlx-lm on Apple silicon (mlx_lm.generate / mlx_lm.server)
    LMDEPLOY = "lmdeploy"  # LMDeploy TurboMind

    @classmethod
    def parse(cls, text: str) -> "Engine":
        from .errors import InputError

        t = text.strip().lower().replace("_", "-")
        aliases = {"llamacpp": "llama.cpp", "llama-cpp": "llama.cpp", "llama-server": "llama.cpp",
                   "llama-cpp-py": "llama-cpp-python", "mlx-lm": "mlx", "trtllm": "tensorrt-llm",
                   "trt-llm": "tensorrt-llm", "exl2": "exllamav2", "tabbyapi": "exllamav2",
                   "turbomind": "lmdeploy"}
        t = aliases.get(t, t)
        for e in cls:
            if e.value == t:
                return e
        accepted = ", ".join(e.value for e in cls)
        raise InputError(f"unknown engine '{text}'; accepted: {accepted}", input="engine", value=text,
                         accepted=accepted)


class Metric(str, Enum):
    """What a measurement row's figure (its `tok_s` column) counts (data/measurements/README.md).
    The speeds are tokens/s, higher is better; the latency metrics name their unit (milliseconds)
    and are lower-is-better: `LATENCY` lists them, so code that fits or ranks speeds can leave them out."""

    DECODE = "decode"
    PREFILL = "prefill"
    THROUGHPUT = "throughput"
    THROUGHPUT_PER_GPU = "throughput_per_gpu"
    THROUGHPUT_TOTAL = "throughput_total"
    # a serving benchmark's median time to first token and median time per output token (after the
    # first), ms, as `vllm bench serve` prints them (vllm/benchmarks/serve.py calculate_metrics)
    TTFT_MEDIAN_MS = "ttft_median_ms"
    TPOT_MEDIAN_MS = "tpot_median_ms"

    @property
    def is_latency(self) -> bool:
        return self in LATENCY


# Latency metrics: milliseconds, lower is better; no speed-model constant is fitted on them.
LATENCY = frozenset({Metric.TTFT_MEDIAN_MS, Metric.TPOT_MEDIAN_MS})


@dataclass(frozen=True)
class Weights:
    """What a model weighs as stored: exact from a GGUF/safetensors file, else estimated."""

    layer_bytes: tuple[int, ...]  # per transformer block, every tensor in it
    layer_expert_bytes: tuple[int, ...]  # the routed-expert part of each block (in layer_bytes)
    embed_bytes: int  # token embedding table
    output_bytes: int  # output head (0 when tied to the embedding)
    other_bytes: int = 0  # final norm and the like
    origin: str = "estimate"  # "gguf", "safetensors" or "estimate"

    @property
    def total_bytes(self) -> int:
        return sum(self.layer_bytes) + self.embed_bytes + self.output_bytes + self.other_bytes


@dataclass(frozen=True)
class LoadedModel:
    """A model resolved from a catalog id, a GGUF file or a config.json, with its weight sizes."""

    spec: ModelSpec
    quant: Quant
    weights: Weights
    label: str  # how the user named it
    bits_per_weight_override: float | None = None  # EXL2-4.5bpw and the like


@dataclass(frozen=True)
class Hardware:
    """What the user has: devices (GPUs, or one Apple chip, or a CPU), how they connect, host RAM."""

    devices: tuple[Device, ...]
    memory_gib: tuple[float, ...]  # usable capacity per device (Apple: the chosen memory size)
    link: Link | None = None  # between the GPUs
    host: HostMemory | None = None  # system RAM for offload / CPU inference
    host_ram_gib: float | None = None
    nodes: int = 1
    node_link: Link | None = None
    link_given: bool = False  # the user named the link (else the default for these cards)
    origin: str = "spec"  # "spec" (a hardware string), "file" (--hardware) or "probed" (this machine)

    @property
    def n(self) -> int:
        return len(self.devices)


@dataclass(frozen=True)
class Workload:
    context: int = 4096  # tokens the KV cache must hold per sequence
    prompt_tokens: int = 512
    output_tokens: int = 128
    users: int = 1  # concurrent sequences
    depth: int = 0  # tokens already in the cache when a measured phase starts
    goal: str = "latency"  # latency | throughput | cost
    min_user_tok_s: float = 0.0


@dataclass(frozen=True)
class Plan:
    """How a model is spread over the hardware."""

    split: Split
    engine: Engine
    device_ids: tuple[int, ...]  # indices into Hardware.devices used by one replica
    shares: tuple[float, ...] = ()  # fraction of layers per device (layer/row split)
    tp: int = 1
    pp: int = 1
    replicas: int = 1
    gpu_layers: int | None = None  # None: all layers on the GPU(s); else the rest in host RAM
    kv_type: str = "f16"
    experts_on_host: bool = False  # every MoE layer's experts kept in RAM (llama.cpp --cpu-moe)
    n_cpu_moe: int = 0  # experts of the first N MoE layers in RAM, the rest on the GPU (--n-cpu-moe N)
    # Engine settings; None: the engine's default (perf/engine_memory.yaml), named in the answer
    flash_attention: bool | None = None
    swa_full: bool | None = None  # llama.cpp: sliding-window layers keep the whole context
    n_ubatch: int | None = None  # llama.cpp physical batch (-ub), sizes the compute buffer
    gpu_memory_utilization: float | None = None  # vLLM/SGLang share of each card the engine takes
    repack: bool | None = None  # llama.cpp CPU weight repacking (extra buffer types; --no-repack turns it off)
    engine_date: str | None = None  # "YYYY-MM" of the engine release (a measurement's date); None: current
    slots: int | None = None  # sequences each replica's KV cache is sized for (the planner's
    # concurrency; commands size -c / --parallel / max-num-seqs by it); None: every user
    # The GPU API an engine build uses where it is not the device's own (llama.cpp's Vulkan or
    # OpenCL builds on any GPU, "cpu-avx2" for a CPU build's ISA); None: the device's backend.
    backend: str | None = None
    threads: int | None = None  # CPU threads doing the work (llama.cpp -t); None: every core

    @property
    def strategy(self) -> str:
        parts = []
        if self.replicas > 1:
            parts.append(f"{self.replicas} replicas of")
        if self.split == Split.NONE:
            parts.append("one device")
        elif self.split == Split.TENSOR and self.pp > 1:
            parts.append(f"TP={self.tp} x PP={self.pp}")
        elif self.split == Split.TENSOR:
            parts.append(f"tensor parallel TP={self.tp}")
        else:
            parts.append(f"{self.split.value} split over {len(self.device_ids)}")
        if self.gpu_layers is not None:
            parts.append(f"+ RAM offload ({self.gpu_layers} layers on GPU)")
        if self.experts_on_host:
            parts.append("+ experts in RAM")
        elif self.n_cpu_moe:
            parts.append(f"+ experts of {self.n_cpu_moe} layers in RAM")
        return " ".join(parts)

    @property
    def description(self) -> str:
        """The strategy and, when it is not 16-bit, the KV cache type: what results show, so two
        plans that differ only in their KV cache never read the same."""
        kv = f" + {self.kv_type} KV cache" if self.kv_type not in ("f16", "bf16") else ""
        return self.strategy + kv


@dataclass(frozen=True)
class DeviceMemory:
    """Memory on one device (bytes), and its capacity."""

    name: str
    weights: float
    kv_cache: float
    overhead: float  # compute buffers, runtime/context, CUDA graphs
    capacity: float
    # llama.cpp's CPU_REPACK copy of weights held here (in neither weights nor total): it replaces
    # the mapped file pages of the same tensors, which the OS reclaims, though top counts both
    repacked: float = 0.0

    @property
    def total(self) -> float:
        return self.weights + self.kv_cache + self.overhead

    @property
    def free(self) -> float:
        return self.capacity - self.total


@dataclass(frozen=True)
class Estimate:
    """One prediction with its breakdown: what bounds it and how far from the physical limit."""

    value: float  # tokens/s
    metric: Metric
    seconds: dict[str, float] = field(default_factory=dict)  # component -> seconds per step
    bytes_read: dict[str, float] = field(default_factory=dict)  # component -> bytes per step
    bound: str = ""  # what limits it: memory bandwidth, compute, link, fixed cost, host RAM
    roofline_fraction: float = 0.0  # predicted speed / physical limit of the hardware used
    notes: tuple[str, ...] = ()
    # What measurements say about figures of this class (perf/uncertainty.py): the range 80% of
    # out-of-family predictions of its class fell in, applied to `value`, how many measurements
    # that rests on, and which class they were (or that none were, with the widest range observed).
    range: tuple[float, float] | None = None
    range_n: int = 0
    range_class: str = ""
