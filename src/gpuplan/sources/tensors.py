"""Every weight tensor of a model, named as llama.cpp names them in a GGUF file.

Shapes are in GGUF order (ne0 first): ne0 is the row length, the dimension a matrix
multiplies over, which is what llama.cpp checks against a quant's block size.
Sources: llama.cpp gguf-py/gguf/constants.py (tensor names), src/llama-model.cpp
(which tensors each architecture creates), and each model's modeling_*.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..catalog.schema import ModelSpec


@dataclass(frozen=True)
class TensorInfo:
    name: str  # e.g. blk.3.attn_q.weight
    shape: tuple[int, ...]  # GGUF order: (ne0, ne1[, ne2 = experts])
    layer: int | None  # block index, None for token_embd/output/output_norm
    expert: bool = False  # a routed-expert tensor (only n_experts_active of it is read per token)

    @property
    def kind(self) -> str:
        """The name without block prefix and suffix: attn_q, ffn_down_exps, output, ..."""
        parts = self.name.split(".")
        return parts[2] if self.layer is not None else parts[0]

    @property
    def n_elements(self) -> int:
        return prod(self.shape)

    @property
    def is_matrix(self) -> bool:
        return len(self.shape) >= 2 and self.name.endswith(".weight")


def is_moe_layer(spec: ModelSpec, i: int) -> bool:
    return spec.n_experts > 0 and i >= spec.n_dense_layers


def _attention(spec: ModelSpec, p: str) -> list[tuple[str, tuple[int, ...]]]:
    h, nh, nkv, hd = spec.hidden_size, spec.n_heads, spec.n_kv_heads, spec.head_dim
    if spec.mla_kv_lora_rank:  # DeepSeek multi-head latent attention
        rope, nope, vd = spec.mla_qk_rope_head_dim or 0, spec.mla_qk_nope_head_dim or 0, spec.mla_v_head_dim or 0
        kv, qr = spec.mla_kv_lora_rank, spec.mla_q_lora_rank
        t = []
        if qr:
            t += [(f"{p}.attn_q_a.weight", (h, qr)), (f"{p}.attn_q_a_norm.weight", (qr,)),
                  (f"{p}.attn_q_b.weight", (qr, nh * (nope + rope)))]
        else:
            t += [(f"{p}.attn_q.weight", (h, nh * (nope + rope)))]
        return t + [(f"{p}.attn_kv_a_mqa.weight", (h, kv + rope)), (f"{p}.attn_kv_a_norm.weight", (kv,)),
                    (f"{p}.attn_kv_b.weight", (kv, nh * (nope + vd))),
                    (f"{p}.attn_output.weight", (nh * vd, h))]
    if spec.architecture == "phi3":  # fused q/k/v
        t = [(f"{p}.attn_qkv.weight", (h, (nh + 2 * nkv) * hd))]
    else:
        t = [(f"{p}.attn_q.weight", (h, nh * hd)), (f"{p}.attn_k.weight", (h, nkv * hd)),
             (f"{p}.attn_v.weight", (h, nkv * hd))]
    if spec.attention_bias:
        t += [(f"{p}.attn_q.bias", (nh * hd,)), (f"{p}.attn_k.bias", (nkv * hd,)),
              (f"{p}.attn_v.bias", (nkv * hd,))]
    t.append((f"{p}.attn_output.weight", (nh * hd, h)))
    if spec.architecture == "gpt_oss":  # o_proj bias and per-head attention sinks
        t += [(f"{p}.attn_output.bias", (h,)), (f"{p}.attn_sinks.weight", (nh,))]
    if spec.architecture in ("qwen3", "qwen3_moe", "gemma3"):  # per-head q/k RMSNorm
        t += [(f"{p}.attn_q_norm.weight", (hd,)), (f"{p}.attn_k_norm.weight", (hd,))]
    return t


def _mlp(spec: ModelSpec, p: str, i: int) -> list[tuple[str, tuple[int, ...], bool]]:
    h = spec.hidden_size
    if not is_moe_layer(spec, i):
        f = spec.intermediate_size
        if spec.architecture == "phi3":  # gate and up fused into ffn_up
            return [(f"{p}.ffn_up.weight", (h, 2 * f), False), (f"{p}.ffn_down.weight", (f, h), False)]
        t = [(f"{p}.ffn_up.weight", (h, f), False), (f"{p}.ffn_down.weight", (f, h), False)]
        if spec.mlp_gated:
            t.insert(0, (f"{p}.ffn_gate.weight", (h, f), False))
        return t
    n, f = spec.n_experts, spec.moe_intermediate_size or spec.intermediate_size
    t = [(f"{p}.ffn_gate_inp.weight", (h, n), False),
         (f"{p}.ffn_gate_exps.weight", (h, f, n), True),
         (f"{p}.ffn_up_exps.weight", (h, f, n), True),
         (f"{p}.ffn_down_exps.weight", (f, h, n), True)]
    if spec.architecture == "gpt_oss":  # router and expert biases
        t += [(f"{p}.ffn_gate_inp.bias", (n,), False), (f"{p}.ffn_gate_exps.bias", (f, n), True),
              (f"{p}.ffn_up_exps.bias", (f, n), True), (f"{p}.ffn_down_exps.bias", (h, n), True)]
    if spec.architecture == "deepseek_v3":  # e_score_correction_bias
        t.append((f"{p}.exp_probs_b.bias", (n,), False))
    if spec.n_shared_experts:
        fs = f * spec.n_shared_experts
        t += [(f"{p}.ffn_gate_shexp.weight", (h, fs), False), (f"{p}.ffn_up_shexp.weight", (h, fs), False),
              (f"{p}.ffn_down_shexp.weight", (fs, h), False)]
    return t


def _norms(spec: ModelSpec, p: str) -> list[str]:
    if spec.architecture in ("gemma2", "gemma3"):  # sandwich norms around attention and MLP
        return [f"{p}.attn_norm.weight", f"{p}.post_attention_norm.weight",
                f"{p}.ffn_norm.weight", f"{p}.post_ffw_norm.weight"]
    if spec.architecture == "gpt_oss":
        return [f"{p}.attn_norm.weight", f"{p}.post_attention_norm.weight"]
    return [f"{p}.attn_norm.weight", f"{p}.ffn_norm.weight"]


def tensor_list(spec: ModelSpec) -> list[TensorInfo]:
    h, v = spec.hidden_size, spec.vocab_size
    out = [TensorInfo("token_embd.weight", (h, v), None)]
    for i in range(spec.n_layers):
        p = f"blk.{i}"
        out += [TensorInfo(n, (h,), i) for n in _norms(spec, p)]
        out += [TensorInfo(n, s, i) for n, s in _attention(spec, p)]
        out += [TensorInfo(n, s, i, e) for n, s, e in _mlp(spec, p, i)]
    out.append(TensorInfo("output_norm.weight", (h,), None))
    if not spec.tied_embeddings:
        out.append(TensorInfo("output.weight", (h, v), None))
    return out


def param_count(spec: ModelSpec) -> tuple[int, int]:
    """(total, active) parameters. Active leaves out the routed experts a token does not use;
    it keeps the embedding table, as Mistral's 12.9 B for Mixtral 8x7B does."""
    total = expert = 0
    for t in tensor_list(spec):
        total += t.n_elements
        if t.expert:
            expert += t.n_elements
    active = total - expert
    if spec.n_experts:
        active += expert * spec.n_experts_active // spec.n_experts
    return total, active
