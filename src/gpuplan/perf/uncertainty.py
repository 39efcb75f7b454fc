"""An honest error bar on every figure: the range measurements of the same class fell in.

`residuals.json` beside this file is package data written by scripts/accuracy_report.py from
out-of-family residuals (each published row predicted with constants fitted without its device
family): per class (kernel family x device segment x engine x split x metric) the factor within
which 80% of those predictions fell (the 80th percentile of |log(measured / predicted)|, as a
low and a high multiplier) and how many rows it rests on. An estimate's range is its value times
those two factors. A class with few rows widens to its backend's range; a class
with none says so and gets the widest range observed. Loaded once; no I/O per estimate.
"""

from __future__ import annotations

import json
from dataclasses import replace
from functools import lru_cache
from pathlib import Path

from ..types import Engine, Estimate

TABLE = Path(__file__).with_name("residuals.json")
MIN_ROWS = 8  # below this a class's own percentiles are too noisy alone


@lru_cache(maxsize=1)
def table() -> dict:
    if not TABLE.is_file():
        return {"classes": {}, "backend": {}, "metric": {}, "widest": None}
    return json.loads(TABLE.read_text())


def engine_name(engine: Engine) -> str:
    return {Engine.OLLAMA: "llama.cpp", Engine.TGI: "vllm"}.get(engine, engine.value)


def class_of(x, metric: str) -> tuple[str, str, str, str, str]:
    """(kernel family, device segment, engine, split, metric) of an estimate."""
    dev = x.lead if x.lead is not None else x.cpu
    return (x.family(x.lead), dev.segment if dev is not None else "desktop-cpu", engine_name(x.plan.engine),
            x.plan.split.value, metric)


def key(cls) -> str:
    return "|".join(cls)


def lookup(cls: tuple[str, ...]) -> tuple[float, float, int, str]:
    """(low factor, high factor, rows behind it, which class answered)."""
    t = table()
    widest = t.get("widest")
    own = t["classes"].get(key(cls))
    parent = t["backend"].get(f"{cls[0]}|{cls[4]}") or t["metric"].get(cls[4])
    if own and own["n"] >= MIN_ROWS:
        return own["lo"], own["hi"], own["n"], key(cls)
    if own and parent:
        return (min(own["lo"], parent["lo"]), max(own["hi"], parent["hi"]), own["n"],
                f"{key(cls)} ({own['n']} rows, widened to {cls[0]} {cls[4]} rows)")
    if widest:
        return widest["lo"], widest["hi"], 0, f"no measurements of class {key(cls)}: widest range observed"
    return 0.5, 2.0, 0, f"no measurements of class {key(cls)} and no residual table: 0.5x-2x"


def attach(e: Estimate, x) -> Estimate:
    lo, hi, n, which = lookup(class_of(x, e.metric.value))
    return replace(e, range=(e.value * lo, e.value * hi), range_n=n, range_class=which)
