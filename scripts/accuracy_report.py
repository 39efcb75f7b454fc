"""Regenerate docs/accuracy.md and the residual table behind every estimate's range
(src/gpuplan/perf/residuals.json): how good the performance model is on the published sets,
how it does on device families it was not fitted on (leave one family out), whether its 80%
ranges cover 80% of rows of families it never saw (split-half), and how the estimators people
use today do on the same rows.

    python scripts/accuracy_report.py            (all three published files; refits in --jobs processes,
                                                  about 30 minutes on 2 cores)
    python scripts/accuracy_report.py --quick    (shipped constants only; no refits)
"""
import argparse
import json
import math
import os
import sys
from collections import defaultdict
from pathlib import Path

from gpuplan.bench import baselines
from gpuplan.bench.fitting import Rows, holdout_fit
from gpuplan.bench.measurements import read_measurements
from gpuplan.bench.outliers import family, reason
from gpuplan.perf.constants import DEFAULT
from gpuplan.perf.context import Ctx
from gpuplan.perf.predict import predict_row
from gpuplan.perf.uncertainty import MIN_ROWS, TABLE, class_of, key

ROOT = Path(__file__).parents[1]
DATA = ROOT / "data/measurements"
TARGET_FILES = ["dev.csv", "dev-2026-12.csv"]  # the targets are on these two together
EXTRA_FILES = ["published-2026-12.csv"]  # rows this project added (cited per row)


def pct(v, q):
    s = sorted(v)
    if not s:
        return float("nan")
    k = (len(s) - 1) * q
    lo, hi = math.floor(k), math.ceil(k)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def stats(ratios):
    """ratios: predicted / measured. Returns n, median and p90 of |error|."""
    ape = [abs(r - 1.0) for r in ratios]
    return {"n": len(ape), "median": pct(ape, 0.5), "p90": pct(ape, 0.9),
            "within25": sum(a <= 0.25 for a in ape) / len(ape) if ape else float("nan")}


def fmt(s):
    if not s["n"]:
        return "| 0 | | | |"
    return f"| {s['n']} | {s['median']:.1%} | {s['p90']:.1%} | {s['within25']:.0%} |"


class Row:
    __slots__ = ("m", "setup", "file", "family", "reason", "pred", "cls")

    def __init__(self, m, setup, file):
        self.m, self.setup, self.file = m, setup, file
        self.family = family(m, setup)
        self.reason = reason(m, setup)
        self.pred = None
        self.cls = None


def load():
    rows, serving = [], defaultdict(int)
    for name in TARGET_FILES + EXTRA_FILES:
        ms, _ = read_measurements([DATA / name])
        for m in ms:
            if m is None:
                continue
            if m.metric.value not in ("decode", "prefill"):
                serving[name] += 1
                continue
            r = Rows([m])
            if r.items:
                rows.append(Row(m, r.items[0][1], name))
    return rows, serving


def predict(rows, c):
    out = {}
    for r in rows:
        try:
            out[id(r)] = predict_row(r.m, c, setup=r.setup)
        except Exception:  # a row the model cannot price: reported as unpredicted
            out[id(r)] = None
    return out


def as_rows(rows):
    rs = Rows([])
    rs.items = [(r.m, r.setup) for r in rows]
    return rs


def classes(rows, c):
    for r in rows:
        model, hw, plan, wl = r.setup
        r.cls = class_of(Ctx(model, hw, plan, c, r.m.date or None), r.m.metric.value)


def residual_table(rows, preds) -> dict:
    """Per class: the factor 80% of out-of-family predictions fall within (as lo/hi), the median
    measured / predicted, and rows; parents per backend x metric and per metric; the widest
    well-measured range."""
    by = defaultdict(list)
    for r in rows:
        p = preds.get(id(r))
        if p:
            ratio = r.m.tok_s / p
            by[("c", key(r.cls))].append(ratio)
            by[("b", f"{r.cls[0]}|{r.cls[4]}")].append(ratio)
            by[("m", r.cls[4])].append(ratio)

    def q(v):
        # 80% of rows within a factor exp(k) either way: the 80th percentile of |log error|. A
        # symmetric range measures how far out-of-family predictions fall, whatever their bias
        k = pct([abs(math.log(x)) for x in v], 0.8)
        return {"n": len(v), "lo": round(math.exp(-k), 4), "hi": round(math.exp(k), 4),
                "median": round(pct(v, 0.5), 4)}

    t = {"classes": {k: q(v) for (kind, k), v in by.items() if kind == "c"},
         "backend": {k: q(v) for (kind, k), v in by.items() if kind == "b"},
         "metric": {k: q(v) for (kind, k), v in by.items() if kind == "m"}}
    wide = [v for v in t["classes"].values() if v["n"] >= MIN_ROWS]
    t["widest"] = {"lo": min(v["lo"] for v in wide), "hi": max(v["hi"] for v in wide)} if wide else None
    return t


def covered(rows, preds, table) -> tuple[int, int]:
    import gpuplan.perf.uncertainty as u

    saved = u.table
    u.table = lambda: table
    try:
        inside = total = 0
        for r in rows:
            p = preds.get(id(r))
            if not p:
                continue
            lo, hi, _, _ = u.lookup(r.cls)
            total += 1
            inside += lo * p <= r.m.tok_s <= hi * p
        return inside, total
    finally:
        u.table = saved


def families_of(rows):
    return sorted({r.family for r in rows})


# Refits run in worker processes (--jobs): each worker loads the rows once and fits by family
# names, so nothing but names and constants crosses a process boundary.
_W: dict = {}


def _worker_init(maxiter):
    rows, _ = load()
    _W.update(rows=rows, fit_ok=[r for r in rows if r.reason is None], maxiter=maxiter)


def _fit_job(train_fams, test_fams, start=None):
    """Constants for predicting `test_fams`' rows, fitted on `train_fams`' rows only."""
    train = [r for r in _W["fit_ok"] if r.family in train_fams]
    test = [r for r in _W["rows"] if r.family in test_fams]
    return holdout_fit(as_rows(train), as_rows(test), start or DEFAULT, maxiter=_W["maxiter"])


def _pool(jobs, maxiter):
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("fork"),
                               initializer=_worker_init, initargs=(maxiter,))


def lofo(rows, pool):
    """Each family predicted with constants that never saw it."""
    fams = families_of(rows)
    futs = {f: pool.submit(_fit_job, set(fams) - {f}, {f}) for f in fams}
    preds, per = {}, {}
    for f in fams:
        test = [r for r in rows if r.family == f]
        p = predict(test, futs[f].result())
        print(f"  left out {f}: {len(test)} rows", file=sys.stderr)
        preds.update(p)
        per[f] = p
    return preds, per


def split_half(rows, pool):
    """Fit on half the families, score the other half; ranges from out-of-family residuals of
    the fitting half alone (leave one family out within it, as the shipped table is built)."""
    fams = families_of(rows)
    halves = (fams[0::2], fams[1::2])
    pairs = (halves, halves[::-1])
    firsts = [pool.submit(_fit_job, set(a), set(b)) for a, b in pairs]
    out = []
    for (a, b), fut in zip(pairs, firsts):
        c = fut.result()
        print(f"  fitted on {len(a)} families, scoring {len(b)}", file=sys.stderr)
        test = [r for r in rows if r.family in b]
        p_test = predict(test, c)
        inner = {f: pool.submit(_fit_job, set(a) - {f}, {f}, c) for f in a}
        resid = {}
        for f in a:
            resid.update(predict([r for r in rows if r.family == f], inner[f].result()))
        table = residual_table([r for r in rows if r.family in a], resid)
        inside, total = covered(test, p_test, table)
        out.append((a, b, test, p_test, inside, total))
    return out


def ratios(rows, preds, metric=None, pred=None):
    v = []
    for r in rows:
        if metric and r.m.metric.value != metric:
            continue
        if pred and not pred(r):
            continue
        p = preds.get(id(r))
        if p:
            v.append(p / r.m.tok_s)
    return v


def table_lines(rows, preds, groups):
    lines = ["| rows | n | median error | 90th pct | within 25% |", "|---|---|---|---|---|"]
    for name, pred in groups:
        lines.append(f"| {name} " + fmt(stats(ratios(rows, preds, pred=pred))))
    return lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="shipped constants only (no refits)")
    ap.add_argument("--maxiter", type=int, default=600)
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="refits run in this many processes")
    a = ap.parse_args()
    rows, serving = load()
    fit_ok = [r for r in rows if r.reason is None]
    shipped = predict(rows, DEFAULT)
    classes(rows, DEFAULT)
    target = [r for r in rows if r.file in TARGET_FILES]
    L = ["# Accuracy of the performance model", "",
         "Generated by `python scripts/accuracy_report.py` from `data/measurements/` "
         f"({', '.join(TARGET_FILES + EXTRA_FILES)}). Constants: {DEFAULT.fitted_on}.", "",
         "Error is |predicted - measured| / measured per row. Single-stream rows only (decode, prefill);"
         f" the {sum(serving.values())} serving-throughput rows belong to the serving simulator"
         " (perf/serving.py) and its own constants.", ""]
    dec, pre = (lambda r: r.m.metric.value == "decode"), (lambda r: r.m.metric.value == "prefill")
    L += ["## The published sets, shipped constants", "",
          f"`dev.csv` + `dev-2026-12.csv` together ({len(target)} single-stream rows; every row is predicted):", ""]
    L += table_lines(target, shipped, [
        ("decode", dec), ("prefill", pre),
        ("decode, rows physics explains", lambda r: dec(r) and not r.reason),
        ("prefill, rows physics explains", lambda r: pre(r) and not r.reason),
        ("CPU-only decode", lambda r: dec(r) and r.m.gpu == "cpu"),
        ("CPU-only prefill", lambda r: pre(r) and r.m.gpu == "cpu"),
        ("MLX decode", lambda r: dec(r) and r.m.engine == "mlx"),
        ("MLX prefill", lambda r: pre(r) and r.m.engine == "mlx")])
    extra = [r for r in rows if r.file in EXTRA_FILES]
    L += ["", f"`published-2026-12.csv` ({len(extra)} rows this project added, each with its source URL):", ""]
    L += table_lines(extra, shipped, [("decode", dec), ("prefill", pre)])
    L += ["", "By device family (all files):", "",
          "| family | decode n | decode median | prefill n | prefill median |", "|---|---|---|---|---|"]
    for f in families_of(rows):
        d = stats(ratios([r for r in rows if r.family == f], shipped, "decode"))
        p = stats(ratios([r for r in rows if r.family == f], shipped, "prefill"))
        L.append(f"| {f} | {d['n']} | {d['median']:.1%} | {p['n']} | {p['median']:.1%} |"
                 .replace("nan%", "-"))
    L += ["", "## Rows no physics explains (reported, not fitted)", ""]
    seen = defaultdict(list)
    for r in rows:
        if r.reason:
            seen[r.reason].append(r)
    for why, rs in seen.items():
        v = ratios(rs, shipped)
        L.append(f"- {len(rs)} rows ({rs[0].m.gpu}, {rs[0].m.model} {rs[0].m.quant}): {why}."
                 f" Predicted / measured: median {pct(v, 0.5):.2f}.")
    if not a.quick:
        print("leave one family out", file=sys.stderr)
        pool = _pool(a.jobs, a.maxiter)
        lp, per = lofo(rows, pool)
        L += ["", "## Leave one device family out", "",
              "Each family is predicted with constants refitted without any of its rows: every constant"
              " that moves one of its rows is reset to its prior and fitted on the other families"
              " (bench/fitting.py holdout_fit). This is what a user with a device of a class the"
              " published rows lack gets.", "",
              "| family | decode n | decode median | decode p90 | prefill n | prefill median |",
              "|---|---|---|---|---|---|"]
        worst = (None, -1.0)
        for f in families_of(rows):
            rs = [r for r in rows if r.family == f]
            d, p = stats(ratios(rs, lp, "decode")), stats(ratios(rs, lp, "prefill"))
            L.append(f"| {f} | {d['n']} | {d['median']:.1%} | {d['p90']:.1%} | {p['n']} | {p['median']:.1%} |"
                     .replace("nan%", "-"))
            if d["n"] and d["median"] > worst[1]:
                worst = (f, d["median"])
        all_d = stats(ratios(rows, lp, "decode"))
        all_p = stats(ratios(rows, lp, "prefill"))
        L += ["", f"All families, out of family: decode median {all_d['median']:.1%} (p90 {all_d['p90']:.1%}),"
                  f" prefill median {all_p['median']:.1%}; worst family for decode: {worst[0]}"
                  f" ({worst[1]:.1%}).", ""]
        TABLE.write_text(json.dumps({"generated_by": "scripts/accuracy_report.py (leave-one-family-out residuals)",
                                     **residual_table(rows, lp)}, indent=1, sort_keys=True) + "\n")
        print(f"wrote {TABLE}", file=sys.stderr)
        print("split half", file=sys.stderr)
        L += ["## Split half: fitted on half of the families, scored on the other half", "",
              "Ranges for the scored half come from the fitting half's own out-of-family residuals"
              " (leave one family out within it), as the shipped table comes from leave-one-family-out"
              " residuals of all families.", ""]
        for fa, fb, test, p_test, inside, total in split_half(rows, pool):
            d, p = stats(ratios(test, p_test, "decode")), stats(ratios(test, p_test, "prefill"))
            L += [f"Fitted on {', '.join(fa)}; scored on {', '.join(fb)}: decode median {d['median']:.1%}"
                  f" (p90 {d['p90']:.1%}, {d['n']} rows), prefill median {p['median']:.1%} ({p['n']} rows);"
                  f" the 80% range covers {inside / total:.0%} of {total} rows.", ""]
    L += ["## Side by side with the estimators people use today", "",
          "Same single-stream rows (all files), each estimator implemented from its published formula"
          " (src/gpuplan/bench/baselines.py). gpu_poor answers only for GGML types it lists on"
          " llama.cpp; the fixed share is the best single share of the roofline per metric in"
          " hindsight.", "",
          "| estimator | decode n | decode median | decode p90 | prefill n | prefill median | prefill p90 |",
          "|---|---|---|---|---|---|---|"]
    est = {"gpuplan (shipped)": shipped}
    for name, fn in baselines.BASELINES.items():
        est[name] = {id(r): _safe(fn, r) for r in rows}
    roof = est["bandwidth roofline"]
    share = {}
    for metric in ("decode", "prefill"):
        v = sorted(r.m.tok_s / roof[id(r)] for r in rows if r.m.metric.value == metric and roof.get(id(r)))
        share[metric] = pct(v, 0.5)
    est[f"fixed share of the roofline ({share['decode']:.0%} decode, {share['prefill']:.0%} prefill)"] = {
        id(r): roof[id(r)] * share[r.m.metric.value] if roof.get(id(r)) else None for r in rows}
    for name, pr in est.items():
        d, p = stats(ratios(rows, pr, "decode")), stats(ratios(rows, pr, "prefill"))
        L.append(f"| {name} | {d['n']} | {d['median']:.1%} | {d['p90']:.1%} | {p['n']} | {p['median']:.1%} |"
                 f" {p['p90']:.1%} |".replace("nan%", "-"))
    from gpuplan.bench.serving_accuracy import section  # the serving simulator's rows (its own constants)

    L += [""] + section()
    (ROOT / "docs/accuracy.md").write_text("\n".join(L) + "\n")
    print("wrote docs/accuracy.md", file=sys.stderr)


def _safe(fn, r):
    try:
        v = fn(r.m, r.setup)
    except Exception:  # an estimator with no answer for this row
        return None
    return v if v and v > 0 and math.isfinite(v) else None


if __name__ == "__main__":
    main()
