"""`gpuplan bench` against servers that lie or break (tests/servers/openai_stub.py, for real over
loopback), and bench options that would never end or allocate gigabytes (issue 11)."""

import logging
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import typer

import gpuplan
from typer.testing import CliRunner

from gpuplan.bench.commands import register
from gpuplan.bench.loadgen import run_bench
from gpuplan.bench.measurements import read_measurements
from servers import stub_server

def bench(url, levels=(1, 2), **kw):
    kw = {"prompt_tokens": 64, "max_tokens": 16, "requests": 4, "timeout_s": 2.0, "progress": False, **kw}
    t0 = time.monotonic()
    res = run_bench(url, list(levels), **kw)
    return res, time.monotonic() - t0


@pytest.mark.parametrize("mode,chat,words", [
    ("choices_str", False, "choices"), ("delta_str", True, "delta"), ("usage_str", False, "completion_tokens"),
])
def test_malformed_chunks_end_the_request_with_a_reason(mode, chat, words, caplog):
    caplog.set_level(logging.ERROR, logger="asyncio")
    with stub_server(mode) as url:
        res, took = bench(url, chat=chat)
    assert took < 10
    for lv in res.levels:  # every request ran and was counted: the level did not stop silently
        s = lv.summary()
        assert s["ok"] == 0 and s["error"] == 4 and len(lv.requests) == 4
        (reason,) = s["reasons"]
        assert reason.startswith("malformed: chunk field") and words in reason
        assert s["output_tokens"] == 4 * 2  # the two good chunks before the bad one are kept
    assert "never retrieved" not in caplog.text


@pytest.mark.parametrize("mode,words", [
    ("usage_huge", "usage.completion_tokens 1000000000 outside"),
    ("usage_negative", "usage.completion_tokens -5 outside"),
    ("prompt_huge", "usage.prompt_tokens 1000000000"),
])
def test_usage_counts_are_checked_against_the_stream(mode, words):
    with stub_server(mode) as url:
        res, _ = bench(url)
    for lv in res.levels:
        s = lv.summary()
        assert s["ok"] == 0 and all(k.startswith(f"bad_usage: {words}") for k in s["reasons"])
        assert s["output_tokens"] == 4 * 16  # counted from the chunks instead
        assert s["throughput_tok_s"] < 1e5
    assert res.to_measurements("google/gemma-3-270m-it", "Q4_K_M", "cpu", 0, "llama.cpp") == []


def test_a_line_without_end_is_capped():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with stub_server("longline") as url:
        res, took = bench(url, levels=(1,), requests=2, timeout_s=5)
    grew_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    s = res.levels[0].summary()
    assert s["error"] == 2 and all("SSE line longer than 1 MiB" in k for k in s["reasons"])
    assert took < 5 and grew_mb < 40  # buffered whole, the 64 MiB line takes ~250 MB


def test_a_stream_that_ignores_max_tokens_is_ended():
    with stub_server("flood") as url:
        res, took = bench(url, levels=(1,), requests=2, timeout_s=5)
    s = res.levels[0].summary()
    assert took < 5 and s["error"] == 2
    assert all("more than 128 content chunks" in k for k in s["reasons"])


@pytest.mark.parametrize("mode", ["tokenize_one", "tokenize_junk", "models_junk"])
def test_setup_answers_that_make_no_sense_do_not_grow_the_prompt(mode):
    with stub_server(mode) as url:
        res, _ = bench(url, levels=(1,), requests=2, prompt_tokens=512)
    assert 512 // 8 <= res.prompt_words <= 4 * 512
    assert res.levels[0].summary()["ok"] == 2
    if mode == "tokenize_one":
        assert any("not believed" in n for n in res.notes)


def test_deadline_holds_whatever_the_server_does():
    with stub_server("hang") as url:
        res, took = bench(url, levels=(1, 2, 4), requests=100, timeout_s=60, deadline_s=2)
    assert took < 6
    assert res.levels[0].stopped_early == "overall deadline reached"


def _app():
    app = typer.Typer()
    register(app)
    return app


@pytest.mark.parametrize("args,msg", [
    (["--timeout", "inf"], "--timeout 'inf' is not a finite number; accepted: a finite number, more than 0 up to 86,400"),
    (["--timeout", "nan"], "--timeout 'nan' is not a finite number"),
    (["--duration", "inf"], "--duration 'inf' is not a finite number"),
    (["--deadline", "-1"], "--deadline -1 is out of range"),
    (["--prompt-tokens", "100000000"], "--prompt-tokens 100,000,000 is out of range; accepted: 1 to 1,000,000"),
    (["--max-tokens", "10000000"], "--max-tokens 10,000,000 is out of range"),
    (["--concurrency", "100000"], "--concurrency '100000'"),
    (["--n-gpus", "100000"], "--n-gpus 100,000 is out of range"),
    (["--model", "m" * 100_000], "--model is 100,000 characters long"),
])
def test_bench_options_are_finite_and_bounded(args, msg):
    r = CliRunner().invoke(_app(), ["bench", "http://127.0.0.1:9", *args])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error: ") and msg in r.output and len(r.output.splitlines()) == 1


@pytest.mark.parametrize("url", ["http://[::1", "http://[::1]:99999", "http://" + "a" * 5000])
def test_bad_urls_are_one_line(url):
    r = CliRunner().invoke(_app(), ["bench", url])
    assert r.exit_code == 2 and r.output.startswith("error: server URL") and "Traceback" not in r.output


@pytest.mark.parametrize("where", ["dir", "missing", "special"])
def test_output_paths_are_checked_before_the_run(tmp_path, where):
    target = {"dir": tmp_path, "missing": tmp_path / "no" / "rows.csv", "special": Path("/dev/null")}[where]
    t0 = time.monotonic()
    # nothing listens on port 9: had the run started, it would have failed with "connect"
    r = CliRunner().invoke(_app(), ["bench", "http://127.0.0.1:9", "--csv", str(target), "--no-progress"])
    assert r.exit_code == 2 and "--csv" in r.output and "connect" not in r.output, r.output
    assert time.monotonic() - t0 < 2


def test_rows_are_on_disk_after_each_level_and_kept_on_ctrl_c(tmp_path):
    csv, out = tmp_path / "rows.csv", tmp_path / "run.json"
    with stub_server("normal", "--token-delay", "0.05") as url:
        env = dict(os.environ, PYTHONPATH=str(Path(gpuplan.__file__).parents[1]))
        proc = subprocess.Popen(
            [sys.executable, "-c", "from gpuplan.cli import main; main()", "bench", url, "--concurrency", "1,2,4",
             "--prompt-tokens", "16", "--max-tokens", "8", "--requests", "40", "--timeout", "30",
             "--csv", str(csv), "--out", str(out), "--model-id", "google/gemma-3-270m-it", "--gpu", "cpu",
             "--n-gpus", "0", "--engine", "llama.cpp", "--no-progress"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            # a suite started in the background (`cmd &` in a script) inherits SIGINT ignored,
            # and Python keeps an ignored SIGINT: give the child Ctrl-C's default back
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            t0 = time.monotonic()  # level 1: 40 requests x 8 tokens x 50 ms, about 16 s
            while time.monotonic() - t0 < 60 and len(csv.read_text().splitlines() if csv.exists() else []) < 2:
                time.sleep(0.2)
            time.sleep(1.0)  # well inside level 2
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 130, err
    assert "interrupted" in err
    rows, errors = read_measurements([csv])
    assert errors == [] and {m.batch for m in rows} >= {1, 2}  # level 1, and level 2 as far as it got
    # rows written per level carry this machine, as the end-of-run rows did (validate, calibrate)
    from gpuplan.sources.probe import cpu_info

    _model, cores, threads, _ram = cpu_info()
    assert all(m.cpu_cores == cores and m.cpu_threads == threads and m.host_bw_gb_s > 0 and m.cpu_simd
               for m in rows), rows[0]
    assert '"interrupted": true' in out.read_text()
