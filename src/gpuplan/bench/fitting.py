"""Fitting the performance model's constants to measurements (used by scripts/fit_constants.py
for the shipped defaults and by `gpuplan calibrate` for a user's own data).

Loss: mean over rows of min(|log(predicted / measured)|, CLIP): robust to the few published
rows that are wrong or measure something else (swapping Macs, risers), so they cannot pull
the constants. Constants move in log space within physical bounds.
"""

from __future__ import annotations

import math
from dataclasses import asdict

from ..perf.constants import Constants

CLIP = 0.7

# (dotted path, lower, upper): every constant the fit may move
ALL_PARAMS = [
    # GDDR5 and HBM2e are left at their priors: the dev set has them only in rows whose error
    # comes from elsewhere (Pascal flash attention at 32K context, TensorRT-LLM per-GPU tables)
    # kin share a value ('|'): GDDR7 with GDDR6X, all LPDDR generations together
    ("mem_eff.GDDR6", 0.4, 1.0), ("mem_eff.GDDR6X|GDDR7", 0.4, 1.0),
    ("mem_eff.LPDDR5|LPDDR4X|LPDDR5X", 0.4, 1.0), ("mem_eff.DDR5|DDR4", 0.3, 1.0),
    ("multi_die_mem_eff", 0.4, 1.0),
    ("token_fixed_s.cuda", 1e-5, 3e-3), ("token_fixed_s.metal", 1e-5, 5e-3),
    ("layer_fixed_s.cuda", 1e-6, 3e-4), ("layer_fixed_s.metal", 1e-6, 5e-4),
    ("hop_sync_s", 1e-6, 1e-3), ("row_sync_s", 1e-6, 2e-4), ("row_peer_s", 1e-6, 2e-4),
    ("kv_read_eff", 0.1, 1.0), ("attn_eff", 0.05, 1.0), ("int8_share", 0.1, 1.0),
    ("prefill_eff.llama.cpp/cuda", 0.1, 1.0), ("prefill_eff.llama.cpp/metal", 0.1, 1.0),
    ("prefill_eff.exllamav2/cuda", 0.1, 1.0), ("dequant_bytes_per_weight", 0.0, 6.0),
    # 2025 prompt speed is carried by int8_share alone (the 2025 rows are all int8 MMQ runs)
    ("era_fixed.2023-01", 0.3, 3.0), ("era_fixed.2025-01", 0.1, 3.0),
    ("era_prefill.2023-01", 0.4, 1.5),
]
# The few a user's own measurements can pin down: engine and memory efficiencies.
USER_PARAMS = ["mem_eff.GDDR6", "mem_eff.GDDR6X", "mem_eff.GDDR7", "mem_eff.HBM3", "mem_eff.HBM2e",
               "mem_eff.HBM3e", "mem_eff.LPDDR5|LPDDR4X|LPDDR5X", "mem_eff.DDR5|DDR4", "token_fixed_s.cuda", "token_fixed_s.metal",
               "token_fixed_s.cpu", "prefill_eff.llama.cpp/cuda", "prefill_eff.llama.cpp/metal",
               "prefill_eff.llama.cpp/cpu", "prefill_eff.vllm/cuda", "engine_eff.vllm/cuda",
               "engine_eff.llama.cpp/cpu"]
BOUNDS = {p: (lo, hi) for p, lo, hi in ALL_PARAMS}


def get(c: Constants, path: str) -> float:
    head, _, tail = path.partition(".")
    v = getattr(c, head)
    return v[tail] if tail else v


def overrides(c: Constants, values: dict[str, float]) -> dict:
    out: dict = {}
    base = asdict(c)
    for path, v in values.items():
        head, _, tail = path.partition(".")
        if tail:
            for key in tail.split("|"):
                out.setdefault(head, dict(base[head]))[key] = v
        else:
            out[head] = v
    return out


def loss(rows, c: Constants, clip: float = CLIP) -> tuple[float, int]:
    from ..perf.predict import predict_row
    from ..errors import InputError

    total, n = 0.0, 0
    for m in rows:
        try:
            p = predict_row(m, c)
        except (InputError, ValueError, KeyError, ZeroDivisionError):
            continue
        if p and p > 0 and m.tok_s > 0:
            total += min(abs(math.log(p / m.tok_s)), clip)
            n += 1
    return (total / n if n else float("inf")), n


def _predictions(rows, c: Constants) -> list[float | None]:
    from ..errors import InputError
    from ..perf.predict import predict_row

    out = []
    for m in rows:
        try:
            out.append(predict_row(m, c))
        except (InputError, ValueError, KeyError, ZeroDivisionError):
            out.append(None)
    return out


def relevant(rows, params: list[str], base: Constants) -> list[str]:
    """Only constants that move some row's prediction are fitted. Judged on the predictions, not
    on the clipped loss: a row predicted 4x off (a loaded machine, a slow CPU) is clipped, and a
    constant that does move it would look irrelevant."""
    keep = []
    p0 = _predictions(rows, base)
    for p in params:
        v = _value(base, p)
        lo, hi = BOUNDS.get(p, (v * 0.25, v * 4))
        moved = base.with_overrides(overrides(base, {p: min(max(v * 1.3, lo), hi)}))
        p1 = _predictions(rows, moved)
        if any(a and b and abs(b / a - 1) > 1e-6 for a, b in zip(p0, p1)):
            keep.append(p)
    return keep


def _value(c: Constants, path: str) -> float:
    head, _, tail = path.partition(".")
    v = getattr(c, head)
    if tail:
        return v.get(tail.split("|")[0], 0.8)
    return v


def fit(rows, params: list[str], base: Constants, maxiter: int = 2000,
        clip: float = CLIP) -> tuple[Constants, float, float]:
    """Minimise the robust loss over `params`; returns (constants, loss before, loss after)."""
    import numpy as np
    from scipy.optimize import minimize

    x0 = np.array([math.log(max(_value(base, p), 1e-12)) for p in params])
    lo = np.array([math.log(max(BOUNDS.get(p, (_value(base, p) / 4, 0))[0], 1e-12)) for p in params])
    hi = np.array([math.log(BOUNDS.get(p, (0, _value(base, p) * 4))[1]) for p in params])

    def build(x):
        vals = {p: float(math.exp(min(max(v, a), b))) for p, v, a, b in zip(params, x, lo, hi)}
        return base.with_overrides(overrides(base, vals))

    def f(x):
        return loss(rows, build(x), clip)[0]

    before = f(x0)
    res = minimize(f, x0, method="Powell", bounds=list(zip(lo, hi)),
                   options={"maxfev": maxiter, "xtol": 1e-3, "ftol": 1e-5})
    best = build(res.x)
    return best, before, f(res.x)


def fitted_values(c: Constants, params: list[str]) -> dict:
    """The fitted constants as a calibration file's `constants` mapping (kin written out)."""
    out: dict = {}
    for p in params:
        head, _, tail = p.partition(".")
        v = round(_value(c, p), 8)
        if tail:
            for key in tail.split("|"):
                out.setdefault(head, {})[key] = v
        else:
            out[head] = v
    return out
