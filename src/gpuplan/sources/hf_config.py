"""Read a Hugging Face config.json (and model.safetensors.index.json beside it) into a ModelSpec.

Field names and defaults per model_type follow transformers' configuration_*.py files.
"""

from __future__ import annotations

import json
from pathlib import Path

from .. import catalog
from ..catalog.schema import ModelSpec
from ..errors import InputError
from ..types import Weights
from .gguf_file import sliding_layers

SUPPORTED = ("llama", "mistral", "mixtral", "qwen2", "qwen3", "qwen3_moe", "gemma2", "gemma3", "phi3",
             "deepseek_v3", "gpt_oss")
ALIASES = {"gemma3_text": "gemma3"}
# transformers defaults for keys that real configs leave out (Gemma 3's text_config is sparse)
DEFAULTS = {"gemma3": {"vocab_size": 262208, "max_position_embeddings": 131072, "head_dim": 256,
                       "sliding_window": 4096, "sliding_window_pattern": 6, "tie_word_embeddings": True},
            "gemma2": {"tie_word_embeddings": True}}
REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size", "vocab_size")
DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}


def _config_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise InputError(f"{p}: no such file; give a config.json or the directory that holds one")
    return p


def _load(p: Path) -> dict:
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InputError(f"{p}: not JSON ({e}); give a Hugging Face config.json") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{p}: not a config.json (expected a JSON object)")
    return cfg


def _arch(cfg: dict, p: Path) -> str:
    mt = cfg.get("model_type") or (cfg.get("text_config") or {}).get("model_type")
    arch = ALIASES.get(mt, mt)
    if arch not in SUPPORTED:
        raise InputError(f"{p}: model_type '{mt}' is not supported; accepted: {', '.join(SUPPORTED)}")
    return arch


def _n_sliding(arch: str, c: dict, n: int, window: int | None) -> int:
    if not window:
        return 0
    if isinstance(c.get("layer_types"), list):  # newer configs list each layer's attention
        return sum(t == "sliding_attention" for t in c["layer_types"])
    if arch == "gemma3" and c.get("sliding_window_pattern"):
        return n - n // int(c["sliding_window_pattern"])
    return sliding_layers(arch, n, window)


def read_config(path: str | Path) -> ModelSpec:
    """A ModelSpec from a local config.json, or a directory holding one."""
    p = _config_path(path)
    cfg = _load(p)
    arch = _arch(cfg, p)
    c = {**DEFAULTS.get(arch, {}), **cfg, **(cfg.get("text_config") or {})}
    missing = [k for k in REQUIRED if c.get(k) is None]
    if missing:
        raise InputError(f"{p}: missing required field(s) {', '.join(missing)} for model_type {arch}")
    n, h, nh = int(c["num_hidden_layers"]), int(c["hidden_size"]), int(c["num_attention_heads"])
    n_exp = int(c.get("num_local_experts") or c.get("num_experts") or c.get("n_routed_experts") or 0)
    mla = arch == "deepseek_v3"
    head_dim = (c.get("qk_nope_head_dim", 128) + c.get("qk_rope_head_dim", 64)) if mla else (c.get("head_dim") or h // nh)
    if arch in ("qwen2", "qwen3", "qwen3_moe") and not c.get("use_sliding_window"):
        window = None  # Qwen configs carry a sliding_window value that is switched off
    else:
        window = c.get("sliding_window")
    qc = c.get("quantization_config") or {}
    dtype = {"fp8": "FP8", "mxfp4": "MXFP4"}.get(qc.get("quant_method"),
                                                  DTYPES.get(c.get("torch_dtype") or c.get("dtype"), "BF16"))
    return ModelSpec(
        id=p.parent.name or str(p), name=p.parent.name or p.name, architecture=arch,
        n_layers=n, hidden_size=h, n_heads=nh, n_kv_heads=int(c.get("num_key_value_heads") or nh),
        head_dim=int(head_dim), intermediate_size=int(c["intermediate_size"]), vocab_size=int(c["vocab_size"]),
        tied_embeddings=bool(c.get("tie_word_embeddings", False)),
        attention_bias=arch in ("qwen2", "gpt_oss") or bool(c.get("attention_bias", False)),
        n_experts=n_exp,
        n_experts_active=int(c.get("num_experts_per_tok") or c.get("experts_per_token") or 0) if n_exp else 0,
        moe_intermediate_size=(c.get("moe_intermediate_size") or c["intermediate_size"]) if n_exp else None,
        n_shared_experts=int(c.get("n_shared_experts") or 0),
        n_dense_layers=int(c.get("first_k_dense_replace") or 0) if n_exp else 0,
        sliding_window=window, n_sliding_layers=_n_sliding(arch, c, n, window),
        mla_kv_lora_rank=c.get("kv_lora_rank") if mla else None,
        mla_q_lora_rank=c.get("q_lora_rank") if mla else None,
        mla_qk_rope_head_dim=c.get("qk_rope_head_dim") if mla else None,
        mla_qk_nope_head_dim=c.get("qk_nope_head_dim") if mla else None,
        mla_v_head_dim=c.get("v_head_dim") if mla else None,
        max_context=int(c.get("max_position_embeddings") or 4096),
        native_dtype=dtype, source=str(p.resolve()),
    )


def native_quant(spec: ModelSpec):
    """The quant a checkpoint is stored in: its dtype, FP8, or gpt-oss's MXFP4 experts."""
    return catalog.quant({"MXFP4": "MXFP4_MOE"}.get(spec.native_dtype, spec.native_dtype))


def safetensors_weights(path: str | Path, spec: ModelSpec) -> Weights | None:
    """Exact total from model.safetensors.index.json beside the config (metadata.total_size),
    spread over layers, embedding and head in the proportions tensor_list gives; None if absent."""
    from ..perf.weights import estimate_weights

    p = Path(path).expanduser()
    idx = (p if p.is_dir() else p.parent) / "model.safetensors.index.json"
    if not idx.is_file():
        return None
    try:
        total = int(json.loads(idx.read_text(encoding="utf-8"))["metadata"]["total_size"])
    except (ValueError, KeyError, TypeError) as e:
        raise InputError(f"{idx}: no metadata.total_size in this safetensors index ({e})") from None
    est = estimate_weights(spec, native_quant(spec))
    f = total / est.total_bytes
    layers = tuple(round(b * f) for b in est.layer_bytes)
    experts = tuple(round(b * f) for b in est.layer_expert_bytes)
    embed, output = round(est.embed_bytes * f), round(est.output_bytes * f)
    other = total - sum(layers) - embed - output  # rounding lands here, so the total is exact
    return Weights(layers, experts, embed, output, other, origin="safetensors")
