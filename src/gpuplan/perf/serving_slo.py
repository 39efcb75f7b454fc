"""Latency targets (TTFT, TPOT, E2E at a percentile) as the CLI, the request models and the
planner read them: '2s', '100ms', '0.5'; --slo 'ttft=2s,tpot=100ms,p=90'."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from ..errors import InputError

_UNITS = {"ms": 1e-3, "s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0}


def parse_seconds(text: str | float | None, name: str) -> float | None:
    """'2s', '100ms', '0.5' (seconds) -> seconds; None stays None."""
    if text is None or text == "":
        return None
    if isinstance(text, (int, float)):
        v = float(text)
    else:
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|sec|m|min)?\s*", str(text).lower())
        if not m:
            raise InputError(f"--{name} '{text}' is not a duration; accepted: e.g. 2s, 100ms, 0.5")
        v = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if not (v > 0 and math.isfinite(v)):
        raise InputError(f"--{name} must be a positive duration, e.g. 2s or 100ms")
    return v


@dataclass(frozen=True)
class Slo:
    """Latency targets: `percentile` of requests must have TTFT, TPOT (and E2E) within them."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    e2el_s: float | None = None
    percentile: float = 90.0

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.ttft_s, self.tpot_s, self.e2el_s))


def parse_slo(text: str | None, ttft=None, tpot=None, e2el=None, percentile: float = 90.0) -> Slo:
    """--slo 'ttft=2s,tpot=100ms,p=99' and/or --ttft/--tpot/--e2el; the separate options win."""
    vals: dict = {}
    p = percentile
    for part in (text or "").replace(";", ",").split(","):
        if not part.strip():
            continue
        if "=" not in part:
            raise InputError(f"--slo part '{part}' is not key=value; accepted keys: ttft, tpot, e2el, p")
        k, v = (x.strip().lower() for x in part.split("=", 1))
        if k in ("p", "percentile"):
            try:
                p = float(v.lstrip("p"))
            except ValueError:
                raise InputError(f"--slo percentile '{v}' is not a number; accepted: 50 to 100") from None
        elif k in ("ttft", "tpot", "e2el", "e2e"):
            vals["e2el" if k == "e2e" else k] = parse_seconds(v, k)
        else:
            raise InputError(f"--slo key '{k}' is not accepted; accepted: ttft, tpot, e2el, p")
    for k, v in (("ttft", ttft), ("tpot", tpot), ("e2el", e2el)):
        if v is not None:
            vals[k] = parse_seconds(v, k)
    if not (50.0 <= p <= 100.0):
        raise InputError(f"SLO percentile {p:g} is out of range; accepted: 50 to 100")
    return Slo(vals.get("ttft"), vals.get("tpot"), vals.get("e2el"), p)
