"""Read an uploaded model header (a prefix of a GGUF file, or a config.json) into a LoadedModel.

Uploads are written to a temporary file only for as long as the parser needs them, then deleted.
A GGUF prefix is enough: the header, metadata and tensor-info table give every tensor's type and
shape, hence its size; the tensor data that follows is never needed, so the reader below hands
out empty (stride-0) views instead of slicing past the end of the prefix.
"""

from __future__ import annotations

import json
import os
import struct
import tempfile
from pathlib import Path

from ..errors import InputError

# Upper bounds on an uploaded architecture: the largest real models are far inside them (Llama 3.1
# 405B: 126 layers, hidden 16384; DeepSeek-V3: 256 experts; Gemma 3: 262k vocabulary). Without them a
# corrupt or hostile header (block_count = 2**40) would make the size tables allocate without end.
LIMITS = {"n_layers": 1024, "hidden_size": 262_144, "n_heads": 8192, "n_kv_heads": 8192, "head_dim": 65_536,
          "intermediate_size": 4_194_304, "vocab_size": 16_777_216, "n_experts": 16_384}
# fields that identify an architecture well enough to match an upload to a catalog entry
SIGNATURE = ("architecture", "n_layers", "hidden_size", "n_heads", "n_kv_heads", "vocab_size", "n_experts")


def _prefix_reader(path: Path):
    import numpy as np

    from ..sources.gguf_file import _reader_class

    class PrefixReader(_reader_class()):
        def _build_tensors(self, start_offs, fields):
            self._tensor_start = start_offs
            super()._build_tensors(start_offs, fields)

        def _get(self, offset, dtype, count=1, override_order=None):
            start = getattr(self, "_tensor_start", None)
            if start is not None and offset >= start:  # tensor data: not uploaded, not needed
                return np.broadcast_to(np.zeros(1, dtype=dtype), (int(count),))
            if offset + np.dtype(dtype).itemsize * int(count) > len(self.data):
                raise IndexError("header runs past the end of the upload")
            return super()._get(offset, dtype, count, override_order)

    return PrefixReader(path)


def _check_sane(spec, filename: str) -> None:
    for k, hi in LIMITS.items():
        v = getattr(spec, k, None)
        if isinstance(v, int) and v > hi:
            raise InputError(f"upload '{filename}': {k} = {v} is beyond any real model (at most {hi:,}); "
                             "the file is corrupt or not a model header")


def _gguf(data: bytes, filename: str):
    from pydantic import ValidationError

    from .. import catalog
    from ..sources.gguf_file import _quant_id, _spec, _weights
    from ..types import LoadedModel

    if len(data) < 8 or data[:4] != b"GGUF":
        raise InputError(f"upload '{filename}': not a GGUF file (no GGUF magic at the start)")
    version = struct.unpack("<I", data[4:8])[0]
    if version not in (2, 3):
        raise InputError(f"upload '{filename}': GGUF version {version} is not supported; accepted: 2 and 3")
    fd, tmp = tempfile.mkstemp(suffix=".gguf")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        try:
            r = _prefix_reader(Path(tmp))
        except (ValueError, IndexError, OverflowError, MemoryError, KeyError, struct.error,
                UnicodeDecodeError) as e:
            raise InputError(f"upload '{filename}': GGUF header is incomplete or corrupt ({e}); "
                             "send more of the file (the header and tensor table, usually the first few MB)") from None
        if not r.tensors:
            raise InputError(f"upload '{filename}': GGUF file lists no tensors")
        name = Path(filename).name or "upload.gguf"
        try:
            spec = _spec(r, Path(name))
            spec = spec.model_copy(update={"source": f"upload:{name}"})
            _check_sane(spec, filename)
            model = LoadedModel(spec=spec, quant=catalog.quant(_quant_id(r)), weights=_weights(r, spec.n_layers),
                                label=name)
        except (ValidationError, ValueError, TypeError, ArithmeticError, IndexError) as e:
            # corrupt metadata (zero heads, negative sizes, wrong value types) fails ModelSpec's checks
            first = str(e).splitlines()
            detail = "; ".join(first[:3]) if first else type(e).__name__
            raise InputError(f"upload '{filename}': GGUF metadata is not a usable model description ({detail})") from None
        del r
        return model
    finally:
        os.unlink(tmp)


def _config(data: bytes, filename: str, quant: str | None):
    from pydantic import ValidationError

    from ..perf.weights import estimate_weights
    from ..sources.hf_config import native_quant, read_config
    from ..sources.resolve import parse_quant
    from ..types import LoadedModel

    try:
        cfg = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
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
    return [m.id for m in catalog.models().values() if tuple(getattr(m, k) for k in SIGNATURE) == want]


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
