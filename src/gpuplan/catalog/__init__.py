"""The catalog: data files under this folder, validated by schema.py, loaded once.

Adding a GPU or a model means adding a YAML entry; no Python changes.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import TypeVar

from ..errors import InputError, suggest

HERE = Path(__file__).parent
T = TypeVar("T")


def _read_yaml(path: Path) -> list[dict]:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    with path.open() as f:
        data = yaml.load(f, Loader=loader) or []
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of entries")
    return data


def _load(kind, paths: list[Path]) -> dict[str, T]:
    from pydantic import ValidationError

    out: dict[str, T] = {}
    for path in paths:
        for raw in _read_yaml(path):
            try:
                entry = kind.model_validate(raw)
            except ValidationError as e:
                raise ValueError(f"catalog {path.name}: entry {raw.get('id', '?')}: {e}") from None
            if entry.id in out:
                raise ValueError(f"catalog {path.name}: duplicate id {entry.id}")
            out[entry.id] = entry
    return out


def _files(name: str) -> list[Path]:
    p = HERE / name
    return sorted(p.glob("*.yaml")) if p.is_dir() else [HERE / f"{name}.yaml"]


@cache
def devices() -> dict:
    from .schema import Device

    return _load(Device, _files("devices"))


@cache
def links() -> dict:
    from .schema import Link

    return _load(Link, _files("links"))


@cache
def host_memories() -> dict:
    from .schema import HostMemory

    return _load(HostMemory, _files("host_memory"))


@cache
def models() -> dict:
    """The package's models, then the user's own (`gpuplan models add`, catalog/user.py)."""
    from .schema import ModelSpec
    from .user import model_files

    out = _load(ModelSpec, _files("models"))
    for path in model_files():
        for entry in _load_user(ModelSpec, path):
            if entry.id in out:
                raise InputError(f"{path}: model {entry.id} is already in the catalog; remove it from this file")
            out[entry.id] = entry
    return out


def _load_user(kind, path: Path) -> list:
    """A user's catalog file: one clear error naming the file and entry, not a traceback."""
    from pydantic import ValidationError

    from ..errors import read_yaml_file

    data = read_yaml_file(path, "user catalog file")
    if not isinstance(data, list):
        raise InputError(f"user catalog file {path}: expected a list of model entries")
    out = []
    for raw in data:
        try:
            out.append(kind.model_validate(raw))
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err.get("loc", ())) or "entry"
            name = raw.get("id", "?") if isinstance(raw, dict) else "?"
            raise InputError(f"user catalog file {path}: entry {name}: {loc}: {err.get('msg')}") from None
    return out


def reload() -> None:
    """Forget what was loaded (after `gpuplan models add`, or a test pointing at another config dir)."""
    for f in (devices, links, host_memories, models, quants, builds, _alias_index):
        f.cache_clear()


@cache
def quants() -> dict:
    from .schema import Quant

    return _load(Quant, _files("quants"))


@cache
def builds() -> dict:
    from .schema import Build

    return _load(Build, _files("builds"))


@cache
def gpu_share_tables() -> dict:
    from .schema import GpuShareTable

    tables = _load(GpuShareTable, _files("gpu_share"))
    if sum(t.default for t in tables.values()) != 1:
        raise ValueError("catalog gpu_share.yaml: exactly one table must be the default")
    return tables


def gpu_share_for(memory_gib: float, table: str | None = None) -> float:
    """macOS's default GPU share of `memory_gib` of unified memory, from the named table
    (a macOS version id in gpu_share.yaml) or the default one."""
    tables = gpu_share_tables()
    if table is None:
        return next(t for t in tables.values() if t.default).share(memory_gib)
    if table not in tables:
        raise InputError(f"unknown macOS memory table '{table}'; accepted: " + ", ".join(tables))
    return tables[table].share(memory_gib)


@cache
def _alias_index(kind: str) -> dict[str, str]:
    table = {"device": devices, "model": models, "quant": quants}[kind]()
    idx: dict[str, str] = {}
    for entry in table.values():
        idx[entry.id.lower()] = entry.id
        for a in getattr(entry, "aliases", []):
            idx[a.lower()] = entry.id
    return idx


def _get(kind: str, table: dict, key: str, accepted: str):
    if key in table:
        return table[key]
    if kind in ("device", "model", "quant"):
        real = _alias_index(kind).get(key.strip().lower())
        if real:
            return table[real]
    raise InputError(f"unknown {kind} '{key}'{suggest(key, table)}; {accepted}", input=kind, value=key,
                     accepted=accepted.removeprefix("accepted: "))


def device(key: str):
    return _get("device", devices(), key, "see `gpuplan gpus` for the ids")


def link(key: str):
    return _get("link", links(), key, "accepted: " + ", ".join(links()))


def host_memory(key: str):
    return _get("host memory", host_memories(), key,
                "accepted ids look like ddr4-3200-2ch or ddr5-6000-2ch; see `gpuplan gpus --host`")


def model(key: str):
    return _get("model", models(), key, "give a catalog id (see `gpuplan models`), a .gguf file or a config.json")


def quant(key: str):
    return _get("quant", quants(), _quant_key(key), "accepted: " + ", ".join(quants()))


def _quant_key(key: str) -> str:
    """EXL2 comes at any bits per weight: `EXL2-4.5bpw` resolves to the EXL2 family entry."""
    k = key.strip()
    if k.upper().startswith("EXL2"):
        return "EXL2"
    return k
