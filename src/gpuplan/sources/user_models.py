"""A catalog entry from a user's own file (`gpuplan models add`): the architecture from its
config.json or GGUF header, read by the same readers as every other command, filed under an id
the user can type later."""

from __future__ import annotations

import re
from pathlib import Path

from ..catalog.schema import ModelSpec
from ..errors import InputError

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def _default_id(p: Path, cfg: dict | None) -> str:
    """The repository id a config names for itself (_name_or_path), else the directory's name."""
    named = cfg.get("_name_or_path") if cfg else None
    if isinstance(named, str) and _ID.match(named.strip()):
        return named.strip()
    return (p.parent.name if p.name == "config.json" else p.stem) or "model"


def spec_for_catalog(path: str, model_id: str | None = None) -> ModelSpec:
    from .gguf_file import read_gguf
    from .hf_config import _config_path, _load, spec_from_config

    p = Path(path).expanduser()
    if p.suffix.lower() == ".gguf" or (p.is_file() and p.suffix.lower() != ".json"):
        spec = read_gguf(p).spec
        mid = model_id or p.stem
        spec = spec.model_copy(update={"id": mid, "name": spec.name or mid, "source": str(p.resolve())})
    else:
        cp = _config_path(p)
        cfg = _load(cp)
        mid = model_id or _default_id(cp, cfg)
        spec = spec_from_config(cfg, str(cp), mid, str(cp.resolve()))
    if not _ID.match(spec.id) or len(spec.id) > 200:
        raise InputError(f"model id '{spec.id}' is not usable; give --id like org/name (letters, digits, . _ -)")
    return ModelSpec.model_validate(spec.model_dump())
