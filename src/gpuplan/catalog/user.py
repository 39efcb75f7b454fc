"""The user's own catalog entries: models added with `gpuplan models add`, kept as YAML under
$GPUPLAN_CONFIG_DIR or $XDG_CONFIG_HOME/gpuplan (default ~/.config/gpuplan), in models/.

Entries are plain ModelSpec YAML, the same schema as the package's catalog/models/*.yaml, so
a user entry can be copied into the package catalog unchanged.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError

ENV_DIR = "GPUPLAN_CONFIG_DIR"  # tests and containers point this at a directory of their own


def config_dir() -> Path:
    if os.environ.get(ENV_DIR):
        return Path(os.environ[ENV_DIR]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base).expanduser() / "gpuplan"


def models_dir() -> Path:
    return config_dir() / "models"


def model_files() -> list[Path]:
    d = models_dir()
    return sorted(d.glob("*.yaml")) if d.is_dir() else []


def entry_yaml(spec) -> str:
    """A ModelSpec as a catalog entry: fields in schema order, defaults left out, lists on one line."""
    import yaml

    data = spec.model_dump(exclude_defaults=True)
    order = list(type(spec).model_fields)
    data = {k: data[k] for k in order if k in data}

    class Dumper(yaml.SafeDumper):
        pass

    def flow_list(d, v):
        return d.represent_sequence("tag:yaml.org,2002:seq", v, flow_style=True)

    Dumper.add_representer(list, flow_list)
    body = yaml.dump(data, Dumper=Dumper, sort_keys=False, width=110, allow_unicode=True, default_flow_style=False)
    lines = body.rstrip("\n").splitlines()
    return "\n".join(["- " + lines[0]] + ["  " + ln for ln in lines[1:]]) + "\n"


def file_name(model_id: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "--", model_id).strip("-.")[:150] + ".yaml"


def write_entry(spec, overwrite: bool = False) -> Path:
    """Write one model entry to the user's catalog; refuse to shadow an existing id silently."""
    d = models_dir()
    p = d / file_name(spec.id)
    if p.exists() and not overwrite:
        raise InputError(f"{p} already exists; pass --force to replace the entry for {spec.id}")
    try:
        d.mkdir(parents=True, exist_ok=True)
        p.write_text(entry_yaml(spec), encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write the catalog entry {p}: {e.strerror or e}") from None
    return p
