"""`gpuplan validate`: predict every measurement row and score the predictions.

The JSON output is a contract (DESIGN.md): {"rows": [{"index", "metric", "measured",
"predicted", "reason"}, ...], "summary": {...}}, rows in file order, index from 0.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from ..errors import InputError


def predict_rows(rows, calibration=None, allow_paths: bool = True, budget=None, models=None) -> list[dict]:
    """allow_paths=False: rows name catalog models only (uploads), or one of `models` (model files
    uploaded with the rows, by name: perf.predict.row_setup); budget: an inputs.Budget checked
    between rows (OverBudget when spent)."""
    from ..perf.predict import predict_estimate

    out = []
    seen: dict = {}  # identical rows (a frozen Measurement) are predicted once
    for i, m in enumerate(rows):
        if m is None:
            continue
        if budget is not None:
            budget.check()
        pred, reason, rng = None, None, None
        try:
            if m not in seen:
                seen[m] = predict_estimate(m, calibration, allow_paths=allow_paths, models=models)
            pred, rng = seen[m].value, seen[m].range
        except InputError as e:
            reason = str(e)
        except (ValueError, KeyError, ZeroDivisionError) as e:  # a row we cannot model: say so
            reason = f"cannot model this row: {e}"
        if pred is not None and not (pred > 0 and math.isfinite(pred)):
            pred, reason, rng = None, "model gave no finite speed", None
        out.append({"index": i, "metric": getattr(m.metric, "value", m.metric), "measured": m.tok_s, "predicted": pred,
                    "reason": reason, "range": [round(v, 4) for v in rng] if rng else None, "_row": m})
    return out


def _stats(errs: list[float]) -> dict:
    if not errs:
        return {"n": 0}
    s = sorted(errs)

    def pct(q):
        k = (len(s) - 1) * q
        lo, hi = math.floor(k), math.ceil(k)
        return s[lo] + (s[hi] - s[lo]) * (k - lo)

    return {"n": len(s), "median_ape": round(pct(0.5), 4), "p90_ape": round(pct(0.9), 4),
            "within_10pct": round(sum(e <= 0.10 for e in s) / len(s), 4),
            "within_25pct": round(sum(e <= 0.25 for e in s) / len(s), 4)}


def _pair_key(m):
    return (m.source, m.engine, m.date, m.model, m.quant, m.gpu, m.n_depth, m.n_prompt, m.n_gen, m.batch,
            m.metric, str(m.n_gpu_layers), m.host_mem)


def direction_agreement(results: list[dict], budget=None) -> dict:
    """Pairs differing only in GPU count (and the split that implies), measured >10% apart:
    share where the prediction moves the same way (an equal prediction does not). A pair is two
    rows of one metric (the metric is part of the key), so latency rows (lower is better) are
    compared with latency rows only, and "the same way" (both measured and predicted rise) holds
    for them as it does for speeds.

    Identical rows are counted once with their multiplicity and the pairs of a group are
    compared with numpy in blocks: 20,000 copies of one row cost nothing, 20,000 distinct
    rows of one group a few seconds, not the minutes of a Python double loop."""
    groups = defaultdict(Counter)
    for r in results:
        if r["predicted"] is not None:
            m = r["_row"]
            groups[_pair_key(m)][(int(m.n_gpus), str(m.split), r["measured"], r["predicted"])] += 1
    agree = total = 0
    for counts in groups.values():
        if len(counts) < 2:
            continue
        a, t = _group_pairs(counts, budget)
        agree, total = agree + a, total + t
    return {"pairs": total, "agreement": round(agree / total, 4) if total else None}


def _group_pairs(counts: Counter, budget=None, block: int = 128) -> tuple[int, int]:
    """(agreeing, all) pairs of one group; memory stays at a few block x rows boolean arrays."""
    import numpy as np

    keys = list(counts)
    splits = {s: i for i, s in enumerate(sorted({k[1] for k in keys} - {"none"}), start=1)}
    n = np.array([k[0] for k in keys])
    s = np.array([splits.get(k[1], 0) for k in keys])  # 0: none, compatible with any split
    m = np.array([k[2] for k in keys], dtype=float)
    p = np.array([k[3] for k in keys], dtype=float)
    w = np.array([counts[k] for k in keys], dtype=float)
    later = np.arange(len(keys))
    agree = total = 0.0
    for i0 in range(0, len(keys), block):
        if budget is not None:
            budget.check()
        i = slice(i0, i0 + block)
        ok = n[i, None] != n  # GPU counts differ
        ok &= (s[i, None] == s) | (s[i, None] == 0) | (s == 0)  # the split that implies
        ok &= np.abs(m[i, None] - m) > 0.10 * np.minimum(m[i, None], m)  # measured >10% apart
        ok &= later[i, None] < later  # each pair once
        total += w[i] @ (ok @ w)
        ok &= (m[i, None] > m) == (p[i, None] > p)
        ok &= p[i, None] != p
        agree += w[i] @ (ok @ w)
    return int(round(agree)), int(round(total))


def summarize(results: list[dict], row_errors: list, budget=None) -> dict:
    """Absolute percentage errors overall, by metric, engine and split. Latency rows (types.LATENCY:
    median TTFT / TPOT in ms) are scored by metric only: the overall, engine and split figures are
    those of the speeds (tok/s), so adding a run's latencies to a file leaves its speed scores as
    they were and an error of queueing is never averaged with an error of tokens/s."""
    from ..types import Metric

    errs_by = defaultdict(list)
    for r in results:
        if r["predicted"] is None:
            continue
        m = r["_row"]
        e = abs(r["predicted"] - r["measured"]) / r["measured"]
        metric = getattr(m.metric, "value", m.metric)
        errs_by[("metric", metric)].append(e)
        if Metric(metric).is_latency:
            continue
        errs_by[("engine", m.engine)].append(e)
        errs_by[("split", m.split)].append(e)
        errs_by[("all", "all")].append(e)
    ranged = [r for r in results if r["predicted"] is not None and r.get("range")]
    summary = {"rows": len(results) + len(row_errors), "predicted": sum(r["predicted"] is not None for r in results),
               "range_coverage": round(sum(r["range"][0] <= r["measured"] <= r["range"][1] for r in ranged)
                                       / len(ranged), 4) if ranged else None,
               "unpredicted": sum(r["predicted"] is None for r in results), "unreadable": len(row_errors)}
    for kind in ("all", "metric", "engine", "split"):
        summary[f"by_{kind}" if kind != "all" else "overall"] = (
            _stats(errs_by[("all", "all")]) if kind == "all" else
            {k[1]: _stats(v) for k, v in sorted(errs_by.items()) if k[0] == kind})
    summary["direction"] = direction_agreement(results, budget)
    return summary


def validate(paths: list[str], calibration=None, allow_paths: bool = True, budget=None, models=None,
             **read_limits) -> dict:
    """allow_paths, budget, models: as predict_rows; read_limits (max_rows, max_bytes) go to
    read_measurements."""
    from .measurements import read_measurements

    rows, errors = read_measurements(paths, **read_limits)
    results = predict_rows(rows, calibration, allow_paths, budget, models)
    # every data row appears once, in file order; unreadable rows with their reason
    by_index = {r["index"]: r for r in results}
    out_rows = []
    file_errors = [f"{e.file}: {e.reason}" for e in errors if e.index is None]
    for e in errors:
        if e.index is None:
            continue
        by_index[e.index] = {"index": e.index, "metric": None, "measured": None, "predicted": None,
                             "reason": f"unreadable: {e.reason}", "range": None}
    for i in sorted(by_index):
        r = by_index[i]
        out_rows.append({k: r[k] for k in ("index", "metric", "measured", "predicted", "reason", "range")})
    summary = summarize(results, [e for e in errors if e.index is not None], budget)
    summary["file_errors"] = file_errors
    return {"rows": out_rows, "summary": summary, "_results": results}
