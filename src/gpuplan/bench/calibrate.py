"""`gpuplan calibrate`: fit the engine and memory-technology efficiencies to a user's own
measurements, write them to a calibration file, and report the error before and after."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..errors import InputError
from ..perf.constants import DEFAULT, Constants, load_constants

MIN_ROWS = 4  # below this, nothing is fitted
ROWS_PER_CONSTANT = 3  # and at least this many rows for every constant that moves
# A user's own rows come from one machine at one time, not from transcribed tables with the odd
# wrong cell: a factor-20 error is still information (a slow or busy machine), so the clip that
# keeps published outliers from pulling the shipped constants (factor 2) is widened here.
USER_CLIP = 3.0


def load_calibration(path) -> Constants:
    return load_constants(path, base=DEFAULT)


def _median_ape(rows, c) -> float | None:
    from ..perf.predict import predict_row

    errs = []
    for m in rows:
        try:
            p = predict_row(m, c)
        except (InputError, ValueError, KeyError, ZeroDivisionError):
            continue
        if p:
            errs.append(abs(p - m.tok_s) / m.tok_s)
    if not errs:
        return None
    errs.sort()
    return errs[len(errs) // 2]


def calibrate(files: list[str], out: str | Path) -> dict:
    from ..types import Metric
    from .fitting import USER_PARAMS, Rows, fit, fitted_values, relevant
    from .measurements import read_measurements

    rows, errors = read_measurements(files)
    # Latency rows (median TTFT / TPOT, ms) are left out: the constants fitted here are the speed
    # model's, and a latency's error is mostly the queueing and scheduling of the replayed benchmark,
    # which those constants would bend to absorb.
    rows = [r for r in rows if r is not None and not r.metric.is_latency]
    fit_rows = Rows(rows, metrics=tuple(m.value for m in Metric if not m.is_latency))
    if len(rows) < MIN_ROWS:
        raise InputError(f"too little data to calibrate: {len(rows)} usable row(s) in {', '.join(files)};"
                         f" need at least {MIN_ROWS} (run `gpuplan bench` at a few concurrency levels)")
    params = relevant(fit_rows, USER_PARAMS, DEFAULT, min_devices=1)  # a user's own machine
    if not params:
        raise InputError("none of the calibratable constants affects these rows (unknown models or hardware?)")
    if len(rows) < ROWS_PER_CONSTANT * len(params):
        raise InputError(f"too little data to calibrate: {len(rows)} rows for {len(params)} constants"
                         f" ({', '.join(params)}); need at least {ROWS_PER_CONSTANT * len(params)}")
    before = _median_ape(rows, DEFAULT)
    best, _, _ = fit(fit_rows, params, DEFAULT, maxiter=400, clip=USER_CLIP)
    after = _median_ape(rows, best)
    fitted = fitted_values(best, params)
    doc = {"fitted_on": f"{len(rows)} rows from {', '.join(Path(f).name for f in files)}",
           "constants": fitted}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    from ..inputs import write_text

    write_text(out, yaml.safe_dump(doc, sort_keys=True), "calibration file")  # atomic; one error line
    return {"rows": len(rows), "unreadable": len(errors), "constants": fitted, "median_ape_before": before,
            "median_ape_after": after, "file": str(out)}
