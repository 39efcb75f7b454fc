"""Shared bits of the command layer: options into a typed request, a result out as JSON."""

from __future__ import annotations

import sys

GB = 1e9


def gb(x: float) -> float:
    return round(x / GB, 2)


def request(cls, **options):
    """The typed request from the options the user gave (None: not given, the model's default
    applies and the answer says it assumed it)."""
    return cls.parse("cli", **{k: v for k, v in options.items() if v is not None and v != ()})


def dump(result) -> None:
    """A result model as the --json output."""
    sys.stdout.write(result.model_dump_json(indent=2) + "\n")
