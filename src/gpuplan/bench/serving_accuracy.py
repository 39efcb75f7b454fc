"""The serving simulator's accuracy on the published serving rows, for docs/accuracy.md
(scripts/accuracy_report.py calls `section`) and for the tests: every row of a serving metric
(throughput = output tokens/s, throughput_total, throughput_per_gpu) predicted by simulating the
benchmark it came from."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from ..types import Metric

SERVING = (Metric.THROUGHPUT, Metric.THROUGHPUT_TOTAL, Metric.THROUGHPUT_PER_GPU)
ROOT = Path(__file__).resolve().parents[3]
FILES = (ROOT / "data/measurements/dev.csv", ROOT / "data/measurements/dev-2026-12.csv")


def serving_results(files=FILES) -> list[dict]:
    """validate's row results for the serving rows of `files`: {metric, measured, predicted,
    reason, _row} each."""
    from .measurements import read_measurements
    from .validate import predict_rows

    rows, _ = read_measurements([str(f) for f in files])
    rows = [m for m in rows if m is not None and Metric(getattr(m.metric, "value", m.metric)) in SERVING]
    return predict_rows(rows)


def stats(results: list[dict], metric: Metric | None = None) -> dict:
    sel = [r for r in results if metric is None or r["metric"] == metric.value]
    errs = [abs(r["predicted"] / r["measured"] - 1) for r in sel if r["predicted"] is not None]
    out = {"rows": len(sel), "predicted": len(errs)}
    if errs:
        out.update(median_ape=float(np.median(errs)), p90_ape=float(np.percentile(errs, 90)),
                   within_15pct=float(np.mean([e <= 0.15 for e in errs])))
    return out


def _line(name: str, s: dict) -> str:
    if not s.get("predicted"):
        return f"| {name} | {s['rows']} | 0 | - | - | - |"
    return (f"| {name} | {s['rows']} | {s['predicted']} | {s['median_ape']:.1%} | {s['p90_ape']:.1%} | "
            f"{s['within_15pct']:.0%} |")


def section(files=FILES) -> list[str]:
    """Markdown lines: the serving rows by metric and by engine/GPU with the shipped constants,
    the two-fold hold-out written by scripts/fit_serving.py, and the worst groups."""
    import yaml

    from ..perf.serving_constants import SERVING as SC
    from ..perf.serving_constants import SHIPPED

    by_file = {Path(f).name: serving_results((f,)) for f in files}
    res = [r for rs in by_file.values() for r in rs]
    head = ["| rows | in file | predicted | median error | 90th pct | within 15% |", "|---|---|---|---|---|---|"]
    lines = ["## Serving throughput (the serving simulator)", "",
             "Every row of a serving metric in dev.csv and dev-2026-12.csv is predicted by simulating the "
             "benchmark it came from (perf/serving_predict.py: harness, arrivals, engine scheduler rules, KV "
             f"pool, step costs). Serving constants: {SC.fitted_on}.", ""]
    lines += head + [_line("all serving rows", stats(res))]
    for m in SERVING:
        lines.append(_line(f"metric = {m.value}", stats(res, m)))
    for name, rs in by_file.items():
        if rs:
            lines.append(_line(f"{name}: all serving rows", stats(rs)))
            lines.append(_line(f"{name}: metric = throughput", stats(rs, Metric.THROUGHPUT)))
    groups = defaultdict(list)
    for r in res:
        groups[(r["_row"].engine, r["_row"].gpu)].append(r)
    for (eng, gpu), rs in sorted(groups.items()):
        lines.append(_line(f"{eng} on {gpu}", stats(rs)))
    data = yaml.safe_load(SHIPPED.read_text()) if SHIPPED.is_file() else {}
    folds = data.get("holdout") or []
    if folds:
        lines += ["", "Hold-out: constants fitted on half of the (engine, GPU) groups, scored on the other half "
                      "(scripts/fit_serving.py):", "",
                  "| fitted on | scored on | rows | median error | 90th pct | output-throughput median | 90th pct |",
                  "|---|---|---|---|---|---|---|"]
        for f in folds:
            s = f["score"]
            lines.append(f"| {', '.join(f['fitted_on'])} | {', '.join(f['scored_on'])} | {s['rows']} | "
                         f"{s['median_ape']:.1%} | {s['p90_ape']:.1%} | "
                         f"{s.get('throughput_median_ape', float('nan')):.1%} | "
                         f"{s.get('throughput_p90_ape', float('nan')):.1%} |")
    worst = sorted((r for r in res if r["predicted"] is not None),
                   key=lambda r: -abs(np.log(r["predicted"] / r["measured"])))[:10]
    lines += ["", "Worst rows:", "", "| engine | model | GPU x n | prompt / output | batch | metric | measured | "
              "predicted |", "|---|---|---|---|---|---|---|---|"]
    for r in worst:
        m = r["_row"]
        lines.append(f"| {m.engine} {m.date} | {m.model.split('/')[-1]} | {m.gpu} x{m.n_gpus} | {m.n_prompt} / {m.n_gen} "
                     f"| {m.batch} | {r['metric']} | {r['measured']:.0f} | {r['predicted']:.0f} |")
    return lines
