"""Which ggml type llama-quantize gives each tensor of a GGUF file type (Q4_K_M, IQ3_XS, ...).

A port of llama_tensor_get_type and its helpers from src/llama-quant.cpp of the llama.cpp that
llama-cpp-python 0.3.36 vendors (commit 0c1e570, 2026-10), without an importance matrix and
without the Falcon-only branches. It is code there, so it is code here: the mixes are if/else
chains over tensor categories, counters and model facts (GQA ratio, expert count, LLM_TYPE_70B),
not a table. tests/test_memory_llama_cpp.py checks it tensor by tensor against the real
quantizer (llama_model_quantize with dry_run) for every file type on several architectures.

Tensors are visited in the loader's order (weight_name_comparer: by block index, then by name),
which is what the counters (i_attention_wv, i_ffn_down, ...) count in.
"""

from __future__ import annotations

import re

from ..catalog.schema import ModelSpec
from ..sources.tensors import TensorInfo, tensor_list

# ggml block sizes (weights per block) and bytes per block: ggml/src/ggml-common.h
BLOCK = {"F32": (1, 4), "F16": (1, 2), "BF16": (1, 2), "Q4_0": (32, 18), "Q4_1": (32, 20),
         "Q5_0": (32, 22), "Q5_1": (32, 24), "Q8_0": (32, 34), "Q2_K": (256, 84), "Q3_K": (256, 110),
         "Q4_K": (256, 144), "Q5_K": (256, 176), "Q6_K": (256, 210), "IQ1_S": (256, 50),
         "IQ1_M": (256, 56), "IQ2_XXS": (256, 66), "IQ2_XS": (256, 74), "IQ2_S": (256, 82),
         "IQ3_XXS": (256, 98), "IQ3_S": (256, 110), "IQ4_NL": (32, 18), "IQ4_XS": (256, 136),
         "MXFP4": (32, 17), "TQ1_0": (256, 54), "TQ2_0": (256, 66)}

# llama_ftype_get_default_type: the type most tensors of a file type get
DEFAULT_TYPE = {"F32": "F32", "F16": "F16", "BF16": "BF16", "Q4_0": "Q4_0", "Q4_1": "Q4_1", "Q5_0": "Q5_0",
                "Q5_1": "Q5_1", "Q8_0": "Q8_0", "MXFP4_MOE": "MXFP4", "Q2_K_S": "Q2_K", "Q2_K": "Q2_K",
                "IQ3_XS": "IQ3_S", "Q3_K_S": "Q3_K", "Q3_K_M": "Q3_K", "Q3_K_L": "Q3_K", "Q4_K_S": "Q4_K",
                "Q4_K_M": "Q4_K", "Q5_K_S": "Q5_K", "Q5_K_M": "Q5_K", "Q6_K": "Q6_K", "TQ1_0": "TQ1_0",
                "TQ2_0": "TQ2_0", "IQ2_XXS": "IQ2_XXS", "IQ2_XS": "IQ2_XS", "IQ2_S": "IQ2_XS",
                "IQ2_M": "IQ2_S", "IQ3_XXS": "IQ3_XXS", "IQ1_S": "IQ1_S", "IQ1_M": "IQ1_M",
                "IQ4_NL": "IQ4_NL", "IQ4_XS": "IQ4_XS", "IQ3_S": "IQ3_S", "IQ3_M": "IQ3_S"}
FLOAT = {"F32", "F16", "BF16"}

# tensor_type_fallback: a row that the block does not divide goes to a 32-block type, else F16
FALLBACK = {**{t: "IQ4_NL" for t in ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ3_XXS", "IQ3_S", "IQ4_XS")},
            "Q2_K": "Q4_0", "Q3_K": "Q4_0", "TQ1_0": "Q4_0", "TQ2_0": "Q4_0",
            "Q4_K": "Q5_0", "Q5_K": "Q5_1", "Q6_K": "Q8_0"}

_IQ2_LIKE = {"IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"}
_BLK = re.compile(r"^blk\.(\d+)\.")


def use_more_bits(i: int, n: int) -> bool:
    """The layers that get more bits in the _M mixes: the first and last eighth, every third between."""
    return i < n // 8 or i >= 7 * n // 8 or (i - n // 8) % 3 == 2


def category(name: str) -> str:
    """tensor_get_category: broad classes by substring, attn_qkv and MLA's attn_kv_b before attn_v."""
    if name == "output.weight":
        return "output"
    if name in ("token_embd.weight", "per_layer_token_embd.weight"):
        return "token_embd"
    for key, cat in (("attn_qkv.weight", "attn_qkv"), ("attn_kv_b.weight", "attn_kv_b"), ("attn_v.weight", "attn_v"),
                     ("attn_k.weight", "attn_k"), ("attn_q.weight", "attn_q"), ("attn_output.weight", "attn_output"),
                     ("ffn_up", "ffn_up"), ("ffn_gate", "ffn_gate"), ("ffn_down", "ffn_down")):
        if key in name:
            return cat
    return "other"


def quantizable(t: TensorInfo) -> bool:
    """tensor_allows_quantization for the tensors gpuplan models: 2-D/3-D weights, not norms, not the router."""
    n = t.name
    return (len(t.shape) >= 2 and n.endswith("weight") and "_norm.weight" not in n and "ffn_gate_inp.weight" not in n)


def is_70b(spec: ModelSpec) -> bool:
    """llama.cpp's LLM_TYPE_70B: 80 layers of llama with GQA (LLaMA-65B has none), or of qwen2."""
    if spec.n_layers != 80:
        return False
    if spec.architecture in ("llama", "mistral"):
        return spec.n_heads != spec.n_kv_heads
    return spec.architecture == "qwen2"


def _fallback(typ: str, ne0: int) -> str:
    if typ not in BLOCK or ne0 % BLOCK[typ][0] == 0:
        return typ
    out = FALLBACK.get(typ, typ)
    return out if ne0 % BLOCK[out][0] == 0 else "F16"


class _State:
    def __init__(self, spec: ModelSpec, ftype: str, names: list[str], imatrix: bool):
        self.spec, self.ftype, self.imatrix = spec, ftype, imatrix
        cats = [category(n) for n in names]
        self.n_attention_wv = sum(c in ("attn_v", "attn_qkv", "attn_kv_b") for c in cats)
        self.tied = "output" not in cats
        self.n_layer = spec.n_layers
        self.i_attention_wv = self.i_ffn_down = self.i_ffn_gate = self.i_ffn_up = 0
        self.n_expert = max(1, spec.n_experts)
        self.gqa = spec.n_heads // max(spec.n_kv_heads, 1)
        self.is_70b = is_70b(spec)


def _layer(st: _State, counter: int, name: str) -> int:
    if st.n_expert > 1:
        m = _BLK.match(name)
        return int(m.group(1)) if m else counter
    return counter


def _impl(st: _State, new: str, t: TensorInfo, cat: str) -> str:  # noqa: C901 (mirrors the C++ chain)
    ft, n_exp, gqa = st.ftype, st.spec.n_experts, st.gqa
    attn_v_like = cat in ("attn_v", "attn_qkv", "attn_kv_b")
    if cat == "output" or (st.tied and cat == "token_embd"):
        nx, qk = t.shape[0], BLOCK[new][0]
        if ft == "MXFP4_MOE" or nx % qk:
            return "Q8_0"
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ3_XXS", "IQ1_S", "IQ2_S", "IQ2_M", "IQ1_M"):
            return "Q5_K"
        return new if new == "Q8_0" else "Q6_K"
    if ft == "MXFP4_MOE":
        return "MXFP4" if len(t.shape) > 2 and t.shape[2] > 1 else "Q8_0"
    if cat == "token_embd":
        if ft in ("IQ2_XXS", "IQ2_XS", "IQ1_S", "IQ1_M"):
            return "Q2_K"
        if ft in ("IQ2_S", "IQ2_M", "IQ3_XXS"):
            return "IQ3_S"
        if ft in ("TQ1_0", "TQ2_0"):
            return "Q4_K"
        return new
    if ft in _IQ2_LIKE:
        iq2s = ft in ("IQ2_S", "IQ2_M")
        if attn_v_like:
            new = "Q4_K" if gqa >= 4 or n_exp >= 4 else ("IQ3_S" if iq2s else "Q2_K")
            st.i_attention_wv += 1
        elif n_exp == 8 and cat == "attn_k":
            new = "Q4_K"
        elif cat == "ffn_down":
            if st.i_ffn_down < st.n_layer // 8:
                new = "IQ3_S" if iq2s else "Q2_K"
            st.i_ffn_down += 1
        elif cat == "attn_output":
            if n_exp == 8:
                new = "Q5_K"
            elif ft in ("IQ1_S", "IQ1_M"):
                new = "IQ2_XXS"
            elif iq2s:
                new = "IQ3_S"
        return new
    if attn_v_like:
        i, n = st.i_attention_wv, st.n_attention_wv
        if ft == "Q2_K":
            new = "Q4_K" if gqa >= 4 else "Q3_K"
        elif ft == "Q2_K_S" and gqa >= 4:
            new = "Q4_K"
        elif ft == "IQ3_XXS":
            new = "Q4_K" if gqa >= 4 else ("IQ3_XXS" if st.imatrix else "IQ3_S")
        elif ft in ("IQ3_XS", "IQ3_S") and gqa >= 4:
            new = "Q4_K"
        elif ft == "IQ3_M":
            new = "Q4_K"
        elif ft == "Q3_K_M":
            new = "Q5_K" if i < 2 else "Q4_K"
        elif ft == "Q3_K_L":
            new = "Q5_K"
        elif ft in ("IQ4_NL", "IQ4_XS") and gqa >= 4:
            new = "Q5_K"
        elif ft in ("Q4_K_M", "Q5_K_M") and use_more_bits(i, n):
            new = "Q6_K"
        elif ft == "Q4_K_S" and i < 4:
            new = "Q5_K"
        if st.is_70b and new in ("Q3_K", "Q4_K"):
            new = "Q5_K"
        if n_exp == 8:
            new = "Q8_0"
        st.i_attention_wv += 1
    elif cat == "attn_k":
        if n_exp == 8:
            new = "Q8_0"
        elif ft == "IQ3_XS":
            new = "IQ3_XXS"
        elif ft == "IQ3_XXS":
            new = "IQ2_S"
    elif cat == "attn_q":
        if ft == "IQ3_XS":
            new = "IQ3_XXS"
        elif ft == "IQ3_XXS":
            new = "IQ2_S"
    elif cat == "ffn_down":
        i, n = _layer(st, st.i_ffn_down, t.name), st.n_layer
        if ft == "Q2_K":
            new = "Q3_K"
        elif ft == "Q2_K_S":
            if i < n // 8:
                new = "Q4_K"
        elif ft == "IQ3_XXS" and not st.imatrix:
            new = "Q4_K" if i < n // 8 else "Q3_K"
        elif ft == "Q3_K_M":
            new = "Q5_K" if i < n // 16 else "Q4_K"
        elif ft == "IQ3_M" and (i < n // 8 or (n_exp == 8 and use_more_bits(i, n))):
            new = "Q4_K"
        elif ft == "Q3_K_L":
            new = "Q5_K"
        elif ft == "Q4_K_M":
            if use_more_bits(i, n):
                new = "Q6_K"
        elif i < n // 8 and ft in ("IQ4_NL", "IQ4_XS") and not st.imatrix:
            new = "Q5_K"
        elif ft == "Q5_K_M" and use_more_bits(i, n):
            new = "Q6_K"
        elif ft == "Q4_K_S" and i < n // 8:
            new = "Q5_K"
        elif ft in ("Q4_0", "Q5_0") and st.imatrix and i < n // 8:
            new = "Q4_1" if ft == "Q4_0" else "Q5_1"
        st.i_ffn_down += 1
    elif cat == "attn_output":
        if n_exp == 8:
            if ft in ("Q2_K", "IQ3_XS", "IQ3_XXS", "Q3_K_S", "Q3_K_M", "IQ4_NL", "Q4_K_S", "Q4_K_M", "IQ3_S",
                      "IQ3_M", "IQ4_XS"):
                new = "Q5_K"
        else:
            new = {"Q2_K": "Q3_K", "IQ3_XXS": "IQ3_S", "Q3_K_M": "Q4_K", "Q3_K_L": "Q5_K", "IQ3_M": "Q4_K"}.get(ft, new)
    # (llama.cpp's own attn_qkv branch after this point is unreachable: attn_qkv is attn_v-like above)
    elif cat in ("ffn_gate", "ffn_up"):
        counter = st.i_ffn_gate if cat == "ffn_gate" else st.i_ffn_up
        i, n = _layer(st, counter, t.name), st.n_layer
        if ft == "IQ3_XS" and n // 8 <= i < 7 * n // 8:
            new = "IQ3_XXS"
        if cat == "ffn_gate":
            st.i_ffn_gate += 1
        else:
            st.i_ffn_up += 1
    return new


def _order(t: TensorInfo) -> tuple[int, str]:
    return (t.layer if t.layer is not None else -1, t.name)


def made_with_imatrix(ftype: str) -> bool:
    """Whether files of this type are made with an importance matrix: llama-quantize refuses the
    IQ1/IQ2 types without one and the published IQ files (bartowski, unsloth) all use one; the
    K-quants and legacy types are commonly made without."""
    return ftype.startswith("IQ")


def file_types(spec: ModelSpec, ftype: str, tensors: list[TensorInfo], imatrix: bool | None = None) -> dict[str, str]:
    """Tensor name -> ggml type for a file of this ftype, as llama-quantize writes it from a
    16-bit conversion (1-D tensors, norms and the MoE router stay F32, as convert_hf_to_gguf wrote them)."""
    default = DEFAULT_TYPE[ftype]
    ordered = sorted(tensors, key=_order)
    st = _State(spec, ftype, [t.name for t in ordered], made_with_imatrix(ftype) if imatrix is None else imatrix)
    out = {}
    for t in ordered:
        if not quantizable(t):
            out[t.name] = "F32"
        elif default in FLOAT:
            out[t.name] = default
        else:
            out[t.name] = _fallback(_impl(st, default, t, category(t.name)), t.shape[0])
    return out


_CACHE: dict[tuple[int, str], tuple[ModelSpec, dict[str, str]]] = {}


def spec_file_types(spec: ModelSpec, ftype: str) -> dict[str, str]:
    """file_types over gpuplan's tensor list of the spec, computed once per (spec, ftype)."""
    hit = _CACHE.get((id(spec), ftype))
    if hit is not None and hit[0] is spec:
        return hit[1]
    if len(_CACHE) > 512:
        _CACHE.clear()
    out = file_types(spec, ftype, tensor_list(spec))
    _CACHE[(id(spec), ftype)] = (spec, out)
    return out
