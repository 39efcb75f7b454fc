"""Client-side CPU cost of the load generator, per streamed token (target: < 50 us/token).

Starts tests/servers/openai_stub.py (streams tokens as fast as it can) in a subprocess, runs
the load generator at concurrency 64 against it, and divides this process's CPU time (user +
system, from getrusage: the server's CPU is not counted) by the tokens received. If the
client cost were high, it would distort TTFT and inter-token latency at high concurrency.

    PYTHONPATH=src python benchmarks/bench_client_overhead.py [--concurrency 64] [--tokens 256]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "src"), str(ROOT / "tests")]

from gpuplan.bench.loadgen import LoadGen  # noqa: E402
from servers import stub_server  # noqa: E402


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--tokens", type=int, default=256, help="tokens per request")
    ap.add_argument("--requests", type=int, default=512)
    a = ap.parse_args()
    with stub_server("normal") as url:
        gen = LoadGen(url, "stub", prompt_tokens=64, max_tokens=a.tokens, timeout_s=60, progress=False)
        c0, t0 = cpu_s(), time.perf_counter()
        res = asyncio.run(gen.run([a.concurrency], requests=a.requests))
        cpu, wall = cpu_s() - c0, time.perf_counter() - t0
    s = res.levels[0].summary()
    tokens = s["output_tokens"]
    print(f"concurrency {a.concurrency}: {s['ok']} ok / {s['error'] + s['timeout'] + s['dropped']} failed, "
          f"{tokens} tokens in {wall:.2f} s ({tokens / wall:,.0f} tok/s through the client)")
    print(f"client CPU {cpu:.2f} s = {cpu / tokens * 1e6:.1f} us per streamed token (target < 50)")


if __name__ == "__main__":
    main()
