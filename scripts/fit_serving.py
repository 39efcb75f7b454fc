#!/usr/bin/env python3
"""Fit the serving simulator's constants (perf/serving_constants.py) on the serving rows of the
measurement sets, and check them on held-out engines and GPUs.

    python scripts/fit_serving.py            # fit on every serving row, write perf/fitted_serving.yaml
    python scripts/fit_serving.py --check    # only score the shipped constants

The fit minimises a robust (soft L1) loss of log(predicted / measured) over every serving row
(metrics throughput, throughput_total, throughput_per_gpu) of data/measurements/dev.csv and
dev-2026-12.csv. Constants are per kernel family (an engine, with the backend when it is not CUDA) where a
family has MIN_ROWS rows; every other engine shares the default of its backend (`default` for CUDA,
`default_rocm`, ...), the geometric mean of that backend's fitted families, or the priors where no
family of that backend was fitted (kernels differ across backends: ROCm's constants are no guide to
CUDA's).

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
from gpuplan.perf.serving_constants import SHIPPED, ServingConstants, family_key  # noqa: E402
from gpuplan.perf.serving_predict import predict_serving  # noqa: E402
from gpuplan.types import Metric  # noqa: E402

FILES = [ROOT / "data/measurements/dev.csv", ROOT / "data/measurements/dev-2026-12.csv"]
SERVING = {Metric.THROUGHPUT, Metric.THROUGHPUT_TOTAL, Metric.THROUGHPUT_PER_GPU}
MIN_ROWS = 20  # a kernel family gets constants of its own from this many rows
MAX_NFEV = 120  # evaluations per least-squares fit
# (name, low, high, prior): what one kernel family's step costs are fitted with
PARAMS = [("step_s", 1e-5, 2e-2, 1e-3), ("seq_s", 1e-7, 2e-4, 2e-5), ("gemm_eff", 0.15, 0.95, 0.5),
          ("kv_eff", 0.05, 1.0, 0.9), ("attn_eff", 0.05, 1.0, 0.5)]


def family_of(m) -> str:
    """The kernel family a row ran on: the engine, with the backend when it is not CUDA."""
    from gpuplan import catalog

    key = family_key(m.engine)
    try:
        backend = catalog.device(m.gpu).backend
    except Exception:
        backend = "cuda"
    return key if backend == "cuda" else f"{key}_{backend}"


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


def constants(values: dict) -> ServingConstants:
    """values: {(name, key): value}"""
    data: dict = {}
    for (name, key), v in values.items():
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


def fit_family(rows, key: str, fixed: dict, verbose: bool = True) -> tuple[dict, float]:
    """Least squares (soft L1 on log errors) of one family's PARAMS on its rows."""
    from scipy.optimize import least_squares

    lo = np.log([p[1] for p in PARAMS])
    hi = np.log([p[2] for p in PARAMS])
    z0 = np.log([p[3] for p in PARAMS])
    calls = [0]

    def vals(z):
        return {**fixed, **{(p[0], key): float(v) for p, v in zip(PARAMS, np.exp(z))}}

    def resid(z):
        calls[0] += 1
        r = log_errors(rows, constants(vals(z)))
        if verbose and calls[0] % 10 == 0:
            print(f"  {key}: {calls[0]} evaluations, mean |log error| {np.mean(np.abs(r)):.4f}", file=sys.stderr)
        return r

    res = least_squares(resid, z0, bounds=(lo, hi), loss="soft_l1", f_scale=0.1, diff_step=0.05,
                        max_nfev=MAX_NFEV)
    return vals(res.x), float(np.mean(np.abs(res.fun)))


def fit(rows, verbose=True) -> tuple[ServingConstants, dict, dict]:
    """Families with MIN_ROWS rows get constants of their own; `default` (what every other engine
    gets, and every engine of a held-out half) is the geometric mean of theirs: a middle of the
    kernel families measured, not a fit to the few rows of the rest. With no family that large,
    the default is fitted on all the rows."""
    by: dict[str, list] = {}
    for r in rows:
        by.setdefault(family_of(r[0]), []).append(r)
    values: dict = {}
    losses = {}
    own = [k for k, v in by.items() if len(v) >= MIN_ROWS]
    for key in sorted(own):
        v, loss = fit_family(by[key], key, {}, verbose)
        values.update(v)
        losses[key] = round(loss, 4)
    if own:
        values.update(backend_defaults(values, own))
    else:
        v, loss = fit_family(rows, "default", {}, verbose)
        values.update(v)
        losses["default"] = round(loss, 4)
    return constants(values), values, losses


def _backend(family: str) -> str:
    return family.rsplit("_", 1)[1] if family.rsplit("_", 1)[-1] in BACKENDS else "cuda"


BACKENDS = ("rocm", "metal", "vulkan", "sycl", "cpu")


def backend_defaults(values: dict, own: list[str]) -> dict:
    """Per backend, the geometric mean of its fitted families' constants: what an engine without
    constants of its own gets there (`default` on CUDA, `default_rocm` on ROCm). gemm_eff stays
    unset: an unmeasured engine keeps the speed model's GEMM share for its kernel family."""
    out = {}
    for b in sorted({_backend(k) for k in own}):
        fams = [k for k in own if _backend(k) == b]
        key = "default" if b == "cuda" else f"default_{b}"
        for name, *_ in PARAMS:
            if name != "gemm_eff":
                out[(name, key)] = float(np.exp(np.mean([np.log(values[(name, k)]) for k in fams])))
    return out


def halves(rows):
    """(engine, GPU) groups split in two: sorted by size, dealt alternately."""
    groups = Counter((m.engine, m.gpu) for m, _, _ in rows)
    order = sorted(groups, key=lambda g: (-groups[g], g))
    a = {g for i, g in enumerate(order) if i % 2 == 0}
    return ([r for r in rows if (r[0].engine, r[0].gpu) in a], [r for r in rows if (r[0].engine, r[0].gpu) not in a],
            sorted(a), sorted(set(order) - a))


def yaml_constants(values: dict) -> dict:
    data: dict = {}
    for (name, key), v in sorted(values.items()):
        data.setdefault(name, {})[key] = float(f"{v:.6g}")
    return data


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="score the shipped constants only")
    ap.add_argument("--no-holdout", action="store_true", help="skip the two-fold hold-out fits")
    ap.add_argument("--holdout-only", action="store_true",
                    help="keep the shipped constants, redo only the hold-out fits and their scores")
    args = ap.parse_args()
    rows = load_rows()
    print(f"{len(rows)} serving rows", file=sys.stderr)
    if args.check:
        from gpuplan.perf.serving_constants import load_serving

        print(yaml.safe_dump(score(rows, load_serving())))
        return 0
    if args.holdout_only:
        from gpuplan.perf.serving_constants import load_serving

        out = yaml.safe_load(SHIPPED.read_text())
        # the backends' defaults from the shipped families' constants (the rule may have changed)
        vals = {(n, k): v for n, t in out["constants"].items() for k, v in t.items() if not k.startswith("default")}
        own = sorted({k for _, k in vals})
        vals.update(backend_defaults(vals, own))
        out["constants"] = yaml_constants(vals)
        SHIPPED.write_text("# written by scripts/fit_serving.py; do not edit by hand\n" + yaml.safe_dump(out, sort_keys=False))
        out["score"] = score(rows, load_serving())
    else:
        out = None
    sc, values, losses = fit(rows) if out is None else (None, None, None)
    fams = Counter(family_of(m) for m, _, _ in rows)
    out = out or {"constants": yaml_constants(values),
           "fitted_on": (f"{len(rows)} serving rows of data/measurements/dev.csv and dev-2026-12.csv "
                         f"({', '.join(f'{k} {n}' for k, n in sorted(fams.items()))}), "
                         f"{datetime.date.today().isoformat()}; mean |log error| by family {losses}"),
           "score": score(rows, sc)}
    if not args.no_holdout:
        a, b, ga, gb = halves(rows)
        folds = []
        for train, test, gtrain, gtest in ((a, b, ga, gb), (b, a, gb, ga)):
            sct, _, _ = fit(train, verbose=False)
            folds.append({"fitted_on": [f"{e}/{g}" for e, g in gtrain], "scored_on": [f"{e}/{g}" for e, g in gtest],
                          "score": score(test, sct)})
        out["holdout"] = folds
    SHIPPED.write_text("# written by scripts/fit_serving.py; do not edit by hand\n" + yaml.safe_dump(out, sort_keys=False))
    print(yaml.safe_dump(out, sort_keys=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
