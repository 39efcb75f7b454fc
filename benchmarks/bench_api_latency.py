"""Latency of GET /api/plan under load: `gpuplan serve` in a subprocess, 20 concurrent clients, ~10 s.

    PYTHONPATH=src python benchmarks/bench_api_latency.py [--clients 20] [--seconds 10] [--profile]

Prints median and p90 latency (target: median < 50 ms on a 2-core machine). --profile also runs the
planner in-process under cProfile and prints where the time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERIES = [  # a mix a page would send: different models, cards, contexts
    {"model": "meta-llama/Meta-Llama-3-8B", "gpus": "2x rtx-4090", "context": 8192},
    {"model": "meta-llama/Meta-Llama-3-70B", "gpus": "2x rtx-3090", "context": 8192, "users": 4},
    {"model": "Qwen/Qwen3-30B-A3B", "gpus": "rtx-4090,rtx-3060-12gb", "context": 16384},
    {"model": "meta-llama/Llama-3.1-70B", "gpus": "8x h100-sxm-80gb", "context": 32768, "users": 32},
    {"model": "google/gemma-3-27b-it", "gpus": "apple-m2-ultra-76c:192gb", "context": 8192},
]


DISTINCT = False
SERIAL = itertools.count()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(port: int) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-m", "gpuplan.cli", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=ROOT, start_new_session=True)


async def wait_ready(base: str, proc: subprocess.Popen) -> None:
    import httpx

    async with httpx.AsyncClient() as c:
        for _ in range(300):
            if proc.poll() is not None:
                raise SystemExit("server exited before it was ready")
            try:
                if (await c.get(base + "/api/catalog/quants")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.1)
    raise SystemExit("server did not start in 30 s")


async def load(base: str, clients: int, seconds: float) -> tuple[list[float], int]:
    import httpx

    lat: list[float] = []
    errors = 0
    stop = time.perf_counter() + seconds

    async def worker(i: int):
        nonlocal errors
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            k = i
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                q = dict(QUERIES[k % len(QUERIES)])
                if DISTINCT:
                    q["context"] = 4096 + next(SERIAL)
                r = await c.get("/api/plan", params=q)
                lat.append(time.perf_counter() - t0)
                errors += r.status_code != 200
                k += 1

    # warm-up: catalogs load and modules import on the first request
    async with httpx.AsyncClient(base_url=base, timeout=120) as c:
        for q in QUERIES:
            r = await c.get("/api/plan", params=q)
            if r.status_code != 200:
                print(f"warning: {q} -> {r.status_code} {r.text[:200]}")
    await asyncio.gather(*(worker(i) for i in range(clients)))
    return lat, errors


def profile() -> None:
    import cProfile
    import pstats

    sys.path.insert(0, str(ROOT / "src"))
    from gpuplan import api
    from gpuplan.requests import PlanRequest

    reqs = [PlanRequest.parse("web", **q) for q in QUERIES]
    for r in reqs:  # warm caches
        api.plan(r)
    pr = cProfile.Profile()
    t0 = time.perf_counter()
    pr.enable()
    for r in reqs * 4:
        api.plan(r)
    pr.disable()
    print(f"\nin-process api.plan: {(time.perf_counter() - t0) / (len(QUERIES) * 4) * 1e3:.1f} ms per call (mean)")
    pstats.Stats(pr).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--url", help="use a server already running at this address instead of starting one")
    ap.add_argument("--distinct", action="store_true",
                    help="make every request different (context varies) so the server's result cache never hits")
    a = ap.parse_args()
    global DISTINCT
    DISTINCT = a.distinct
    if a.url:
        lat, errors = asyncio.run(load(a.url.rstrip("/"), a.clients, a.seconds))
    else:
        port = _free_port()
        base = f"http://127.0.0.1:{port}"
        proc = start_server(port)
        try:
            asyncio.run(wait_ready(base, proc))
            lat, errors = asyncio.run(load(base, a.clients, a.seconds))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
    lat.sort()
    ms = [x * 1e3 for x in lat]
    p90 = ms[int(0.9 * (len(ms) - 1))] if ms else float("nan")
    print(f"/api/plan ({'every request distinct: no cache hits' if a.distinct else '5 distinct queries: cached after the first'}), {a.clients} concurrent clients, {a.seconds:g} s, {os.cpu_count()} CPUs: {len(ms)} requests "
          f"({len(ms) / a.seconds:.1f}/s), {errors} non-200")
    print(f"latency median {statistics.median(ms):.1f} ms, p90 {p90:.1f} ms, max {ms[-1]:.1f} ms")
    if a.profile:
        profile()


if __name__ == "__main__":
    main()
