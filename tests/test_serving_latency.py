"""The serving simulator's latencies as `vllm bench serve` reports them (vllm/benchmarks/serve.py
calculate_metrics): TTFT = first token - request sent; TPOT = (e2e latency - TTFT) / (output tokens - 1)
per request, requests of one output token left out; medians over the requests. Checked on loads small
enough to add up by hand from the step costs; and the latency metrics are never fitted on."""

from __future__ import annotations

import numpy as np
import pytest

from gpuplan.bench.fitting import Rows
from gpuplan.bench.measurements import parse_row
from gpuplan.perf import serving_predict
from gpuplan.perf.constants import DEFAULT
from gpuplan.perf.predict import predict_row, row_setup
from gpuplan.perf.serving import simulate
from gpuplan.perf.serving_constants import SERVING
from gpuplan.perf.serving_engines import kv_pool_tokens, scheduler_for
from gpuplan.perf.serving_load import Load
from gpuplan.perf.serving_step import StepCost
from gpuplan.types import Metric

ROW = {"source": "https://example.org", "engine": "vllm", "date": "2025-11", "model": "Qwen/Qwen3-14B",
       "quant": "BF16", "gpu": "h100-sxm-80gb", "n_gpus": "1", "split": "none", "interconnect": "none",
       "n_depth": "0", "n_prompt": "1000", "n_gen": "50", "batch": "1", "metric": "tpot_median_ms", "tok_s": "10",
       "note": "vllm bench serve, request rate inf (1 prompts sent at once)"}


def row(**kw):
    return parse_row({**ROW, **{k: str(v) for k, v in kw.items()}})


@pytest.fixture(scope="module")
def engine():
    """A real vLLM V1 server setup (scheduler, KV pool, step costs) for Qwen3-14B on one H100."""
    m = row()
    model, hw, plan, _ = row_setup(m)
    sched = scheduler_for(plan.engine, hw.devices[0], m.date, offline=False, max_model_len=model.spec.max_context)
    kv, _ = kv_pool_tokens(model, hw, plan, sched)
    return StepCost(model, hw, plan, sched, c=DEFAULT, sc=SERVING, date=m.date), sched, kv


def test_one_request_alone_ttft_is_its_prefill_step_and_tpot_the_mean_decode_step(engine):
    cost, sched, kv = engine
    P, G = 1000, 50
    res = simulate(cost, sched, Load("offline", P, G, users=1), kv)
    # by hand: one step prefills the whole prompt (P < the step's token budget) and writes the first
    # token; then G - 1 decode steps, the i-th reading P + i cached tokens
    assert P <= sched.budget_tokens
    prefill = cost.mixed(0, 0.0, 0.0, P, 0.0, P * (P + 1) / 2, 1)
    decode = [float(cost.time(1, 1, float(P + i))) for i in range(G - 1)]
    assert res.ttft_ms["median"] == pytest.approx(prefill * 1e3, abs=2e-3)
    assert res.tpot_ms["median"] == pytest.approx(np.mean(decode) * 1e3, abs=2e-3)
    assert res.e2el_ms["median"] == pytest.approx((prefill + sum(decode)) * 1e3, abs=2e-3)
    # TPOT leaves the first token out: it is not e2e / output tokens
    assert res.tpot_ms["median"] != pytest.approx(res.e2el_ms["median"] / G, rel=0.05)


def test_requests_of_one_output_token_have_no_tpot(engine):
    cost, sched, kv = engine
    res = simulate(cost, sched, Load("offline", 200, 1, users=4), kv)
    assert res.completed == 4 and res.ttft_ms["median"] > 0
    assert res.tpot_ms["median"] is None
    with pytest.raises(Exception, match="no TPOT"):
        predict_row(row(n_gen=1, batch=4, note="vllm bench serve, request rate inf (4 prompts sent at once)"))


def test_tpot_of_each_request_is_its_decode_time_over_output_minus_one(engine):
    """Two requests sent at once: the second waits for the first's prefill (a TTFT of queueing) and
    both then decode together; each TPOT is (e2e - TTFT) / (output - 1) of that request."""
    cost, sched, kv = engine
    res = simulate(cost, sched, Load("offline", 6000, 20, users=2), kv)
    assert res.completed == 2
    out = 20
    assert np.allclose(res.tpot, (res.e2el - res.ttft) / (out - 1))
    # the token budget (8192 on an H100) holds one 6000-token prompt and a chunk of the next: the
    # second one's first token comes a step later, and the first one's first decode step carries the
    # rest of that prompt (a slower step, so its TPOT is the higher)
    assert sched.budget_tokens < 12000 and res.ttft.max() > res.ttft.min() * 1.2
    first = int(np.argmin(res.ttft))
    assert res.tpot[first] > res.tpot[1 - first]


def test_a_replayed_rate_inf_benchmark_predicts_its_medians(engine):
    """predict_row on a latency row gives the simulated median of the row's whole benchmark."""
    cost, sched, kv = engine
    note = "vllm bench serve --backend openai-chat, request rate inf (64 prompts sent at once)"
    res = simulate(cost, sched, Load("offline", 1000, 50, users=64), kv)
    assert predict_row(row(batch=64, note=note, metric="ttft_median_ms")) == pytest.approx(res.ttft_ms["median"])
    assert predict_row(row(batch=64, note=note, metric="tpot_median_ms")) == pytest.approx(res.tpot_ms["median"])


def test_a_shortened_run_gets_its_latencies_from_the_whole_run():
    """vLLM on an A100 (256 sequences) with 1000 prompts: run_long simulates 768 of them for the
    throughput; the median TTFT comes from all 1000 (queueing makes the later ones wait longer), and
    asking for it first or last leaves the throughput as it was."""
    note = "vllm bench serve --backend openai-chat, request rate inf (1000 prompts sent at once); ShareGPT"
    kw = dict(gpu="a100-sxm-80gb", n_prompt=217, n_gen=201, batch=1000, note=note)
    serving_predict._RUNS.clear()
    thr_alone = predict_row(row(metric="throughput", **kw))
    serving_predict._RUNS.clear()
    ttft = predict_row(row(metric="ttft_median_ms", **kw))
    thr_after = predict_row(row(metric="throughput", **kw))
    assert thr_after == thr_alone
    m = row(metric="ttft_median_ms", **kw)
    model, hw, plan, _ = row_setup(m)
    figs = serving_predict._simulate_row(m, model, hw, plan, m.date, DEFAULT, SERVING)
    assert figs.ttft_median_ms is None  # the throughput run was shortened: it has no latencies
    whole = serving_predict._simulate_row(m, model, hw, plan, m.date, DEFAULT, SERVING, whole=True)
    assert ttft == whole.ttft_median_ms
    short = simulate_first(m, model, hw, plan, 768)
    assert short < 0.8 * ttft  # what the shortened run would have said


def simulate_first(m, model, hw, plan, n):
    """Median TTFT (ms) of the first n requests of the row's benchmark alone."""
    from dataclasses import replace

    h = serving_predict.harness_of(m)
    captured = {}
    real = serving_predict.run_whole

    def spy(cost, sched, load, kv):
        captured["args"] = (cost, sched, load, kv)
        return real(cost, sched, load, kv)

    serving_predict.run_whole = spy
    try:
        serving_predict._simulate_row(m, model, hw, plan, m.date, DEFAULT, SERVING, whole=True)
    finally:
        serving_predict.run_whole = real
    cost, sched, load, kv = captured["args"]
    assert load == h.load
    return simulate(cost, sched, replace(load, requests=n, users=n), kv).ttft_ms["median"]


def test_latency_rows_are_never_fitted():
    rows = [row(metric="ttft_median_ms", tok_s=20000), row(metric="tpot_median_ms", tok_s=50),
            row(metric="decode", n_prompt=0, n_gen=128, tok_s=60, note="")]
    fit = Rows(rows, metrics=tuple(m.value for m in Metric))  # even when every metric is asked for
    assert [m.metric for m, _ in fit.items] == [Metric.DECODE]


def test_client_rate_and_concurrency_limits_are_read_from_the_note():
    """vllm bench serve --request-rate R: Poisson arrivals at R/s; --max-concurrency N: a closed loop
    of N; both at once is refused; request rate inf without a limit stays all-at-once; TensorRT-LLM's
    max_batch_size / max_num_tokens are the engine's sequence and token limits."""
    from gpuplan.errors import InputError

    h = serving_predict.harness_of(row(batch=10, note="vllm bench serve --request-rate 2.5, 300 prompts"))
    assert (h.load.kind, h.load.rate, h.load.requests, h.offline) == ("rate", 2.5, 300, False)
    h = serving_predict.harness_of(row(batch=8, note="vllm bench serve, 100 prompts, --max-concurrency 8 (request rate inf)"))
    assert (h.load.kind, h.load.users, h.load.requests) == ("users", 8, 100)
    with pytest.raises(InputError, match="not both"):
        serving_predict.harness_of(row(note="vllm bench serve --request-rate 4 --max-concurrency 8, 100 prompts"))
    h = serving_predict.harness_of(row(batch=1000, note="request rate inf (1000 prompts sent at once, no max concurrency)"))
    assert (h.load.kind, h.load.users) == ("offline", 1000)
    h = serving_predict.harness_of(row(engine="tensorrt-llm", note="trtllm-build --max_batch_size 64 --max_num_tokens 4096"))
    assert (h.max_seqs, h.budget) == (64, 4096)


def test_a_light_poisson_load_is_bound_by_its_arrivals():
    """At 1 request/s with 50-token answers an H100 is idle most of the time: the output throughput is
    the arrival rate times the answer length (over the arrivals' span), and TTFT is one prefill, not a queue."""
    note = "vllm bench serve --request-rate 1, 200 prompts"
    thr = predict_row(row(metric="throughput", n_prompt=500, n_gen=50, batch=1, note=note))
    ttft = predict_row(row(metric="ttft_median_ms", n_prompt=500, n_gen=50, batch=1, note=note))
    assert thr == pytest.approx(1.0 * 50, rel=0.15)
    assert ttft < 200  # ms: no request waits behind another
    burst = predict_row(row(metric="ttft_median_ms", n_prompt=500, n_gen=50, batch=200,
                            note="vllm bench serve, request rate inf (200 prompts sent at once)"))
    assert burst > 3 * ttft
