"""Measurement files: schema CSV/JSON and real llama-bench outputs (tests/fixtures/llama_bench)."""

import json
from pathlib import Path

import pytest

from gpuplan.bench.llama_bench import quant_from_type
from gpuplan.bench.measurements import COLUMNS, Measurement, read_measurements, write_csv
from gpuplan.errors import InputError
from gpuplan.types import Metric

FX = Path(__file__).parent / "fixtures" / "llama_bench"
DEV = Path(__file__).resolve().parents[1] / "data" / "measurements" / "dev.csv"
HEADER = ",".join(COLUMNS)


def _csv(tmp_path, *rows, name="m.csv"):
    p = tmp_path / name
    p.write_text("\n".join([HEADER, *rows]) + "\n")
    return p


GOOD = ("https://x,llama.cpp,2024-05,meta-llama/Meta-Llama-3-8B,Q4_K_M,rtx-3090,1,none,none,,,"
        "0,0,128,1,decode,111.7,\"a, note\"")


def test_schema_row_parsed(tmp_path):
    rows, errors = read_measurements([_csv(tmp_path, GOOD)])
    assert errors == []
    m = rows[0]
    assert m.metric is Metric.DECODE and m.tok_s == pytest.approx(111.7)
    assert m.n_gpu_layers is None and m.n_gen == 128 and m.note == "a, note"


def test_bad_rows_become_errors_and_the_rest_is_read(tmp_path):
    bad_metric = GOOD.replace(",decode,", ",speed,")
    bad_number = GOOD.replace(",111.7,", ",fast,")
    missing = GOOD.replace(",rtx-3090,", ",,")
    a = _csv(tmp_path, GOOD, bad_metric, name="a.csv")
    b = _csv(tmp_path, bad_number, GOOD, missing, name="b.csv")
    rows, errors = read_measurements([a, b])
    assert [r is None for r in rows] == [False, True, True, False, True]
    assert [(e.index, Path(e.file).name, e.line) for e in errors] == [
        (1, "a.csv", 3), (2, "b.csv", 2), (4, "b.csv", 4)]
    assert "unknown metric 'speed'" in errors[0].reason
    assert "tok_s 'fast' is not a finite number; accepted: a finite number, more than 0 up to 1,000,000,000" in errors[1].reason
    assert "missing column gpu" in errors[2].reason


def test_json_list_of_schema_objects(tmp_path):
    obj = dict(zip(COLUMNS, ["s", "vllm", "2024-01", "m/x", "FP16", "a100-sxm-80gb", 8, "tensor",
                             "nvlink", None, "", 0, 128, 128, 64, "throughput", 2500.5, ""]))
    p = tmp_path / "m.json"
    p.write_text(json.dumps([obj, {**obj, "metric": "nope"}]))
    rows, errors = read_measurements([p])
    assert rows[0].batch == 64 and rows[0].n_gpus == 8 and rows[1] is None
    assert errors[0].index == 1


def test_whole_file_problems(tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    junk = tmp_path / "junk.txt"
    junk.write_text("hello world\nnot a table\n")
    with pytest.raises(InputError, match="empty"):
        read_measurements([empty])
    with pytest.raises(InputError):
        read_measurements([junk, tmp_path / "missing.csv"])
    rows, errors = read_measurements([empty, _csv(tmp_path, GOOD), tmp_path / "missing.csv"])
    assert len(rows) == 1 and rows[0] is not None
    assert [e.index for e in errors] == [None, None]
    assert "does not exist" in errors[1].reason


def test_write_csv_round_trip(tmp_path):
    rows, _ = read_measurements([_csv(tmp_path, GOOD)])
    out = tmp_path / "out.csv"
    write_csv(rows, out)
    assert out.read_text().splitlines()[0] == HEADER
    again, errors = read_measurements([out])
    assert errors == [] and again == rows


def test_reads_the_published_dev_set():
    rows, errors = read_measurements([DEV])
    assert errors == [] and len(rows) > 100


@pytest.mark.parametrize("name", ["qwen2_7b_rtx4080.json", "qwen2_7b_rtx4080.jsonl", "qwen2_7b_rtx4080.csv"])
def test_llama_bench_structured_outputs(name):
    rows, errors = read_measurements([FX / name])
    assert errors == []
    pp, tg = rows
    assert (pp.metric, pp.n_prompt, pp.n_gen) == (Metric.PREFILL, 512, 0)
    assert (tg.metric, tg.n_prompt, tg.n_gen) == (Metric.DECODE, 0, 128)
    assert pp.gpu == "rtx-4080" and pp.n_gpus == 1 and pp.split == "none"
    assert pp.quant == "Q4_K_M" and pp.engine == "llama.cpp" and pp.date == "2025-04"
    assert pp.n_gpu_layers is None  # ngl -1: all layers
    assert pp.model in ("Qwen/Qwen2.5-7B-Instruct", "Qwen2.5-7B-Instruct-Q4_K_M")
    assert tg.tok_s == pytest.approx(118.881588 if "json" in name else 119.915244)


def test_llama_bench_markdown_with_depth():
    rows, errors = read_measurements([FX / "qwen2_7b_depth.md"])
    assert errors == []
    got = [(m.metric.value, m.n_prompt, m.n_gen, m.n_depth, m.tok_s) for m in rows]
    assert got == [("prefill", 512, 0, 0, 7340.20), ("decode", 0, 128, 0, 120.60),
                   ("prefill", 512, 0, 512, 6425.91), ("decode", 0, 128, 512, 116.71)]
    assert rows[0].quant == "Q4_K_M"


def test_llama_bench_markdown_old_spelling_and_log_lines():
    rows, errors = read_measurements([FX / "llama7b_rtx4090_pr4766.md"])
    assert errors == [] and len(rows) == 5
    assert [m.quant for m in rows] == ["F16", "F16", "Q8_0", "Q8_0", "Q4_0"]
    assert rows[1].metric is Metric.DECODE and rows[1].tok_s == pytest.approx(61.03)
    assert rows[0].gpu == "rtx-4090"  # from the "Device 0:" log line


def test_llama_bench_markdown_gpu_count_from_log():
    rows, errors = read_measurements([FX / "llama7b_8xa100_pr6017.md"])
    assert errors == [] and [m.n_prompt for m in rows] == [512, 1024, 2048]
    assert rows[0].n_gpus == 8 and rows[0].gpu == "a100-pcie-80gb" and rows[0].split == "layer"


def test_markdown_defaults_fill_unknown_gpu(tmp_path):
    rows, _ = read_measurements([FX / "qwen2_7b_depth.md"], defaults={"gpu": "rtx-4080"})
    assert {m.gpu for m in rows} == {"rtx-4080"}


def test_markdown_bad_row(tmp_path):
    text = (FX / "qwen2_7b_depth.md").read_text().replace("tg128 @ d512", "xx128")
    p = tmp_path / "t.md"
    p.write_text(text)
    rows, errors = read_measurements([p])
    assert rows[3] is None and errors[0].index == 3 and "xx128" in errors[0].reason


@pytest.mark.parametrize("text,quant", [("llama 8B Q4_K - Medium", "Q4_K_M"), ("llama 7B mostly Q4_0", "Q4_0"),
                                        ("qwen2 7B Q5_K - Small", "Q5_K_S"), ("llama 7B F16", "F16"),
                                        ("llama 8B IQ4_XS - 4.25 bpw", "IQ4_XS"), ("gemma3 270M Q8_0", "Q8_0")])
def test_quant_names(text, quant):
    assert quant_from_type(text) == quant


def test_measurement_is_frozen():
    m = Measurement("llama.cpp", "m", "Q4_0", "cpu", 0, 0, 16, 1, Metric.DECODE, 5.0)
    with pytest.raises(Exception):
        m.tok_s = 1.0


def test_llama_bench_csv_with_shifted_columns_is_reported():
    # the llama.cpp README's own CSV example: header of a newer build over older rows
    rows, errors = read_measurements([FX / "readme_header_mismatch.csv"])
    assert rows == [None, None] and len(errors) == 2 and "number of cells" in errors[0].reason



LATENCY_ROW = ("https://x,vllm,2025-11,Qwen/Qwen3-14B,BF16,h100-sxm-80gb,1,none,none,,,"
               "0,217,202,1000,{metric},{value},\"vllm bench serve, request rate inf, 1000 prompts\"")


def test_latency_metrics_read_in_milliseconds_and_round_trip(tmp_path):
    """ttft_median_ms / tpot_median_ms: the figure sits in the tok_s column, in ms; the other rows read as before."""
    p = _csv(tmp_path, GOOD, LATENCY_ROW.format(metric="ttft_median_ms", value="21872.31"),
             LATENCY_ROW.format(metric="tpot_median_ms", value="117.46"))
    rows, errors = read_measurements([p])
    assert errors == []
    assert [m.metric for m in rows] == [Metric.DECODE, Metric.TTFT_MEDIAN_MS, Metric.TPOT_MEDIAN_MS]
    assert rows[1].tok_s == pytest.approx(21872.31) and rows[2].tok_s == pytest.approx(117.46)
    assert [m.metric.is_latency for m in rows] == [False, True, True]
    out = tmp_path / "out.csv"
    write_csv(rows, out)
    again, errors = read_measurements([out])
    assert errors == [] and again == rows


def test_unknown_metric_names_the_latency_metrics(tmp_path):
    rows, errors = read_measurements([_csv(tmp_path, LATENCY_ROW.format(metric="ttft_p50", value="5"))])
    assert rows == [None]
    assert "ttft_median_ms" in errors[0].reason and "tpot_median_ms" in errors[0].reason
