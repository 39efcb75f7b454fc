"""Load generator against real local servers (tests/servers/openai_stub.py) that misbehave on purpose."""

import json
import time

import pytest
import typer
from typer.testing import CliRunner

from gpuplan.bench.commands import register
from gpuplan.bench.loadgen import run_bench
from gpuplan.bench.measurements import read_measurements
from gpuplan.types import Metric
from servers import stub_server


def bench(url, levels=(1, 4), **kw):
    kw = {"prompt_tokens": 64, "max_tokens": 16, "requests": 6, "timeout_s": 1.0, "progress": False, **kw}
    t0 = time.monotonic()
    res = run_bench(url, list(levels), **kw)
    return res, time.monotonic() - t0


def test_normal_server_measures_every_request(tmp_path):
    with stub_server("normal") as url:
        res, _ = bench(url, chat=False)
    assert res.prompt_check == "/tokenize on the server"
    for lv in res.levels:
        s = lv.summary()
        assert s["ok"] == 6 and s["error"] == s["timeout"] == s["dropped"] == 0
        assert s["output_tokens"] == 6 * 16 and s["token_sources"] == ["usage"]
        assert abs(s["prompt_tokens"]["p50"] - 64) <= 2  # words scaled to the server's count
        assert s["ttft_s"]["p50"] > 0 and s["itl_s"]["p99"] >= s["itl_s"]["p50"]
    rows = res.to_measurements("google/gemma-3-270m-it", "Q4_K_M", "cpu", 0, "llama.cpp")
    assert [(m.metric, m.batch) for m in rows] == [
        (Metric.THROUGHPUT, 1), (Metric.DECODE, 1), (Metric.PREFILL, 1), (Metric.THROUGHPUT, 4)]
    json.dumps(res.to_json())


def test_chat_and_counting_without_usage():
    with stub_server("nousage") as url:
        res, _ = bench(url, levels=(2,), chat=True)
    s = res.levels[0].summary()
    assert s["ok"] == 6 and s["token_sources"] == ["chunks"] and s["output_tokens"] == 96


@pytest.mark.parametrize("mode,kind,reason", [
    ("http500", "error", "http_500"), ("notfound", "error", "http_404"),
    ("drop", "dropped", "dropped"), ("malformed", "error", "malformed"), ("truncated", "error", "truncated"),
])
def test_bad_servers_are_counted_with_reasons(mode, kind, reason):
    with stub_server(mode) as url:
        res, took = bench(url)
    assert took < 10
    for lv in res.levels:
        s = lv.summary()
        assert s["ok"] == 0 and s[kind] == 6
        assert all(k.startswith(reason) for k in s["reasons"])
    if mode in ("drop", "malformed", "truncated"):  # what was measured before the failure is kept
        assert res.levels[0].summary()["output_tokens"] > 0


def test_server_that_never_answers_ends_within_its_bound():
    with stub_server("hang") as url:
        res, took = bench(url, levels=(1, 2), requests=2, timeout_s=0.5)
    assert took < 8
    assert [lv.summary()["timeout"] for lv in res.levels] == [2, 2]


def test_connection_refused():
    with stub_server("normal") as url:
        pass  # the server is gone: its port now refuses connections
    res, took = bench(url, requests=3)
    assert took < 10 and all(lv.summary()["error"] == 3 for lv in res.levels)
    assert all(k.startswith("connect") for k in res.levels[0].reasons())


def test_overall_deadline_keeps_partial_results():
    with stub_server("slow") as url:  # 0.2 s a token: 16 tokens take 3.2 s
        res, took = bench(url, levels=(1, 2), requests=4, timeout_s=10, deadline_s=1.5)
    assert took < 4
    lv = res.levels[0]
    assert lv.stopped_early == "overall deadline reached" and lv.summary()["timeout"] == 1
    assert lv.requests[0].output_tokens > 0  # tokens streamed before the deadline are kept
    assert any("level 2 not run" in n for n in res.notes)


def test_duration_mode():
    with stub_server("normal", "--token-delay", "0.01") as url:
        res, took = bench(url, levels=(2,), requests=None, duration_s=0.6)
    assert 0.5 < took < 4 and res.levels[0].summary()["ok"] >= 2


def _app():
    app = typer.Typer()
    register(app)
    return app


def test_cli_bench_writes_json_and_valid_csv(tmp_path):
    with stub_server("normal") as url:
        r = CliRunner().invoke(_app(), [
            "bench", url, "--concurrency", "1,2", "--prompt-tokens", "32", "--max-tokens", "8",
            "--requests", "3", "--timeout", "5", "--out", str(tmp_path / "r.json"),
            "--csv", str(tmp_path / "r.csv"), "--model-id", "google/gemma-3-270m-it", "--quant", "Q4_K_M",
            "--gpu", "cpu", "--n-gpus", "0", "--engine", "llama.cpp", "--predict", "--no-progress"])
    assert r.exit_code == 0, r.output
    assert "prediction unavailable" in r.output or "predicted" in r.output
    rows, errors = read_measurements([tmp_path / "r.csv"])
    assert errors == [] and {m.batch for m in rows} == {1, 2}
    assert json.loads((tmp_path / "r.json").read_text())["levels"][0]["ok"] == 3


@pytest.mark.parametrize("args,msg", [
    (["bench", "localhost:8080"], "not an http(s) URL"),
    (["bench", "http://127.0.0.1:1", "--concurrency", "0"], "--concurrency '0'"),
    (["bench", "http://127.0.0.1:1", "--concurrency", "a"], "--concurrency 'a'"),
    (["bench", "http://127.0.0.1:1", "--max-tokens", "-5"], "--max-tokens -5 is out of range; accepted: 1 to"),
    (["bench", "http://127.0.0.1:1", "--requests", "0"], "--requests 0 is out of range"),
    (["bench", "http://127.0.0.1:1", "--engine", "foo"], "unknown engine 'foo'"),
    (["bench"], "give a server URL"),
])
def test_cli_bad_input_is_one_line_and_exit_2(args, msg):
    r = CliRunner().invoke(_app(), args)
    assert r.exit_code == 2
    assert r.output.strip().startswith("error: ") and msg in r.output
    assert len(r.output.strip().splitlines()) == 1 and "Traceback" not in r.output


def test_cli_llama_bench_missing(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    r = CliRunner().invoke(_app(), ["bench", "--llama-bench", str(tmp_path / "m.gguf")])
    assert r.exit_code == 2 and "llama-bench is not on PATH" in r.output


def test_cli_server_down_exits_1():
    with stub_server("http500") as url:
        r = CliRunner().invoke(_app(), ["bench", url, "--concurrency", "1", "--requests", "2", "--no-progress"])
    assert r.exit_code == 1 and "no request succeeded" in r.output and "http_500" in r.output
