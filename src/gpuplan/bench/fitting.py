"""Fitting the performance model's constants to measurements (used by scripts/fit_constants.py
for the shipped defaults and by `gpuplan calibrate` for a user's own data).

Loss: weighted mean over rows of min(|log(predicted / measured)|, CLIP): robust to the few
published rows that are wrong or measure something else (swapping Macs, risers), so they cannot
pull the constants. Each row weighs 1/sqrt(rows of its device), so a device with a hundred
rows counts ten times one with a single row, not a hundred times: the constants describe
devices, not the largest table. Constants move in log space within physical bounds. Only single-stream rows
(decode, prefill) are fitted here; serving throughput has its own simulator and constants.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict

from ..perf.constants import Constants

CLIP = 0.7
METRICS = ("decode", "prefill")

# (dotted path, lower, upper): every constant the fit may move. Kin share a value ('|').
ALL_PARAMS = [
    # weight streams: share of the reachable bandwidth per kernel family
    ("stream_eff.cuda", 0.4, 1.0), ("stream_eff.metal", 0.4, 1.3), ("stream_eff.mlx", 0.4, 1.3),
    ("stream_eff.cpu", 0.3, 1.0), ("stream_eff.rocm", 0.2, 1.0), ("stream_eff.vulkan", 0.2, 1.0),
    ("stream_eff.opencl", 0.1, 1.0), ("stream_eff.lmdeploy", 0.4, 1.0), ("stream_eff.sycl", 0.2, 1.0),
    ("stream_eff.exllamav2", 0.4, 1.0), ("stream_eff.vllm|sglang", 0.4, 1.0),
    # dequant + dot products: legacy-block weights per unit-cycle, and the format families' cost
    ("dot_weights_per_lane_cycle.cuda", 0.01, 4.0), ("dot_weights_per_lane_cycle.metal", 0.01, 4.0),
    ("dot_weights_per_lane_cycle.rocm", 0.01, 4.0), ("dot_weights_per_lane_cycle.cpu", 0.02, 4.0),
    ("dot_weights_per_lane_cycle.mlx", 0.01, 4.0), ("dot_weights_per_lane_cycle.sycl", 0.01, 4.0),
    ("dot_weights_per_lane_cycle.vulkan", 0.01, 4.0),
    ("dot_cost.float", 1.0, 4.0), ("dot_cost.kquant", 0.3, 1.0), ("dot_cost.iq", 0.5, 5.0),
    ("dot_cost.iq4", 0.5, 3.0),
    ("overlap_gpu", 1.5, 12.0), ("overlap_cpu", 1.0, 8.0),
    # fixed costs
    ("layer_fixed_s.cuda", 1e-6, 3e-4), ("graph_layer_share", 0.05, 1.0),
    ("layer_fixed_s.metal", 1e-6, 5e-4), ("layer_fixed_s.rocm", 1e-6, 5e-4),
    ("layer_fixed_s.mlx", 1e-6, 5e-4), ("layer_fixed_s.cpu", 1e-7, 2e-4), ("layer_fixed_s.sycl", 1e-6, 5e-4),
    ("token_fixed_s.cuda", 1e-5, 3e-3), ("token_fixed_s.metal", 1e-5, 5e-3),
    ("token_fixed_s.cpu", 1e-5, 3e-3), ("moe_layer_fixed_factor", 1.0, 6.0),
    # CPUs
    ("core_bw_gb_s.desktop-cpu", 5.0, 80.0), ("cpu_gemm_eff", 0.1, 1.0), ("cpu_batch_gain", 0.5, 4.0),
    # Apple
    ("multi_die_mem_eff", 0.4, 1.0), ("apple_gpu_reach", 0.4, 1.0),
    # links
    ("hop_sync_s", 1e-6, 1e-3), ("row_sync_s", 1e-6, 2e-4), ("row_peer_s", 1e-6, 2e-4),
    # prompts
    ("kv_read_eff", 0.1, 1.0), ("int8_share", 0.1, 1.0),
    ("prefill_eff.cuda", 0.1, 1.0), ("prefill_eff.metal", 0.1, 1.0), ("prefill_eff.mlx", 0.1, 1.0),
    # a kernel family reaching under a tenth of its matmul peak on large GEMMs would be broken, not slow
    ("prefill_eff.rocm", 0.1, 1.0), ("prefill_eff.vulkan", 0.1, 1.0), ("prefill_eff.opencl", 0.05, 1.0),
    ("prefill_eff.exllamav2", 0.1, 1.0), ("prefill_eff.sycl", 0.1, 1.0),
    ("attn_eff.cuda", 0.05, 1.0), ("attn_eff.metal", 0.05, 1.0), ("attn_eff.mlx", 0.05, 1.0),
    ("moe_tile_tokens", 1.0, 128.0), ("expert_launch_s", 1e-6, 3e-5), ("dequant_bytes_per_weight", 0.0, 6.0), ("era_prefill.2023-01", 0.4, 1.5),
]
# The few a user's own measurements can pin down: stream, dot and fixed costs of their backend.
USER_PARAMS = ["stream_eff.cuda", "stream_eff.metal", "stream_eff.mlx", "stream_eff.cpu", "stream_eff.rocm",
               "stream_eff.vulkan", "stream_eff.vllm|sglang", "dot_weights_per_lane_cycle.cuda",
               "dot_weights_per_lane_cycle.cpu", "token_fixed_s.cuda", "token_fixed_s.metal", "token_fixed_s.cpu",
               "prefill_eff.cuda", "prefill_eff.metal", "prefill_eff.rocm", "prefill_eff.vllm|sglang",
               "cpu_gemm_eff", "core_bw_gb_s.desktop-cpu"]
BOUNDS = {p: (lo, hi) for p, lo, hi in ALL_PARAMS}


def get(c: Constants, path: str) -> float:
    head, _, tail = path.partition(".")
    return c.of(head, tail.split("|")[0], 0.8) if tail else getattr(c, head)


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


class Rows:
    """Rows with their setups resolved once (a fit evaluates the same rows thousands of times)."""

    def __init__(self, rows, metrics=METRICS):
        from ..errors import InputError
        from ..perf.predict import row_setup

        self.items = []
        for m in rows:
            if m is None or m.metric.value not in metrics or not m.tok_s > 0:
                continue
            if m.metric.is_latency:  # ms, lower is better, mostly queueing: never fitted, whatever `metrics` says
                continue
            try:
                self.items.append((m, row_setup(m)))
            except (InputError, ValueError, KeyError, ZeroDivisionError):
                continue

    def __len__(self):
        return len(self.items)

    def weights(self) -> dict[int, float]:
        key = tuple(id(m) for m, _ in self.items)
        if getattr(self, "_w_key", None) != key:  # computed once per set of rows
            n = Counter(_device(m) for m, _ in self.items)
            self._w, self._w_key = {id(m): 1.0 / math.sqrt(n[_device(m)]) for m, _ in self.items}, key
        return self._w

    def predictions(self, c: Constants):
        from ..errors import InputError
        from ..perf.predict import predict_row

        for m, setup in self.items:
            try:
                p = predict_row(m, c, setup=setup)
            except (InputError, ValueError, KeyError, ZeroDivisionError):
                continue
            if p and p > 0 and math.isfinite(p):
                yield m, p


def _rows(rows) -> Rows:
    return rows if isinstance(rows, Rows) else Rows(rows)


def loss(rows, c: Constants, clip: float = CLIP) -> tuple[float, int]:
    rows = _rows(rows)
    w = rows.weights()
    total, wsum, n = 0.0, 0.0, 0
    for m, p in rows.predictions(c):
        total += w[id(m)] * min(abs(math.log(p / m.tok_s)), clip)
        wsum += w[id(m)]
        n += 1
    return (total / wsum if wsum else float("inf")), n


def _predictions(rows: Rows, c: Constants) -> dict[int, float]:
    return {id(m): p for m, p in rows.predictions(c)}


def _device(m) -> str:
    """The device a row measured: its GPU id, or for a CPU-only row the CPU it names."""
    if (m.gpu or "").lower() != "cpu":
        return m.gpu
    from ..perf.predict import cpu_from_note

    return cpu_from_note(getattr(m, "cpu_model", "") or "") or cpu_from_note(m.note) or "cpu"


# Properties of a weight format, of MoE prompts in llama.cpp, or of CPUs as a class: the published
# sets have one CPU (a Ryzen 9 7950X at 1-16 threads, several formats) and one GPU MoE prompt set
# (DeepSeek-V3 on 8x MI300X at 16-4096 tokens), so these need rows, not devices.
FORMAT_OR_CPU = ("dot_cost.", "core_bw_gb_s.", "cpu_gemm_eff", "cpu_batch_gain", "overlap_cpu",
                 "moe_tile_tokens", "expert_launch_s", "stream_eff.cpu", "dot_weights_per_lane_cycle.cpu",
                 "layer_fixed_s.cpu", "token_fixed_s.cpu", "attn_eff.cpu")
MIN_ROWS = 8
MAX_DEVICE_SHARE = 0.8  # no device may hold more than this share of the rows a backend constant moves


def relevant(rows, params: list[str], base: Constants, min_devices: int = 2) -> list[str]:
    """The constants worth fitting: those that move the prediction of rows from at least
    `min_devices` different devices, none of which holds more than MAX_DEVICE_SHARE of those rows.
    A backend's constant that one device's rows decide would be a per-device constant in disguise;
    it keeps its prior (or its kin's value). Format and CPU constants need MIN_ROWS rows instead."""
    rows = _rows(rows)
    by_id = {id(m): m for m, _ in rows.items}
    p0 = _predictions(rows, base)
    keep = []
    for p in params:
        v = _value(base, p)
        lo, hi = bounds_of(base, p)
        moved = base.with_overrides(overrides(base, {p: min(max(v * 1.3, lo), hi) if v * 1.3 <= hi
                                                     else max(v / 1.3, lo)}))
        p1 = _predictions(rows, moved)
        moved_rows = [k for k, a in p0.items() if abs(p1.get(k, a) - a) > 1e-9 * a]
        per_device = Counter(_device(by_id[k]) for k in moved_rows)
        if p.startswith(FORMAT_OR_CPU):
            enough = len(moved_rows) >= MIN_ROWS
        elif min_devices <= 1:
            enough = True
        else:
            enough = len(per_device) >= min_devices and \
                max(per_device.values()) <= MAX_DEVICE_SHARE * len(moved_rows)
        if moved_rows and enough:
            keep.append(p)
    return keep


def bounds_of(base: Constants, path: str) -> tuple[float, float]:
    """The fit's bounds of a constant: BOUNDS, else a factor 4 either way of its value; never
    outside its physical range (perf/constant_ranges.py: an efficiency above 1 predicts speeds
    above the memory's limit)."""
    from ..perf.constant_ranges import range_of

    v = _value(base, path)
    lo, hi = BOUNDS.get(path, (v * 0.25, v * 4))
    p_lo, p_hi, _ = range_of(path.partition(".")[0])
    return max(lo, p_lo), min(hi, p_hi)


def _value(c: Constants, path: str) -> float:
    head, _, tail = path.partition(".")
    v = getattr(c, head)
    if tail:
        return c.of(head, tail.split("|")[0], 0.8)  # a family without its own value starts at its kin's
    return v


def fit(rows, params: list[str], base: Constants, maxiter: int = 2000,
        clip: float = CLIP) -> tuple[Constants, float, float]:
    """Minimise the robust loss over `params`; returns (constants, loss before, loss after)."""
    import numpy as np
    from scipy.optimize import minimize

    rows = _rows(rows)
    x0 = np.array([math.log(max(_value(base, p), 1e-12)) for p in params])
    lo = np.array([math.log(max(bounds_of(base, p)[0], 1e-12)) for p in params])
    hi = np.array([math.log(bounds_of(base, p)[1]) for p in params])
    x0 = np.minimum(np.maximum(x0, lo), hi)

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


def _drop(c: Constants, path: str) -> Constants:
    """`c` without its own value for a per-family constant, so that the family follows its kin."""
    from dataclasses import replace

    head, _, tail = path.partition(".")
    table = dict(getattr(c, head))
    for key in tail.split("|"):
        table.pop(key, None)
    return replace(c, **{head: table})


def holdout_fit(train, test, start: Constants, prior: Constants | None = None, maxiter: int = 800) -> Constants:
    """Constants for predicting `test` rows that no test row has informed: every constant that
    moves a test row is reset to its prior and refitted on `train` alone; the others cannot move
    a test prediction, so they keep `start`'s values. Used for leave-one-family-out and
    split-half checks (scripts/accuracy_report.py)."""
    prior = prior or Constants()
    train, test = _rows(train), _rows(test)
    touched = relevant(test, [p for p, _, _ in ALL_PARAMS], start, min_devices=1)
    reset = start
    for p in touched:
        head, _, tail = p.partition(".")
        if tail and tail.split("|")[0] not in getattr(prior, head):
            reset = _drop(reset, p)  # no prior of its own: follow its kin
        else:
            reset = reset.with_overrides(overrides(reset, {p: _value(prior, p)}))
    params = relevant(train, touched, reset)
    if not params or not len(train):
        return reset
    best, _, _ = fit(_moved_by(train, params, reset), params, reset, maxiter)
    return best


def _moved_by(rows: Rows, params: list[str], base: Constants) -> Rows:
    """The rows some of `params` move (the others add a constant to the loss, not a gradient)."""
    p0 = _predictions(rows, base)
    moved: set[int] = set()
    for p in params:
        v = _value(base, p)
        lo, hi = BOUNDS.get(p, (v * 0.25, v * 4))
        c = base.with_overrides(overrides(base, {p: min(max(v * 1.3, lo), hi) if v * 1.3 <= hi else max(v / 1.3, lo)}))
        p1 = _predictions(rows, c)
        moved |= {k for k, a in p0.items() if abs(p1.get(k, a) - a) > 1e-9 * a}
    sub = Rows([])
    sub.items = [(m, s) for m, s in rows.items if id(m) in moved]
    return sub


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
