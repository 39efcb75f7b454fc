"""Read a GGUF file's header: the architecture from its metadata, exact weight sizes from its
tensor table. gguf_header parses the header (tensor data is never read); the gguf package gives
the enums and block sizes. gguf.GGUFReader took 9 s on a 262k-token vocabulary; this takes 0.03 s.

Metadata keys: llama.cpp gguf-py/gguf/constants.py (Keys.LLM, Keys.Attention).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from .. import catalog
from ..catalog.schema import ModelSpec
from ..errors import InputError
from ..types import LoadedModel, Weights
from .arch import compact
from .gguf_header import GGUF_MAGIC, SUPPORTED_VERSIONS, GGUFHeader, StringArray, check_file, check_magic, read_gguf_header

__all__ = ["GGUF_MAGIC", "SUPPORTED_VERSIONS", "read_gguf", "read_gguf_header", "model_from_header", "sliding_layers"]

# llama.cpp architecture names -> ours (ModelSpec.architecture follows config.json model_type)
ARCH = {"qwen2moe": "qwen2_moe", "qwen3moe": "qwen3_moe", "qwen3next": "qwen3_next", "deepseek2": "deepseek_v3",
        "gpt-oss": "gpt_oss", "glm4moe": "glm4_moe", "granitehybrid": "granitemoehybrid", "nemotron_h_moe": "nemotron_h",
        "falcon-h1": "falcon_h1", "minimax-m2": "minimax_m2", "ernie4_5-moe": "ernie4_5_moe",
        "hunyuan-moe": "hunyuan_v1_moe", "deci": "nemotron-nas"}
_BLK = re.compile(r"^blk\.(\d+)\.")
SSM_KIND = {"qwen3_next": "gated_deltanet", "jamba": "mamba", "mamba": "mamba"}


def sliding_layers(arch: str, n_layers: int, window: int | None) -> int:
    """How many layers use the sliding window: Gemma 2 and gpt-oss alternate 1:1, Gemma 3 has
    one global layer in six; other models with a window (Mistral 7B v0.1) use it everywhere."""
    if not window:
        return 0
    if arch in ("gemma2", "gpt_oss"):
        return n_layers // 2 + n_layers % 2  # layer 0 is a sliding one
    if arch == "gemma3":
        return n_layers - n_layers // 6
    return n_layers


def _check_header(p: Path) -> None:
    """Before the cache looks at mtime and size: a file, with the GGUF magic."""
    check_file(p, str(p))
    with p.open("rb") as f:
        head = f.read(8)
    check_magic(head, str(p))


def _field(r, key: str, default=None):
    """A metadata value from a GGUFHeader (or a gguf.GGUFReader)."""
    if isinstance(r, GGUFHeader):
        v = r.kv.get(key)
        if v is None:
            return default
        if isinstance(v, StringArray):
            return v
        if hasattr(v, "tolist"):  # numeric array
            v = v.tolist()
    else:
        f = r.fields.get(key)
        if f is None:
            return default
        v = f.contents()
    if isinstance(v, list):  # per-layer arrays (e.g. head_count_kv in some models): take the largest
        return max(v) if v and not isinstance(v[0], str) else v
    return v


def _layers_from_tensors(names: dict, n: int, arch: str) -> tuple[list[str], list[str], list[int]]:
    """Each block's mixer, FFN kind and dense width, read off the tensors it holds."""
    mixers, ffns, widths = [], [], []
    for i in range(n):
        p = f"blk.{i}."
        att = any(p + t in names for t in ("attn_q.weight", "attn_qkv.weight", "attn_kv_a_mqa.weight", "attn_q_a.weight"))
        rec = p + "ssm_conv1d.weight" in names
        if arch == "qwen3_next" and rec:
            att = False  # its linear-attention blocks also hold an attn_qkv projection
        mixers.append("hybrid" if att and rec else "mamba" if rec else "full_attention" if att else "none")
        down = names.get(p + "ffn_down.weight")
        if p + "ffn_gate_inp.weight" in names or p + "ffn_down_exps.weight" in names:
            ffns.append("moe")
        elif down is not None:
            ffns.append("dense")
        else:
            ffns.append("none")
        widths.append(int(down.shape[0]) if down is not None else 0)
    if arch == "qwen3_next":
        mixers = ["linear_attention" if m == "mamba" else m for m in mixers]
    return mixers, ffns, widths


def _spec(r, p: Path) -> ModelSpec:
    garch = str(_field(r, "general.architecture", ""))
    if not garch:
        raise InputError(f"{p}: GGUF file has no general.architecture key")
    arch = ARCH.get(garch, garch)
    k = lambda key, default=None: _field(r, f"{garch}.{key}", default)  # noqa: E731
    names = {t.name: t for t in r.tensors}
    n_layers, hidden, heads = k("block_count"), k("embedding_length"), k("attention.head_count")
    if not (n_layers and hidden and heads):
        raise InputError(f"{p}: GGUF metadata lacks {garch}.block_count/embedding_length/attention.head_count")
    _check_limits({"n_layers": n_layers, "hidden_size": hidden, "n_heads": heads}, str(p))
    # GLM-4.5's converter counts its MTP block in block_count; the model proper is the rest
    nextn = k("nextn_predict_layers", 0)
    if isinstance(nextn, int) and 0 < nextn < n_layers:
        n_layers -= nextn
    n_experts = int(k("expert_count", 0) or 0)
    if arch == "llama" and n_experts:
        arch = "mixtral"
    embd = names.get("token_embd.weight")
    tokens = r.kv.get("tokenizer.ggml.tokens") if isinstance(r, GGUFHeader) else r.fields.get("tokenizer.ggml.tokens")
    if tokens is not None and not isinstance(r, GGUFHeader):
        tokens = tokens.data
    vocab = len(tokens) if tokens is not None else (int(embd.shape[1]) if embd is not None else 0)
    vocab = vocab or int(k("vocab_size", 0) or 0)
    rope = k("rope.dimension_count")
    mla = k("attention.kv_lora_rank")
    key_len = k("attention.key_length_mla") if mla and k("attention.key_length_mla") else (
        k("attention.key_length") or hidden // heads)
    val_len = k("attention.value_length_mla") if mla and k("attention.value_length_mla") else k("attention.value_length")
    window = k("attention.sliding_window")
    ff = k("feed_forward_length") or k("expert_feed_forward_length") or 0
    kv_raw = _array(r, f"{garch}.attention.head_count_kv")
    n = int(n_layers)
    f: dict = dict(architecture=arch, n_layers=n, hidden_size=hidden, n_heads=heads,
                   n_kv_heads=heads if mla else (max(kv_raw) if kv_raw else heads) or heads,
                   head_dim=key_len, intermediate_size=ff or 1, vocab_size=vocab,
                   tied_embeddings="output.weight" not in names,
                   mlp_gated=arch == "phi3" or any(t.endswith(("ffn_gate.weight", "ffn_gate_exps.weight")) for t in names),
                   attention_bias="blk.0.attn_q.bias" in names or "blk.0.attn_qkv.bias" in names,
                   attention_sinks=any(t.endswith("attn_sinks.weight") for t in names),
                   n_experts=n_experts, n_experts_active=int(k("expert_used_count", 0) or 0),
                   moe_intermediate_size=k("expert_feed_forward_length") or (ff if n_experts else None),
                   n_shared_experts=int(k("expert_shared_count", 0) or 0),
                   max_context=k("context_length") or 4096, source=str(p.resolve()))
    if val_len and val_len != key_len and not mla:
        f["v_head_dim"] = val_len
    q_norm = next((t for t in names if t.endswith("attn_q_norm.weight")), None)
    f["qk_norm"] = q_norm is not None
    if mla:
        f.update(mla_kv_lora_rank=mla, mla_q_lora_rank=k("attention.q_lora_rank"), mla_qk_rope_head_dim=rope,
                 mla_qk_nope_head_dim=key_len - rope if rope else None, mla_v_head_dim=val_len)
    shexp = next((t for n_, t in names.items() if n_.endswith("ffn_up_shexp.weight")), None)
    if shexp is not None:
        f["shared_expert_intermediate_size"] = int(shexp.shape[1])
    mixers, ffns, widths = _layers_from_tensors(names, n, arch)
    if any(m != "none" for m in mixers):  # a file that lists its blocks' tensors
        f["layer_types"], f["ffn_types"] = mixers, ffns
        if len({w for w in widths if w}) > 1 or (0 in widths and "dense" in ffns):
            f["intermediate_sizes"] = widths
        elif any(widths):
            f["intermediate_size"] = max(widths)
    if kv_raw and len(set(kv_raw)) > 1 and not mla:
        f["kv_heads_per_layer"] = [int(x) for x in kv_raw]
    if window:
        f["sliding_window"] = window
        _windows(f, r, garch, arch, n, window)
    if arch == "llama4":
        chunk = k("attention.chunk_size") or 8192  # llama.cpp: n_attn_chunk 8192, NoPE every 4th layer
        f["attention_chunk_size"] = chunk
        f["layer_types"] = ["full_attention" if (i + 1) % 4 == 0 else "chunked_attention" for i in range(n)]
    if k("ssm.inner_size"):
        f.update(ssm_kind=SSM_KIND.get(arch, "mamba2"), ssm_d_inner=k("ssm.inner_size"),
                 ssm_d_state=k("ssm.state_size"), ssm_n_groups=int(k("ssm.group_count", 0) or 0),
                 ssm_dt_rank=k("ssm.time_step_rank"), ssm_d_conv=k("ssm.conv_kernel"))
    if arch == "qwen3_next":
        f["attention_output_gate"] = True
    if arch == "nemotron_h":
        f["mlp_gated"] = False
    ple = names.get("per_layer_token_embd.weight")
    if ple is not None:
        f.update(per_layer_embedding_dim=k("embedding_length_per_layer_input") or int(ple.shape[0]) // n,
                 per_layer_embedding_vocab=int(ple.shape[1]), altup_inputs=k("altup.num_inputs") or 4,
                 laurel_rank=int(names["blk.0.laurel_l.weight"].shape[1]) if "blk.0.laurel_l.weight" in names else 64)
        # llama.cpp gives gemma3n's own KV cache to its first 20 layers (n_layer_kv_from_start)
        f["kv_shared_layers"] = int(k("attention.shared_kv_layers") or (n - 20 if n > 20 else 0))
    _check_limits(f, str(p))
    compact(f, n)
    return ModelSpec(id=p.name, name=str(_field(r, "general.name", p.stem)), **f)


def _array(r, key: str) -> list | None:
    v = r.kv.get(key) if isinstance(r, GGUFHeader) else None
    if v is None and not isinstance(r, GGUFHeader):
        fld = r.fields.get(key)
        v = fld.contents() if fld is not None else None
    if v is None:
        return None
    if hasattr(v, "tolist"):
        v = v.tolist()
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _windows(f: dict, r, garch: str, arch: str, n: int, window: int) -> None:
    """Which layers slide: a per-layer pattern in the file (Gemma 3n's bool array), else the
    architecture's fixed rule as llama.cpp applies it."""
    pattern = _array(r, f"{garch}.attention.sliding_window_pattern")
    mixers = f.get("layer_types") or ["full_attention"] * n
    if pattern and len(pattern) == n:
        slide = [bool(x) for x in pattern]
    else:
        from .arch import sliding_flags

        slide = sliding_flags(n, sliding_layers(arch, n, window))
    f["layer_types"] = ["sliding_attention" if s and m == "full_attention" else m for m, s in zip(mixers, slide)]


def _quant_id(r) -> str:
    """general.file_type (LLAMA_FTYPE) as our quant id; else the commonest matrix type."""
    from gguf import LlamaFileType

    ft = _field(r, "general.file_type")
    if ft is not None:
        try:
            name = LlamaFileType(int(ft)).name
        except ValueError:
            name = ""
        name = {"ALL_F32": "F32", "MOSTLY_F16": "F16"}.get(name, name.removeprefix("MOSTLY_"))
        if name in catalog.quants():
            return name
    types = Counter(t.tensor_type.name for t in r.tensors
                    if len(t.shape) >= 2 and t.tensor_type.name in catalog.quants())
    return types.most_common(1)[0][0] if types else "F16"


def _weights(r, n_layers: int) -> Weights:
    layers = [0] * n_layers
    experts = [0] * n_layers
    embed = output = other = 0
    for t in r.tensors:
        b = int(t.n_bytes)
        m = _BLK.match(t.name)
        if m and int(m.group(1)) < n_layers:
            i = int(m.group(1))
            layers[i] += b
            if "_exps." in t.name:
                experts[i] += b
        elif t.name in ("token_embd.weight", "per_layer_token_embd.weight"):
            embed += b  # lookup tables: llama.cpp keeps both in host memory (LLM_TENSOR_LAYER_INPUT)
        elif t.name == "output.weight":
            output += b
        else:
            other += b  # output_norm, rope factors, and layers past block_count (DeepSeek MTP)
    return Weights(tuple(layers), tuple(experts), embed, output, other, origin="gguf")


# Upper bounds on an architecture read from a file: the largest real models are far inside them
# (Llama 3.1 405B: 126 layers, hidden 16384; DeepSeek-V3: 256 experts; Gemma 3: 262k vocabulary).
# Without them a corrupt header (block_count = 2**40) would make the size tables allocate without end.
LIMITS = {"n_layers": 1000, "hidden_size": 262_144, "n_heads": 8192, "n_kv_heads": 8192, "head_dim": 65_536,
          "intermediate_size": 4_194_304, "vocab_size": 16_777_216, "n_experts": 10_000}


def _check_limits(fields: dict, where: str) -> None:
    for k, hi in LIMITS.items():
        v = fields.get(k)
        if isinstance(v, int) and not isinstance(v, bool) and v > hi:
            raise InputError(f"{where}: {k} = {v} is beyond any real model (at most {hi:,}); "
                             "the file is corrupt or not a model header")


def check_sane(spec: ModelSpec, where: str) -> None:
    _check_limits({k: getattr(spec, k, None) for k in LIMITS}, where)


def model_from_header(h: GGUFHeader, p: Path, label: str | None = None, where: str | None = None) -> LoadedModel:
    """A LoadedModel from a parsed header (a whole file's or an upload prefix's); p names the model
    (ModelSpec.id is p.name, ModelSpec.source its resolved path); `where` starts error messages."""
    from pydantic import ValidationError

    where = where or str(p)
    if not h.tensors:
        raise InputError(f"{where}: GGUF file lists no tensors (a vocabulary-only file?)")
    try:
        spec = _spec(h, p)
        check_sane(spec, where)
        return LoadedModel(spec=spec, quant=catalog.quant(_quant_id(h)), weights=_weights(h, spec.n_layers),
                           label=label or str(p))
    except (ValidationError, ValueError, TypeError, ArithmeticError, IndexError) as e:
        # corrupt metadata (zero heads, negative sizes, wrong value types) fails ModelSpec's checks
        lines = str(e).splitlines()
        detail = "; ".join(lines[:3]) if lines else type(e).__name__
        raise InputError(f"{where}: GGUF metadata is not a usable model description ({detail})") from None


def read_gguf(path: str | Path) -> LoadedModel:
    """A LoadedModel from a GGUF file: ModelSpec from metadata, exact Weights from the tensor table,
    the quant from general.file_type."""
    p = Path(path).expanduser()
    _check_header(p)
    st = p.stat()
    return replace(_read(str(p.resolve()), st.st_mtime_ns, st.st_size), label=str(path))


@lru_cache(maxsize=8)  # keyed by mtime and size: an edited file is read again
def _read(path: str, mtime_ns: int, size: int) -> LoadedModel:
    p = Path(path)
    return model_from_header(read_gguf_header(p, require_data=True), p, label=path)
