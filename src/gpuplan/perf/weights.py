"""What a model's weights weigh in a given format, tensor by tensor.

GGUF: each tensor gets the type llama.cpp's llama_tensor_get_type would give it
(src/llama-quant.cpp), then bytes = rows x blocks per row x block bytes (ggml-common.h).
Other formats (safetensors checkpoints for vLLM, ExLlamaV2, ...) apply their bits per weight
to the linear layers and keep the rest 16-bit.
"""

from __future__ import annotations

from .. import catalog
from ..catalog.schema import ModelSpec, Quant
from ..sources.tensors import TensorInfo, tensor_list
from ..types import Weights

# llama-quant.cpp: a type whose block does not divide the row falls back to these.
FALLBACK = {"TQ1_0": "Q4_0", "TQ2_0": "Q4_0", "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0",
            **{t: "IQ4_NL" for t in ("IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ1_S", "IQ1_M",
                                     "Q2_K", "Q3_K", "IQ4_XS")}}
# ExLlamaV2's converter quantizes the output head at 6 bits by default (convert.py -hb 6) and
# keeps the embedding table in fp16 (it lives in system RAM at run time, counted here anyway).
EXL2_HEAD_BPW = 6.0
# bitsandbytes LLM.int8 keeps one fp32 scale per output row.
INT8_ROW_SCALE_BYTES = 4


def _layout(type_id: str) -> tuple[int, int]:
    q = catalog.quant(type_id)
    return q.block_weights or 1, q.block_bytes or int(q.bits_per_weight / 8)


def use_more_bits(i: int, n: int) -> bool:
    """llama.cpp's choice of the layers that get more bits in *_M mixes."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def _holds(when: str, spec: ModelSpec, i: int | None, n: int) -> bool:
    if when == "always":
        return True
    if when in ("gqa_ge_4", "gqa_ge_8"):
        return spec.n_heads // spec.n_kv_heads >= int(when[-1])
    if when == "n_expert_8":
        return spec.n_experts == 8
    if when == "model_70b":  # llama.cpp LLM_TYPE_70B: an 80-layer Llama
        return spec.architecture == "llama" and spec.n_layers == 80
    if i is None:
        return False
    return {"use_more_bits": use_more_bits(i, n), "first_eighth": i < n // 8,
            "first_sixteenth": i < n // 16, "first_2": i < 2, "first_4": i < 4}[when]


def _rule_matches(rule_tensor: str, kind: str) -> bool:
    # llama.cpp matches substrings: an ffn_down rule also covers ffn_down_exps/_shexp.
    if rule_tensor.startswith("ffn_") and not rule_tensor.endswith("_exps"):
        return kind.startswith(rule_tensor)
    return kind == rule_tensor


def gguf_tensor_type(spec: ModelSpec, quant: Quant, t: TensorInfo) -> str:
    """The ggml type llama.cpp stores this tensor in, for a GGUF file of this quant."""
    if not t.is_matrix or t.kind == "ffn_gate_inp":
        return "F32"  # norms, biases, router: convert_hf_to_gguf keeps them F32, quantize skips them
    if quant.kind == "float":
        return quant.id
    base = quant.base or quant.id
    ne0 = t.shape[0]
    if t.kind == "output" or (t.kind == "token_embd" and spec.tied_embeddings):
        if base == "Q8_0" or ne0 % _layout(base)[0] != 0:
            typ = "Q8_0"
        else:
            typ = "Q6_K"
    else:
        typ = base
        n = spec.n_layers
        for r in quant.rules:
            if _rule_matches(r.tensor, t.kind) and _holds(r.when, spec, t.layer, n):
                if not r.from_types or typ in r.from_types:
                    typ = r.type
    if ne0 % _layout(typ)[0] != 0:
        typ = FALLBACK.get(typ, "F16")
        if ne0 % _layout(typ)[0] != 0:
            typ = "F16"
    return typ


def tensor_bytes(spec: ModelSpec, quant: Quant, t: TensorInfo, bpw: float | None = None) -> int:
    if quant.kind in ("float", "gguf", "gguf-mix"):
        bw, bb = _layout(gguf_tensor_type(spec, quant, t))
        rows = t.n_elements // t.shape[0]
        return rows * (t.shape[0] // bw) * bb
    n = t.n_elements
    if not t.is_matrix or t.kind == "ffn_gate_inp":
        return 2 * n  # 16-bit in safetensors checkpoints
    head = t.kind == "output" or (t.kind == "token_embd" and spec.tied_embeddings)
    if quant.kind == "exl2":
        if t.kind == "token_embd" and not head:
            return 2 * n
        return round(n * (EXL2_HEAD_BPW if head else (bpw or quant.bits_per_weight)) / 8)
    if t.kind in ("token_embd", "output"):
        return 2 * n  # AWQ/GPTQ/FP8/INT8 checkpoints leave embedding and lm_head unquantized
    if quant.kind == "int":
        return n + INT8_ROW_SCALE_BYTES * (n // t.shape[0])
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
