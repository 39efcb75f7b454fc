"""`gpuplan validate`: predict every measurement row and score the predictions.

The JSON output is a contract (DESIGN.md): {"rows": [{"index", "metric", "measured",
"predicted", "reason"}, ...], "summary": {...}}, rows in file order, index from 0.
"""

from __future__ import annotations

import math
from collections import defaultdict

from ..errors import InputError


def predict_rows(rows, calibration=None) -> list[dict]:
    from ..perf.predict import predict_estimate

    out = []
    for i, m in enumerate(rows):
        if m is None:
            continue
        pred, reason, rng = None, None, None
        try:
            est = predict_estimate(m, calibration)
            pred, rng = est.value, est.range
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


def direction_agreement(results: list[dict]) -> dict:
    """Pairs differing only in GPU count (and the split that implies), measured >10% apart:
    share where the prediction moves the same way."""
    groups = defaultdict(list)
    for r in results:
        if r["predicted"] is not None:
            groups[_pair_key(r["_row"])].append(r)
    agree = total = 0
    for rs in groups.values():
        for i in range(len(rs)):
            for j in range(i + 1, len(rs)):
                a, b = rs[i]["_row"], rs[j]["_row"]
                if int(a.n_gpus) == int(b.n_gpus):
                    continue
                if a.split != b.split and "none" not in (a.split, b.split):
                    continue
                ma, mb = rs[i]["measured"], rs[j]["measured"]
                if abs(ma - mb) / min(ma, mb) <= 0.10:
                    continue
                total += 1
                pa, pb = rs[i]["predicted"], rs[j]["predicted"]
                agree += (ma > mb) == (pa > pb)
    return {"pairs": total, "agreement": round(agree / total, 4) if total else None}


def summarize(results: list[dict], row_errors: list) -> dict:
    errs_by = defaultdict(list)
    for r in results:
        if r["predicted"] is None:
            continue
        m = r["_row"]
        e = abs(r["predicted"] - r["measured"]) / r["measured"]
        errs_by[("metric", getattr(m.metric, "value", m.metric))].append(e)
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
    summary["direction"] = direction_agreement(results)
    return summary


def validate(paths: list[str], calibration=None) -> dict:
    from .measurements import read_measurements

    rows, errors = read_measurements(paths)
    results = predict_rows(rows, calibration)
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
    summary = summarize(results, [e for e in errors if e.index is not None])
    summary["file_errors"] = file_errors
    return {"rows": out_rows, "summary": summary, "_results": results}
