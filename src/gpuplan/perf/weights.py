"""What a model's weights weigh in a given format, tensor by tensor.

GGUF: each tensor gets the type llama-quantize gives it for the file type (perf/gguf_types.py,
a port of llama-quant.cpp), then bytes = rows x blocks per row x block bytes (ggml-common.h).
Checkpoint formats (safetensors for vLLM, SGLang, TensorRT-LLM, ExLlamaV2, MLX, transformers)
apply their own layout to the linear layers and keep what their tools leave unquantized in
16 bits: see tensor_bytes and each entry's source in catalog/quants.yaml.
"""

from __future__ import annotations

import math

from ..catalog.schema import ModelSpec, Quant
from ..errors import InputError
from ..sources.tensors import TensorInfo, tensor_list
from ..types import Weights
from .gguf_types import BLOCK, DEFAULT_TYPE, spec_file_types, use_more_bits

__all__ = ["estimate_weights", "file_type", "gguf_tensor_type", "repacked_bytes", "tensor_bytes", "use_more_bits"]

# ExLlamaV2's converter quantizes the output head at 6 bits by default (convert.py -hb 6) and
# keeps the embedding table in fp16 (it lives in system RAM at run time, counted here anyway).
EXL2_HEAD_BPW = 6.0
# bitsandbytes LLM.int8 keeps one fp32 scale per output row.
INT8_ROW_SCALE_BYTES = 4
GGUF_KINDS = ("float", "gguf", "gguf-mix")


def file_type(quant: Quant) -> str:
    """The llama.cpp file type a GGUF quant names (Q4_K as a file type is Q4_K_M)."""
    ft = quant.ftype or quant.id
    if ft not in DEFAULT_TYPE:
        raise InputError(f"{quant.id} is not a GGUF file type (llama.cpp never writes whole files in it); "
                         f"accepted: {', '.join(sorted(DEFAULT_TYPE))}")
    return ft


def gguf_tensor_type(spec: ModelSpec, quant: Quant, t: TensorInfo) -> str:
    """The ggml type llama.cpp stores this tensor in, for a GGUF file of this quant."""
    return spec_file_types(spec, file_type(quant))[t.name]


def _is_head(spec: ModelSpec, t: TensorInfo) -> bool:
    return t.kind == "output" or (t.kind == "token_embd" and spec.tied_embeddings)


def tensor_bytes(spec: ModelSpec, quant: Quant, t: TensorInfo, bpw: float | None = None) -> int:
    if quant.kind in GGUF_KINDS:
        bw, bb = BLOCK[gguf_tensor_type(spec, quant, t)]
        rows = t.n_elements // t.shape[0]
        return rows * (t.shape[0] // bw) * bb
    n = t.n_elements
    if not t.is_matrix or t.kind == "ffn_gate_inp":
        return 2 * n  # norms, biases, routers: 16-bit in safetensors checkpoints
    head = _is_head(spec, t)
    embed = t.kind == "token_embd"
    k = quant.kind
    if k == "exl2":
        if embed and not head:
            return 2 * n
        return round(n * (EXL2_HEAD_BPW if head else (bpw or quant.bits_per_weight)) / 8)
    if k == "mlx":  # mlx_lm.convert quantizes every Linear and the Embedding, head included
        return math.ceil(n * quant.bits_per_weight / 8)
    if embed or t.kind == "output":
        return 2 * n  # AWQ/GPTQ/FP8/INT8/NF4/NVFP4/MXFP4 checkpoints keep embedding and lm_head 16-bit
    if k == "mxfp4" and spec.n_experts and not t.expert:
        return 2 * n  # gpt-oss: only the routed experts are MXFP4, attention and the rest BF16
    if k == "int":
        return n + INT8_ROW_SCALE_BYTES * (n // t.shape[0])
    if k == "fp8" and quant.group_size:  # block-scaled FP8: one fp32 scale per group x group tile
        rows = n // t.shape[0]
        g = quant.group_size
        return n + 4 * math.ceil(t.shape[0] / g) * math.ceil(rows / g)
    if quant.block_weights and quant.block_bytes:  # NVFP4, MXFP4, NF4: fixed blocks
        return math.ceil(n / quant.block_weights) * quant.block_bytes
    return round(n * quant.bits_per_weight / 8)


def estimate_weights(spec: ModelSpec, quant: Quant, bpw_override: float | None = None) -> Weights:
    """Bytes per block, routed-expert bytes per block, embedding, output head and the rest."""
    layers = [0] * spec.n_layers
    experts = [0] * spec.n_layers
    embed = output = other = 0
    for t in tensor_list(spec):
        b = tensor_bytes(spec, quant, t, bpw_override)
        if t.layer is not None:
            layers[t.layer] += b
            if t.expert:
                experts[t.layer] += b
        elif t.kind in ("token_embd", "per_layer_token_embd"):
            embed += b  # lookup tables (Gemma 3n's per-layer one too): where the engine keeps token_embd
        elif t.kind == "output":
            output += b
        else:
            other += b
    return Weights(tuple(layers), tuple(experts), embed, output, other, origin="estimate")


def repacked_bytes(spec: ModelSpec, quant: Quant, cpu_features: frozenset[str]) -> list[int]:
    """Per block, the bytes llama.cpp's CPU backend copies into its CPU_REPACK buffer when the
    block runs on the CPU with extra buffer types on (the default): 2-D and 3-D (expert) matrices
    of a type with an interleaved kernel for this CPU whose ne[1] the interleave divides
    (ggml-cpu/repack.cpp ggml_repack_get_optimal_repack_type; the token embedding is read by
    get_rows and never repacked). The copy has the same size as the original."""
    if quant.kind not in GGUF_KINDS:
        return [0] * spec.n_layers
    out = [0] * spec.n_layers
    for t in tensor_list(spec):
        if t.layer is None or not t.is_matrix:
            continue
        typ = gguf_tensor_type(spec, quant, t)
        if any(f in cpu_features and t.shape[1] % rows == 0 for f, rows in REPACK.get(typ, ())):
            out[t.layer] += tensor_bytes(spec, quant, t)
    return out


# ggml type -> (CPU feature with an interleaved kernel, rows it interleaves: ne[1] must divide):
# x86 AVX2 8x8 kernels for Q4_0/Q4_K/IQ4_NL/MXFP4 and AVX-512 for Q2_K; ARM NEON with dotprod/i8mm
# 4x4, 4x8 and 8x4 kernels, also for Q5_K/Q6_K/Q8_0 (ggml-cpu/repack.cpp as llama-cpp-python 0.3.36
# vendors it; "avx512" implies "avx2" on every CPU that has it: list both).
REPACK = {"Q4_0": (("avx2", 8), ("neon", 4)), "Q4_K": (("avx2", 8), ("neon", 8)),
          "IQ4_NL": (("avx2", 8), ("neon", 4)), "MXFP4": (("avx2", 8), ("neon", 4)),
          "Q2_K": (("avx512", 8),), "Q5_K": (("neon", 8),), "Q6_K": (("neon", 8),), "Q8_0": (("neon", 4),)}
