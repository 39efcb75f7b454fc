"""Write a small GGUF file from a ModelSpec: the metadata keys llama.cpp's convert_hf_to_gguf.py
writes for its architecture, and every tensor of gpuplan's tensor list (random F32 values).
Loading it into the real llama.cpp checks the tensor list (llama.cpp refuses missing, extra or
misshapen tensors) and shows the KV cache and recurrent state llama.cpp allocates for it.
"""

from __future__ import annotations

import numpy as np

from gpuplan.catalog.schema import ModelSpec
from gpuplan.sources.arch import describe, ffn_kinds
from gpuplan.sources.tensors import tensor_list

# our architecture (config.json model_type) -> llama.cpp's general.architecture
GGUF_ARCH = {"llama": "llama", "mistral": "llama", "mixtral": "llama", "qwen2": "qwen2", "qwen2_moe": "qwen2moe",
             "qwen3": "qwen3", "qwen3_moe": "qwen3moe", "qwen3_next": "qwen3next", "gemma2": "gemma2",
             "gemma3": "gemma3", "gemma3n": "gemma3n", "llama4": "llama4", "deepseek_v3": "deepseek2",
             "glm4_moe": "glm4moe", "gpt_oss": "gpt-oss", "phi3": "phi3", "granitemoehybrid": "granitehybrid",
             "nemotron_h": "nemotron_h", "falcon_h1": "falcon-h1", "jamba": "jamba", "minimax_m2": "minimax-m2",
             "ernie4_5_moe": "ernie4_5-moe", "hunyuan_v1_moe": "hunyuan-moe", "smollm3": "smollm3",
             "nemotron-nas": "deci"}


def write_gguf(spec: ModelSpec, path, seed: int = 0, nextn: int = 0) -> None:
    """nextn > 0: the last `nextn` blocks of spec are written as MTP blocks, as GLM-4.5's converter
    does (counted in block_count, with nextn_predict_layers and the nextn.* tensors)."""
    import gguf

    arch = GGUF_ARCH[spec.architecture]
    if spec.architecture == "nemotron_h" and spec.n_experts:
        arch = "nemotron_h_moe"
    w = gguf.GGUFWriter(str(path), arch)
    a = describe(spec)
    n = spec.n_layers
    w.add_block_count(n)
    w.add_context_length(spec.max_context)
    w.add_embedding_length(spec.hidden_size)
    if spec.architecture == "nemotron-nas":  # per layer: 0 heads where the attention is skipped
        w.add_head_count([spec.n_heads if ly.attention else 0 for ly in a.layers])
    else:
        w.add_head_count(spec.n_heads)
    kvh = [(1 if ly.attention.mla_kv_rank else ly.attention.n_kv_heads) if ly.attention else 0 for ly in a.layers]
    per_layer_kv = spec.architecture in ("nemotron_h", "granitemoehybrid", "jamba", "falcon_h1", "nemotron-nas")
    w.add_head_count_kv(kvh if per_layer_kv else max(kvh))
    ff = [ly.ffn.width if ly.ffn and ly.ffn.kind == "dense" else 0 for ly in a.layers]
    if spec.architecture in ("nemotron_h", "gemma3n", "nemotron-nas") or (len(set(ff)) > 1 and not spec.n_experts):
        w.add_feed_forward_length(ff)
    else:
        w.add_feed_forward_length(spec.intermediate_size)
    if spec.mla_kv_lora_rank:  # the absorbed-MLA layout: one latent "head" of K, V inside it
        w.add_key_length(spec.mla_kv_lora_rank + spec.mla_qk_rope_head_dim)
        w.add_value_length(spec.mla_kv_lora_rank)
        w.add_uint32(f"{arch}.attention.key_length_mla", spec.head_dim)
        w.add_uint32(f"{arch}.attention.value_length_mla", spec.mla_v_head_dim)
    else:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.v_head_dim or spec.head_dim)
    if spec.architecture in ("nemotron_h",):
        w.add_layer_norm_eps(1e-5)
    w.add_layer_norm_rms_eps(1e-6)
    if not spec.mla_kv_lora_rank:
        w.add_rope_dimension_count(spec.head_dim)
    w.add_vocab_size(spec.vocab_size)
    w.add_tokenizer_model("none")
    if spec.n_experts:
        w.add_expert_count(spec.n_experts)
        w.add_expert_used_count(spec.n_experts_active)
        w.add_expert_feed_forward_length(spec.moe_intermediate_size)
        shared = next((ly.ffn.shared_width for ly in a.layers if ly.ffn and ly.ffn.kind == "moe"), 0)
        if shared:
            w.add_expert_shared_feed_forward_length(shared)
        if spec.n_shared_experts:
            w.add_expert_shared_count(spec.n_shared_experts)
        kinds = ffn_kinds(spec)
        dense = next((i for i, k in enumerate(kinds) if k == "moe"), n)
        w.add_leading_dense_block_count(dense)
        if spec.architecture in ("minimax_m2", "glm4_moe", "deepseek_v3", "ernie4_5_moe"):
            w.add_uint32(f"{arch}.expert_gating_func", 2)  # sigmoid, as their converters write
    if spec.mla_kv_lora_rank:
        w.add_kv_lora_rank(spec.mla_kv_lora_rank)
        if spec.mla_q_lora_rank:
            w.add_q_lora_rank(spec.mla_q_lora_rank)
        w.add_rope_dimension_count(spec.mla_qk_rope_head_dim)
    if spec.sliding_window:
        w.add_sliding_window(spec.sliding_window)
    if spec.ssm_kind:
        w.add_ssm_conv_kernel(spec.ssm_d_conv)
        w.add_ssm_inner_size(spec.ssm_d_inner)
        w.add_ssm_state_size(spec.ssm_d_state)
        w.add_ssm_time_step_rank(spec.ssm_dt_rank)
        w.add_ssm_group_count(spec.ssm_n_groups)
    if spec.architecture == "qwen3_next":
        every = next(i + 1 for i, ly in enumerate(a.layers) if ly.attention)
        w.add_uint32(f"{arch}.full_attention_interval", every)
    if nextn:
        w.add_uint32(f"{arch}.nextn_predict_layers", nextn)
    if spec.architecture in ("llama4", "ernie4_5_moe"):
        kinds = ffn_kinds(spec)
        w.add_uint32(f"{arch}.interleave_moe_layer_step", next(i + 1 for i, k in enumerate(kinds) if k == "moe"))
    if spec.architecture == "gemma3n":
        w.add_uint32(f"{arch}.altup.active_idx", 0)
        w.add_uint32(f"{arch}.altup.num_inputs", spec.altup_inputs or 4)
        w.add_uint32(f"{arch}.embedding_length_per_layer_input", spec.per_layer_embedding_dim)
        w.add_array(f"{arch}.attention.sliding_window_pattern",
                    [bool(ly.attention and ly.attention.kind == "sliding") for ly in a.layers])
        w.add_array(f"{arch}.activation_sparsity_scale", [0.0] * n)
    rng = np.random.default_rng(seed)
    tensors = [(t.name, t.shape) for t in tensor_list(spec)]
    h = spec.hidden_size
    for i in range(n - nextn, n):
        tensors += [(f"blk.{i}.nextn.eh_proj.weight", (2 * h, h)), (f"blk.{i}.nextn.enorm.weight", (h,)),
                    (f"blk.{i}.nextn.hnorm.weight", (h,)), (f"blk.{i}.nextn.shared_head_norm.weight", (h,))]
    for name, shape in tensors:
        w.add_tensor(name, rng.standard_normal(tuple(reversed(shape)), dtype=np.float32) * 0.02)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
