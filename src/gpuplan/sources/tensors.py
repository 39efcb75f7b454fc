"""Every weight tensor of a model, named as llama.cpp names them in a GGUF file, built from the
per-layer description (sources/arch.py): attention or recurrent mixer, dense or MoE FFN.

Shapes are in GGUF order (ne0 first): ne0 is the row length, the dimension a matrix
multiplies over, which is what llama.cpp checks against a quant's block size.
Sources: llama.cpp gguf-py/gguf/constants.py (tensor names), src/llama-model.cpp and
src/models/*.cpp (which tensors each architecture creates), and each model's modeling_*.py.
tests/test_arch_llama_cpp.py loads a small GGUF built from this list into the real llama.cpp,
which refuses any missing, extra or misshapen tensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from ..catalog.schema import ModelSpec
from .arch import FFN, Attention, Layer, Recurrent, describe, qk_norm_default

SANDWICH = {"gemma2", "gemma3", "gemma3n"}  # norms before and after attention and FFN
POST_ATTN_ONLY = {"gpt_oss", "qwen3_next", "glm4_moe"}  # the FFN's pre-norm is called post_attention_norm
ROUTER_BIAS = {"deepseek_v3", "deepseek_v2", "glm4_moe", "minimax_m2", "ernie4_5_moe", "nemotron_h"}
SHARED_GATE = {"qwen2_moe", "qwen3_next"}  # a sigmoid gate on the shared expert


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
    f = describe(spec).layers[i].ffn
    return f is not None and f.kind == "moe"


def _qk_norm(spec: ModelSpec) -> bool:
    return spec.qk_norm if spec.qk_norm is not None else qk_norm_default(spec.architecture)


def _mla(spec: ModelSpec, a: Attention, p: str) -> list[tuple[str, tuple[int, ...]]]:
    h, nh = spec.hidden_size, a.n_heads
    rope, nope, vd = spec.mla_qk_rope_head_dim or 0, spec.mla_qk_nope_head_dim or 0, spec.mla_v_head_dim or 0
    kv, qr = spec.mla_kv_lora_rank, spec.mla_q_lora_rank
    t = []
    if qr:
        t += [(f"{p}.attn_q_a.weight", (h, qr)), (f"{p}.attn_q_a_norm.weight", (qr,)),
              (f"{p}.attn_q_b.weight", (qr, nh * (nope + rope)))]
    else:
        t += [(f"{p}.attn_q.weight", (h, nh * (nope + rope)))]
    # current GGUFs split kv_b into the absorbed k_b / v_b (convert_hf_to_gguf since 2025-04)
    return t + [(f"{p}.attn_kv_a_mqa.weight", (h, kv + rope)), (f"{p}.attn_kv_a_norm.weight", (kv,)),
                (f"{p}.attn_k_b.weight", (nope, kv, nh)), (f"{p}.attn_v_b.weight", (kv, vd, nh)),
                (f"{p}.attn_output.weight", (nh * vd, h))]


def _attention(spec: ModelSpec, a: Attention, p: str) -> list[tuple[str, tuple[int, ...]]]:
    if a.mla_kv_rank:
        return _mla(spec, a, p)
    h, nh, nkv, hd, vd = spec.hidden_size, a.n_heads, a.n_kv_heads, a.k_head_dim, a.v_head_dim
    q_out = nh * hd * (2 if a.output_gate else 1)
    if spec.architecture == "phi3":  # fused q/k/v
        t = [(f"{p}.attn_qkv.weight", (h, nh * hd + nkv * (hd + vd)))]
    else:
        t = [(f"{p}.attn_q.weight", (h, q_out)), (f"{p}.attn_k.weight", (h, nkv * hd)),
             (f"{p}.attn_v.weight", (h, nkv * vd))]
    if spec.attention_bias:
        t += [(f"{p}.attn_q.bias", (q_out,)), (f"{p}.attn_k.bias", (nkv * hd,)), (f"{p}.attn_v.bias", (nkv * vd,))]
    t.append((f"{p}.attn_output.weight", (nh * vd, h)))
    if spec.architecture == "gpt_oss":  # o_proj bias
        t.append((f"{p}.attn_output.bias", (h,)))
    if a.sinks:
        t.append((f"{p}.attn_sinks.weight", (nh,)))
    if _qk_norm(spec):
        if spec.architecture == "minimax_m2":  # one norm over all heads
            t += [(f"{p}.attn_q_norm.weight", (nh * hd,)), (f"{p}.attn_k_norm.weight", (nkv * hd,))]
        else:
            t += [(f"{p}.attn_q_norm.weight", (hd,)), (f"{p}.attn_k_norm.weight", (hd,))]
    return t


def _recurrent(spec: ModelSpec, r: Recurrent, p: str) -> list[tuple[str, tuple[int, ...]]]:
    h, di, ds, ng, nh, dc = spec.hidden_size, r.d_inner, r.d_state, r.n_groups, r.n_heads, r.d_conv
    if r.kind == "gated_deltanet":  # Qwen3-Next (llama.cpp qwen3next: the split qkv + gate layout)
        conv = 2 * ng * ds + di
        return [(f"{p}.attn_qkv.weight", (h, conv)), (f"{p}.attn_gate.weight", (h, di)),
                (f"{p}.ssm_conv1d.weight", (dc, conv)), (f"{p}.ssm_dt.bias", (nh,)), (f"{p}.ssm_a", (nh,)),
                (f"{p}.ssm_ba.weight", (h, 2 * nh)), (f"{p}.ssm_norm.weight", (di // nh,)),
                (f"{p}.ssm_out.weight", (di, h))]
    if r.kind == "mamba2":
        conv = di + 2 * ng * ds
        t = [(f"{p}.ssm_in.weight", (h, 2 * di + 2 * ng * ds + nh)), (f"{p}.ssm_conv1d.weight", (dc, conv)),
             (f"{p}.ssm_conv1d.bias", (conv,)), (f"{p}.ssm_dt.bias", (nh,)), (f"{p}.ssm_a", (1, nh)),
             (f"{p}.ssm_d", (1, nh))]
        if spec.architecture != "falcon_h1":  # Falcon-H1's mamba_rms_norm is off
            t.append((f"{p}.ssm_norm.weight", (di // max(ng, 1), max(ng, 1))))
        return t + [(f"{p}.ssm_out.weight", (di, h))]
    # Mamba-1 (Jamba): in, conv, x -> (dt, B, C), dt, A, D, out; Jamba adds dt/B/C norms
    t = [(f"{p}.ssm_in.weight", (h, 2 * di)), (f"{p}.ssm_conv1d.weight", (dc, di)), (f"{p}.ssm_conv1d.bias", (di,)),
         (f"{p}.ssm_x.weight", (di, nh + 2 * ds)), (f"{p}.ssm_dt.weight", (nh, di)), (f"{p}.ssm_dt.bias", (di,)),
         (f"{p}.ssm_a", (ds, di)), (f"{p}.ssm_d", (di,)), (f"{p}.ssm_out.weight", (di, h))]
    if spec.architecture == "jamba":
        t += [(f"{p}.ssm_dt_norm.weight", (nh,)), (f"{p}.ssm_b_norm.weight", (ds,)), (f"{p}.ssm_c_norm.weight", (ds,))]
    return t


def _ffn(spec: ModelSpec, f: FFN, p: str) -> list[tuple[str, tuple[int, ...], bool]]:
    h = spec.hidden_size
    if f.kind == "dense":
        w = f.width
        if spec.architecture == "phi3":  # gate and up fused into ffn_up
            return [(f"{p}.ffn_up.weight", (h, 2 * w), False), (f"{p}.ffn_down.weight", (w, h), False)]
        t = [(f"{p}.ffn_up.weight", (h, w), False), (f"{p}.ffn_down.weight", (w, h), False)]
        if f.gated:
            t.insert(0, (f"{p}.ffn_gate.weight", (h, w), False))
        return t
    n, w = f.n_experts, f.width
    t = [(f"{p}.ffn_gate_inp.weight", (h, n), False)]
    if f.gated:
        t.append((f"{p}.ffn_gate_exps.weight", (h, w, n), True))
    t += [(f"{p}.ffn_up_exps.weight", (h, w, n), True), (f"{p}.ffn_down_exps.weight", (w, h, n), True)]
    if spec.architecture == "gpt_oss":  # router and expert biases
        t += [(f"{p}.ffn_gate_inp.bias", (n,), False), (f"{p}.ffn_gate_exps.bias", (w, n), True),
              (f"{p}.ffn_up_exps.bias", (w, n), True), (f"{p}.ffn_down_exps.bias", (h, n), True)]
    if spec.architecture in ROUTER_BIAS:  # e_score_correction_bias
        t.append((f"{p}.exp_probs_b.bias", (n,), False))
    if f.shared_width:
        fs = f.shared_width
        if spec.architecture in SHARED_GATE:
            t.append((f"{p}.ffn_gate_inp_shexp.weight", (h,), False))
        if f.gated:
            t.append((f"{p}.ffn_gate_shexp.weight", (h, fs), False))
        t += [(f"{p}.ffn_up_shexp.weight", (h, fs), False), (f"{p}.ffn_down_shexp.weight", (fs, h), False)]
    return t


def _norms(spec: ModelSpec, ly: Layer, p: str) -> list[str]:
    arch = spec.architecture
    mixer = ly.attention is not None or ly.recurrent is not None
    if arch in SANDWICH:
        return [f"{p}.attn_norm.weight", f"{p}.post_attention_norm.weight",
                f"{p}.ffn_norm.weight", f"{p}.post_ffw_norm.weight"]
    if arch in POST_ATTN_ONLY:
        return [f"{p}.attn_norm.weight", f"{p}.post_attention_norm.weight"]
    if arch == "nemotron_h":  # one mixer or one MLP per block, each after attn_norm
        return [f"{p}.attn_norm.weight"]
    out = [f"{p}.attn_norm.weight"] if mixer else []
    if ly.ffn is not None:  # Falcon-H1's converter names its pre-FFN norm without the suffix
        out.append(f"{p}.ffn_norm" if arch == "falcon_h1" else f"{p}.ffn_norm.weight")
    return out


def _gemma3n_layer(spec: ModelSpec, p: str) -> list[tuple[str, tuple[int, ...]]]:
    """AltUp, LAuReL and the per-layer-input gate and projection of a Gemma 3n block."""
    h, n_alt, r, d = spec.hidden_size, spec.altup_inputs or 4, spec.laurel_rank or 64, spec.per_layer_embedding_dim or 0
    return [(f"{p}.altup_correct_coef.weight", (n_alt, n_alt)), (f"{p}.altup_correct_scale.weight", (h,)),
            (f"{p}.altup_predict_coef.weight", (n_alt, n_alt * n_alt)), (f"{p}.altup_router.weight", (h, n_alt)),
            (f"{p}.altup_router_norm.weight", (h,)), (f"{p}.laurel_l.weight", (h, r)), (f"{p}.laurel_r.weight", (r, h)),
            (f"{p}.laurel_post_norm.weight", (h,)), (f"{p}.inp_gate.weight", (h, d)), (f"{p}.proj.weight", (d, h)),
            (f"{p}.post_norm.weight", (h,))]


def tensor_list(spec: ModelSpec) -> list[TensorInfo]:
    h, v = spec.hidden_size, spec.vocab_size
    arch = describe(spec)
    out = [TensorInfo("token_embd.weight", (h, v), None)]
    if arch.per_layer_embedding:  # Gemma 3n: a second, per-layer embedding table and its projection
        pv, d = arch.per_layer_embedding
        n_alt = spec.altup_inputs or 4
        out += [TensorInfo("per_layer_token_embd.weight", (d * spec.n_layers, pv), None),
                TensorInfo("per_layer_model_proj.weight", (h, d * spec.n_layers), None),
                TensorInfo("per_layer_proj_norm.weight", (d,), None),
                TensorInfo("altup_proj.weight", (h, h, n_alt - 1), None),
                TensorInfo("altup_unembd_proj.weight", (h, h, n_alt - 1), None)]
    for ly in arch.layers:
        p = f"blk.{ly.index}"
        out += [TensorInfo(n, (h,), ly.index) for n in _norms(spec, ly, p)]
        if ly.recurrent:
            out += [TensorInfo(n, s, ly.index) for n, s in _recurrent(spec, ly.recurrent, p)]
        if ly.attention:
            out += [TensorInfo(n, s, ly.index) for n, s in _attention(spec, ly.attention, p)]
        if ly.ffn:
            out += [TensorInfo(n, s, ly.index, e) for n, s, e in _ffn(spec, ly.ffn, p)]
        if arch.per_layer_embedding:
            out += [TensorInfo(n, s, ly.index) for n, s in _gemma3n_layer(spec, p)]
    out.append(TensorInfo("output_norm.weight", (h,), None))
    if not spec.tied_embeddings:
        out.append(TensorInfo("output.weight", (h, v), None))
    return out


def param_count(spec: ModelSpec) -> tuple[int, int]:
    """(total, active) parameters. Active leaves out the routed experts a token does not use;
    it keeps the embedding table, as Mistral's 12.9 B for Mixtral 8x7B does."""
    total = 0
    active = 0.0
    for t in tensor_list(spec):
        total += t.n_elements
        if t.expert:
            f = describe(spec).layers[t.layer].ffn
            active += t.n_elements * f.n_active / f.n_experts
        else:
            active += t.n_elements
    return total, int(active)
