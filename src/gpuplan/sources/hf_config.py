"""Read a Hugging Face config.json (and model.safetensors.index.json beside it) into a ModelSpec.

Field names and defaults per model_type follow transformers' configuration_*.py files (and the
remote-code configs of models that ship their own: DeepSeek, Kimi, ERNIE, Hunyuan, MiniMax).
Every number is checked on the way in: a config with negative, zero, NaN, string, list or
absurd values gets one clear error naming the key, never a traceback or a table sized by it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from .. import catalog
from ..catalog.schema import ModelSpec
from ..errors import InputError
from ..types import Weights
from .arch import compact

# model_type -> family read below; multimodal wrappers keep the text model in text_config
FAMILIES = ("llama", "mistral", "mixtral", "qwen2", "qwen2_moe", "qwen3", "qwen3_moe", "qwen3_next", "gemma",
            "gemma2", "gemma3", "gemma3n", "llama4", "deepseek_v2", "deepseek_v3", "glm4_moe", "gpt_oss", "phi3",
            "granite", "granitemoehybrid", "nemotron_h", "falcon_h1", "jamba", "minimax_m2", "ernie4_5",
            "ernie4_5_moe", "hunyuan_v1_moe", "smollm3", "internlm", "internlm2", "olmo2", "cohere", "nemotron-nas")
ALIASES = {"gemma3_text": "gemma3", "gemma3n_text": "gemma3n", "llama4_text": "llama4", "kimi_k2": "deepseek_v3",
           "mistral3": "mistral", "qwen3_next_text": "qwen3_next", "glm4_moe_text": "glm4_moe"}
# transformers defaults for keys that real configs leave out
DEFAULTS = {
    "gemma3": {"vocab_size": 262208, "max_position_embeddings": 131072, "head_dim": 256, "sliding_window": 4096,
               "sliding_window_pattern": 6, "tie_word_embeddings": True},
    "gemma2": {"tie_word_embeddings": True, "head_dim": 256},
    "gemma3n": {"vocab_size": 262400, "head_dim": 256, "sliding_window": 512, "tie_word_embeddings": True,
                "vocab_size_per_layer_input": 262144, "hidden_size_per_layer_input": 256, "altup_num_inputs": 4,
                "laurel_rank": 64, "num_kv_shared_layers": 15, "max_position_embeddings": 32768},
    "llama4": {"attention_chunk_size": 8192, "interleave_moe_layer_step": 1, "intermediate_size_mlp": 16384},
    "qwen3_next": {"full_attention_interval": 4, "linear_conv_kernel_dim": 4, "linear_key_head_dim": 128,
                   "linear_value_head_dim": 128, "linear_num_key_heads": 16, "linear_num_value_heads": 32},
    "nemotron_h": {"conv_kernel": 4, "expand": 2, "n_groups": 8},
    "jamba": {"attn_layer_period": 8, "attn_layer_offset": 4, "expert_layer_period": 2, "expert_layer_offset": 1,
              "mamba_d_state": 16, "mamba_d_conv": 4, "mamba_expand": 2, "num_experts": 16, "num_experts_per_tok": 2},
    "falcon_h1": {"mamba_d_conv": 4, "mamba_n_groups": 1, "mamba_d_state": 256, "mamba_expand": 2},
    "granitemoehybrid": {"mamba_d_conv": 4, "mamba_n_groups": 1, "mamba_d_state": 256, "mamba_expand": 2},
}
REQUIRED = ("num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size")
DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
MAX_CONFIG_BYTES = 16 * 2**20  # real config.json files are a few kB (Nemotron-NAS: 40 kB)


def _config_path(path: str | Path) -> Path:
    p = Path(path).expanduser()
    if p.is_dir():
        p = p / "config.json"
    if not p.is_file():
        raise InputError(f"{p}: no such file; give a config.json or the directory that holds one")
    return p


def _load(p: Path) -> dict:
    if p.stat().st_size > MAX_CONFIG_BYTES:
        raise InputError(f"{p}: {p.stat().st_size:,} bytes is not a config.json (those are a few kB)")
    try:
        cfg = json.loads(p.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise InputError(f"{p}: not JSON ({str(e)[:120]}); give a Hugging Face config.json") from None
    if not isinstance(cfg, dict):
        raise InputError(f"{p}: not a config.json (expected a JSON object)")
    return cfg


class _Reader:
    """Typed access to one config's keys, each failure one line naming the key."""

    def __init__(self, c: dict, where: str):
        self.c, self.where = c, where

    def has(self, key: str) -> bool:
        return self.c.get(key) is not None

    def int(self, key: str, default=None, lo: int = 1, hi: int = 10**7):
        v = self.c.get(key)
        if v is None:
            if default is None:
                raise InputError(f"{self.where}: missing required field {key}")
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (isinstance(v, float) and (
                not math.isfinite(v) or v != int(v))):
            raise InputError(f"{self.where}: {key} = {_show(v)} is not a whole number")
        if not lo <= v <= hi:
            raise InputError(f"{self.where}: {key} = {_show(v)} is outside {lo:,}..{hi:,}")
        return int(v)

    def float(self, key: str, default: float) -> float:
        v = self.c.get(key)
        if v is None:
            return default
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise InputError(f"{self.where}: {key} = {_show(v)} is not a positive number")
        return float(v)

    def bool(self, key: str, default: bool) -> bool:
        v = self.c.get(key)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise InputError(f"{self.where}: {key} = {_show(v)} is not true or false")
        return v

    def per_layer_int(self, key: str, n: int, default=None) -> int | list[int]:
        """A value configs give either once or once per layer (Hunyuan's moe_topk, Gemma 3n's widths)."""
        v = self.c.get(key)
        if isinstance(v, list):
            if len(v) != n:
                raise InputError(f"{self.where}: {key} lists {len(v)} values, num_hidden_layers is {n}")
            return [_Reader({key: x}, self.where).int(key, lo=0) for x in v]
        return self.int(key, default, lo=0)


def _show(v) -> str:
    s = json.dumps(v) if not isinstance(v, float) or math.isfinite(v) else str(v)
    return s if len(s) <= 40 else s[:37] + "..."


def model_type(cfg: dict, where: str) -> tuple[str, dict, str | None]:
    """(family, merged config, note) for a config dict; unknown types with the usual fields
    are read as a plain decoder with a note, others get one line listing what is supported."""
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else {}
    mt = text.get("model_type") or cfg.get("model_type")
    arch = ALIASES.get(mt, mt) if isinstance(mt, str) else None
    if arch and arch.endswith("_text") and arch[:-5] in FAMILIES:
        arch = arch[:-5]
    merged = {**cfg, **text}
    note = None
    if arch not in FAMILIES:
        if all(merged.get(k) is not None for k in REQUIRED + ("intermediate_size",)):
            note = (f"model_type '{mt}' is not one gpuplan knows; read as a plain decoder "
                    f"(attention + gated MLP per layer) from its standard fields")
            arch = "llama"
        else:
            what = f"model_type '{mt}' is not supported" if mt else "has no model_type"
            raise InputError(f"{where}: {what}; accepted: {', '.join(FAMILIES)}")
    return arch, {**DEFAULTS.get(arch, {}), **merged}, note


def spec_from_config(cfg: dict, where: str, model_id: str, source: str) -> ModelSpec:
    """A ModelSpec from a config.json's contents (also what `gpuplan models add` stores)."""
    from pydantic import ValidationError

    from .hf_families import family_fields

    arch, c, note = model_type(cfg, where)
    r = _Reader(c, where)
    missing = [k for k in REQUIRED if c.get(k) is None]
    if missing:
        raise InputError(f"{where}: missing required field(s) {', '.join(missing)} for model_type {arch}")
    n = r.int("num_hidden_layers", hi=1000)
    h = r.int("hidden_size", hi=10**6)
    nh = r.int("num_attention_heads", hi=100_000)
    lists: dict = {}
    f = {"architecture": arch, "n_layers": n, "hidden_size": h, "n_heads": nh,
         "n_kv_heads": r.int("num_key_value_heads", nh, hi=100_000),
         "head_dim": r.int("head_dim", max(h // nh, 1), hi=100_000),
         "intermediate_size": _width(r, n, h, lists),
         "vocab_size": r.int("vocab_size", hi=10**8),
         "tied_embeddings": r.bool("tie_word_embeddings", False),
         "attention_bias": r.bool("attention_bias", False),
         "max_context": r.int("max_position_embeddings", 4096, hi=10**9)}
    f.update(lists)
    window = r.int("sliding_window", 0, lo=0, hi=10**9) or None
    if c.get("use_sliding_window") is False or (window and window >= f["max_context"]):
        window = None  # switched off (Qwen), or no shorter than the context (Phi-4-mini's 262144)
    f["sliding_window"] = window
    layer_types = c.get("layer_types")
    if window and isinstance(layer_types, list) and "sliding_attention" in layer_types:
        f["layer_types"] = layer_types
    elif window:
        f["n_sliding_layers"] = n  # Mistral 7B v0.1: every layer slides
    family_fields(arch, r, f, n)
    qc = c.get("quantization_config") if isinstance(c.get("quantization_config"), dict) else {}
    f["native_dtype"] = {"fp8": "FP8", "mxfp4": "MXFP4"}.get(qc.get("quant_method"), _dtype(c, where, f))
    compact(f, n)
    try:
        note = "; ".join(x for x in (note, f.pop("note", None)) if x) or None
        return ModelSpec(id=model_id, name=model_id.rsplit("/", 1)[-1], source=source, note=note, **f)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ()))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")  # a check across fields
        raise InputError(f"{where}: not a usable model description ({loc + ': ' if loc else ''}{msg})") from None


def _dtype(c: dict, where: str, f: dict) -> str:
    """The format the weights ship in, from torch_dtype (or dtype, its newer name): BF16 when
    absent; a name this tool does not know is taken as BF16 and said so in the model's note."""
    key = "torch_dtype" if c.get("torch_dtype") is not None else "dtype"
    v = c.get(key)
    if v is None:
        return "BF16"
    if not isinstance(v, str):
        raise InputError(f"{where}: {key} = {str(v)[:40]} is not a type name; accepted: "
                         f"{', '.join(DTYPES)}", input=key, value=str(v)[:40], accepted=", ".join(DTYPES))
    if v.strip().lower() not in DTYPES:
        note = f"{key} '{v[:40]}' is not one of {', '.join(DTYPES)}: weights taken as BF16"
        f["note"] = "; ".join(x for x in (f.get("note"), note) if x)
        return "BF16"
    return DTYPES[v.strip().lower()]


def _width(r: _Reader, n: int, h: int, lists: dict) -> int:
    """intermediate_size, given once or (Gemma 3n, ...) once per layer."""
    v = r.per_layer_int("intermediate_size", n, 4 * h)
    if isinstance(v, list):
        lists["intermediate_sizes"] = v
        return max(max(v), 1)
    if v < 1:
        raise InputError(f"{r.where}: intermediate_size = {v} is outside 1..10,000,000")
    return v


def read_config(path: str | Path) -> ModelSpec:
    """A ModelSpec from a local config.json, or a directory holding one."""
    p = _config_path(path)
    cfg = _load(p)
    name = p.parent.name or str(p)
    return spec_from_config(cfg, str(p), name, str(p.resolve()))


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
    if not 0 < total < 2**50:
        raise InputError(f"{idx}: metadata.total_size = {total} is not a checkpoint size")
    est = estimate_weights(spec, native_quant(spec))
    f = total / est.total_bytes
    layers = tuple(round(b * f) for b in est.layer_bytes)
    experts = tuple(round(b * f) for b in est.layer_expert_bytes)
    embed, output = round(est.embed_bytes * f), round(est.output_bytes * f)
    other = total - sum(layers) - embed - output  # rounding lands here, so the total is exact
    return Weights(layers, experts, embed, output, other, origin="safetensors")
