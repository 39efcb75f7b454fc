#!/usr/bin/env python3
"""The serving simulator judged on the held-out serving results: published benchmark runs on other
hardware and engine releases than the rows the constants were fitted on (dev.csv, dev-2026-12.csv).
data/measurements/serving-holdout-2026-12.csv holds their throughputs, serving-latency-holdout-2026-12.csv
the median TTFT and TPOT of the same runs (vllm bench serve printouts), serving-concurrency-holdout-2026-12.csv
the throughput, TTFT and TPOT of runs under a client concurrency limit (--max-concurrency 1 to 8). Every row is predicted with the
shipped constants, as `gpuplan validate` does; nothing here is fitted or tuned. Prints, per metric
(output throughput, median TTFT, median TPOT), the absolute error |predicted / measured - 1| as median
and 90th percentile overall, per file, engine and GPU (and per source for the throughput), the median
signed error (+ = predicted too high: too fast for a throughput, too slow for a latency), and the worst rows.

    python benchmarks/bench_serving_holdout.py [--worst 15] [--json] [FILE ...]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gpuplan.bench.measurements import read_measurements  # noqa: E402
from gpuplan.bench.validate import predict_rows  # noqa: E402

HOLDOUT = ROOT / "data/measurements/serving-holdout-2026-12.csv"
LATENCY_HOLDOUT = ROOT / "data/measurements/serving-latency-holdout-2026-12.csv"
# runs of a client concurrency limit (vllm bench serve --max-concurrency N): throughput and latencies
CONCURRENCY_HOLDOUT = ROOT / "data/measurements/serving-concurrency-holdout-2026-12.csv"
FILES = (HOLDOUT, LATENCY_HOLDOUT, CONCURRENCY_HOLDOUT)
# the metrics scored, in print order, with what their figure is
SCORED = {"throughput": "output throughput (tok/s)", "ttft_median_ms": "median TTFT (ms)",
          "tpot_median_ms": "median TPOT (ms)"}


def source_label(url: str) -> str:
    """A short name for a row's source: owner/repo@ref:file for GitHub blobs, else the host and path."""
    m = re.match(r"https://github\.com/([^/]+/[^/]+)/blob/([^/]+)/(.+)", url or "")
    if m:
        repo, ref, path = m.groups()
        ref = ref[:8] if re.fullmatch(r"[0-9a-f]{40}", ref) else ref
        tail = "/".join(path.split("/")[-2:])
        return f"{repo}@{ref}:{tail}"
    return re.sub(r"^https?://", "", url or "?")[:70]


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    k = (len(s) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(errs: list[float]) -> dict:
    """errs: signed errors predicted / measured - 1."""
    a = [abs(e) for e in errs]
    return {"rows": len(a), "median_ape": round(pct(a, 0.5), 4), "p90_ape": round(pct(a, 0.9), 4),
            "within_25pct": round(sum(e <= 0.25 for e in a) / len(a), 4),
            "median_signed": round(pct(errs, 0.5), 4)} if errs else {"rows": 0}


def _scores(scored: list[dict], keys=("engine", "gpu", "source")) -> dict:
    groups: dict[str, dict[str, list[float]]] = {k: defaultdict(list) for k in keys}
    for s in scored:
        for k in groups:
            groups[k][s[k]].append(s["error"])
    return {"overall": summary([s["error"] for s in scored]),
            **{f"by_{k}": {name: summary(v) for name, v in sorted(g.items())} for k, g in groups.items()}}


def score(files: list[str]) -> dict:
    """Throughput rows (metric `throughput`) in `scored`, `overall`, `by_*`; the latency metrics'
    rows and scores under `latency` (metric -> the same keys)."""
    rows, errors = read_measurements(files)
    file_of = _file_of_rows(files, len(rows))
    t0 = time.perf_counter()
    results = predict_rows(rows)
    wall = time.perf_counter() - t0
    scored: dict[str, list[dict]] = {k: [] for k in SCORED}
    unpredicted = []
    for r in results:
        m = r["_row"]
        if r["predicted"] is None:
            unpredicted.append({"index": r["index"], "metric": r["metric"], "reason": r["reason"]})
            continue
        if r["metric"] not in scored:
            continue  # total and per-GPU throughput: the output throughput of the same run is scored
        scored[r["metric"]].append({
            "index": r["index"], "metric": r["metric"], "engine": m.engine, "gpu": m.gpu, "n_gpus": m.n_gpus,
            "model": m.model, "quant": m.quant, "n_prompt": m.n_prompt, "n_gen": m.n_gen, "date": m.date,
            "source": source_label(m.source), "file": file_of[r["index"]], "measured": r["measured"], "predicted": round(r["predicted"], 2),
            "error": r["predicted"] / r["measured"] - 1})
    lat = {k: {"scored": v, **_scores(v, ("file", "engine", "gpu"))} for k, v in scored.items() if k != "throughput"}
    return {"rows": len(results) + sum(e.index is not None for e in errors), "unreadable": [e.reason for e in errors],
            "unpredicted": unpredicted, "scored": scored["throughput"], "wall_s": round(wall, 1),
            **_scores(scored["throughput"], ("file", "engine", "gpu", "source")), "latency": lat}


def _file_of_rows(files: list[str], n: int) -> list[str]:
    """The file name of every data row (read_measurements numbers rows across files, in order)."""
    names: list[str] = []
    for f in files:
        rows, _ = read_measurements([f])
        names += [Path(f).name] * len(rows)
    return names[:n] + ["?"] * (n - len(names))


def _table(title: str, by: dict) -> None:
    print(f"\n{title}")
    print(f"  {'':52s} {'rows':>5s} {'median':>8s} {'p90':>8s} {'<=25%':>6s} {'signed':>8s}")
    for name, s in by.items():
        print(f"  {name[:52]:52s} {s['rows']:5d} {s['median_ape']:8.1%} {s['p90_ape']:8.1%} {s['within_25pct']:6.0%}"
              f" {s['median_signed']:+8.1%}")


def _report(metric: str, part: dict, worst: int) -> None:
    o = part["overall"]
    label = SCORED[metric]
    print(f"\n== {metric}: {label}, {o['rows']} rows")
    if not o["rows"]:
        return
    print(f"error |pred/meas - 1|: median {o['median_ape']:.1%}, 90th percentile {o['p90_ape']:.1%}, "
          f"within 25%: {o['within_25pct']:.0%}; median signed error {o['median_signed']:+.1%}")
    if len(part["by_file"]) > 1:
        _table(f"{metric} by file", part["by_file"])
    _table(f"{metric} by engine", part["by_engine"])
    _table(f"{metric} by GPU", part["by_gpu"])
    if "by_source" in part:
        _table(f"{metric} by source", part["by_source"])
    sign = "too fast" if metric == "throughput" else "too slow"
    print(f"\nworst {worst} {metric} rows (signed error; + = predicted {sign})")
    for s in sorted(part["scored"], key=lambda s: -abs(s["error"]))[:worst]:
        print(f"  #{s['index']:<4d} {s['error']:+7.0%}  {s['engine']:12s} {s['n_gpus']}x {s['gpu']:20s} "
              f"{s['model'].split('/')[-1][:28]:28s} {s['quant']:9s} {s['n_prompt']:>5d}/{s['n_gen']:<5d} "
              f"meas {s['measured']:>9.1f} pred {s['predicted']:>9.1f}  {s['source']}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", default=[str(f) for f in FILES])
    ap.add_argument("--worst", type=int, default=15, help="how many of the worst rows to list, per metric")
    ap.add_argument("--json", action="store_true", help="print the whole result as JSON")
    args = ap.parse_args()
    res = score(args.files)
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"held-out serving rows: {res['rows']} ({', '.join(Path(f).name for f in args.files)}); "
          f"unpredicted: {len(res['unpredicted'])}; unreadable: {len(res['unreadable'])}; "
          f"simulated in {res['wall_s']} s")
    _report("throughput", res, args.worst)
    for metric, part in res["latency"].items():
        _report(metric, part, args.worst)
    for u in res["unpredicted"]:
        print(f"  unpredicted row {u['index']} ({u['metric']}): {u['reason']}")
    return 1 if res["unpredicted"] or res["unreadable"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
