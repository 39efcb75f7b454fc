"""Memory footprint per device: weights where the engine puts them, KV cache with GQA,
sliding windows, MLA and KV quantization, and each engine's buffers and runtime overhead.

The engine's rules come from its memory profile (perf/engine_memory.yaml, engine_profiles.py):
llama.cpp-family buffers from llama_cpp_buffers.py, the paged engines' reservation and
activations from paged_memory.py. All sizes are bytes; GiB = 2**30.
"""

from __future__ import annotations

from ..catalog.schema import ModelSpec
from ..errors import InputError
from ..sources.arch import STATE_DTYPE_BYTES, describe
from ..types import DeviceMemory, Engine, Hardware, LoadedModel, Plan, Split, Workload
from . import llama_cpp_buffers as lcb
from .engine_profiles import LLAMA_FAMILY, Settings, gpu_context_bytes, profile, settings
from .paged_memory import activation_bytes, paged_tokens

GIB = 2**30

# Bytes per KV element by cache type (ggml block layouts: q8_0 = 34 bytes / 32, q4_0 = 18 / 32).
KV_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0, "fp8": 1.0, "q8_0": 34 / 32, "q5_0": 22 / 32,
            "q5_1": 24 / 32, "q4_0": 18 / 32, "q4_1": 20 / 32, "iq4_nl": 18 / 32}


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


def engine_kv_bytes(spec: ModelSpec, plan: Plan, st: Settings, context: int, seqs: int) -> list[float]:
    """Cache bytes per layer as the plan's engine allocates them for `seqs` sequences of `context`
    tokens, from the per-layer description (sources/arch.py): llama.cpp's cells (n_ctx padded to
    256, window layers window + n_ubatch unless swa_full, no window where its graph has none) and
    F32 recurrent states; the paged engines' blocks over the checkpoint's own windows, states in
    the model dtype."""
    per_elem = kv_type_bytes(plan.kv_type)
    layers = describe(spec).layers
    if plan.engine in LLAMA_FAMILY:
        ctx = lcb.context(context, seqs, unified=False, multiple=st.ctx_multiple)
        cells = lcb.kv_cells(spec, ctx, seqs, False, st.n_ubatch, st.swa_full)
        return [ly.kv_elements_per_token * per_elem * c + (ly.recurrent.state_bytes() * seqs if ly.recurrent else 0.0)
                for ly, c in zip(layers, cells)]
    block = {Engine.MLX: 256, Engine.EXLLAMAV2: 256}.get(plan.engine, st.block_size)
    sb = STATE_DTYPE_BYTES["bf16"]
    out = []
    for ly in layers:
        a = ly.attention
        b = 0.0
        if a and ly.kv_elements_per_token:
            w = a.window if a.kind != "full" else None
            b = ly.kv_elements_per_token * per_elem * seqs * paged_tokens(context, block, w)
        if ly.recurrent:
            b += ly.recurrent.state_bytes(sb, sb) * seqs
        out.append(b)
    return out


def experts_on_host_layers(spec: ModelSpec, plan: Plan) -> set[int]:
    """Layers whose routed experts stay in host RAM: all MoE layers (--cpu-moe) or the first
    n_cpu_moe of them (--n-cpu-moe N)."""
    if not spec.n_experts:
        return set()
    moe = [i for i in range(spec.n_layers) if i >= spec.n_dense_layers]
    if plan.experts_on_host:
        return set(moe)
    return set(moe[:max(plan.n_cpu_moe, 0)])


def _tied_head_bytes(spec: ModelSpec, w) -> float:
    """A tied output head is a copy of token_embd alone: embed_bytes also holds Gemma 3n's
    per-layer embedding table, which stays in host RAM and has no copy."""
    ple = describe(spec).per_layer_embedding
    if not ple:
        return float(w.embed_bytes)
    tok = spec.vocab_size * spec.hidden_size
    return w.embed_bytes * tok / (tok + ple[0] * ple[1] * spec.n_layers)


def cpu_features(hw: Hardware) -> frozenset[str]:
    """SIMD the host CPU has, for llama.cpp's weight repacking: NEON on Apple, AVX-512 on the
    CPUs that have it (Zen 4/5, Xeon Scalable), else AVX2 (every x86 CPU since 2015)."""
    for d in hw.devices:
        if d.vendor == "apple" or d.kind == "apple":
            return frozenset({"neon"})
        if d.kind == "cpu":
            a = d.architecture.lower()
            if "avx512" in a or "zen 4" in a or "zen 5" in a or "rapids" in a:
                return frozenset({"avx2", "avx512"})
    return frozenset({"avx2"})


def row_main_device(plan: Plan, hw: Hardware) -> int:
    """Position in plan.device_ids of llama.cpp's --main-gpu under row split, which holds the
    whole KV cache: the device with the most memory (the first of equals). The engine layer
    names the same device in the command."""
    caps = [hw.memory_gib[i] for i in plan.device_ids]
    return caps.index(max(caps))


def device_memory(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload) -> list[DeviceMemory]:
    """Memory per device of one replica (replicas are identical), and host RAM when anything lives
    there. llama.cpp family: weights where llama.cpp puts them (token_embd in host RAM, the output
    layer on the last GPU, duplicated from a tied token_embd only when that is a GPU), the repacked
    copy of host-resident weights, KV cells as llama.cpp sizes them, a compute buffer per device.
    Paged engines: the reservation, activation peak, CUDA context and graphs per GPU."""
    spec, w = model.spec, model.weights
    engine = plan.engine
    llama = engine in LLAMA_FAMILY
    prof = profile(engine, plan.engine_date)
    n_layers = spec.n_layers
    reps = max(plan.replicas, 1)
    seqs = max(1, -(-wl.users // reps))
    idx = list(plan.device_ids)
    n_dev = len(idx)
    devs = [hw.devices[i] for i in idx]
    cpu_only = all(d.kind == "cpu" for d in devs)
    unified_mem = any(d.unified for d in devs)
    gpu_layers = n_layers if plan.gpu_layers is None or cpu_only else max(0, min(plan.gpu_layers, n_layers))
    first_gpu_layer = n_layers - gpu_layers  # llama.cpp keeps the first layers in RAM
    st = settings(plan, host_layers=first_gpu_layer > 0)
    kv = engine_kv_bytes(spec, plan, st, wl.context, seqs)
    moe_host = experts_on_host_layers(spec, plan)
    weights = [0.0] * n_dev
    kvs = [0.0] * n_dev
    on_dev: list[list[int]] = [[] for _ in range(n_dev)]
    host_w = host_kv = 0.0
    host_layers = list(range(first_gpu_layer))
    out_bytes = w.output_bytes if w.output_bytes else (_tied_head_bytes(spec, w) if spec.tied_embeddings else 0)
    # llama.cpp keeps the token embedding in host RAM; GPU engines keep it on the GPUs
    embed_on_host = llama and not cpu_only
    output_on_host = cpu_only or (llama and plan.gpu_layers is not None and plan.gpu_layers <= n_layers)
    tied_free = spec.tied_embeddings and not w.output_bytes and (not llama or output_on_host or unified_mem)
    head = 0.0 if tied_free else out_bytes  # a tied head shared with the embedding costs nothing more

    def layer_w(i: int) -> float:
        return w.layer_bytes[i] - (w.layer_expert_bytes[i] if i in moe_host else 0)

    tp_like = plan.split in (Split.TENSOR, Split.PIPELINE) and plan.tp > 1 or plan.split == Split.ROW
    if tp_like:
        # every layer cut across the devices (TP shards heads; KV sharded by kv heads, replicated
        # when there are fewer kv heads than devices)
        tp = n_dev if plan.split == Split.ROW else plan.tp
        pp = max(1, n_dev // tp)
        li = 0
        for stage, count in enumerate(layers_per_device(n_layers, tuple([1.0] * pp))):
            for layer in range(li, li + count):
                for r in range(tp):
                    d = stage * tp + r
                    share = plan.shares[r] if plan.split == Split.ROW and plan.shares else 1 / tp
                    weights[d] += layer_w(layer) * share
                    on_dev[d].append(layer)
                    if plan.split != Split.ROW:
                        kv_div = min(tp, spec.n_kv_heads) if not spec.mla_kv_lora_rank else 1
                        kvs[d] += kv[layer] / kv_div
                if layer in moe_host:
                    host_w += w.layer_expert_bytes[layer]
            li += count
        if plan.split == Split.ROW:  # llama.cpp row split keeps KV (and small tensors) on the main GPU
            kvs[row_main_device(plan, hw)] += sum(kv)
        for r in range(tp):  # embedding and output head sharded by vocabulary
            weights[(pp - 1) * tp + r] += head / tp
            if not embed_on_host:
                weights[r] += w.embed_bytes / tp
        out_dev = (pp - 1) * tp
    else:
        shares = plan.shares if plan.shares else tuple([1.0] * n_dev)
        layer = first_gpu_layer
        for d, count in enumerate(layers_per_device(gpu_layers, shares)):
            for i in range(layer, layer + count):
                weights[d] += layer_w(i)
                kvs[d] += kv[i]
                on_dev[d].append(i)
                if i in moe_host:
                    host_w += w.layer_expert_bytes[i]
            layer += count
        for i in host_layers:
            host_w += w.layer_bytes[i]
            host_kv += kv[i]
        if output_on_host:
            host_w += head
        else:
            weights[-1] += head  # output head on the last device
        if not embed_on_host:
            weights[0] += w.embed_bytes
        out_dev = None if output_on_host else n_dev - 1
    if embed_on_host:
        host_w += w.embed_bytes
    weights[-1] += w.other_bytes

    # engine buffers per device, and in host RAM
    over = [0.0] * n_dev
    host_over = repack = 0.0
    if llama:
        over, host_over, repack = _llama_buffers(model, hw, plan, st, wl, seqs, on_dev, out_dev, host_layers,
                                                 moe_host, cpu_only)
    for d, dev in enumerate(devs):
        if dev.kind == "gpu":
            over[d] += gpu_context_bytes(prof, dev, plan.tp if plan.split in (Split.TENSOR, Split.PIPELINE) else 1)
    out = []
    for d, dev in enumerate(devs):
        cap = hw.memory_gib[idx[d]] * GIB
        share = dev.gpu_share(hw.memory_gib[idx[d]])  # unified memory: what the GPU may use of it
        if share is not None:
            cap *= share
        if not llama and (dev.kind == "gpu" or (engine == Engine.MLX and dev.kind == "apple")):
            tp = plan.tp if plan.split in (Split.TENSOR, Split.PIPELINE) else 1
            over[d] += activation_bytes(spec, st, max(tp, 1), big_gpu=cap >= 70 * GIB and "a100" not in dev.id)
            if st.gpu_memory_utilization is not None:  # never the engine's to use
                base = cap if st.utilization_of == "total" else max(cap - weights[d] - over[d], 0.0)
                over[d] += (1 - st.gpu_memory_utilization) * base
        out.append(DeviceMemory(name=dev.id, weights=weights[d], kv_cache=kvs[d], overhead=over[d], capacity=cap))
    if cpu_only:  # the CPU's own memory is the host RAM: fold it in
        d0 = out[0]
        out[0] = DeviceMemory(d0.name, d0.weights + host_w, d0.kv_cache + host_kv, d0.overhead + host_over, d0.capacity,
                              repacked=repack)
        return out
    if host_w or host_kv or host_over:
        ram = (hw.host_ram_gib or _default_ram(hw)) * GIB
        unified = [i for i in idx if hw.devices[i].unified]
        if unified:  # unified memory: what the GPU may not use is all the CPU side has
            i = unified[0]
            ram = hw.memory_gib[i] * GIB * (1 - hw.devices[i].gpu_share(hw.memory_gib[i]))
        out.append(DeviceMemory(name="host RAM", weights=host_w, kv_cache=host_kv, overhead=host_over, capacity=ram,
                                repacked=repack))
    return out


def _llama_buffers(model, hw, plan, st, wl, seqs, on_dev, out_dev, host_layers, moe_host, cpu_only):
    """llama.cpp's compute buffer per device and in host RAM, the output buffer (and
    llama-cpp-python's scores array) in host RAM, and the CPU_REPACK copy of host weights."""
    from .weights import repacked_bytes

    spec = model.spec
    ctx = lcb.context(wl.context, seqs, unified=False, multiple=st.ctx_multiple)
    win = lcb.windows(spec)
    per_layer = lcb.kv_cells(spec, ctx, seqs, False, st.n_ubatch, st.swa_full)
    ub = min(st.n_ubatch, st.n_batch, ctx.n_ctx)

    def cells(layers):  # cells of one stream per cache kind the layers use (full, window)
        return {win[i] is not None: per_layer[i] // ctx.n_stream for i in layers if win[i] != 0}

    def buf(layers, holds_output):
        return lcb.compute_bytes(spec, layers, cells(layers), ub, st.flash_attn, holds_output)

    over = [buf(layers, d == out_dev or (plan.split == Split.ROW and d == 0)) for d, layers in enumerate(on_dev)]
    if cpu_only:
        over[0] = buf(list(range(spec.n_layers)), True)
        host = 0.0
    elif host_layers or out_dev is None:
        host = buf(host_layers, out_dev is None)
    else:
        host = lcb.host_input_bytes(spec, ub)
    if moe_host:  # the routed experts' matmuls run on the CPU: their intermediates live there
        host = max(host, lcb.compute_bytes(spec, sorted(moe_host), {}, ub, True, False))
    n_out = st.n_batch if st.logits_all else 0
    host += lcb.output_bytes(spec, seqs, n_out)
    if st.logits_all:  # llama-cpp-python's numpy scores: n_ctx rows of n_vocab float32
        host += ctx.n_ctx * spec.vocab_size * lcb.F32
    repack = 0.0
    resident = list(range(spec.n_layers)) if cpu_only else host_layers
    if st.extra_bufts and resident:
        per_layer = repacked_bytes(spec, model.quant, cpu_features(hw))
        repack = float(sum(per_layer[i] for i in resident))
    return over, host, repack


def _default_ram(hw: Hardware) -> float:
    from ..sources.hardware import DEFAULT_HOST_RAM_GIB

    return DEFAULT_HOST_RAM_GIB


def fits(mem: list[DeviceMemory]) -> bool:
    return all(m.free >= 0 for m in mem)


def allocated_context(plan: Plan, wl: Workload) -> int:
    """Context cells per sequence the engine allocates for wl.context (llama.cpp pads to 256)."""
    step = context_step(plan)
    return -(-max(wl.context, 1) // step) * step


def context_step(plan: Plan) -> int:
    """The granularity of a context the engine allocates: llama.cpp pads n_ctx to 256 cells,
    paged engines allocate whole blocks."""
    st = settings(plan)
    return st.ctx_multiple if plan.engine in LLAMA_FAMILY else max(st.block_size, 1)


def max_context(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload) -> int:
    """Largest context per sequence (users x context cached) that fits, up to the model's maximum:
    a multiple of the engine's step (256 for llama.cpp, whose n_ctx is padded to it anyway)."""
    from dataclasses import replace

    step = context_step(plan)

    def ok(k: int) -> bool:
        return fits(device_memory(model, hw, plan, replace(wl, context=k * step)))

    return step * largest(ok, max(model.spec.max_context // step, 1))


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
