"""Everything one estimate needs about its plan, computed once: which kernel family runs each
part (a llama.cpp backend or an engine's own kernels), the bandwidth each part's stream reaches,
its dequant + dot-product rate, its matmul rate for prompts and its fixed launch costs, all from
the device's spec fields (perf/rates.py) and the named constants (perf/constants.py)."""

from __future__ import annotations

from functools import lru_cache

from ..sources.arch import describe
from ..types import Engine, Hardware, LoadedModel, Plan, Split
from . import rates
from .constants import Constants, era_factor
from .layout import Part, parts

LLAMA_CPP_UBATCH = 512  # llama.cpp -ub default
LLAMA_CPP_BATCH = 2048  # llama.cpp -b default: ubatches of one batch pipeline across devices
ENGINE_CHUNK = 8192  # prompt tokens vLLM-style engines take in one step
MLX_PREFILL_STEP = 512  # mlx_lm generate's prefill_step_size (0.20-0.21)
MMQ_DEFAULT_DATE = "2024-06"  # llama.cpp b3250 made int8 MMQ the default for quantized prompts
CUDA_GRAPHS_DATE = "2024-05"  # llama.cpp PR 6766: one CUDA graph per token (batch 1, Ampere and newer)
CPU_GEMM_DATE = "2024-04"  # llama.cpp b2702: llamafile's tiled sgemm for CPU prompts
CPU_GEMM_TYPES = frozenset({"F32", "F16", "BF16", "Q8_0", "Q4_0"})  # sgemm.cpp at that time
PRE_AMPERE = ("pascal", "volta", "turing", "maxwell")  # llama.cpp keeps CUDA graphs off below cc 8.0
LLAMA_ENGINES = (Engine.LLAMA_CPP, Engine.LLAMA_CPP_PYTHON, Engine.OLLAMA)
FLOAT_IDS = ("F16", "BF16", "F32")


def quant_family(quant) -> str:
    """The format family whose dequantisation work a weight costs (constants.dot_cost)."""
    kind = quant.kind
    if kind == "float":
        return "float"
    if kind == "fp8":
        return "fp8"
    if kind in ("awq", "gptq", "mlx"):
        return "int4"
    if kind == "int":
        return "legacy"
    if kind == "exl2":
        return "kquant"
    base = (quant.base or quant.id).upper()
    if base.startswith(("IQ4", "MXFP4")):
        return "iq4"
    if base.startswith(("IQ", "TQ")):
        return "iq"
    if "_K" in base:
        return "kquant"
    return "legacy"


@lru_cache(maxsize=1)
def _generic_cpu():
    from .. import catalog

    return catalog.device("cpu")


def host_bandwidth(hw: Hardware, cpu) -> tuple[float, str]:
    """Peak bandwidth (GB/s) and memory type of the RAM a CPU reads."""
    if hw.host is not None:
        return hw.host.bandwidth_gb_s, hw.host.memory_type
    if cpu is not None:
        return cpu.memory_bandwidth_gb_s, cpu.memory_type
    return 83.2, "DDR5"  # DDR5-5200 dual channel: a typical desktop when nothing is said


class Ctx:
    """One estimate's plan, with per-part rates."""

    def __init__(self, model: LoadedModel, hw: Hardware, plan: Plan, c: Constants, date: str | None):
        self.model, self.hw, self.plan, self.c, self.date = model, hw, plan, c, date
        self.spec = model.spec
        self.arch = describe(model.spec)
        self.parts = parts(model, hw, plan)
        gpu = next((p.device for p in self.parts if p.device is not None), None)
        self.lead = gpu
        self.is_llama = plan.engine in LLAMA_ENGINES
        self.hw_backend = gpu.backend if gpu is not None else "cpu"
        self.cpu = next((d for d in hw.devices if d.kind == "cpu"), None) or _generic_cpu()
        self.qfam = quant_family(model.quant)
        self.quantized = model.quant.kind in ("gguf", "gguf-mix") and model.quant.id not in FLOAT_IDS
        self.pre_mmq = self.is_llama and (date or "9999") < MMQ_DEFAULT_DATE
        self.expert_frac = (self.spec.n_experts_active / self.spec.n_experts) if self.spec.n_experts else 1.0
        self.era_pf = era_factor(c.era_prefill, date) if self.is_llama and self.family(gpu) == "cuda" else 1.0
        self.cpu_gemm = model.quant.id in CPU_GEMM_TYPES and (date or "9999") >= CPU_GEMM_DATE
        self.threads = plan.threads
        # a CPU build's vector ISA, as llama.cpp names its CPU backend variants ("cpu-avx2")
        b = plan.backend or ""
        self.build_simd = b[4:] if b.startswith("cpu-") else None

    # -- which kernels run a part
    def family(self, dev, on_host: bool = False) -> str:
        if on_host or dev is None or dev.kind == "cpu":
            return "cpu"
        eng = self.plan.engine
        if eng in LLAMA_ENGINES:
            b = self.plan.backend
            return b if b and not b.startswith("cpu") else dev.backend
        if eng in (Engine.VLLM, Engine.TGI):
            return "vllm"
        return eng.value  # mlx, sglang, tensorrt-llm, lmdeploy, exllamav2

    def part_family(self, p: Part) -> str:
        return self.family(p.device, p.on_host)

    def _cpu_of(self, p: Part):
        return p.device if (p.device is not None and p.device.kind == "cpu") else self.cpu

    # -- memory
    def reach_bw(self, p: Part) -> float:
        """Bytes/s this part's memory can deliver to the units reading it (before kernel efficiency)."""
        c = self.c
        dev = p.device
        if p.on_host or dev is None or dev.kind == "cpu":
            cpu = self._cpu_of(p)
            peak, _ = host_bandwidth(self.hw, cpu)
            cores = rates.cpu_active_cores(cpu, self.threads)
            per_core = c.core_bw_gb_s.get(cpu.segment, c.core_bw_gb_s.get("desktop-cpu", 25.0))
            return min(peak * c.of("stream_eff", "cpu", 0.8), cores * per_core) * 1e9
        if dev.kind == "apple":
            bw = rates.apple_gpu_bandwidth(dev) or dev.memory_bandwidth_gb_s * c.apple_gpu_reach
        else:
            bw = dev.memory_bandwidth_gb_s
        if dev.dies > 1:
            bw *= c.multi_die_mem_eff
        return bw * 1e9

    def bw(self, p: Part) -> float:
        """Bytes/s a decode step's weight stream reaches on this part."""
        fam = self.part_family(p)
        if fam == "cpu":
            return self.reach_bw(p)  # the platform share is already in reach_bw
        # Apple's measured GPU bandwidths are copy tests: a read-only stream may beat them, never the peak
        return min(self.reach_bw(p) * self.c.of("stream_eff", fam, 0.85), p.device.memory_bandwidth_gb_s * 1e9)

    # -- dequant + dot products
    def dot_rate(self, p: Part) -> float:
        """Legacy-block weights per second this part dequantises and multiplies (one token)."""
        fam = self.part_family(p)
        wpc = self.c.of("dot_weights_per_lane_cycle", fam, 0.12)
        if fam == "cpu":
            return rates.cpu_vector_rate(self._cpu_of(p), self.threads, self.build_simd) * wpc
        return rates.lane_cycles(p.device) * wpc

    def dot_cost(self) -> float:
        return self.c.dot_cost.get(self.qfam, 1.0)

    # -- matmul rate for prompts and big batches
    def flops(self, p: Part) -> float:
        """Dense GEMM FLOP/s this part reaches on big batches."""
        c = self.c
        dev = p.device
        if p.on_host or dev is None or dev.kind == "cpu":
            cpu = self._cpu_of(p)
            return 2.0 * rates.cpu_vector_rate(cpu, self.threads, self.build_simd) * c.cpu_gemm_eff
        fam = self.part_family(p)
        peak = max(dev.fp16_tflops, dev.fp32_tflops)
        if not self.is_llama and dev.vendor == "nvidia" and dev.segment == "consumer":
            # PyTorch engines accumulate FP16/BF16 GEMMs in FP32, which GeForce cards run at half
            # their FP16-accumulate tensor rate (NVIDIA Ada/Ampere GPU architecture whitepapers)
            acc32 = rates.field(dev, "fp16_fp32acc_tflops")
            peak = max(acc32 or dev.fp16_tflops / 2, dev.fp32_tflops)
        if self.quantized and fam in ("cuda", "rocm") and dev.int8_tops and (
                not self.pre_mmq or dev.fp16_tflops < dev.fp32_tflops):
            # llama.cpp's MMQ multiplies quantized weights with int8 dot products (DP4A / int8 MMA;
            # HIP builds compile the same kernels to MFMA/WMMA); the scales and dequant work let it
            # reach a share of the int8 rate
            peak = max(peak, dev.int8_tops * c.int8_share)
        return peak * 1e12 * c.of("prefill_eff", fam, 0.4) * self.era_pf

    # -- fixed costs
    def graphs(self, p: Part, batch: int) -> bool:
        """llama.cpp replays a CUDA graph for a one-token step on Ampere and newer from 2024-05."""
        dev = p.device
        return (self.is_llama and batch == 1 and self.part_family(p) == "cuda" and dev is not None
                and dev.architecture.lower() not in PRE_AMPERE and self.plan.split != Split.ROW
                and (self.date or "9999") >= CUDA_GRAPHS_DATE)

    def layer_fixed(self, p: Part, batch: int = 1) -> float:
        """Launch and wait costs of this part's layers for one step, scaled by the device clock."""
        fam = self.part_family(p)
        per = self.c.of("layer_fixed_s", fam, 1e-4)
        if self.graphs(p, batch):
            per *= self.c.graph_layer_share
        dev = p.device if not p.on_host else self.cpu
        clock = rates.clock_hz(dev)
        layers = p.layers + (self.c.moe_layer_fixed_factor - 1.0) * p.moe_layers
        return layers * per * rates.REF_CLOCK_HZ / clock

    def token_fixed(self) -> float:
        """Per-step host work: graph build or replay, sampling, synchronisation; for vLLM-style
        engines their scheduler's step overhead."""
        fam = self.family(self.lead)
        return self.c.of("token_fixed_s", fam, 5e-4)
