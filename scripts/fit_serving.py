#!/usr/bin/env python3
"""Fit the serving simulator's constants (perf/serving_constants.py) on the serving rows of the
measurement sets, and check them on held-out engines and GPUs.

    python scripts/fit_serving.py            # fit on every serving row, write perf/fitted_serving.yaml
    python scripts/fit_serving.py --check    # only score the shipped constants

The fit minimises a robust (soft L1) loss of log(predicted / measured) over every serving row
(metrics throughput, throughput_total, throughput_per_gpu) of data/measurements/dev.csv and
dev-2026-12.csv. Constants are per engine only where an engine has enough rows (>= MIN_ROWS);
the others share the "default" value, which is what an engine without data gets.

Two-fold hold-out: the (engine, GPU) groups are split in two halves; constants fitted on one half
score the other, and the other way round. Both scores are written into the YAML (`holdout`) for
docs/accuracy.md.
"""

from __future__ import annotations

import argparse
import datetime
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gpuplan.bench.measurements import read_measurements  # noqa: E402
from gpuplan.errors import InputError  # noqa: E402
from gpuplan.perf.constants import DEFAULT  # noqa: E402
from gpuplan.perf.predict import row_setup  # noqa: E402
from gpuplan.perf.serving_constants import SHIPPED, ServingConstants  # noqa: E402
from gpuplan.perf.serving_predict import predict_serving  # noqa: E402
from gpuplan.types import Metric  # noqa: E402

FILES = [ROOT / "data/measurements/dev.csv", ROOT / "data/measurements/dev-2026-12.csv"]
SERVING = {Metric.THROUGHPUT, Metric.THROUGHPUT_TOTAL, Metric.THROUGHPUT_PER_GPU}
MIN_ROWS = 20  # an engine gets constants of its own from this many rows
MAX_NFEV_PER_PARAM = 25
# (name, table key or None, low, high, prior); per-engine entries are added for engines with data
SHARED = [("kv_eff", "default", 0.3, 1.0, 0.9), ("attn_eff", "default", 0.1, 1.0, 0.5),
          ("step_s", "default", 1e-5, 2e-2, 1e-3), ("seq_s", "default", 1e-7, 2e-4, 2e-5),
          ("gemm_eff", "default", 0.15, 0.95, 0.5)]
PER_ENGINE = [("step_s", 1e-5, 2e-2), ("seq_s", 1e-7, 2e-4), ("gemm_eff", 0.15, 0.95)]


def engine_key(engine: str) -> str:
    return engine.replace(".", "_").replace("-", "_")


def load_rows():
    rows, _ = read_measurements([str(f) for f in FILES])
    out = []
    for m in rows:
        if m is None:
            continue
        metric = Metric(getattr(m.metric, "value", m.metric))
        if metric not in SERVING:
            continue
        try:
            setup = row_setup(m)
        except InputError as e:
            print(f"  skipped ({e}): {m.engine} {m.model} {m.gpu}", file=sys.stderr)
            continue
        out.append((m, metric, setup))
    return out


def params_for(rows) -> list[tuple]:
    n = Counter(engine_key(m.engine) for m, _, _ in rows)
    ps = list(SHARED)
    for eng, k in sorted(n.items()):
        if k >= MIN_ROWS:
            ps += [(name, eng, lo, hi, None) for name, lo, hi in PER_ENGINE]
    return ps


def constants(ps, x) -> ServingConstants:
    data: dict = {}
    for (name, key, *_), v in zip(ps, x):
        data.setdefault(name, {})[key] = float(v)
    return ServingConstants().with_overrides(data)


def predict(rows, sc):
    out = []
    for m, metric, (model, hw, plan, _wl) in rows:
        date = getattr(m, "date", None) or None
        try:
            out.append(predict_serving(m, model, hw, plan, date, DEFAULT, sc=sc, metric=metric))
        except InputError:
            out.append(float("nan"))
    return np.array(out)


def log_errors(rows, sc) -> np.ndarray:
    pred = predict(rows, sc)
    meas = np.array([m.tok_s for m, _, _ in rows])
    e = np.log(np.where(pred > 0, pred, np.nan) / meas)
    return np.nan_to_num(e, nan=3.0)


def score(rows, sc) -> dict:
    e = np.abs(np.exp(log_errors(rows, sc)) - 1.0)
    out = {"rows": len(rows), "median_ape": round(float(np.median(e)), 4),
           "p90_ape": round(float(np.percentile(e, 90)), 4)}
    thr = [abs(v) for (m, metric, _), v in zip(rows, e) if metric == Metric.THROUGHPUT]
    if thr:
        out["throughput_rows"] = len(thr)
        out["throughput_median_ape"] = round(float(np.median(thr)), 4)
        out["throughput_p90_ape"] = round(float(np.percentile(thr, 90)), 4)
    return out


def fit(rows, ps, verbose=True):
    from scipy.optimize import least_squares

    def to_x(z):  # optimise in log space
        return np.exp(z)

    lo = np.log([p[2] for p in ps])
    hi = np.log([p[3] for p in ps])
    base = ServingConstants()
    z0 = []
    for name, key, a, b, prior in ps:
        v = prior if prior is not None else base.get(name, key) or base.get(name, "default") or (a * b) ** 0.5
        z0.append(np.clip(np.log(v), np.log(a) + 1e-6, np.log(b) - 1e-6))
    calls = [0]

    def resid(z):
        calls[0] += 1
        r = log_errors(rows, constants(ps, to_x(z)))
        if verbose and calls[0] % 10 == 0:
            print(f"  {calls[0]} evaluations, loss {np.mean(np.abs(r)):.4f}", file=sys.stderr)
        return r

    res = least_squares(resid, np.array(z0), bounds=(lo, hi), loss="soft_l1", f_scale=0.1,
                        diff_step=0.05, max_nfev=int(MAX_NFEV_PER_PARAM * len(ps)), x_scale=1.0)
    return constants(ps, to_x(res.x)), to_x(res.x), float(np.mean(np.abs(res.fun))), calls[0]


def halves(rows):
    """(engine, GPU) groups split in two: sorted by size, dealt alternately."""
    groups = Counter((m.engine, m.gpu) for m, _, _ in rows)
    order = sorted(groups, key=lambda g: (-groups[g], g))
    a = {g for i, g in enumerate(order) if i % 2 == 0}
    return ([r for r in rows if (r[0].engine, r[0].gpu) in a], [r for r in rows if (r[0].engine, r[0].gpu) not in a],
            sorted(a), sorted(set(order) - a))


def yaml_constants(ps, x) -> dict:
    data: dict = {}
    for (name, key, *_), v in zip(ps, x):
        data.setdefault(name, {})[key] = float(f"{v:.6g}")
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="score the shipped constants only")
    ap.add_argument("--no-holdout", action="store_true", help="skip the two-fold hold-out fits")
    args = ap.parse_args()
    rows = load_rows()
    print(f"{len(rows)} serving rows", file=sys.stderr)
    if args.check:
        from gpuplan.perf.serving_constants import load_serving

        print(yaml.safe_dump(score(rows, load_serving())))
        return 0
    ps = params_for(rows)
    sc, x, loss, calls = fit(rows, ps)
    out = {"constants": yaml_constants(ps, x),
           "fitted_on": (f"{len(rows)} serving rows of data/measurements/dev.csv and dev-2026-12.csv, "
                         f"{datetime.date.today().isoformat()}, mean |log error| {loss:.4f}, {calls} evaluations"),
           "score": score(rows, sc)}
    if not args.no_holdout:
        a, b, ga, gb = halves(rows)
        folds = []
        for train, test, gtrain, gtest in ((a, b, ga, gb), (b, a, gb, ga)):
            pt = params_for(train)
            sct, _, _, _ = fit(train, pt, verbose=False)
            folds.append({"fitted_on": [f"{e}/{g}" for e, g in gtrain], "scored_on": [f"{e}/{g}" for e, g in gtest],
                          "score": score(test, sct)})
        out["holdout"] = folds
    SHIPPED.write_text("# written by scripts/fit_serving.py; do not edit by hand\n" + yaml.safe_dump(out, sort_keys=False))
    print(yaml.safe_dump(out, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
