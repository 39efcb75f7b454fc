"""Read an uploaded model header (a prefix of a GGUF file, or a config.json) into a LoadedModel.

Uploads are written to a temporary file only for as long as the parser needs them, then deleted.
A GGUF prefix is enough: the header, metadata and tensor-info table give every tensor's type and
shape, hence its size; the tensor data that follows is never needed, so the reader below hands
out empty (stride-0) views instead of slicing past the end of the prefix.
"""

from __future__ import annotations

import tempfile
from dataclasses import replace
from pathlib import Path

from ..errors import InputError

# fields that identify an architecture well enough to match an upload to a catalog entry
SIGNATURE = ("architecture", "n_layers", "hidden_size", "n_heads", "n_kv_heads", "vocab_size", "n_experts")


def _check_sane(spec, filename: str) -> None:
    from ..sources.gguf_file import check_sane

    check_sane(spec, f"upload '{filename}'")


def _gguf(data: bytes, filename: str):
    """Only the header and tensor table are needed: sizes come from tensor types and shapes."""
    from ..sources.gguf_file import model_from_header
    from ..sources.gguf_header import read_gguf_header

    where = f"upload '{filename}'"
    name = Path(filename).name or "upload.gguf"
    try:
        h = read_gguf_header(data, require_data=False, name=where)
    except InputError as e:
        if "truncated" in str(e):
            raise InputError(f"{e}; send more of the file (the header and tensor table, usually the first"
                             " few MB)") from None
        raise
    model = model_from_header(h, Path(name), label=name, where=where)
    spec = model.spec.model_copy(update={"source": f"upload:{name}"})
    return replace(model, spec=spec)


def _config(data: bytes, filename: str, quant: str | None):
    from pydantic import ValidationError

    from ..perf.weights import estimate_weights
    from ..sources.hf_config import native_quant, read_config
    from ..sources.resolve import parse_quant
    from ..types import LoadedModel

    from ..inputs import load_json

    try:
        cfg = load_json(data.decode("utf-8"), f"upload '{filename}'")
    except UnicodeDecodeError:
        raise InputError(f"upload '{filename}': neither a GGUF file nor a JSON config.json") from None
    except InputError as e:
        if "nested" in str(e):
            raise
        raise InputError(f"upload '{filename}': neither a GGUF file nor a JSON config.json") from None
    if not isinstance(cfg, dict):
        raise InputError(f"upload '{filename}': not a config.json (expected a JSON object)")
    name = str(cfg.get("_name_or_path") or Path(filename).stem or "config")[:200]
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "config.json"
        p.write_bytes(data)
        try:
            spec = read_config(p)
        except InputError as e:  # the message names the temp path; name the upload instead
            raise InputError(str(e).replace(str(p), f"upload '{filename}'")) from None
        except (ValidationError, ValueError, TypeError, ArithmeticError, AttributeError) as e:
            lines = str(e).replace(str(p), "config.json").splitlines()
            raise InputError(f"upload '{filename}': config.json values are not a usable model description "
                             f"({'; '.join(lines[:3]) or type(e).__name__})") from None
    spec = spec.model_copy(update={"id": name, "name": name, "source": f"upload:{Path(filename).name}"})
    _check_sane(spec, filename)
    if quant:
        q, bpw = parse_quant(quant)
    else:
        q, bpw = native_quant(spec), None
    return LoadedModel(spec, q, estimate_weights(spec, q, bpw), label=name, bits_per_weight_override=bpw)


def load_upload(data: bytes, filename: str, quant: str | None = None):
    """A LoadedModel from uploaded bytes: GGUF (a prefix will do) or config.json."""
    if data[:4] == b"GGUF":
        m = _gguf(data, filename)
        if quant:
            from ..sources.resolve import parse_quant

            if parse_quant(quant)[0].id != m.quant.id:
                raise InputError(f"quant {quant}: the GGUF file is already quantized as {m.quant.id}; "
                                 f"leave quant out or give {m.quant.id}")
        return m
    if filename.lower().endswith(".gguf"):
        raise InputError(f"upload '{filename}': not a GGUF file (no GGUF magic at the start)")
    return _config(data, filename, quant)


def catalog_matches(spec) -> list[str]:
    """Catalog ids with the same architecture signature as an uploaded model."""
    from .. import catalog

    want = tuple(getattr(spec, k) for k in SIGNATURE)
    found = [m for m in catalog.models().values() if tuple(getattr(m, k) for k in SIGNATURE) == want]
    # models sharing one architecture (a base and its distills) are told apart by their other
    # fields (context length, dtype, ...): the closest first, catalog order among equals
    fields = [f for f in type(spec).model_fields if f not in ("id", "name", "source", "aliases", "note")]
    return [m.id for m in sorted(found, key=lambda m: -sum(getattr(m, f) == getattr(spec, f) for f in fields))]


def describe(model) -> dict:
    """JSON for the page: architecture, sizes, and catalog ids that match."""
    s, w = model.spec, model.weights
    matches = catalog_matches(s)
    return {
        "name": s.name, "architecture": s.architecture, "quant": model.quant.id,
        "catalog_id": matches[0] if matches else None, "catalog_matches": matches,
        "weights_gb": round(w.total_bytes / 1e9, 3), "weights_origin": w.origin,
        "spec": s.model_dump(exclude={"source"}),
    }
