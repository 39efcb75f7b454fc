"""GGUF files with the real shapes and metadata of a model and no data: test support for the
memory harness (tests/test_memory_llama_cpp.py).

The tensor table is gpuplan's own (sources/tensors.py), each tensor in the type gpuplan says the
file type gives it (perf/weights.py), so llama.cpp refusing the file ("missing tensor", "wrong
number of tensors", a shape mismatch) is itself a failure of gpuplan's architecture model. The data
section is a hole (the file is truncated up to its length): a 140 GB F16 70B file takes a few MB of
disk and nothing is read, since the harness loads with llama.cpp's no_alloc.

Metadata keys: llama.cpp gguf-py/gguf/constants.py (Keys.LLM, Keys.Attention, Keys.Tokenizer) and
what each src/models/<arch>.cpp load_arch_hparams reads.
"""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np

from gpuplan import catalog
from gpuplan.catalog.schema import ModelSpec
from gpuplan.perf.weights import gguf_tensor_type
from gpuplan.sources.tensors import TensorInfo, tensor_list

# config.json model_type -> llama.cpp architecture name
LLAMA_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen3": "qwen3",
              "qwen3_moe": "qwen3moe", "gemma2": "gemma2", "gemma3": "gemma3", "phi3": "phi3",
              "deepseek_v2": "deepseek2", "deepseek_v3": "deepseek2", "gpt_oss": "gpt-oss"}
FTYPE = {q.name.removeprefix("MOSTLY_"): int(q.value) for q in gguf.LlamaFileType}
FTYPE["F32"] = FTYPE.pop("ALL_F32")


def _metadata(w: gguf.GGUFWriter, spec: ModelSpec, file_type: int) -> None:
    w.add_name(spec.name)
    w.add_block_count(spec.n_layers)
    w.add_context_length(spec.max_context)
    w.add_embedding_length(spec.hidden_size)
    w.add_feed_forward_length(spec.intermediate_size)
    w.add_head_count(spec.n_heads)
    w.add_head_count_kv(1 if spec.mla_kv_lora_rank else spec.n_kv_heads)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_rope_freq_base(10000.0)
    w.add_file_type(file_type)
    if spec.mla_kv_lora_rank:
        # MLA as convert_hf_to_gguf writes it since llama.cpp PR #12801: one KV "head" of the
        # latent (kv_lora_rank + rope) and the per-head sizes in the _mla keys
        rope, nope = spec.mla_qk_rope_head_dim or 0, spec.mla_qk_nope_head_dim or 0
        w.add_key_length(spec.mla_kv_lora_rank + rope)
        w.add_value_length(spec.mla_kv_lora_rank)
        w.add_key_length_mla(nope + rope)
        w.add_value_length_mla(spec.mla_v_head_dim or 0)
        w.add_rope_dimension_count(rope)
        w.add_kv_lora_rank(spec.mla_kv_lora_rank)
        if spec.mla_q_lora_rank:
            w.add_q_lora_rank(spec.mla_q_lora_rank)
    else:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.head_dim)
        w.add_rope_dimension_count(spec.head_dim)
    if spec.n_experts:
        w.add_expert_count(spec.n_experts)
        w.add_expert_used_count(spec.n_experts_active)
        if spec.moe_intermediate_size:
            w.add_expert_feed_forward_length(spec.moe_intermediate_size)
        if spec.n_shared_experts:
            w.add_expert_shared_count(spec.n_shared_experts)
        if spec.n_dense_layers:
            w.add_leading_dense_block_count(spec.n_dense_layers)
    if spec.sliding_window:
        w.add_sliding_window(spec.sliding_window)
    if spec.architecture == "gemma2":
        w.add_attn_logit_softcapping(50.0)
        w.add_final_logit_softcapping(30.0)


def _tokenizer(w: gguf.GGUFWriter, n_vocab: int) -> None:
    w.add_tokenizer_model("llama")  # SentencePiece-style: tokens, scores, types; nothing else needed
    w.add_token_list([f"t{i}" for i in range(n_vocab)])
    w.add_token_scores([0.0] * n_vocab)
    w.add_token_types([1] * n_vocab)


def _split_kv_b(spec: ModelSpec, tensors: list[TensorInfo]) -> list[TensorInfo]:
    """Current DeepSeek GGUFs split MLA's attn_kv_b into attn_k_b (nope x rank x heads) and
    attn_v_b (rank x v x heads), the same weights; only then does llama.cpp cache the latent."""
    if not spec.mla_kv_lora_rank:
        return tensors
    out = []
    r, nh = spec.mla_kv_lora_rank, spec.n_heads
    for t in tensors:
        if t.kind == "attn_kv_b":
            p = f"blk.{t.layer}"
            out += [TensorInfo(f"{p}.attn_k_b.weight", (spec.mla_qk_nope_head_dim or 0, r, nh), t.layer),
                    TensorInfo(f"{p}.attn_v_b.weight", (r, spec.mla_v_head_dim or 0, nh), t.layer)]
        else:
            out.append(t)
    return out


def write_gguf(path: Path, spec: ModelSpec, quant_id: str, types: dict[str, str] | None = None) -> Path:
    """A GGUF of `spec` as a `quant_id` file (tensor types as gpuplan derives them, or `types`
    by tensor name), with a sparse, all-zero data section."""
    quant = catalog.quant(quant_id)
    w = gguf.GGUFWriter(str(path), LLAMA_ARCH[spec.architecture])
    _metadata(w, spec, FTYPE.get(quant.id, FTYPE["F16"]))
    _tokenizer(w, spec.vocab_size)
    data = 0
    align = w.data_alignment
    for t in _split_kv_b(spec, tensor_list(spec)):
        typ = (types or {}).get(t.name) or (gguf_tensor_type(spec, quant, t) if "_b.weight" not in t.name
                                            or "attn_kv_b" in t.name or "attn_q_b" in t.name else "F16")
        qt = gguf.GGMLQuantizationType[typ]
        bw, bb = gguf.GGML_QUANT_SIZES[qt]
        rows = t.n_elements // t.shape[0]
        nbytes = rows * (t.shape[0] // bw) * bb
        # add_tensor_info takes the numpy shape (reversed ne) in bytes for block types
        shape = list(reversed(t.shape))
        if qt not in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16, gguf.GGMLQuantizationType.BF16):
            shape[-1] = shape[-1] // bw * bb
        dtype = {gguf.GGMLQuantizationType.F32: np.float32, gguf.GGMLQuantizationType.F16: np.float16}.get(qt, np.uint8)
        w.add_tensor_info(t.name, shape, np.dtype(dtype), nbytes, raw_dtype=qt)
        data += nbytes + (-nbytes) % align
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    f = w.fout[0]
    f.flush()
    start = f.tell() + (-f.tell()) % align
    f.truncate(start + data)  # a hole: no blocks on disk, zeros when read
    w.close()
    return path
