"""Fit the performance model's constants on published measurements and write
src/gpuplan/perf/fitted.yaml (the shipped defaults).

  python scripts/fit_constants.py data/measurements/dev.csv data/measurements/dev-2026-12.csv ...
  python scripts/fit_constants.py FILES --families "Apple M1,AMD Zen 4 CPU" --out /tmp/half.yaml
  python scripts/fit_constants.py FILES --exclude-families "Apple M1" --warm src/gpuplan/perf/fitted.yaml

Only single-stream rows (decode, prefill) are fitted, and only constants per kernel family,
format family or link (bench/fitting.py lists them); none is specific to a GPU model. Rows that
no physics explains (bench/outliers.py) are left out and listed in docs/accuracy.md.
"""
import argparse
import datetime
import sys
from pathlib import Path

import yaml

from gpuplan.bench.fitting import ALL_PARAMS, Rows, fit, fitted_values, relevant
from gpuplan.bench.measurements import read_measurements
from gpuplan.bench.outliers import family, reason
from gpuplan.perf.constants import Constants, load_constants

ROOT = Path(__file__).parents[1]


def fit_rows(files, families=None, exclude=None) -> Rows:
    rows, _ = read_measurements(files)
    r = Rows(rows)
    r.items = [(m, s) for m, s in r.items if reason(m, s) is None
               and (families is None or family(m, s) in families) and (exclude is None or family(m, s) not in exclude)]
    return r


def run(files, out, families=None, exclude=None, warm=None, maxiter=3000, quiet=False) -> tuple[float, int]:
    rows = fit_rows(files, families, exclude)
    base = load_constants(warm, base=Constants()) if warm else Constants()
    params = relevant(rows, [p for p, _, _ in ALL_PARAMS], base)
    if not quiet:
        print(f"{len(rows)} rows; fitting {len(params)} constants: {', '.join(params)}", file=sys.stderr)
    best, before, after = fit(rows, params, base, maxiter)
    if not quiet:
        print(f"robust mean |log error|: {before:.4f} -> {after:.4f}", file=sys.stderr)
    values = fitted_values(best, params)
    if warm:  # keep what the warm start had for constants these rows do not move
        prior = yaml.safe_load(Path(warm).read_text()).get("constants", {})
        for k, v in prior.items():
            if isinstance(v, dict):
                values[k] = {**v, **values.get(k, {})}
            else:
                values.setdefault(k, v)
    names = ", ".join(sorted({Path(f).name for f in files}))
    which = (f" of families {', '.join(sorted(families))}" if families else "") + \
            (f" without {', '.join(sorted(exclude))}" if exclude else "")
    doc = {"fitted_on": f"{names}: {len(rows)} decode/prefill rows{which}, {datetime.date.today().isoformat()},"
                        f" loss {after:.4f}", "constants": values}
    Path(out).write_text(yaml.safe_dump(doc, sort_keys=True))
    if not quiet:
        print(f"wrote {out}", file=sys.stderr)
    return after, len(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--families", help="fit only on rows of these device families (comma-separated)")
    ap.add_argument("--exclude-families", help="leave out rows of these device families")
    ap.add_argument("--warm", help="start from this fitted file instead of the built-in priors")
    ap.add_argument("--out", default=str(ROOT / "src/gpuplan/perf/fitted.yaml"))
    ap.add_argument("--maxiter", type=int, default=3000)
    a = ap.parse_args()
    split = (lambda s: set(x.strip() for x in s.split(",")) if s else None)
    run(a.files, a.out, split(a.families), split(a.exclude_families), a.warm, a.maxiter)


if __name__ == "__main__":
    main()
