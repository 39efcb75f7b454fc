"""The held-out serving sets (data/measurements/serving-holdout-2026-12.csv: throughputs;
serving-latency-holdout-2026-12.csv: median TTFT and TPOT of the same runs): they parse, every row cites
its source and states its conditions, and the serving simulator predicts every row with a finite
positive figure through the benchmark that reports the scores (benchmarks/bench_serving_holdout.py).
No error threshold here: the sets judge the simulator, the benchmark prints how well it does."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

from gpuplan.bench.measurements import read_measurements
from gpuplan.types import LATENCY, Metric

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = ROOT / "data/measurements/serving-holdout-2026-12.csv"
LATENCY_HOLDOUT = ROOT / "data/measurements/serving-latency-holdout-2026-12.csv"
CONCURRENCY_HOLDOUT = ROOT / "data/measurements/serving-concurrency-holdout-2026-12.csv"
SERVING = {Metric.THROUGHPUT, Metric.THROUGHPUT_TOTAL, Metric.THROUGHPUT_PER_GPU}
# what makes a latency row the same run as a throughput row
RUN = ("source", "engine", "date", "model", "quant", "gpu", "n_gpus", "split", "interconnect", "n_prompt",
       "n_gen", "batch", "scenario")


def _rows(path=HOLDOUT):
    rows, errors = read_measurements([str(path)])
    return rows, errors


def test_file_parses_into_serving_rows():
    rows, errors = _rows()
    assert not errors, errors[:3]
    assert len(rows) >= 40 and all(m is not None for m in rows)
    assert {Metric(m.metric) for m in rows} <= SERVING
    assert len({m.engine for m in rows}) >= 3 and len({m.gpu for m in rows}) >= 5


@pytest.mark.parametrize("path", [HOLDOUT, LATENCY_HOLDOUT, CONCURRENCY_HOLDOUT], ids=lambda p: p.name)
def test_every_row_cites_a_source_and_its_conditions(path):
    rows, _ = _rows(path)
    for i, m in enumerate(rows):
        assert re.match(r"https://\S+$", m.source), (i, m.source)
        assert len(m.note) > 80, (i, m.note)
        assert m.n_prompt >= 1 and m.n_gen >= 1 and m.batch >= 1 and m.tok_s > 0, i
        assert m.date and m.scenario, i


def test_rows_are_not_copies_of_the_fitted_sets():
    """Held out means: no source of dev.csv / dev-2026-12.csv, and no fitting script reads the file."""
    rows = _rows()[0] + _rows(LATENCY_HOLDOUT)[0] + _rows(CONCURRENCY_HOLDOUT)[0]
    fitted, _ = read_measurements([str(ROOT / "data/measurements/dev.csv"),
                                   str(ROOT / "data/measurements/dev-2026-12.csv")])
    assert not {m.source for m in rows} & {m.source for m in fitted if m is not None}
    for script in ("scripts/fit_serving.py", "scripts/fit_constants.py", "scripts/accuracy_report.py",
                   "src/gpuplan/bench/serving_accuracy.py"):
        for f in (HOLDOUT, LATENCY_HOLDOUT, CONCURRENCY_HOLDOUT):
            assert f.name not in (ROOT / script).read_text(), (script, f.name)


def test_latency_rows_are_runs_of_the_throughput_rows():
    """Every latency row is the median TTFT or TPOT of a run whose throughput row is in the held-out
    file: the same conditions, and its note quotes the published median and that run's throughput."""
    rows, errors = _rows(LATENCY_HOLDOUT)
    assert not errors, errors[:3]
    assert {m.metric for m in rows} == set(LATENCY)
    thr = {}
    for m in _rows()[0]:
        if m.metric is Metric.THROUGHPUT:
            thr.setdefault(tuple(getattr(m, k) for k in RUN), []).append(m)
    seen = set()
    for i, m in enumerate(rows):
        assert re.match(r"https://github\.com/gpustack/gpustack/blob/[0-9a-f]{40}/docs/performance-lab/", m.source), i
        name = "TTFT" if m.metric is Metric.TTFT_MEDIAN_MS else "TPOT"
        quoted = re.search(rf"figure: Median {name} \(ms\) ([0-9.]+) ", m.note)
        assert quoted and float(quoted.group(1)) == m.tok_s, (i, m.note[-300:])
        run_thr = re.search(r"Output token throughput ([0-9.]+) tok/s", m.note)
        same = [t for t in thr.get(tuple(getattr(m, k) for k in RUN), [])
                if run_thr and t.tok_s == float(run_thr.group(1))]
        assert len(same) == 1, (i, m.engine, m.model)
        assert (id(same[0]), m.metric) not in seen, i  # one row per run and metric
        seen.add((id(same[0]), m.metric))
    assert len(seen) == 2 * sum(1 for ts in thr.values() for t in ts if "gpustack" in t.source)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_serving_holdout", ROOT / "benchmarks/bench_serving_holdout.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def scores(bench):
    return bench.score([str(HOLDOUT)])


@pytest.fixture(scope="module")
def both_scores(bench):
    """Both files scored at once, latency rows after the throughput rows of the same runs (so the
    simulations are shared, as a user's `gpuplan validate` of both would share them)."""
    return bench.score([str(HOLDOUT), str(LATENCY_HOLDOUT)])


def test_every_row_is_predicted_with_a_finite_positive_figure(scores):
    rows, _ = _rows()
    assert not scores["unreadable"] and not scores["unpredicted"], scores["unpredicted"][:3]
    assert scores["rows"] == len(rows) == len(scores["scored"])
    for s in scores["scored"]:
        assert s["predicted"] > 0 and math.isfinite(s["predicted"]), s
    o = scores["overall"]
    assert o["rows"] == len(rows) and math.isfinite(o["median_ape"]) and math.isfinite(o["p90_ape"])
    assert set(scores["by_engine"]) == {m.engine for m in rows}


def test_every_latency_row_is_predicted_with_a_finite_positive_figure(both_scores):
    rows, _ = _rows(LATENCY_HOLDOUT)
    assert not both_scores["unreadable"] and not both_scores["unpredicted"], both_scores["unpredicted"][:3]
    lat = both_scores["latency"]
    assert set(lat) == {m.value for m in LATENCY}
    assert sum(len(p["scored"]) for p in lat.values()) == len(rows)
    for part in lat.values():
        for s in part["scored"]:
            assert s["predicted"] > 0 and math.isfinite(s["predicted"]), s
        assert math.isfinite(part["overall"]["median_ape"]) and math.isfinite(part["overall"]["p90_ape"])


def test_latency_rows_leave_the_throughput_scores_alone(scores, both_scores):
    """Adding the latency rows changes no throughput prediction nor score (the latency of a run that
    run_long shortened is simulated apart, whole), and validate's overall figure is the speeds'."""
    from gpuplan.bench.validate import predict_rows, summarize

    assert both_scores["overall"] == scores["overall"] and both_scores["by_engine"] == scores["by_engine"]
    assert [(s["index"], s["predicted"]) for s in both_scores["scored"]] == \
        [(s["index"], s["predicted"]) for s in scores["scored"]]
    lat_rows = _rows(LATENCY_HOLDOUT)[0][:6]
    res = predict_rows(lat_rows)
    summary = summarize(res, [])
    assert summary["overall"] == {"n": 0} and summary["by_engine"] == {}
    assert set(summary["by_metric"]) == {"ttft_median_ms", "tpot_median_ms"}
    assert all(r["range"] is None for r in res)  # no speed range is carried to a latency


def test_concurrency_runs_state_their_limit_and_carry_throughput_and_latencies(bench):
    """serving-concurrency-holdout-2026-12.csv: vllm bench serve --max-concurrency N runs; every run a
    throughput row and its two latency rows, `batch` the limit, replayed as a closed loop of N, and
    every row predicted with a finite positive figure."""
    from gpuplan.perf.serving_predict import harness_of

    rows, errors = _rows(CONCURRENCY_HOLDOUT)
    assert not errors and len(rows) >= 9
    runs: dict = {}
    for i, m in enumerate(rows):
        limit = re.search(r"--max-concurrency (\d+)", m.note)
        assert limit and int(limit.group(1)) == m.batch, i
        h = harness_of(m)
        assert (h.load.kind, h.load.users) == ("users", m.batch) and h.load.requests > m.batch, i
        quoted = re.search(r"figure: (?:Output token throughput \(tok/s\)|Median TTFT \(ms\)|Median TPOT \(ms\)) ([0-9.]+)",
                           m.note)
        assert quoted and float(quoted.group(1)) == m.tok_s, i
        runs.setdefault(tuple(getattr(m, k) for k in RUN), set()).add(m.metric)
    assert all(ms == {Metric.THROUGHPUT} | set(LATENCY) for ms in runs.values()), runs
    res = bench.score([str(CONCURRENCY_HOLDOUT)])
    assert not res["unpredicted"] and len(res["scored"]) == len(runs)
    for part in [res] + list(res["latency"].values()):
        assert part["scored"] and all(s["predicted"] > 0 and math.isfinite(s["predicted"]) for s in part["scored"])
