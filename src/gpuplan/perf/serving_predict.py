"""Predict a published serving measurement by simulating the benchmark that produced it.

A serving row (metric throughput, throughput_total, throughput_per_gpu, or the latencies
ttft_median_ms, tpot_median_ms) is a benchmark run: which harness, how requests arrived and with
which engine settings is in the row's source and note (data/measurements/README.md). `harness_of`
reads those conditions; `predict_serving` builds the engine's scheduler, its KV pool and step
costs, and runs the simulator.

Harnesses (how each sends requests and what it reports):
- LMDeploy profile_generation (static inference): `batch` threads, each sends test_round (10 in
  v0.1) identical requests one after another; output tokens / wall time.
- LMDeploy profile_throughput / PyTorch-engine tables: `batch` concurrent clients draining a
  ShareGPT sample (num_prompts); output (and total) tokens / wall time.
- vLLM benchmark_throughput (offline): every prompt given to LLM.generate at once.
- sglang.bench_serving / vllm bench serve with request rate inf: every request sent at once;
  with a finite --request-rate R: Poisson arrivals at R/s; with --max-concurrency N: a closed loop of N.
- TensorRT-LLM v0.6 gptSessionBenchmark: static batches of `batch` requests.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from ..errors import InputError
from ..types import Engine, Metric
from .serving import simulate
from .serving_constants import SERVING, ServingConstants
from .serving_engines import kv_pool_tokens, scheduler_for
from .serving_load import Load
from .serving_step import StepCost

# ShareGPT as the benchmark scripts sample it: lengths spread over two orders of magnitude with a
# standard deviation about equal to the mean (vLLM's and SGLang's sampling keeps prompts <= 1024
# and prompt + output <= 2048 tokens); a lognormal of sigma 0.8 has that coefficient of variation.
SHAREGPT_SIGMA = 0.8
# LMDeploy v0.1.0a1 benchmark scripts set TurboMind's cache_max_entry_count to a block count
# (blocks of 128 tokens) and max_batch_size per model (benchmark/benchmark_{7b,13b,20b,70b}.sh @05e6ef3).
LMDEPLOY_V01_BLOCKS = {"Llama-2-7b": (1000, 128), "Llama-2-13b": (500, 128), "internlm-20b": (700, 128),
                       "Llama-2-70b": (4000, 256)}


@dataclass(frozen=True)
class Harness:
    name: str
    load: Load
    offline: bool = True
    static: bool = False
    max_seqs: int | None = None
    budget: int | None = None
    kv_blocks: int | None = None
    multi_step: int = 1
    kv_type: str | None = None


def _num(pattern: str, text: str) -> int | None:
    m = re.search(pattern, text, re.I)
    return int(m.group(1)) if m else None


def _rate(text: str) -> float | None:
    """A finite request rate (requests/s) stated as `--request-rate R` / `request rate R` (not inf)."""
    m = re.search(r"request[-_ ]rate[ =]+(\d+(?:\.\d+)?)(?![\w.])", text, re.I)
    return float(m.group(1)) if m and float(m.group(1)) > 0 else None


def harness_of(m) -> Harness:
    """The benchmark a serving row came from, read from its engine, source and note."""
    note = getattr(m, "note", "") or ""
    src = getattr(m, "source", "") or ""
    eng = (m.engine or "").lower()
    P, G, B = int(m.n_prompt), int(m.n_gen), max(int(m.batch), 1)
    if P < 1 or G < 1:
        raise InputError("serving row needs n_prompt and n_gen of at least 1")
    kv = "fp8" if re.search(r"fp8[ _-]?kv|kv[- ]cache[- ]dtype fp8|\+ fp8 kv", note, re.I) else None
    # engine limits: vLLM/SGLang spellings, and TensorRT-LLM's max_batch_size / max_num_tokens
    seqs = _num(r"max[- _](?:num[- _]seqs|batch[- _]size)[ =]*(\d+)", note)
    budget = _num(r"max[- _]num[- _](?:batched[- _])?tokens[ =]*(\d+)", note)
    rate = _rate(note)
    conc = _num(r"max[- _]concurrency[ =:]+(\d+)", note)
    prompts = _num(r"(\d+)\s+(?:sampled\s+)?(?:prompts|requests)", note) or _num(r"num[-_]prompts[ =]*(\d+)", note)
    steps = _num(r"num-scheduler-steps[ =]*(\d+)", note) or 1
    sharegpt = "sharegpt" in note.lower()
    spread = SHAREGPT_SIGMA if sharegpt else 0.0
    if eng == "lmdeploy":
        blocks, max_batch = None, None
        if "v0.1.0" in note:
            for key, (b, mb) in LMDEPLOY_V01_BLOCKS.items():
                if key.lower() in m.model.lower():
                    blocks, max_batch = b, mb
        if "static inference" in note.lower() or "profile_generation" in note:
            return Harness("lmdeploy profile_generation", Load("users", P, G, users=B, requests=B * 10),
                           offline=True, max_seqs=max_batch, kv_blocks=blocks)
        n = prompts or 3000
        return Harness("lmdeploy profile_throughput", Load("users", P, G, users=B, requests=n, spread=spread),
                       offline=True, max_seqs=max(B, max_batch or 0), kv_blocks=blocks)
    if eng == "tensorrt-llm" and ("gptsessionbenchmark" in note.lower() or "v0.6" in note):
        return Harness("tensorrt-llm gptSessionBenchmark", Load("batch", P, G, users=B, requests=B),
                       static=True, max_seqs=B)
    if eng in ("vllm", "sglang", "tgi", "tensorrt-llm") and (rate or conc):
        # vllm bench serve / sglang.bench_serving with a finite --request-rate (Poisson arrivals: the
        # default burstiness 1) or a --max-concurrency N (at rate inf: a closed loop of N, each slot
        # sending its next request when its last one ends; TTFT counts from that send)
        if rate and conc:
            raise InputError("a serving benchmark at a finite request rate with a concurrency limit is not "
                             "replayed; accepted: --request-rate R or --max-concurrency N, not both")
        n = prompts or B
        load = (Load("rate", P, G, rate=rate, requests=n, spread=spread) if rate else
                Load("users", P, G, users=conc, requests=n, spread=spread))
        name = f"bench serve (request rate {rate:g})" if rate else f"bench serve (max concurrency {conc})"
        return Harness(name, load, offline=False, max_seqs=seqs, budget=budget, multi_step=steps, kv_type=kv)
    if "bench_serving" in note or "request rate inf" in note.lower():
        n = prompts or B
        return Harness("bench_serving (rate inf)", Load("offline", P, G, users=n, spread=spread), offline=False,
                       multi_step=steps, kv_type=kv)
    if eng in ("vllm", "sglang", "tgi", "tensorrt-llm"):
        n = prompts or B
        return Harness("offline throughput", Load("offline", P, G, users=n, spread=spread), offline=True,
                       max_seqs=seqs, budget=budget, multi_step=steps, kv_type=kv)
    # llama.cpp and the like: concurrent users on a server with `batch` slots
    return Harness("concurrent users", Load("users", P, G, users=B, requests=B * 4), offline=False, max_seqs=B)


# The longest benchmark whose latencies are simulated whole (requests). A run's median TTFT needs
# every request: at request rate inf the later ones queue behind the earlier ones, so the first
# `cap` requests alone (what run_long simulates for throughput) underestimate it: vLLM on one A100
# (256 sequences) at 1000 ShareGPT prompts, shortened to 768, gives a median TTFT a third lower
# (69 s against 109 s for Qwen3-32B). Cost, measured on this 2-core machine under load (2026-12-01):
# a whole 1000-request run of the held-out rows takes 5 to 300 ms (20 to 13,000 steps), so 20,000
# requests stay within seconds.
LATENCY_MAX_REQUESTS = 20_000


@dataclass(frozen=True)
class RunFigures:
    """What one replayed benchmark reports: output and total tokens/s, and the median TTFT and
    TPOT (ms, as vllm bench serve computes them: perf/serving.py) where the whole run was
    simulated (None where run_long shortened it)."""

    output_tok_s: float
    total_tok_s: float
    ttft_median_ms: float | None = None
    tpot_median_ms: float | None = None


def run_long(cost, sched, load: Load, kv_tokens: int, cap: int | None = None) -> RunFigures:
    """The figures of `load` run to its end. A long benchmark (thousands of requests) is simulated
    for its first `cap` requests; the rest take the time the steady state needs for them (the
    simulated run's output tokens/s while the load was full), and such a run has no latencies
    (run_whole gives them)."""
    from .serving_load import requests_of

    n = len(requests_of(load)[0])
    conc = load.users if load.kind in ("users", "batch") else min(sched.max_seqs, n)
    cap = cap or max(3 * conc, 300)
    if n <= cap * 1.25:
        return run_whole(cost, sched, load, kv_tokens)
    short = replace(load, requests=cap, users=cap if load.kind == "offline" else load.users)
    res = simulate(cost, sched, short, kv_tokens)
    if res.completed == 0 or res.steady_output_throughput <= 0:
        raise InputError("no request of this benchmark fits the engine's KV cache")
    _, p, o = requests_of(load)
    mean_out = float(o.mean())
    extra = (n - res.completed) * mean_out / res.steady_output_throughput
    duration = res.duration_s + extra
    return RunFigures(float(o.sum() / duration), float((o.sum() + p.sum()) / duration))


def run_whole(cost, sched, load: Load, kv_tokens: int) -> RunFigures:
    """The figures of every request of `load` simulated, latencies included."""
    res = simulate(cost, sched, load, kv_tokens)
    if res.completed == 0:
        raise InputError("no request of this benchmark fits the engine's KV cache")
    return RunFigures(res.output_throughput, res.total_token_throughput,
                      res.ttft_ms["median"], res.tpot_ms["median"])


_RUNS: dict = {}


def _key(m) -> tuple:
    return tuple(str(getattr(m, f, "")) for f in ("source", "engine", "date", "model", "quant", "gpu", "n_gpus",
                                                   "split", "interconnect", "n_prompt", "n_gen", "batch", "note"))


def predict_serving(m, model, hw, plan, date: str | None, c, sc: ServingConstants | None = None,
                    metric: Metric = Metric.THROUGHPUT) -> float:
    """Output (or total, or per-GPU) tokens/s, or the median TTFT / TPOT in ms, that the row's
    benchmark would measure. Rows of one run (its output and total throughput, its latencies)
    share one simulation; where the throughput came from a shortened run (run_long), the latencies
    come from one more simulation of the whole run, and the throughput stays the shortened one's."""
    sc = sc or SERVING
    metric = Metric(getattr(metric, "value", metric))
    key = _key(m)
    hit = _RUNS.get(key)
    figs = hit[3] if hit is not None and hit[0] is c and hit[1] is sc and hit[2] is hw else {}
    if not figs:
        if len(_RUNS) > 1024:
            _RUNS.clear()
        _RUNS[key] = (c, sc, hw, figs)
    if metric.is_latency:
        if "whole" not in figs:
            figs["whole"] = _simulate_row(m, model, hw, plan, date, c, sc, whole=True)
        r = figs["whole"]
        v = r.ttft_median_ms if metric == Metric.TTFT_MEDIAN_MS else r.tpot_median_ms
        if v is None and metric == Metric.TPOT_MEDIAN_MS:
            raise InputError("no request of this benchmark generates more than one token, so it has no TPOT")
    else:
        if "run" not in figs:
            figs["run"] = _simulate_row(m, model, hw, plan, date, c, sc)
            if figs["run"].ttft_median_ms is not None:
                figs.setdefault("whole", figs["run"])  # nothing was shortened: the latencies are this run's
        r = figs["run"]
        v = r.total_tok_s if metric == Metric.THROUGHPUT_TOTAL else r.output_tok_s
        if metric == Metric.THROUGHPUT_PER_GPU:
            v /= max(hw.n, 1)
    if v is None or not (v > 0 and math.isfinite(v)):
        raise InputError(f"the simulation gave no finite {metric.value}")
    return v


def _simulate_row(m, model, hw, plan, date, c, sc, whole: bool = False) -> RunFigures:
    h = harness_of(m)
    if h.kv_type:
        plan = replace(plan, kv_type=h.kv_type)
    dev = hw.devices[plan.device_ids[0]]
    tp = plan.tp if plan.tp else 1
    if plan.engine in (Engine.LLAMA_CPP, Engine.OLLAMA):
        ctx = (int(m.n_prompt) + int(m.n_gen)) * max(int(m.batch), 1)
        sched = scheduler_for(plan.engine, dev, date, tp=tp, parallel=max(int(m.batch), 1), n_ctx=ctx)
    else:
        # only a server harness goes through the API server's front end (perf/serving_frontend.py)
        sched = scheduler_for(plan.engine, dev, date, tp=tp, offline=h.offline, static=h.static,
                              max_model_len=model.spec.max_context, frontend=not h.offline)
    sched = sched.with_overrides(max_seqs=h.max_seqs, budget_tokens=h.budget)
    if h.budget and sched.chunk_tokens:
        sched = replace(sched, chunk_tokens=h.budget)
    if h.kv_blocks:
        kv_tokens = h.kv_blocks * sched.block_tokens
    else:
        kv_tokens, _ = kv_pool_tokens(model, hw, plan, sched)
    if h.multi_step > 1:  # vLLM multi-step scheduling: host work once per N decode steps
        from .serving_constants import family_key

        be = dev.backend
        key = family_key(plan.engine.value) + (f"_{be}" if be != "cuda" else "")
        sc = sc.with_overrides({t: {key: (sc.get(t, sched.engine, be) or 0.0) / h.multi_step}
                                for t in ("step_s", "seq_s")})
    cost = StepCost(model, hw, plan, sched, c=c, sc=sc, date=date)
    if not whole:
        return run_long(cost, sched, h.load, kv_tokens)
    from .serving_load import requests_of

    n = len(requests_of(h.load)[0])
    if n > LATENCY_MAX_REQUESTS:
        raise InputError(f"the latencies of a benchmark of {n:,} requests are not simulated; accepted: at most "
                         f"{LATENCY_MAX_REQUESTS:,} requests (its throughput is: run_long)")
    return run_whole(cost, sched, h.load, kv_tokens)
