"""The serving rows of the measurement sets, predicted by the serving simulator: every row
predicted, and the output-throughput targets of issue 14 (median error <= 15%, 90th percentile
<= 35%) with the shipped constants."""

from __future__ import annotations

from gpuplan.bench.serving_accuracy import section, serving_results, stats
from gpuplan.types import Metric


def test_every_serving_row_is_predicted():
    res = serving_results()
    missing = [(r["_row"].engine, r["_row"].model, r["reason"]) for r in res if r["predicted"] is None]
    assert len(res) > 140 and not missing, missing[:5]


def test_output_throughput_targets():
    s = stats(serving_results(), Metric.THROUGHPUT)
    assert s["predicted"] == s["rows"]
    assert s["median_ape"] <= 0.15, s
    assert s["p90_ape"] <= 0.35, s


def test_accuracy_section_renders():
    lines = section()
    assert lines[0].startswith("## Serving") and any("metric = throughput" in x for x in lines)
