"""The API-server front end of perf/serving_frontend.py in the simulator: its delay is paid once
per request, its serial service time bounds request throughput, only servers pay it, and at 0
(every engine today) the simulator runs exactly as it did without it."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gpuplan import catalog
from gpuplan.perf import serving_frontend
from gpuplan.perf.serving import _Sim, simulate
from gpuplan.perf.serving_engines import kv_pool_tokens, scheduler_for
from gpuplan.perf.constants import DEFAULT
from gpuplan.perf.serving_frontend import FrontEnd
from gpuplan.perf.serving_load import Load
from gpuplan.perf.serving_step import StepCost
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Hardware, Plan, Split


@pytest.fixture(scope="module")
def vllm_h100():
    m = resolve_model("meta-llama/Llama-2-7b-hf", "FP16")
    d = catalog.device("h100-sxm-80gb")
    hw = Hardware(devices=(d,), memory_gib=(d.memory_gib,))
    plan = Plan(split=Split.NONE, engine=Engine.VLLM, device_ids=(0,), tp=1)
    sched = scheduler_for(Engine.VLLM, d)
    kv, _ = kv_pool_tokens(m, hw, plan, sched)
    return sched, kv, StepCost(m, hw, plan, sched)


LOADS = [Load("users", 128, 64, users=1, requests=8), Load("users", 512, 128, users=16, requests=64, spread=0.8),
         Load("offline", 128, 4, users=300), Load("rate", 256, 64, rate=20.0, requests=200, spread=0.8)]


@pytest.mark.parametrize("load", LOADS, ids=lambda x: x.kind)
def test_zero_front_end_runs_exactly_as_without_it(vllm_h100, load):
    """The front-end queue with both costs 0 hands every request on at the instant it arrives, so
    forcing that path on gives bit-identical first-token and finish times. The GPU engines ship 0
    (no sourced value), so their simulations are what they were before the front end."""
    sched, kv, cost = vllm_h100
    plain = _Sim(cost, sched, load, kv)
    plain.run()
    forced = _Sim(cost, sched, load, kv)
    forced.fe_on = True
    forced.run()
    assert np.array_equal(plain.first, forced.first, equal_nan=True)
    assert np.array_equal(plain.finish, forced.finish, equal_nan=True)
    assert plain.steps == forced.steps
    for e in ("vllm", "sglang", "tensorrt-llm", "lmdeploy"):
        assert serving_frontend.FRONTENDS[e] == FrontEnd(0.0, 0.0, serving_frontend.NONE_SOURCED)


def test_llama_server_has_its_measured_delay_and_only_it():
    """The 4 ms measured against llama-server (scripts/measure_llama_frontend.py) goes to
    llama-server alone: Ollama and llama-cpp-python run other front ends on the same library."""
    assert scheduler_for(Engine.LLAMA_CPP, parallel=2, n_ctx=4096).frontend_s == pytest.approx(0.004)
    assert scheduler_for(Engine.LLAMA_CPP, parallel=2, n_ctx=4096).frontend_serial_s == 0.0
    for e in (Engine.OLLAMA, Engine.LLAMA_CPP_PYTHON):
        assert scheduler_for(e, parallel=2, n_ctx=4096).frontend_s == 0.0


def test_the_delay_is_added_once_per_request(vllm_h100):
    """One user at a time (vllm bench serve --max-concurrency 1): each request waits latency +
    serial once before its prompt runs, so TTFT and E2E grow by exactly that and TPOT not at all."""
    sched, kv, cost = vllm_h100
    load = Load("users", 128, 64, users=1, requests=10)
    base = simulate(cost, sched, load, kv)
    fe = simulate(cost, replace(sched, frontend_s=0.030, frontend_serial_s=0.020), load, kv)
    assert fe.completed == base.completed == 10
    assert np.allclose(fe.ttft - base.ttft, 0.050, atol=1e-9)
    assert np.allclose(fe.e2el - base.e2el, 0.050, atol=1e-9)
    assert np.allclose(fe.tpot, base.tpot, rtol=1e-9)
    assert any("front end" in n for n in fe.notes) and not any("front end" in n for n in base.notes)


def test_the_serial_time_bounds_request_throughput_of_tiny_requests(vllm_h100):
    """1000 requests of 128 + 4 tokens sent at once: the GPU alone would finish far more than 50 per
    second, a 20 ms front end lets through no more than 50, and close to that."""
    sched, kv, cost = vllm_h100
    load = Load("offline", 128, 4, users=1000)
    base = simulate(cost, sched, load, kv)
    fe = simulate(cost, replace(sched, frontend_serial_s=0.020), load, kv)
    assert base.request_throughput > 4 * 50.0
    assert 0.97 * 50.0 <= fe.request_throughput <= 50.0 + 1e-9
    # a delay that every request pays side by side does not bound throughput
    lat = simulate(cost, replace(sched, frontend_s=0.020), load, kv)
    assert lat.request_throughput > 0.9 * base.request_throughput


def test_grouped_runs_keep_the_front_end_bound(vllm_h100):
    """Planning runs simulate groups of identical requests: each group keeps the one front end busy
    for all its members, so the bound stays 1 / serial_s per request."""
    sched, kv, cost = vllm_h100
    s = replace(sched, frontend_serial_s=0.010)
    full = simulate(cost, s, Load("offline", 128, 4, users=800), kv)
    grp = simulate(cost, s, Load("offline", 128, 4, users=200), kv, group=4)
    assert full.request_throughput == pytest.approx(100.0, rel=0.03)
    assert grp.request_throughput == pytest.approx(full.request_throughput, rel=0.03)


def test_only_a_server_pays_it_and_planning_and_replay_see_it(monkeypatch, vllm_h100):
    """scheduler_for attaches the engine's front end unless the harness drives the engine from
    Python; the planner's setup and the benchmark replay both build their scheduler through it."""
    from gpuplan.perf import serving_predict
    from gpuplan.planner import targets

    monkeypatch.setitem(serving_frontend.FRONTENDS, "vllm", FrontEnd(0.04, 0.02, "test"))
    d = catalog.device("h100-sxm-80gb")
    assert scheduler_for(Engine.VLLM, d).frontend_s == 0.04
    assert scheduler_for(Engine.VLLM, d).frontend_serial_s == 0.02
    assert scheduler_for(Engine.VLLM, d, frontend=False).frontend_s == 0.0
    assert scheduler_for(Engine.SGLANG, d).frontend_serial_s == 0.0
    seen = []
    real = serving_predict.scheduler_for
    monkeypatch.setattr(serving_predict, "scheduler_for", lambda *a, **k: seen.append(k.get("frontend")) or real(*a, **k))
    m = resolve_model("meta-llama/Llama-2-7b-hf", "FP16")
    hw = Hardware(devices=(d,), memory_gib=(d.memory_gib,))
    plan = Plan(split=Split.NONE, engine=Engine.VLLM, device_ids=(0,), tp=1)

    class Row:
        engine, model, source, n_prompt, n_gen, batch = "vllm", "meta-llama/Llama-2-7b-hf", "", 128, 4, 200
        note = "vllm bench serve, request rate inf, 200 prompts"

    class Offline(Row):
        note = "benchmark_throughput (LLM.generate), 200 prompts"

    on = serving_predict._simulate_row(Row, m, hw, plan, None, DEFAULT, serving_predict.SERVING, whole=True)
    off = serving_predict._simulate_row(Offline, m, hw, plan, None, DEFAULT, serving_predict.SERVING, whole=True)
    assert seen == [True, False]
    assert on.output_tok_s <= 4 * 50.0 + 1e-6 < off.output_tok_s  # 20 ms serial: at most 50 requests/s
    assert targets.setup_for(m, hw, plan, 2048, users=4).sched.frontend_serial_s == 0.02
