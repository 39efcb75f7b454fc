"""What each config.json family says beyond the common fields: experts and where they sit,
which layers attend how far, the linear-attention / SSM dimensions, Gemma 3n's extras.

Keys and defaults: transformers' configuration_<family>.py (and the remote-code configs of
DeepSeek, Kimi, ERNIE, Hunyuan and MiniMax). The dimensions of recurrent blocks are stored in
llama.cpp's ssm_* terms, as its convert_hf_to_gguf.py writes them.
"""

from __future__ import annotations

from ..errors import InputError

QK_NORM_CONFIG = {"glm4_moe": "use_qk_norm", "hunyuan_v1_moe": "use_qk_norm"}


def family_fields(arch: str, r, f: dict, n: int) -> None:
    """Fill f (ModelSpec fields) from the config reader r for family `arch`."""
    c = r.c
    if arch in QK_NORM_CONFIG:
        f["qk_norm"] = r.bool(QK_NORM_CONFIG[arch], False)
    if arch in ("qwen2", "qwen2_moe"):
        f["attention_bias"] = True  # Qwen2 always has q/k/v biases
    if arch == "internlm":
        f["attention_bias"] = r.bool("bias", True)
    if arch == "mixtral":
        _experts(f, r, "num_local_experts", "num_experts_per_tok", width=f["intermediate_size"])
    elif arch in ("qwen2_moe", "qwen3_moe", "qwen3_next"):
        _experts(f, r, "num_experts", "num_experts_per_tok", width=r.int("moe_intermediate_size"))
        f["shared_expert_intermediate_size"] = r.int("shared_expert_intermediate_size", 0, lo=0) or None
        step = r.int("decoder_sparse_step", 1)
        only_dense = set(c.get("mlp_only_layers") or [])
        f["ffn_types"] = ["dense" if (i in only_dense or (i + 1) % step) else "moe" for i in range(n)]
    elif arch in ("deepseek_v2", "deepseek_v3", "glm4_moe"):
        _experts(f, r, "n_routed_experts", "num_experts_per_tok", width=r.int("moe_intermediate_size"))
        f["n_shared_experts"] = r.int("n_shared_experts", 0, lo=0, hi=1000)
        k = r.int("first_k_dense_replace", 0, lo=0, hi=n)
        freq = r.int("moe_layer_freq", 1)
        f["ffn_types"] = ["moe" if i >= k and i % freq == 0 else "dense" for i in range(n)]
        if arch != "glm4_moe":
            _mla(f, r)
    elif arch == "gpt_oss":
        _experts(f, r, "num_local_experts", "experts_per_token" if r.has("experts_per_token") else "num_experts_per_tok",
                 width=f["intermediate_size"])
        f["attention_bias"] = True
        f["attention_sinks"] = True
    elif arch == "llama4":
        _llama4(f, r, n)
    elif arch == "minimax_m2":
        _experts(f, r, "num_local_experts", "num_experts_per_tok", width=f["intermediate_size"])
        f["qk_norm"] = r.bool("use_qk_norm", True)
    elif arch == "ernie4_5_moe":
        _ernie(f, r, n)
    elif arch == "hunyuan_v1_moe":
        _hunyuan(f, r, n)
    # which layers attend how far, and the recurrent blocks
    if arch == "qwen3_next":
        _qwen3_next(f, r, n)
    elif arch == "gemma3":
        if not f.get("layer_types") and f.get("sliding_window"):
            p = r.int("sliding_window_pattern", 6)
            f["n_sliding_layers"] = n - n // p
    elif arch == "gemma2":
        if f.get("sliding_window") and not f.get("layer_types"):
            f["n_sliding_layers"] = n // 2 + n % 2
    elif arch == "gemma3n":
        _gemma3n(f, r, n)
    elif arch == "granitemoehybrid":
        _granite_hybrid(f, r, n)
    elif arch == "nemotron_h":
        _nemotron_h(f, r, n)
    elif arch == "falcon_h1":
        _falcon_h1(f, r, n)
    elif arch == "jamba":
        _jamba(f, r, n)
    elif arch == "nemotron-nas":
        _nemotron_nas(f, r, n)


def _ernie(f: dict, r, n: int) -> None:
    """ERNIE 4.5 MoE: routed experts from moe_layer_start_index every moe_layer_interval-th layer,
    moe_num_shared_experts shared experts of moe_intermediate_size each."""
    _experts(f, r, "moe_num_experts", "moe_k", width=r.int("moe_intermediate_size"))
    f["n_shared_experts"] = r.int("moe_num_shared_experts", 0, lo=0, hi=1000)
    start, step = r.int("moe_layer_start_index", 0, lo=0, hi=n), r.int("moe_layer_interval", 1)
    end = r.int("moe_layer_end_index", n - 1, lo=-1, hi=n)
    end = n - 1 if end < 0 else end
    f["ffn_types"] = ["moe" if start <= i <= end and (i - start) % step == 0 else "dense" for i in range(n)]
    f["attention_bias"] = r.bool("use_bias", False)


def _hunyuan(f: dict, r, n: int) -> None:
    """Hunyuan MoE: settings given once or per layer; the shared MLP is num_shared_expert times
    intermediate_size wide."""
    def one(key, default=None):
        v = r.per_layer_int(key, n, default)
        return v if isinstance(v, int) else _uniform(r, v)

    f["n_experts"] = r.int("num_experts", hi=10_000)
    f["n_experts_active"] = one("moe_topk")
    f["moe_intermediate_size"] = one("moe_intermediate_size")
    f["shared_expert_intermediate_size"] = (one("num_shared_expert", 0) * f["intermediate_size"]) or None
    f["head_dim"] = r.int("attention_head_dim", f["head_dim"])


def _uniform(r, values: list[int]) -> int:
    if len(set(values)) != 1:
        raise InputError(f"{r.where}: per-layer expert settings that differ between layers are not supported")
    return values[0]


def _experts(f: dict, r, n_key: str, k_key: str, width: int) -> None:
    f["n_experts"] = r.int(n_key, hi=10_000)
    f["n_experts_active"] = r.int(k_key, hi=10_000)
    f["moe_intermediate_size"] = width


def _mla(f: dict, r) -> None:
    if not r.has("kv_lora_rank"):
        return
    f["mla_kv_lora_rank"] = r.int("kv_lora_rank", hi=100_000)
    f["mla_q_lora_rank"] = r.int("q_lora_rank", 0, lo=0, hi=100_000) or None
    f["mla_qk_rope_head_dim"] = r.int("qk_rope_head_dim", 64, hi=100_000)
    f["mla_qk_nope_head_dim"] = r.int("qk_nope_head_dim", 128, hi=100_000)
    f["mla_v_head_dim"] = r.int("v_head_dim", 128, hi=100_000)
    f["head_dim"] = f["mla_qk_rope_head_dim"] + f["mla_qk_nope_head_dim"]


def _llama4(f: dict, r, n: int) -> None:
    """Llama 4: routed experts and one shared expert of intermediate_size on the MoE layers
    (every interleave_moe_layer_step-th), dense layers of intermediate_size_mlp, and chunked
    attention on the RoPE layers with a NoPE full-attention layer every 4th (no_rope_layers)."""
    width = f["intermediate_size"]
    _experts(f, r, "num_local_experts", "num_experts_per_tok", width=width)
    f["shared_expert_intermediate_size"] = width
    f["intermediate_size"] = r.int("intermediate_size_mlp", 16384)
    step = r.int("interleave_moe_layer_step", 1)
    moe = r.c.get("moe_layers")
    moe = set(moe) if isinstance(moe, list) and all(isinstance(i, int) for i in moe) else set(range(step - 1, n, step))
    f["ffn_types"] = ["moe" if i in moe else "dense" for i in range(n)]
    chunk = r.int("attention_chunk_size", 8192, hi=10**9)
    nope = r.c.get("no_rope_layers")
    if not (isinstance(nope, list) and len(nope) == n):
        nope = [int((i + 1) % 4 != 0) for i in range(n)]  # no_rope_layer_interval = 4
    f["attention_chunk_size"] = chunk
    f["layer_types"] = ["chunked_attention" if x else "full_attention" for x in nope]


def _qwen3_next(f: dict, r, n: int) -> None:
    """Gated DeltaNet layers with a gated full-attention layer every full_attention_interval-th."""
    lt = r.c.get("layer_types")
    if not (isinstance(lt, list) and len(lt) == n and set(lt) <= {"linear_attention", "full_attention"}):
        every = r.int("full_attention_interval", 4)
        lt = ["full_attention" if (i + 1) % every == 0 else "linear_attention" for i in range(n)]
    f["layer_types"] = lt
    nk, nv = r.int("linear_num_key_heads", 16), r.int("linear_num_value_heads", 32)
    dk, dv = r.int("linear_key_head_dim", 128), r.int("linear_value_head_dim", 128)
    f.update(ssm_kind="gated_deltanet", ssm_d_inner=nv * dv, ssm_d_state=dk, ssm_n_groups=nk, ssm_dt_rank=nv,
             ssm_d_conv=r.int("linear_conv_kernel_dim", 4, hi=1000), attention_output_gate=True, qk_norm=True)


def _gemma3n(f: dict, r, n: int) -> None:
    """Gemma 3n: four local layers to one global, the last num_kv_shared_layers reading earlier
    caches, and per-layer token embeddings of hidden_size_per_layer_input per layer."""
    lt = r.c.get("layer_types")
    if not (isinstance(lt, list) and len(lt) == n):
        lt = ["full_attention" if (i + 1) % 5 == 0 else "sliding_attention" for i in range(n)]
    f["layer_types"] = lt
    f["kv_shared_layers"] = r.int("num_kv_shared_layers", 15, lo=0, hi=n - 1)
    f["per_layer_embedding_dim"] = r.int("hidden_size_per_layer_input", 256)
    f["per_layer_embedding_vocab"] = r.int("vocab_size_per_layer_input", 262144, hi=10**8)
    f["altup_inputs"] = r.int("altup_num_inputs", 4, hi=64)
    f["laurel_rank"] = r.int("laurel_rank", 64)


def _mamba2(f: dict, r, heads_key: str, head_dim_key: str, state_key: str, groups_key: str, conv_key: str,
            d_inner_key: str | None = None) -> None:
    nh = r.int(heads_key, hi=100_000)
    hd = r.int(head_dim_key, hi=100_000)
    d_inner = r.int(d_inner_key, nh * hd, hi=10**6) if d_inner_key else nh * hd
    f.update(ssm_kind="mamba2", ssm_d_inner=d_inner, ssm_d_state=r.int(state_key, hi=100_000),
             ssm_n_groups=r.int(groups_key, 1, hi=100_000), ssm_dt_rank=nh, ssm_d_conv=r.int(conv_key, 4, hi=1000))


def _granite_hybrid(f: dict, r, n: int) -> None:
    """Granite 4.0-H: Mamba-2 and attention layers (layer_types), each with an MoE (routed experts
    plus a shared MLP) or, without experts, a dense MLP of shared_intermediate_size."""
    lt = r.c.get("layer_types")
    if not (isinstance(lt, list) and len(lt) == n and set(lt) <= {"mamba", "attention"}):
        raise InputError(f"{r.where}: granitemoehybrid needs layer_types listing 'mamba' or 'attention' per layer")
    f["layer_types"] = ["mamba" if t == "mamba" else "full_attention" for t in lt]
    _mamba2(f, r, "mamba_n_heads", "mamba_d_head", "mamba_d_state", "mamba_n_groups", "mamba_d_conv")
    shared = r.int("shared_intermediate_size", 0, lo=0)
    experts = r.int("num_local_experts", 0, lo=0, hi=10_000)
    if experts:
        _experts(f, r, "num_local_experts", "num_experts_per_tok", width=f["intermediate_size"])
        f["shared_expert_intermediate_size"] = shared or None
        f["ffn_types"] = ["moe"] * n
    else:
        f["intermediate_size"] = shared or f["intermediate_size"]


def _nemotron_h(f: dict, r, n: int) -> None:
    """Nemotron-H: one mixer or one MLP per block, from hybrid_override_pattern (M: Mamba-2,
    *: attention, -: MLP (squared ReLU, no gate), E: MoE)."""
    pat = r.c.get("hybrid_override_pattern")
    if not (isinstance(pat, str) and len(pat) == n and set(pat) <= set("M*-E")):
        raise InputError(f"{r.where}: hybrid_override_pattern must give one of M * - E per layer ({n})")
    f["layer_types"] = [{"M": "mamba", "*": "full_attention"}.get(ch, "none") for ch in pat]
    f["ffn_types"] = [{"-": "dense", "E": "moe"}.get(ch, "none") for ch in pat]
    f["mlp_gated"] = False
    f["head_dim"] = r.int("attention_head_dim", r.int("head_dim", f["head_dim"]))
    _mamba2(f, r, "mamba_num_heads", "mamba_head_dim", "ssm_state_size", "n_groups", "conv_kernel")
    if "E" in pat:
        _experts(f, r, "n_routed_experts", "num_experts_per_tok", width=r.int("moe_intermediate_size"))
        f["shared_expert_intermediate_size"] = r.int("moe_shared_expert_intermediate_size", 0, lo=0) or None


def _falcon_h1(f: dict, r, n: int) -> None:
    """Falcon-H1: attention and Mamba-2 side by side in every layer, then a gated MLP."""
    f["layer_types"] = ["hybrid"] * n
    _mamba2(f, r, "mamba_n_heads", "mamba_d_head", "mamba_d_state", "mamba_n_groups", "mamba_d_conv",
            d_inner_key="mamba_d_ssm")


def _jamba(f: dict, r, n: int) -> None:
    """Jamba: Mamba-1 layers with attention every attn_layer_period-th (at the offset) and MoE
    every expert_layer_period-th."""
    ap, ao = r.int("attn_layer_period", 8), r.int("attn_layer_offset", 4, lo=0)
    ep, eo = r.int("expert_layer_period", 2), r.int("expert_layer_offset", 1, lo=0)
    f["layer_types"] = ["full_attention" if i % ap == ao else "mamba" for i in range(n)]
    _experts(f, r, "num_experts", "num_experts_per_tok", width=f["intermediate_size"])
    f["ffn_types"] = ["moe" if i % ep == eo else "dense" for i in range(n)]
    d_inner = r.int("mamba_expand", 2) * f["hidden_size"]
    dt = r.c.get("mamba_dt_rank")
    dt_rank = -(-f["hidden_size"] // 16) if dt in (None, "auto") else r.int("mamba_dt_rank", hi=100_000)
    f.update(ssm_kind="mamba", ssm_d_inner=d_inner, ssm_d_state=r.int("mamba_d_state", 16, hi=100_000),
             ssm_n_groups=0, ssm_dt_rank=dt_rank, ssm_d_conv=r.int("mamba_d_conv", 4, hi=1000))


def _nemotron_nas(f: dict, r, n: int) -> None:
    """Nemotron-NAS (DeciLM: Llama-3.3-Nemotron-Super/Ultra): a block_configs entry per layer says
    its KV heads (n_heads / n_heads_in_group) or that its attention is skipped (no_op), and its FFN
    width (ffn_mult, as DeciLM's _ffn_mult_to_intermediate_size rounds it) or that it has none."""
    blocks = r.c.get("block_configs")
    if not (isinstance(blocks, list) and len(blocks) == n and all(isinstance(b, dict) for b in blocks)):
        raise InputError(f"{r.where}: block_configs must give one entry per layer ({n})")
    kv, widths, mixers, linear = [], [], [], 0
    for i, b in enumerate(blocks):
        att = b.get("attention") if isinstance(b.get("attention"), dict) else {}
        ffn = b.get("ffn") if isinstance(b.get("ffn"), dict) else {}
        if att.get("no_op") or att.get("replace_with_linear"):
            linear += bool(att.get("replace_with_linear"))
            kv.append(0)
            mixers.append("none")
        else:
            g = _block_reader(r, i, att).int("n_heads_in_group", hi=f["n_heads"])
            if f["n_heads"] % g:
                raise InputError(f"{r.where}: block_configs[{i}] n_heads_in_group {g} does not divide {f['n_heads']} heads")
            kv.append(f["n_heads"] // g)
            mixers.append("full_attention")
        if ffn.get("no_op") or ffn.get("replace_with_linear"):
            linear += bool(ffn.get("replace_with_linear"))
            widths.append(0)
        else:
            mult = _block_reader(r, i, ffn).float("ffn_mult", 0.0)
            if not 0 < mult <= 1000:
                raise InputError(f"{r.where}: block_configs[{i}] ffn_mult must be a positive number")
            w = int(2 * mult * f["hidden_size"] / 3)
            widths.append(-(-w // 256) * 256)
    f["layer_types"] = mixers
    f["ffn_types"] = ["dense" if w else "none" for w in widths]
    f["intermediate_sizes"] = widths
    f["intermediate_size"] = max(widths) or f["intermediate_size"]
    f["kv_heads_per_layer"] = kv
    f["n_kv_heads"] = max(kv) or f["n_kv_heads"]
    if linear:
        f["note"] = f"{linear} blocks replace attention or FFN with one linear layer; those are not counted"


def _block_reader(r, i: int, block: dict):
    from .hf_config import _Reader

    return _Reader(block, f"{r.where}: block_configs[{i}]")
