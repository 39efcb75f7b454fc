"""`plan --trace FILE`: a request trace replayed on every serving candidate by the simulator
(planner/serving_trace.py, perf/serving_load.read_trace)."""

from __future__ import annotations

import json
import os
import random

import pytest
from typer.testing import CliRunner

from gpuplan.cli import app
from gpuplan.errors import InputError
from gpuplan.perf.serving_load import read_trace
from gpuplan.perf.serving_slo import parse_slo
from gpuplan.planner.serving_trace import replay
from gpuplan.planner.targets import serving_plans
from gpuplan.sources.hardware import parse_hardware
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Plan, Split

M8 = "meta-llama/Llama-3.1-8B-Instruct"
GPUS = "2x a100-sxm-80gb"


def _trace(n: int, rate: float, seed: int = 1, long_ones: int = 0) -> list[tuple[float, int, int]]:
    rng = random.Random(seed)
    t, rows = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        rows.append((round(t, 4), rng.randint(100, 2000), rng.randint(20, 400)))
    rows += [(t + 0.1 * i, 9000, 100) for i in range(long_ones)]  # longer than an 8192 context
    return rows


def _csv(path, rows) -> str:
    path.write_text("arrival_s,prompt_tokens,output_tokens\n" + "".join(f"{a},{p},{o}\n" for a, p, o in rows))
    return str(path)


@pytest.fixture(scope="module")
def m8():
    return resolve_model(M8, None), parse_hardware(GPUS)


def test_plan_trace_json_replays_every_request_on_every_candidate(tmp_path):
    rows = _trace(300, 6.0, long_ones=3)
    r = CliRunner().invoke(app, ["plan", M8, "--gpus", GPUS, "--trace", _csv(tmp_path / "t.csv", rows),
                                 "--ttft", "1s", "--tpot", "50ms", "--json"])
    assert r.exit_code == 0, r.output
    sv = json.loads(r.stdout)["serving"]
    assert sv["mode"] == "trace" and sv["requested"] == 303
    assert len(sv["candidates"]) >= 4 and {c["engine"] for c in sv["candidates"]} >= {"vllm", "sglang"}
    assert any("3 request(s) longer than the context" in line for line in sv["explanation"])
    kept = rows[:300]
    offered = sum(o for _, _, o in kept) / (kept[-1][0] - kept[0][0])  # output tok/s the trace asks for
    for c in sv["candidates"]:
        p = c["at_capacity"]
        # the engines keep up with 6 requests/s on two A100s: they emit what arrives, not more
        assert 0.6 * offered < p["output_throughput"] < 1.6 * offered
        assert p["meets_targets"] in (True, False) and p["ttft_ms"]["median"] <= p["ttft_ms"]["p90"]
    best = sv["candidates"][sv["best"]]["at_capacity"]
    met = [c["at_capacity"] for c in sv["candidates"] if c["at_capacity"]["meets_targets"]]
    assert best["meets_targets"] == bool(met)
    if met:  # the best meets the targets with the lowest p90 end-to-end latency
        assert best["e2el_ms"]["p90"] == min(p["e2el_ms"]["p90"] for p in met)


def test_the_same_requests_sooner_wait_longer_and_replay_deterministically(m8):
    m, hw = m8
    plan = [Plan(split=Split.TENSOR, engine=Engine.VLLM, device_ids=(0, 1), tp=2)]
    cands = serving_plans(m, hw, plan, 8192, 512, 256)[:1]
    calm = _trace(200, 2.0)
    rush = [(a / 20.0, p, o) for a, p, o in calm]  # the same requests, 20x faster
    slo = parse_slo(None, "1s", "50ms")
    a = replay(m, hw, cands, tuple(calm), slo, 8192)
    b = replay(m, hw, cands, tuple(rush), slo, 8192)
    assert replay(m, hw, cands, tuple(calm), slo, 8192) == a
    pa, pb = a.candidates[0].at_capacity, b.candidates[0].at_capacity
    assert pb.ttft_ms.p90 > pa.ttft_ms.p90 and pb.tpot_ms.median > pa.tpot_ms.median
    assert pb.output_throughput > 5 * pa.output_throughput  # it keeps up with more, up to its limit


def test_a_trace_of_only_too_long_requests_is_one_clear_error(m8):
    m, hw = m8
    plan = [Plan(split=Split.TENSOR, engine=Engine.VLLM, device_ids=(0, 1), tp=2)]
    with pytest.raises(InputError, match="longer than the context"):
        replay(m, hw, plan, ((0.0, 9000, 10),), parse_slo(None, None, None), 8192)


def test_json_lines_traces_are_read_too(tmp_path):
    p = tmp_path / "t.jsonl"
    p.write_text('{"arrival_s": 0.5, "prompt_tokens": 100, "output_tokens": 20}\n'
                 '{"timestamp": 0.1, "input_tokens": 50, "output_tokens": 5}\n')
    assert read_trace(p) == ((0.5, 100, 20), (0.1, 50, 5))


@pytest.mark.parametrize("content,named", [
    ("arrival_s,prompt_tokens,output_tokens\n0,abc,3\n", "must be numbers"),
    ("arrival_s,prompt_tokens,output_tokens\nnan,10,3\n", "arrival_s must be a number"),
    ("arrival_s,prompt_tokens,output_tokens\n0,0,3\n", "1..10,000,000"),
    ("arrival_s,prompt_tokens,output_tokens\n0,10,1e12\n", "1..10,000,000"),
    ("arrival_s,prompt\n0,10\n", "needs arrival_s"),
    ('{"arrival_s": 0, "prompt_tokens": 1, "output_tokens": NaN}\n', "NaN"),
    ('{"a": ' * 200 + "1" + "}" * 200 + "\n", "nested"),
    ("[1, 2]\n", "no requests"),
    ("arrival_s,prompt_tokens,output_tokens\n", "no requests"),
    ("arrival_s,prompt_tokens,output_tokens\n" + "0,1," + "9" * 200_000 + "\n", "trace file"),
])
def test_bad_trace_files_are_one_clear_line(tmp_path, content, named):
    p = tmp_path / "bad.csv"
    p.write_text(content)
    with pytest.raises(InputError) as e:
        read_trace(p)
    msg = str(e.value)
    assert "\n" not in msg and named in msg and e.value.to_dict()["error"]["input"] == "trace"


def test_trace_files_that_are_not_regular_or_too_long_are_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path, named in ((fifo, "FIFO"), (tmp_path, "directory"), (tmp_path / "none.csv", "does not exist")):
        with pytest.raises(InputError, match=named):
            read_trace(path)
    many = tmp_path / "many.csv"
    _csv(many, [(i * 0.01, 10, 10) for i in range(50)])
    with pytest.raises(InputError, match="at most 20 requests"):
        read_trace(many, max_requests=20)


def test_trace_and_rate_together_are_refused():
    r = CliRunner().invoke(app, ["plan", M8, "--gpus", GPUS, "--trace", "x.csv", "--rate", "3"])
    assert isinstance(r.exception, InputError) and "--trace and --rate" in str(r.exception)


def test_the_web_api_takes_no_trace_path():
    from fastapi.testclient import TestClient

    from gpuplan.web import app as webapp

    client = TestClient(webapp.create_app(), raise_server_exceptions=False)
    r = client.get("/api/plan", params={"model": M8, "gpus": GPUS, "trace": "/etc/passwd"})
    assert r.status_code == 422 and "trace" in r.text
