"""Fit the performance model's constants on published measurements and write
src/gpuplan/perf/fitted.yaml (the shipped defaults).

  python scripts/fit_constants.py data/measurements/dev.csv
  python scripts/fit_constants.py FILE --train-gpus rtx-3090,apple-m1-max-24c --out /tmp/half.yaml

Only physical constants per engine backend, memory technology or engine era are fitted
(bench/fitting.py lists them); none is specific to a GPU model.
"""
import argparse
import datetime
import sys
from pathlib import Path

import yaml

from gpuplan.bench.fitting import ALL_PARAMS, fit, fitted_values, relevant
from gpuplan.bench.measurements import read_measurements
from gpuplan.perf.constants import Constants


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--train-gpus", help="fit only on rows of these GPU ids (comma-separated)")
    ap.add_argument("--out", default=str(Path(__file__).parents[1] / "src/gpuplan/perf/fitted.yaml"))
    ap.add_argument("--maxiter", type=int, default=3000)
    a = ap.parse_args()
    rows, errors = read_measurements(a.files)
    rows = [r for r in rows if r is not None]
    if a.train_gpus:
        keep = set(a.train_gpus.split(","))
        rows = [r for r in rows if r.gpu in keep]
    base = Constants()
    params = relevant(rows, [p for p, _, _ in ALL_PARAMS], base)
    print(f"{len(rows)} rows; fitting {len(params)} constants: {', '.join(params)}", file=sys.stderr)
    best, before, after = fit(rows, params, base, a.maxiter)
    print(f"robust mean |log error|: {before:.4f} -> {after:.4f}", file=sys.stderr)
    out = fitted_values(best, params)
    names = ", ".join(sorted({Path(f).name for f in a.files}))
    doc = {"fitted_on": f"{names}: {len(rows)} rows" + (f" of GPUs {a.train_gpus}" if a.train_gpus else "")
           + f", {datetime.date.today().isoformat()}, loss {after:.4f}",
           "constants": out}
    Path(a.out).write_text(yaml.safe_dump(doc, sort_keys=True))
    print(f"wrote {a.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
