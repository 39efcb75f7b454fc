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
from .gguf_header import GGUF_MAGIC, SUPPORTED_VERSIONS, GGUFHeader, StringArray, check_file, check_magic, read_gguf_header

__all__ = ["GGUF_MAGIC", "SUPPORTED_VERSIONS", "read_gguf", "read_gguf_header", "model_from_header", "sliding_layers"]

# llama.cpp architecture names -> ours (ModelSpec.architecture follows config.json model_type)
ARCH = {"qwen3moe": "qwen3_moe", "deepseek2": "deepseek_v3", "gpt-oss": "gpt_oss", "phi3": "phi3"}
_BLK = re.compile(r"^blk\.(\d+)\.")


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
    n_experts = int(k("expert_count", 0) or 0)
    if arch == "llama" and n_experts:
        arch = "mixtral"
    embd = names.get("token_embd.weight")
    tokens = r.kv.get("tokenizer.ggml.tokens") if isinstance(r, GGUFHeader) else r.fields.get("tokenizer.ggml.tokens")
    if tokens is not None and not isinstance(r, GGUFHeader):
        tokens = tokens.data
    vocab = len(tokens) if tokens is not None else (int(embd.shape[1]) if embd is not None else 0)
    rope = k("rope.dimension_count")
    key_len = k("attention.key_length") or hidden // heads
    mla = k("attention.kv_lora_rank")
    window = k("attention.sliding_window")
    ff = k("feed_forward_length") or k("expert_feed_forward_length") or 0
    return ModelSpec(
        id=p.name, name=str(_field(r, "general.name", p.stem)), architecture=arch,
        n_layers=n_layers, hidden_size=hidden, n_heads=heads, n_kv_heads=k("attention.head_count_kv") or heads,
        head_dim=key_len, intermediate_size=ff, vocab_size=vocab,
        tied_embeddings="output.weight" not in names,
        mlp_gated=arch == "phi3" or any(n.endswith("ffn_gate.weight") or "ffn_gate_exps" in n for n in names),
        attention_bias="blk.0.attn_q.bias" in names,
        n_experts=n_experts, n_experts_active=int(k("expert_used_count", 0) or 0),
        moe_intermediate_size=k("expert_feed_forward_length") or (ff if n_experts else None),
        n_shared_experts=int(k("expert_shared_count", 0) or 0),
        n_dense_layers=int(k("leading_dense_block_count", 0) or 0),
        sliding_window=window, n_sliding_layers=sliding_layers(arch, n_layers, window),
        mla_kv_lora_rank=mla, mla_q_lora_rank=k("attention.q_lora_rank") if mla else None,
        mla_qk_rope_head_dim=rope if mla else None,
        mla_qk_nope_head_dim=key_len - rope if mla and rope else None,
        mla_v_head_dim=k("attention.value_length") if mla else None,
        max_context=k("context_length") or 4096,
        source=str(p.resolve()),
    )


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
        elif t.name == "token_embd.weight":
            embed += b
        elif t.name == "output.weight":
            output += b
        else:
            other += b  # output_norm, rope factors, and layers past block_count (DeepSeek MTP)
    return Weights(tuple(layers), tuple(experts), embed, output, other, origin="gguf")


# Upper bounds on an architecture read from a file: the largest real models are far inside them
# (Llama 3.1 405B: 126 layers, hidden 16384; DeepSeek-V3: 256 experts; Gemma 3: 262k vocabulary).
# Without them a corrupt header (block_count = 2**40) would make the size tables allocate without end.
LIMITS = {"n_layers": 1024, "hidden_size": 262_144, "n_heads": 8192, "n_kv_heads": 8192, "head_dim": 65_536,
          "intermediate_size": 4_194_304, "vocab_size": 16_777_216, "n_experts": 16_384}


def check_sane(spec: ModelSpec, where: str) -> None:
    for k, hi in LIMITS.items():
        v = getattr(spec, k, None)
        if isinstance(v, int) and v > hi:
            raise InputError(f"{where}: {k} = {v} is beyond any real model (at most {hi:,}); "
                             "the file is corrupt or not a model header")


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
