"""Memory footprint per device: weights where the engine puts them, KV cache with GQA,
sliding windows, MLA and KV quantization, and each engine's buffers and runtime overhead.

All sizes are bytes; GiB = 2**30. Engine constants are documented where they are defined.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog.schema import ModelSpec
from ..errors import InputError
from ..sources.arch import STATE_DTYPE_BYTES, describe
from ..types import DeviceMemory, Engine, Hardware, LoadedModel, Plan, Split, Workload

GIB = 2**30

# Bytes per KV element by cache type (ggml block layouts: q8_0 = 34 bytes / 32, q4_0 = 18 / 32).
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "fp8": 1.0, "q8_0": 34 / 32, "q5_0": 22 / 32,
            "q5_1": 24 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32, "iq4_nl": 18 / 32}


@dataclass(frozen=True)
class EngineMemory:
    """Per-device memory an engine takes besides weights and KV cache. Documented constants:
    context_gib: CUDA/HIP context + cuBLAS workspace created on every GPU the engine uses
      (CUDA context is ~300-500 MiB on recent drivers, e.g. llama.cpp issue #1866 and the
      vLLM docs' "non-torch memory"); Metal and CPU have none worth counting.
    ubatch: tokens per compute step, sizing the compute buffer (llama.cpp -ub default 512;
      vLLM profiles max_num_batched_tokens, 2048-8192 by default).
    graphs_gib: CUDA graph capture (vLLM docs: "typically 0.5-1 GiB").
    """

    context_gib: float
    ubatch: int
    graphs_gib: float = 0.0
    reserve_fraction: float = 0.0  # share of the card the engine never uses (vLLM 1 - utilization)


ENGINE_MEMORY = {
    Engine.LLAMA_CPP: EngineMemory(context_gib=0.35, ubatch=512),
    # Ollama runs llama.cpp and keeps extra headroom per GPU (its scheduler's minimum, ~457 MiB,
    # ollama/llm/memory.go "gpuZeroOverhead"/"minimumMemory").
    Engine.OLLAMA: EngineMemory(context_gib=0.35 + 0.45, ubatch=512),
    Engine.VLLM: EngineMemory(context_gib=0.5, ubatch=2048, graphs_gib=0.75, reserve_fraction=0.10),
    Engine.SGLANG: EngineMemory(context_gib=0.5, ubatch=2048, graphs_gib=0.75, reserve_fraction=0.12),
    Engine.TGI: EngineMemory(context_gib=0.5, ubatch=2048, graphs_gib=0.5, reserve_fraction=0.05),
    Engine.TRT_LLM: EngineMemory(context_gib=0.5, ubatch=2048, graphs_gib=0.5, reserve_fraction=0.10),
    Engine.EXLLAMAV2: EngineMemory(context_gib=0.35, ubatch=2048),
}


def kv_type_bytes(kv_type: str) -> float:
    k = kv_type.strip().lower()
    if k not in KV_BYTES:
        raise InputError(f"unknown KV cache type '{kv_type}'; accepted: f16, bf16, q8_0, q4_0, fp8, "
                         + ", ".join(sorted(set(KV_BYTES) - {"f16", "bf16", "q8_0", "q4_0", "fp8"})))
    return KV_BYTES[k]


def kv_elements_per_token(spec: ModelSpec) -> float:
    """KV elements one token adds to one attention layer's cache (K and V): 2 x kv_heads x head_dim
    under GQA; the compressed latent plus the RoPE key under MLA. The largest over layers."""
    return float(max((ly.kv_elements_per_token for ly in describe(spec).layers), default=0))


def kv_bytes_per_token(spec: ModelSpec, kv_type: str = "f16") -> float:
    """Bytes of KV cache one token adds across all layers that keep their own cache (Llama 3 8B,
    f16: 128 KiB); recurrent layers and layers reading another's cache add nothing."""
    return sum(ly.kv_elements_per_token for ly in describe(spec).layers) * kv_type_bytes(kv_type)


def recurrent_state_bytes(spec: ModelSpec, state_type: str = "f32") -> float:
    """Constant state of one sequence over all recurrent layers (conv + SSM / delta-rule state);
    llama.cpp allocates it in F32 (llama_memory_recurrent), vLLM in the model dtype by default."""
    b = STATE_DTYPE_BYTES[state_type]
    return float(sum(ly.recurrent.state_bytes(b, b) for ly in describe(spec).layers if ly.recurrent))


def kv_layer_bytes(spec: ModelSpec, kv_type: str, context: int, seqs: int, state_type: str = "f32") -> list[float]:
    """Cache bytes per layer for `seqs` sequences of `context` tokens: full-attention layers hold
    every token, sliding layers their window, chunked layers their chunk (the engine's own sizing
    rules, llama.cpp's swa_full and ubatch padding, go on top of this), recurrent layers a constant
    state per sequence, layers that read an earlier layer's cache nothing."""
    per_elem = kv_type_bytes(kv_type)
    sb = STATE_DTYPE_BYTES[state_type]
    out = []
    for ly in describe(spec).layers:
        b = ly.kv_elements_per_token * per_elem * ly.kv_tokens(context) * seqs
        if ly.recurrent:
            b += ly.recurrent.state_bytes(sb, sb) * seqs
        out.append(float(b))
    return out


def layers_per_device(n_layers: int, shares: tuple[float, ...]) -> list[int]:
    """Whole layers per device from fractions, by cumulative rounding (as llama.cpp --tensor-split)."""
    total = sum(shares)
    if total <= 0:
        raise InputError("tensor split shares must add up to more than 0")
    bounds, acc = [], 0.0
    for s in shares:
        acc += s / total
        bounds.append(round(acc * n_layers))
    counts, prev = [], 0
    for b in bounds:
        counts.append(b - prev)
        prev = b
    return counts


def row_main_device(plan: Plan, hw: Hardware) -> int:
    """Position in plan.device_ids of llama.cpp's --main-gpu under row split, which holds the
    whole KV cache: the device with the most memory (the first of equals). The engine layer
    names the same device in the command."""
    caps = [hw.memory_gib[i] for i in plan.device_ids]
    return caps.index(max(caps))


def compute_buffer_bytes(model: LoadedModel, engine: Engine, context: int, seqs: int,
                         holds_output: bool, flash_attention: bool) -> float:
    """Scratch for one compute step. llama.cpp: logits (n_vocab x ubatch x f32) on the device
    holding the output head, activations (ubatch x ffn x f32 a few times), and without flash
    attention the KQ matrix (ubatch x context x heads x f32)."""
    spec = model.spec
    em = ENGINE_MEMORY[engine]
    ub = min(em.ubatch, max(context * seqs, 1))
    ffn = max(spec.intermediate_size, spec.moe_intermediate_size or 0)
    act = ub * (2 * ffn + 4 * spec.hidden_size) * 4.0
    logits = spec.vocab_size * ub * 4.0 if holds_output else 0.0
    attn = 0.0 if flash_attention else ub * min(context, 32768) * spec.n_heads * 4.0
    return max(logits, attn) + act


def device_memory(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload) -> list[DeviceMemory]:
    """Memory per device of one replica (replicas are identical), and host RAM when layers are offloaded."""
    spec, w = model.spec, model.weights
    engine = plan.engine
    em = ENGINE_MEMORY[engine]
    seqs = max(1, wl.users // max(plan.replicas, 1) + (1 if wl.users % max(plan.replicas, 1) else 0))
    kv = kv_layer_bytes(spec, plan.kv_type, wl.context, seqs)
    idx = list(plan.device_ids)
    n_dev = len(idx)
    weights = [0.0] * n_dev
    kvs = [0.0] * n_dev
    host_w, host_kv = 0.0, 0.0
    n_layers = spec.n_layers
    gpu_layers = n_layers if plan.gpu_layers is None else max(0, min(plan.gpu_layers, n_layers))
    first_gpu_layer = n_layers - gpu_layers  # llama.cpp keeps the first layers in RAM
    experts_host = plan.experts_on_host
    # llama.cpp keeps the token embedding in host RAM; GPU engines keep it on the GPUs.
    # On a CPU device everything is host RAM already.
    cpu_only = all(hw.devices[i].kind == "cpu" for i in idx)
    embed_on_host = engine in (Engine.LLAMA_CPP, Engine.OLLAMA) and not cpu_only
    out_bytes = w.output_bytes if w.output_bytes else (w.embed_bytes if spec.tied_embeddings else 0)

    if plan.split in (Split.TENSOR, Split.PIPELINE) and plan.tp > 1 or plan.split == Split.ROW:
        # every layer cut across the devices (TP shards heads; KV sharded by kv heads, replicated
        # when there are fewer kv heads than devices)
        tp = n_dev if plan.split == Split.ROW else plan.tp
        pp = max(1, n_dev // tp)
        stage_layers = layers_per_device(n_layers, tuple([1.0] * pp))
        li = 0
        for stage, count in enumerate(stage_layers):
            for layer in range(li, li + count):
                for r in range(tp):
                    d = stage * tp + r
                    shards = tp if plan.split != Split.ROW else 1
                    share = plan.shares[r] if plan.split == Split.ROW and plan.shares else 1 / tp
                    lw = w.layer_bytes[layer] - (w.layer_expert_bytes[layer] if experts_host else 0)
                    weights[d] += lw * share
                    kv_div = min(tp, spec.n_kv_heads) if not spec.mla_kv_lora_rank else 1
                    kvs[d] += kv[layer] / (kv_div if shards > 1 else 1) if plan.split != Split.ROW else 0
                    if experts_host:
                        host_w += w.layer_expert_bytes[layer] / tp
            li += count
        if plan.split == Split.ROW:  # llama.cpp row split keeps KV (and small tensors) on the main GPU
            kvs[row_main_device(plan, hw)] += sum(kv)
        for r in range(tp):  # embedding and output head sharded by vocabulary
            weights[(pp - 1) * tp + r] += out_bytes / tp
            if not embed_on_host:
                weights[r] += w.embed_bytes / tp
    else:
        shares = plan.shares if plan.shares else tuple([1.0] * n_dev)
        counts = layers_per_device(gpu_layers, shares)
        layer = first_gpu_layer
        for d, count in enumerate(counts):
            for i in range(layer, layer + count):
                lw = w.layer_bytes[i] - (w.layer_expert_bytes[i] if experts_host else 0)
                weights[d] += lw
                kvs[d] += kv[i]
                if experts_host:
                    host_w += w.layer_expert_bytes[i]
            layer += count
        for i in range(first_gpu_layer):
            host_w += w.layer_bytes[i]
            host_kv += kv[i]
        if plan.gpu_layers is None or plan.gpu_layers > n_layers:
            weights[-1] += out_bytes  # output head on the last device
        else:
            host_w += out_bytes
        if not embed_on_host:
            weights[0] += w.embed_bytes
    if embed_on_host:
        host_w += w.embed_bytes
    weights[-1] += w.other_bytes

    out = []
    for d in range(n_dev):
        dev = hw.devices[idx[d]]
        cap = hw.memory_gib[idx[d]] * GIB
        share = dev.gpu_share(hw.memory_gib[idx[d]])  # unified memory: what the GPU may use of it
        if share is not None:
            cap *= share
        holds_output = d == n_dev - 1 or plan.split in (Split.TENSOR, Split.ROW)
        buf = compute_buffer_bytes(model, engine, wl.context, seqs, holds_output, plan.flash_attention)
        ctx = em.context_gib * GIB if dev.kind == "gpu" else 0.0
        graphs = em.graphs_gib * GIB if dev.kind == "gpu" else 0.0
        reserve = em.reserve_fraction * cap
        out.append(DeviceMemory(name=dev.id, weights=weights[d], kv_cache=kvs[d],
                                overhead=buf + ctx + graphs + reserve, capacity=cap))
    if cpu_only:
        weights[0] += host_w
        kvs[0] += host_kv
        host_w = host_kv = 0.0
    if host_w or host_kv:
        ram = (hw.host_ram_gib or _default_ram(hw)) * GIB
        unified = [i for i in idx if hw.devices[i].unified]
        if unified:  # unified memory: what the GPU may not use is all the CPU side has
            i = unified[0]
            ram = hw.memory_gib[i] * GIB * (1 - hw.devices[i].gpu_share(hw.memory_gib[i]))
        out.append(DeviceMemory(name="host RAM", weights=host_w, kv_cache=host_kv,
                                overhead=0.0, capacity=ram))
    return out


def _default_ram(hw: Hardware) -> float:
    from ..sources.hardware import DEFAULT_HOST_RAM_GIB

    return DEFAULT_HOST_RAM_GIB


def fits(mem: list[DeviceMemory]) -> bool:
    return all(m.free >= 0 for m in mem)


def max_context(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload) -> int:
    """Largest context per sequence (users x context cached) that fits, up to the model's maximum."""
    from dataclasses import replace

    def ok(c: int) -> bool:
        return fits(device_memory(model, hw, plan, replace(wl, context=c)))

    return largest(ok, model.spec.max_context)


def largest(ok, limit: int) -> int:
    """The largest n in 1..limit with ok(n), for ok true up to some point and false after it
    (0 when ok(1) is false): doubling, then bisection."""
    if not ok(1):
        return 0
    lo, hi = 1, 2
    while hi <= limit and ok(hi):
        lo, hi = hi, hi * 2
    hi = min(hi, limit + 1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo
