"""Turn what the user typed (a catalog id or alias, a .gguf file, a config.json or its directory)
and an optional --quant into a LoadedModel."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from .. import catalog
from ..catalog.schema import Quant
from ..errors import InputError
from ..inputs import check_name
from ..perf.weights import estimate_weights
from ..types import LoadedModel
from .gguf_file import read_gguf
from .hf_config import native_quant, read_config, safetensors_weights

_EXL2 = re.compile(r"^exl2(?:[-_ ]?(\d+(?:\.\d+)?)\s*(?:bpw|b)?)?$", re.IGNORECASE)
EXL2_BPW_RANGE = (2.0, 8.0)  # what ExLlamaV2's converter accepts


def parse_quant(text: str) -> tuple[Quant, float | None]:
    """A quant id or alias; EXL2 with its bits per weight (EXL2-4.5bpw -> (EXL2, 4.5))."""
    m = _EXL2.match(text.strip())
    if m:
        bpw = float(m.group(1)) if m.group(1) else None
        lo, hi = EXL2_BPW_RANGE
        if bpw is not None and not lo <= bpw <= hi:
            raise InputError(f"quant '{text}': EXL2 bits per weight must be {lo:g} to {hi:g}, e.g. EXL2-4.5bpw")
        return catalog.quant("EXL2"), bpw
    return catalog.quant(text), None


def _looks_like_path(text: str, p: Path) -> bool:
    return text.lower().endswith((".gguf", ".json")) or p.exists() or text.startswith((".", "/", "~"))


def resolve_model(text: str, quant: str | None = None, allow_paths: bool = True) -> LoadedModel:
    """allow_paths=False: catalog ids only, the file system is never touched (for text that
    comes from a client, e.g. the model column of an uploaded measurement file)."""
    t = check_name("model", text.strip(), 1000)
    if not allow_paths:
        if t.lower().endswith((".gguf", ".json")) or t.startswith(("/", ".", "~", "\\")) or "\\" in t:
            raise InputError(f"model '{t[:200]}': only catalog ids are accepted here, not file paths")
        return _from_catalog(t, quant or DEFAULT_QUANT)
    p = Path(t).expanduser()
    if _looks_like_path(t, p):
        if t.lower().endswith(".gguf") or (p.is_file() and not t.lower().endswith(".json")):
            m = read_gguf(p)
            if quant is not None and parse_quant(quant)[0].id != m.quant.id:
                raise InputError(f"--quant {quant}: {p} is already quantized as {m.quant.id}; "
                                 f"leave --quant out or give {m.quant.id}")
            return m
        if p.is_dir() and not (p / "config.json").is_file():
            raise InputError(f"{p}: directory has no config.json; give a .gguf file or a model directory")
        spec = read_config(p)
        if quant is None:  # the checkpoint as stored: exact from the safetensors index when present
            q = native_quant(spec)
            w = safetensors_weights(p, spec) or estimate_weights(spec, q)
            return LoadedModel(spec, q, w, label=text)
        q, bpw = parse_quant(quant)
        return LoadedModel(spec, q, estimate_weights(spec, q, bpw), label=text, bits_per_weight_override=bpw)
    if quant is None:  # the format the model ships in (BF16, FP8 for DeepSeek-V3, MXFP4 for gpt-oss, ...)
        quant = native_quant(catalog.model(t)).id
    return _from_catalog(t, quant)


@lru_cache(maxsize=256)
def _from_catalog(model_id: str, quant: str) -> LoadedModel:
    """Catalog models are pure data: estimate their weights once per (model, quant). The label is
    what the user typed (an Instruct variant keeps its name in launch commands)."""
    spec = catalog.model(model_id)
    q, bpw = parse_quant(quant)
    return LoadedModel(spec, q, estimate_weights(spec, q, bpw), label=model_id, bits_per_weight_override=bpw)
