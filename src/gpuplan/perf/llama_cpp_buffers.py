"""llama.cpp's buffers, as the llama.cpp that llama-cpp-python 0.3.36 vendors (0c1e570, 2026-10)
allocates them: context cells, KV cells per layer with sliding windows, the compute buffer of
one n_ubatch step, the output buffer. Checked against that library's own buffer sizes in
tests/test_memory_llama_cpp.py (weights and KV within 1%, compute and output within 10% or 32 MiB).

The compute buffer is the largest set of live tensors ggml-alloc keeps during one step. Three
points of the graph bound it (f32 activations, ub = n_ubatch tokens):
  output:    the logits, n_vocab x ub, and the normed hidden state feeding them (2 x n_embd x ub);
  attention: without flash attention the KQ matrix n_kv x ub x n_head, Q/K/V and their copies;
  FFN:       gate, up and their product, 3 x width x ub (MoE: width of the experts a token uses),
             beside 4 x n_embd x ub of residual stream;
plus the KQ masks (n_kv x ub, f16 with flash attention, f32 without), alive through every layer.
Sources: src/llama-graph.cpp (build_attn_mha, build_ffn, build_moe_ffn, the mask inputs) and
ggml/src/ggml-alloc.c (tensors are freed after their last use).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..catalog.schema import ModelSpec
from ..sources.arch import describe

F32 = 4
# Architectures (config.json model_type) whose llama.cpp graph gives windowed layers a window
# cache (llama_kv_cache_iswa: LLAMA_SWA_TYPE_STANDARD or _CHUNKED in src/models/<arch>.cpp). Mistral
# 7B v0.1 carries a window but converts to llama.cpp's `llama` architecture, which has none; phi3
# reads its window key and switches it off.
WINDOWED_ARCHS = {"gemma2", "gemma3", "gemma3_text", "gemma3n", "gpt_oss", "cohere2", "llama4", "exaone4",
                  "olmo2", "granite_swa", "smallthinker", "lfm2", "mimo2", "step35"}


def pad(x: int, n: int) -> int:
    return -(-x // n) * n


@dataclass(frozen=True)
class Context:
    """The context llama.cpp settles on for `context` tokens per sequence and `n_seq` slots."""

    n_ctx: int  # cells of a full-attention layer, all streams together
    n_ctx_seq: int  # cells per stream
    n_stream: int  # one per sequence unless the cache is unified


def context(context_tokens: int, n_seq: int, unified: bool, multiple: int = 256) -> Context:
    """llama_context: n_ctx = PAD(n_ctx, 256); without a unified cache every sequence gets its own
    stream of PAD(n_ctx / n_seq, 256) cells (llama-context.cpp)."""
    n_seq = max(n_seq, 1)
    n_ctx = pad(max(context_tokens * n_seq, 1), multiple)
    if unified:
        return Context(n_ctx, n_ctx, 1)
    seq = pad(n_ctx // n_seq, multiple)
    return Context(seq * n_seq, seq, n_seq)


def windows(spec: ModelSpec) -> list[int | None]:
    """Per layer, the window (or chunk) llama.cpp caches for it, None for a full cache, 0 for a
    layer without one of its own (recurrent, or reading an earlier layer's cache)."""
    out: list[int | None] = []
    for ly in describe(spec).layers:
        a = ly.attention
        if not a or not ly.kv_elements_per_token:
            out.append(0)
        elif a.kind != "full" and a.window and spec.architecture in WINDOWED_ARCHS:
            out.append(a.window)
        else:
            out.append(None)
    return out


def kv_cells(spec: ModelSpec, ctx: Context, n_seq: int, unified: bool, n_ubatch: int, swa_full: bool) -> list[int]:
    """Cells per layer, all streams: n_ctx for full attention; for window layers
    PAD(min(n_ctx_seq, W x (unified ? n_seq : 1) + n_ubatch), 256) per stream unless swa_full
    (llama-kv-cache-iswa.cpp); 0 for layers with no cache of their own."""
    out = []
    for w in windows(spec):
        if w == 0:
            out.append(0)
        elif w is None or swa_full:
            out.append(ctx.n_ctx)
        else:
            out.append(pad(min(ctx.n_ctx_seq, w * (n_seq if unified else 1) + n_ubatch), 256) * ctx.n_stream)
    return out


def ffn_width(spec: ModelSpec, layer: int) -> int:
    """Intermediate width one token's FFN computes in this layer: the dense width, or the active
    experts' (MoE, one intermediate per expert a token is routed to) plus the shared expert."""
    f = describe(spec).layers[layer].ffn
    if f is None:
        return 0
    if f.kind == "moe":
        return f.width * f.n_active + f.shared_width
    return f.width


def compute_bytes(spec: ModelSpec, layers: list[int], cells_per_stream: dict[bool, int], n_ubatch: int,
                  flash_attn: bool, holds_output: bool) -> float:
    """One device's compute buffer for the given layers (and the output layer if it holds it).
    cells_per_stream: KV cells of one stream per cache kind present (False: full, True: window)."""
    ub = n_ubatch
    h = spec.hidden_size
    nh, nkv, hd = spec.n_heads, spec.n_kv_heads, spec.head_dim
    out = ub * F32 * (spec.vocab_size + 2 * h) if holds_output else 0.0
    if not layers:
        return out
    masks = sum(c * ub * (2 if flash_attn else F32) for c in cells_per_stream.values())
    q_kv = nh * hd + 3 * h + 6 * nkv * hd
    if flash_attn or not cells_per_stream:
        attn = ub * F32 * (nh * hd + q_kv)
    else:
        attn = ub * F32 * (max(cells_per_stream.values()) * nh + q_kv)
    gated = 3 if spec.mlp_gated else 2
    ffn = ub * F32 * (gated * max(ffn_width(spec, i) for i in layers) + 4 * h)
    if not cells_per_stream:  # recurrent layers only: their scan, not attention
        attn = 0.0
    return max(out, max(attn, ffn) + masks)


def host_input_bytes(spec: ModelSpec, n_ubatch: int) -> float:
    """The host compute buffer when every layer is on a GPU: the token embeddings of one step
    (get_rows runs on the CPU, token_embd stays there) and their copy for the GPU (CUDA_Host)."""
    return 2.0 * spec.hidden_size * n_ubatch * F32


def output_bytes(spec: ModelSpec, n_seq: int, n_outputs: int = 0) -> float:
    """llama_context::output_reserve: n_vocab f32 logits per output, at least one per sequence."""
    return float(spec.vocab_size) * F32 * max(n_seq, n_outputs, 1)
