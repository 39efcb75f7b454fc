"""What the PyTorch/CUDA-graph engines (vLLM, SGLang, TensorRT-LLM, TGI) and ExLlamaV2 / MLX hold
besides the weights: their reservation, the activation peak of the profiling run they size the KV
pool with, and the KV cache in pages. Constants come from perf/engine_memory.yaml with sources.

vLLM (vllm/v1/worker/gpu_worker.py determine_available_memory): the KV pool is
    total x gpu_memory_utilization - (weights + activation peak + non-torch memory) - CUDA graphs,
and it must hold one max_model_len sequence. The activation peak is measured by a forward pass of
max_num_batched_tokens dummy tokens and a sampler run over max_num_seqs rows of logits; here it is
the live bf16 tensors of that pass: the residual stream and its norm, Q/K/V, the FFN intermediates
(gate and up, of the active experts for MoE), sharded by TP, and the fp32 logits with the
sampler's softmax and sort copies.
"""

from __future__ import annotations

import math

from ..catalog.schema import ModelSpec
from .engine_profiles import Settings
from .llama_cpp_buffers import ffn_width

BF16 = 2
SAMPLER_COPIES = 3  # logits, probabilities, sorted logits for top-k/top-p (vllm/v1/sample/sampler.py)


def activation_bytes(spec: ModelSpec, st: Settings, tp: int = 1, big_gpu: bool = False) -> float:
    """big_gpu: vLLM's API server defaults to 8192 batched tokens on GPUs of 70 GiB or more other
    than the A100 (EngineArgs.get_batch_defaults), 2048 elsewhere."""
    t = st.max_num_batched_tokens
    if big_gpu and st.engine.value == "vllm":
        t = max(t, 8192)
    h = spec.hidden_size
    qkv = (spec.n_heads + 2 * spec.n_kv_heads) * spec.head_dim / tp
    ffn = 2 * max(ffn_width(spec, i) for i in range(spec.n_layers)) / tp
    per_token = BF16 * (4 * h + qkv + ffn)
    sampler = min(st.max_num_seqs, t) * spec.vocab_size / tp * 4 * SAMPLER_COPIES
    return t * per_token + sampler


def paged_tokens(context: int, block: int, window: int | None = None) -> int:
    """Tokens of KV one sequence of `context` tokens holds in pages of `block` tokens; a
    sliding-window layer keeps the window and the page being written."""
    if block <= 1:
        return context if not window else min(context, window)
    if window and window < context:
        return (math.ceil(window / block) + 1) * block
    return math.ceil(context / block) * block
