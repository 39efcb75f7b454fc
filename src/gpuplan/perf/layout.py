"""Where each byte lives for a plan: per device (and host RAM) the weight bytes a decode step
streams, the routed-expert part, the parameters behind them (counted from the tensors, not from
an average bits per weight: AWQ/GPTQ keep embeddings at 16 bits), the KV bytes per token of
context, and the layers held. Pure and cheap: the speed model calls it once per estimate."""

from __future__ import annotations

from dataclasses import dataclass

from ..sources.arch import describe
from ..types import Engine, Hardware, LoadedModel, Plan, Split
from .memory import experts_on_host_layers, kv_type_bytes, layers_per_device


@dataclass(frozen=True)
class Part:
    """One stage of the model on one device (or host RAM)."""

    device: object  # catalog Device, or None for host RAM
    dense_bytes: float  # weights read every step regardless of routing
    expert_bytes: float  # routed-expert weights held (a step reads a share of them)
    kv_bytes_per_ctx: float  # KV bytes read per token of context per sequence (full-attention layers)
    swa_kv_bytes: float  # KV bytes per token of window on sliding-window / chunked layers
    layers: int
    stage: int  # pipeline position (layer split / PP); TP shards share a stage
    on_host: bool = False
    state_bytes: float = 0.0  # recurrent-layer state per sequence (read and rewritten every step)
    dense_params: float = 0.0  # matrix parameters of the layers behind dense_bytes (every token)
    expert_params: float = 0.0  # behind expert_bytes
    head_params: float = 0.0  # the output head (decode multiplies it every token, a prompt once)
    moe_layers: int = 0  # layers with routed experts (they launch more kernels)


def backend_key(engine: Engine, device) -> str:
    eng = {Engine.OLLAMA: "llama.cpp", Engine.LLAMA_CPP_PYTHON: "llama.cpp", Engine.MLX: "llama.cpp",
           Engine.SGLANG: "vllm", Engine.TGI: "vllm"}.get(engine, engine.value)
    return f"{eng}/{device.backend if device is not None else 'cpu'}"


_PARAMS: dict[int, tuple[object, tuple]] = {}


def layer_params(spec) -> tuple[tuple[float, ...], tuple[float, ...], float, float]:
    """Per block: (dense matrix parameters, routed-expert parameters), and the output head's and
    embedding table's parameters, counted from the tensor list (cached per spec object)."""
    hit = _PARAMS.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    from ..sources.tensors import tensor_list

    dense = [0.0] * spec.n_layers
    expert = [0.0] * spec.n_layers
    head = embed = 0.0
    for t in tensor_list(spec):
        if not t.is_matrix:
            continue
        if t.layer is not None:
            if t.expert:
                expert[t.layer] += t.n_elements
            else:
                dense[t.layer] += t.n_elements
        elif t.kind == "output":
            head += t.n_elements
        elif t.kind == "token_embd":
            embed += t.n_elements
    if spec.tied_embeddings:
        head = embed
    out = (tuple(dense), tuple(expert), head, embed)
    if len(_PARAMS) > 512:
        _PARAMS.clear()
    _PARAMS[id(spec)] = (spec, out)
    return out


def parts(model: LoadedModel, hw: Hardware, plan: Plan) -> list[Part]:
    spec, w = model.spec, model.weights
    n = spec.n_layers
    kv_b = kv_type_bytes(plan.kv_type)
    arch = describe(spec)
    # routed-expert bytes per layer, the rest of the layer is read every step
    exp = w.layer_expert_bytes
    out_bytes = w.output_bytes if w.output_bytes else (w.embed_bytes if spec.tied_embeddings else 0)
    devs = [hw.devices[i] for i in plan.device_ids]
    result: list[Part] = []
    # routed experts kept in host RAM (--cpu-moe / --n-cpu-moe N): a host part that reads, per
    # step, only the experts the step's tokens are routed to, at host bandwidth
    moe_host = experts_on_host_layers(spec, plan)
    moved = 0.0
    moved_params = 0.0
    p_dense, p_exp, p_head, _ = layer_params(spec)

    def params(a: int, b: int, share: float = 1.0, last: bool = False, on_host: bool = False):
        nonlocal moved_params
        host_p = 0.0 if on_host else sum(p_exp[i] for i in range(a, b) if i in moe_host)
        moved_params += host_p * share
        moe = sum(1 for i in range(a, b) if p_exp[i] > 0)
        return dict(dense_params=sum(p_dense[a:b]) * share, head_params=(p_head if last else 0.0) * share,
                    expert_params=(sum(p_exp[a:b]) - host_p) * share, moe_layers=moe)

    def span(a: int, b: int, share: float = 1.0, kv_share: float = 1.0, on_host: bool = False):
        nonlocal moved
        dense = sum(w.layer_bytes[a:b]) - sum(exp[a:b])
        host_e = 0.0 if on_host else sum(exp[i] for i in range(a, b) if i in moe_host)
        expert = sum(exp[a:b]) - host_e
        moved += host_e * share
        k = b - a
        lys = arch.layers[a:b]  # per-layer cache: full layers grow with context, windowed ones stop
        full = sum(ly.kv_elements_per_token for ly in lys if ly.grows_with_context) * kv_b
        win = sum(ly.kv_elements_per_token for ly in lys if ly.attention and not ly.grows_with_context) * kv_b
        state = sum(ly.recurrent.state_bytes() for ly in lys if ly.recurrent)
        return dense * share, expert * share, full * kv_share, win * kv_share, k, state * kv_share

    gpu_layers = n if plan.gpu_layers is None else max(0, min(plan.gpu_layers, n))
    first = n - gpu_layers
    if first:  # leading layers in host RAM (llama.cpp -ngl); their experts too are read at the active share
        d, e, kf, ks, k, st = span(0, first, on_host=True)
        result.append(Part(None, d, e, kf, ks, k, 0, on_host=True, state_bytes=st,
                           **params(0, first, on_host=True)))
    tp_like = plan.split in (Split.ROW, Split.TENSOR)
    if tp_like:
        tp = len(devs) if plan.split == Split.ROW else max(plan.tp, 1)
        pp = max(1, len(devs) // tp)
        bounds = layers_per_device(gpu_layers, tuple([1.0] * pp))
        a = first
        for s, cnt in enumerate(bounds):
            for r in range(tp):
                share = plan.shares[r] if plan.split == Split.ROW and plan.shares else 1.0 / tp
                kv_div = 1.0 if spec.mla_kv_lora_rank else 1.0 / min(tp, spec.n_kv_heads)
                if plan.split == Split.ROW:
                    kv_div = 1.0 if r == 0 else 0.0  # row split keeps the KV cache on the main GPU
                d, e, kf, ks, k, st = span(a, a + cnt, share, kv_div)
                if s == pp - 1:
                    d += out_bytes * share
                result.append(Part(devs[s * tp + r], d, e, kf, ks, k, s + (1 if first else 0), state_bytes=st,
                                   **params(a, a + cnt, share, last=s == pp - 1)))
            a += cnt
    else:
        shares = plan.shares if plan.shares else tuple([1.0] * len(devs))
        counts = layers_per_device(gpu_layers, shares)
        a = first
        for i, cnt in enumerate(counts):
            d, e, kf, ks, k, st = span(a, a + cnt)
            if i == len(counts) - 1:
                d += out_bytes
            result.append(Part(devs[i], d, e, kf, ks, k, i + (1 if first else 0), state_bytes=st,
                               **params(a, a + cnt, last=i == len(counts) - 1)))
            a += cnt
    if moved:
        result.append(Part(None, 0.0, moved, 0.0, 0.0, 0, -1, on_host=True, expert_params=moved_params))
    return result
