"""The held-out serving set (data/measurements/serving-holdout-2026-12.csv): it parses, every row cites
its source and states its conditions, and the serving simulator predicts every row with a finite
positive figure through the benchmark that reports the scores (benchmarks/bench_serving_holdout.py).
No error threshold here: the set judges the simulator, the benchmark prints how well it does."""

from __future__ import annotations

import importlib.util
import math
import re
from pathlib import Path

import pytest

from gpuplan.bench.measurements import read_measurements
from gpuplan.types import Metric

ROOT = Path(__file__).resolve().parents[1]
HOLDOUT = ROOT / "data/measurements/serving-holdout-2026-12.csv"
SERVING = {Metric.THROUGHPUT, Metric.THROUGHPUT_TOTAL, Metric.THROUGHPUT_PER_GPU}


def _rows():
    rows, errors = read_measurements([str(HOLDOUT)])
    return rows, errors


def test_file_parses_into_serving_rows():
    rows, errors = _rows()
    assert not errors, errors[:3]
    assert len(rows) >= 40 and all(m is not None for m in rows)
    assert {Metric(m.metric) for m in rows} <= SERVING
    assert len({m.engine for m in rows}) >= 3 and len({m.gpu for m in rows}) >= 5


def test_every_row_cites_a_source_and_its_conditions():
    rows, _ = _rows()
    for i, m in enumerate(rows):
        assert re.match(r"https://\S+$", m.source), (i, m.source)
        assert len(m.note) > 80, (i, m.note)
        assert m.n_prompt >= 1 and m.n_gen >= 1 and m.batch >= 1 and m.tok_s > 0, i
        assert m.date and m.scenario, i


def test_rows_are_not_copies_of_the_fitted_sets():
    """Held out means: no source of dev.csv / dev-2026-12.csv, and no fitting script reads the file."""
    rows, _ = _rows()
    fitted, _ = read_measurements([str(ROOT / "data/measurements/dev.csv"),
                                   str(ROOT / "data/measurements/dev-2026-12.csv")])
    assert not {m.source for m in rows} & {m.source for m in fitted if m is not None}
    for script in ("scripts/fit_serving.py", "scripts/fit_constants.py", "src/gpuplan/bench/serving_accuracy.py"):
        assert HOLDOUT.name not in (ROOT / script).read_text(), script


@pytest.fixture(scope="module")
def scores():
    spec = importlib.util.spec_from_file_location("bench_serving_holdout", ROOT / "benchmarks/bench_serving_holdout.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench.score([str(HOLDOUT)])


def test_every_row_is_predicted_with_a_finite_positive_figure(scores):
    rows, _ = _rows()
    assert not scores["unreadable"] and not scores["unpredicted"], scores["unpredicted"][:3]
    assert scores["rows"] == len(rows) == len(scores["scored"])
    for s in scores["scored"]:
        assert s["predicted"] > 0 and math.isfinite(s["predicted"]), s
    o = scores["overall"]
    assert o["rows"] == len(rows) and math.isfinite(o["median_ape"]) and math.isfinite(o["p90_ape"])
    assert set(scores["by_engine"]) == {m.engine for m in rows}
