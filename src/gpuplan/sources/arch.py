"""The per-layer description of a model, derived once per ModelSpec: what each layer mixes
tokens with (attention: full, sliding window W, chunked C; or a recurrent block with a constant
state per sequence) and what its FFN is (dense, or MoE with routed and shared experts).

Everything that depends on the layer mix reads it from here: the tensor list (tensors.py),
KV cache and recurrent state per layer (perf/memory.py), KV reads and attention FLOPs
(perf/layout.py, perf/speed.py), TP divisibility (the planner).

State sizes follow the engines: llama.cpp's llama_hparams::n_embd_r()/n_embd_s() (conv state
(d_conv - 1) x (d_inner + 2 n_groups d_state), recurrent state d_state x d_inner per sequence,
allocated F32 in llama_memory_recurrent) and vLLM's MambaStateShapeCalculator (the same shapes,
in the model dtype unless --mamba-ssm-cache-dtype says otherwise).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ..catalog.schema import ModelSpec

# Architectures with per-head q/k RMSNorm weights unless the config says otherwise
QK_NORM = {"qwen3", "qwen3_moe", "qwen3_next", "gemma3", "gemma3n", "hunyuan_v1_moe", "minimax_m2", "olmo2"}
# Bytes per element of a recurrent state by type: llama.cpp allocates F32; vLLM the model dtype.
STATE_DTYPE_BYTES = {"f32": 4.0, "f16": 2.0, "bf16": 2.0}


@dataclass(frozen=True)
class Attention:
    kind: Literal["full", "sliding", "chunked"]
    n_heads: int
    n_kv_heads: int
    k_head_dim: int
    v_head_dim: int
    window: int | None = None  # sliding window W or chunk size C, tokens
    mla_kv_rank: int | None = None  # DeepSeek MLA: the cache holds the latent plus the RoPE key
    mla_rope_dim: int | None = None
    sinks: bool = False  # gpt-oss: a learned per-head sink logit (no cache cost)
    output_gate: bool = False  # Qwen3-Next: q_proj also yields a sigmoid gate on the output
    shares_kv: bool = False  # reads an earlier layer's cache (Gemma 3n's last layers): holds none

    @property
    def kv_elements_per_token(self) -> int:
        """K and V elements one token adds to this layer's cache."""
        if self.shares_kv:
            return 0
        if self.mla_kv_rank:
            return self.mla_kv_rank + (self.mla_rope_dim or 0)
        return self.n_kv_heads * (self.k_head_dim + self.v_head_dim)

    def cached_tokens(self, context: int) -> int:
        """Tokens of one sequence the cache must hold: all, or at most the window / chunk."""
        if self.kind == "full" or not self.window:
            return context
        return min(context, self.window)

    def attended(self, n: int) -> int:
        """Keys the query of the n-th token (1-based, counting itself) attends to."""
        if self.kind == "full" or not self.window or n <= 0:
            return max(n, 0)
        if self.kind == "sliding":
            return min(n, self.window)
        return (n - 1) % self.window + 1  # chunked: back to the start of its chunk

    def attended_sum(self, n: int) -> int:
        """Sum of attended(k) for k = 1..n, in closed form."""
        if n <= 0:
            return 0
        w = self.window
        if self.kind == "full" or not w:
            return n * (n + 1) // 2
        if self.kind == "sliding":
            return n * (n + 1) // 2 if n <= w else w * (w + 1) // 2 + (n - w) * w
        q, r = divmod(n, w)
        return q * w * (w + 1) // 2 + r * (r + 1) // 2

    @property
    def flops_per_key(self) -> int:
        """FLOPs per (query, key) pair: QK^T and the weighted sum of V, 2 per multiply-add, at the
        per-head dimensions (MLA: nope + rope for K, v_head_dim for V, as its prefill computes)."""
        return 2 * self.n_heads * (self.k_head_dim + self.v_head_dim)


@dataclass(frozen=True)
class Recurrent:
    """A linear-attention or state-space block: a constant state per sequence, no KV cache.
    Dimensions are llama.cpp's ssm_* hparams (for Gated DeltaNet: d_inner = value heads x value
    head dim, d_state = key head dim, n_groups = key heads, n_heads = value heads)."""

    kind: Literal["gated_deltanet", "mamba", "mamba2"]
    d_inner: int
    d_state: int
    n_groups: int  # 0 for Mamba-1
    n_heads: int  # Mamba-2 / GDN heads (the dt rank); Mamba-1: its dt rank
    d_conv: int

    @property
    def conv_elements(self) -> int:
        """Convolution state per sequence (llama_hparams::n_embd_r)."""
        return max(self.d_conv - 1, 0) * (self.d_inner + 2 * self.n_groups * self.d_state)

    @property
    def state_elements(self) -> int:
        """Recurrent (SSM / delta-rule) state per sequence (llama_hparams::n_embd_s)."""
        return self.d_state * self.d_inner

    def state_bytes(self, conv_bytes: float = 4.0, state_bytes: float = 4.0) -> float:
        """Bytes per sequence; llama.cpp keeps both in F32."""
        return self.conv_elements * conv_bytes + self.state_elements * state_bytes

    @property
    def flops_per_token(self) -> int:
        """State update and read-out per token: a few multiply-adds per state element."""
        return 6 * self.state_elements + 2 * self.conv_elements


@dataclass(frozen=True)
class FFN:
    kind: Literal["dense", "moe"]
    width: int  # dense width, or each routed expert's
    n_experts: int = 0
    n_active: int = 0
    shared_width: int = 0  # the shared expert(s), read for every token
    gated: bool = True  # SwiGLU/GeGLU: gate, up and down


@dataclass(frozen=True)
class Layer:
    index: int
    attention: Attention | None
    recurrent: Recurrent | None
    ffn: FFN | None

    @property
    def kind(self) -> str:
        """full | sliding | chunked | recurrent | hybrid (attention and SSM side by side) | ffn."""
        if self.attention and self.recurrent:
            return "hybrid"
        if self.recurrent:
            return "recurrent"
        if self.attention:
            return self.attention.kind
        return "ffn"

    @property
    def kv_elements_per_token(self) -> int:
        return self.attention.kv_elements_per_token if self.attention else 0

    def kv_tokens(self, context: int) -> int:
        """Tokens per sequence this layer's own cache holds."""
        return self.attention.cached_tokens(context) if self.attention and self.kv_elements_per_token else 0

    @property
    def grows_with_context(self) -> bool:
        a = self.attention
        return bool(a and a.kv_elements_per_token and (a.kind == "full" or not a.window))


@dataclass(frozen=True)
class Arch:
    layers: tuple[Layer, ...]
    per_layer_embedding: tuple[int, int] | None = None  # Gemma 3n: (vocab, width per layer)

    def count(self, kind: str) -> int:
        return sum(layer.kind == kind for layer in self.layers)

    @property
    def window(self) -> int | None:
        """The sliding window or chunk of the windowed layers (one per model in practice)."""
        ws = {ly.attention.window for ly in self.layers
              if ly.attention and ly.attention.kind != "full" and ly.attention.window}
        return max(ws) if ws else None

    def windowed_tokens(self, ctx: float) -> float:
        """Keys a windowed layer reads at context ctx: min(ctx, W) when sliding, the tokens since
        its chunk began when chunked."""
        a = next((ly.attention for ly in self.layers
                  if ly.attention and ly.attention.kind != "full" and ly.attention.window), None)
        if a is None:
            return 0.0
        if a.kind == "sliding":
            return min(ctx, a.window)
        return float(a.attended(max(int(ctx), 1)))

    def attention_flops(self, start: int, end: int) -> float:
        """Attention FLOPs of one sequence for the tokens after `start` up to `end` (context
        positions), every layer at its own reach: full layers all keys, sliding layers the
        window, chunked layers back to their chunk start; recurrent layers a constant per token."""
        total = 0.0
        for ly in self.layers:
            if ly.attention:
                a = ly.attention
                total += a.flops_per_key * (a.attended_sum(end) - a.attended_sum(start))
            if ly.recurrent:
                total += ly.recurrent.flops_per_token * max(end - start, 0)
        return total


def _mixers(spec: ModelSpec) -> list[str]:
    """The token mixer of every layer, in config.json's layer_types vocabulary."""
    n = spec.n_layers
    if spec.layer_types:
        return list(spec.layer_types)
    if spec.sliding_window and spec.n_sliding_layers:
        return [("sliding_attention" if s else "full_attention") for s in sliding_flags(n, spec.n_sliding_layers)]
    return ["full_attention"] * n


def sliding_flags(n: int, n_sliding: int) -> list[bool]:
    """Which of n layers slide, given how many do: llama.cpp's set_swa_pattern period
    (Gemma 2 / gpt-oss: every other layer from layer 0; Gemma 3: five of every six), else spread
    evenly when no period gives that count."""
    if n_sliding >= n:
        return [True] * n
    if n_sliding <= 0:
        return [False] * n
    period = round(n / (n - n_sliding))
    flags = [i % period < period - 1 for i in range(n)]
    if period >= 2 and sum(flags) == n_sliding:
        return flags
    return [(i * n_sliding) // n != ((i + 1) * n_sliding) // n for i in range(n)]


def ffn_kinds(spec: ModelSpec) -> list[str]:
    """dense | moe | none per layer."""
    if spec.ffn_types:
        return list(spec.ffn_types)
    if not spec.n_experts:
        return ["dense"] * spec.n_layers
    return ["dense" if i < spec.n_dense_layers else "moe" for i in range(spec.n_layers)]


def _build(spec: ModelSpec) -> Arch:
    n = spec.n_layers
    kvh = spec.kv_heads_per_layer or [spec.n_kv_heads] * n
    widths = spec.intermediate_sizes or [spec.intermediate_size] * n
    first_shared = n - spec.kv_shared_layers
    v_dim = spec.v_head_dim or spec.head_dim
    mla = spec.mla_kv_lora_rank
    rec = None
    if spec.ssm_kind:
        rec = Recurrent(spec.ssm_kind, spec.ssm_d_inner or 0, spec.ssm_d_state or 0, spec.ssm_n_groups,
                        spec.ssm_dt_rank or 0, spec.ssm_d_conv or 0)
    shared = spec.shared_expert_intermediate_size or (
        spec.n_shared_experts * (spec.moe_intermediate_size or spec.intermediate_size))
    layers = []
    for i, (mixer, ffn) in enumerate(zip(_mixers(spec), ffn_kinds(spec))):
        att = None
        if mixer in ("full_attention", "sliding_attention", "chunked_attention", "hybrid"):
            kind = {"sliding_attention": "sliding", "chunked_attention": "chunked"}.get(mixer, "full")
            window = spec.sliding_window if kind == "sliding" else spec.attention_chunk_size if kind == "chunked" else None
            if kind != "full" and not window:
                kind = "full"  # a window switched off (model_copy without it): the layer sees everything
            heads_kv = kvh[i]
            if heads_kv > 0 or mla:
                att = Attention(kind=kind, n_heads=spec.n_heads, n_kv_heads=heads_kv,
                                k_head_dim=spec.head_dim, v_head_dim=(spec.mla_v_head_dim or v_dim) if mla else v_dim,
                                window=window, mla_kv_rank=mla, mla_rope_dim=spec.mla_qk_rope_head_dim if mla else None,
                                sinks=spec.attention_sinks, output_gate=spec.attention_output_gate,
                                shares_kv=i >= first_shared)
        recurrent = rec if mixer in ("linear_attention", "mamba", "hybrid") else None
        f = None
        if ffn == "dense" and widths[i] > 0:
            f = FFN("dense", widths[i], gated=spec.mlp_gated)
        elif ffn == "moe":
            f = FFN("moe", spec.moe_intermediate_size or spec.intermediate_size, spec.n_experts,
                    spec.n_experts_active, shared, gated=spec.mlp_gated)
        layers.append(Layer(i, att, recurrent, f))
    ple = None
    if spec.per_layer_embedding_dim:
        ple = (spec.per_layer_embedding_vocab or spec.vocab_size, spec.per_layer_embedding_dim)
    return Arch(tuple(layers), ple)


def qk_norm_default(architecture: str) -> bool:
    """Whether the architecture carries per-head q/k RMSNorm weights unless its config says."""
    return architecture in QK_NORM


def compact(f: dict, n: int) -> None:
    """Put ModelSpec fields in their one canonical form: per-layer lists only where the flat
    fields cannot say it, defaults left out. Catalog entries stay short, and a model read from
    its config.json or from a GGUF file gives the same spec."""
    lt = f.get("layer_types")
    if lt is not None:
        if set(lt) <= {"full_attention"}:
            f.pop("layer_types")
        elif set(lt) <= {"full_attention", "sliding_attention"} and f.get("sliding_window"):
            flags = [t == "sliding_attention" for t in lt]
            if sliding_flags(n, sum(flags)) == flags:
                f.pop("layer_types")
                f["n_sliding_layers"] = sum(flags)
    if f.get("layer_types") is not None:
        f["n_sliding_layers"] = sum(t == "sliding_attention" for t in f["layer_types"])
    ft = f.get("ffn_types")
    kinds = ft or ["dense"] * n
    if ft is not None:
        dense = 0
        while dense < n and ft[dense] == "dense":
            dense += 1
        if all(t == "moe" for t in ft[dense:]) and (f.get("n_experts") or dense == n):
            f.pop("ffn_types")
            f["n_dense_layers"] = dense if f.get("n_experts") else 0
    mixers = f.get("layer_types") or ["full_attention"] * n
    for key, flat, on in (("intermediate_sizes", "intermediate_size", [k == "dense" for k in kinds]),
                          ("kv_heads_per_layer", "n_kv_heads", [m not in ("mamba", "linear_attention", "none")
                                                               for m in mixers])):
        v = f.get(key)
        if v is None:
            continue
        used = {x for x, o in zip(v, on) if o}  # values on layers without that part are never read
        if len(used) == 1 and 0 not in used:
            f[flat] = used.pop()
            f.pop(key)
        elif not used:
            f.pop(key)
    shared = f.get("shared_expert_intermediate_size")
    if shared and shared == f.get("n_shared_experts", 0) * (f.get("moe_intermediate_size") or 0):
        f.pop("shared_expert_intermediate_size")
    if f.get("qk_norm") is not None and f["qk_norm"] == qk_norm_default(f.get("architecture", "")):
        f.pop("qk_norm")


_CACHE: dict[int, tuple[ModelSpec, Arch]] = {}


def describe(spec: ModelSpec) -> Arch:
    """The per-layer description, built once per spec object (specs are frozen)."""
    hit = _CACHE.get(id(spec))
    if hit is not None and hit[0] is spec:
        return hit[1]
    a = _build(spec)
    if len(_CACHE) > 1024:
        _CACHE.clear()
    _CACHE[id(spec)] = (spec, a)
    return a


def tp_problem(spec: ModelSpec, k: int) -> str | None:
    """Why tensor parallelism over k devices cannot shard this model, or None. Engines shard
    attention by query heads (KV heads are split, or replicated when fewer than k), routed experts
    by expert (vLLM's expert parallel), and SSM / linear-attention heads like attention heads."""
    if k <= 1:
        return None
    if spec.n_heads % k:
        return f"{spec.n_heads} attention heads do not divide by {k} GPUs"
    kv = {ly.attention.n_kv_heads for ly in describe(spec).layers if ly.attention and not ly.attention.mla_kv_rank}
    for h in sorted(kv):
        if h % k and k % h:
            return f"{h} KV heads neither divide by nor into {k} GPUs"
    if spec.ssm_kind and spec.ssm_dt_rank and spec.ssm_dt_rank % k:
        return f"{spec.ssm_dt_rank} {spec.ssm_kind} heads do not divide by {k} GPUs"
    return None
