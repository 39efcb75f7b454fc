"""Physical ranges of the performance constants, checked wherever values come from outside
(a calibration file, `gpuplan calibrate`'s output, an API caller's overrides): a negative
efficiency or fixed cost, or NaN, would give speeds above the memory's limit or below zero.

By name: efficiencies and shares (`*_eff`, `*_share`, `*_reach`) are in (0, 1]; fixed costs in
seconds (`*_s`, not `*_gb_s`) are 0 to 1 s; any other constant (factors, bytes, tokens, GB/s) is a finite number
above 0. RANGES names the exceptions, each with its reason."""

from __future__ import annotations

from ..errors import InputError

# name (a table or a scalar) -> (lo, hi, lo_open)
RANGES = {
    # a share of a *measured* bandwidth (Apple GPUs: the measured GPU bandwidth, below what a
    # decode's stream reaches), so it may exceed 1; the fit bounds it at 1.3 (bench/fitting.py)
    "stream_eff": (0.0, 1.5, True),
    "dequant_bytes_per_weight": (0.0, 16.0, False),  # extra bytes per weight: none is possible
    "overlap_gpu": (1.0, 100.0, False), "overlap_cpu": (1.0, 100.0, False),  # p of (a^p + b^p)^(1/p)
}
EFF_SUFFIXES = ("_eff", "_share", "_reach")
MAX_FIXED_S = 1.0  # a fixed cost of a second per token or layer is no engine's
MAX_FACTOR = 1e6


def range_of(name: str) -> tuple[float, float, bool]:
    if name in RANGES:
        return RANGES[name]
    if name.endswith(EFF_SUFFIXES):
        return 0.0, 1.0, True
    if name.endswith("_s") and not name.endswith("_gb_s"):  # core_bw_gb_s is a bandwidth
        return 0.0, MAX_FIXED_S, False
    return 0.0, MAX_FACTOR, True


def checked(name: str, value, key: str | None = None) -> float:
    """value as a float in the constant's range, or one InputError naming it (`stream_eff.cuda`)."""
    from ..inputs import finite

    lo, hi, lo_open = range_of(name)
    return finite(f"{name}.{key}" if key is not None else name, value, lo, hi, lo_open=lo_open)


def check_overrides(data: dict, known: dict) -> dict:
    """The overrides with every value checked: tables stay tables (of numbers by name), scalars
    numbers, `fitted_on` text. Unknown constants are the caller's to report."""
    out = {}
    for k, v in data.items():
        if k == "fitted_on":
            if not isinstance(v, str):
                raise InputError(f"fitted_on {str(v)[:40]!r} is not text", input="fitted_on", accepted="text")
            out[k] = v
        elif isinstance(known.get(k), dict):
            if not isinstance(v, dict):
                raise InputError(f"{k} {str(v)[:40]} is not a mapping; accepted: a mapping of names to "
                                 f"numbers, e.g. {k}: {{{next(iter(known[k]), 'name')}: ...}}", input=k,
                                 accepted="a mapping of names to numbers")
            out[k] = {str(t): checked(k, x, t) for t, x in v.items()}
        elif k in known:
            out[k] = checked(k, v)
        else:
            out[k] = v
    return out
