"""The web server under hostile uploads: RSS and the latency of a normal request meanwhile.

    python benchmarks/bench_web_hostile.py [--uploads 50] [--mib 60] [--src DIR]

Starts `gpuplan serve` in a subprocess (from this checkout's src/, or --src), sends `--uploads`
concurrent hostile requests (measurement files of --mib MiB, 20,000 identical rows, n_gpus
100000, model paths, deep JSON, a 200 KiB CSV field, config.json nested 100,000 deep, rows naming
four 15 MiB model files sent with them: a GGUF header of 4 M tensors and corrupt ones), and
meanwhile one normal GET /api/fit every 0.25 s. Prints the server's peak and final RSS, the
normal request's latency (median, max) and the status codes. Target (issue 11): under 500 MB,
a normal request within 1 s, no 500.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tests.servers import rss_mb  # noqa: E402  (the hostile web tests measure memory the same way)

ROOT = Path(__file__).resolve().parents[1]
HEADER = ("source,engine,date,model,quant,gpu,n_gpus,split,interconnect,n_gpu_layers,host_mem,"
          "n_depth,n_prompt,n_gen,batch,metric,tok_s,note\n")
ROW = "x,llama.cpp,2024-01,{model},Q4_K_M,rtx-4090,{n},layer,none,,,0,0,128,1,decode,100,\n"
NORMAL = {"model": "meta-llama/Meta-Llama-3-8B", "gpus": "rtx-4090", "context": 8192}


def _gguf_many_tensors(nbytes: int) -> bytes:
    """A GGUF v3 header that claims 4 M tensors and no metadata, padded to nbytes with junk."""
    import struct

    return (b"GGUF" + struct.pack("<IQQ", 3, 4 << 20, 0)).ljust(nbytes, b"\x01")


def hostile_bodies(mib: int) -> list[tuple]:
    """(path, filename, content[, model files]) of each kind of hostile upload."""
    row = ROW.format(model="meta-llama/Meta-Llama-3-8B", n=1)
    big = (HEADER + row * (mib * 2**20 // len(row))).encode()
    models = [(f"m{i}.gguf", _gguf_many_tensors(15 * 2**20)) for i in range(3)]
    models.append(("m3.json", b'{"num_hidden_layers": ' + b"9" * (15 * 2**20) + b"}"))
    model_rows = "".join(ROW.format(model=name, n=1) for name, _ in models) * 100
    return [
        ("/api/validate", "models.csv", (HEADER + model_rows).encode(), models),
        ("/api/validate", "big.csv", big),
        ("/api/validate", "same.csv", (HEADER + row * 20_000).encode()),
        ("/api/validate", "ngpus.csv", (HEADER + ROW.format(model="meta-llama/Meta-Llama-3-8B", n=100_000)
                                        + ROW.format(model="meta-llama/Meta-Llama-3-8B", n=4096) * 50).encode()),
        ("/api/validate", "paths.csv", (HEADER + ROW.format(model="/etc/shadow", n=1)
                                        + ROW.format(model="/dev/zero", n=1)).encode()),
        ("/api/validate", "deep.json", b"[" * 100_000 + b"]" * 100_000),
        ("/api/validate", "field.csv", (HEADER + row.replace(",\n", "," + "x" * 200_000 + "\n")).encode()),
        ("/api/model/inspect", "config.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def probe(base: str, stop, out) -> None:
    """One normal request every 0.25 s until told to stop; puts [(status, seconds)] on `out`."""
    import httpx

    res = []
    with httpx.Client(timeout=30) as c:
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                code = c.get(base + "/api/fit", params={**NORMAL, "context": 8192 + len(res)}).status_code
            except httpx.HTTPError as e:
                code = type(e).__name__
            res.append((code, time.perf_counter() - t0))
            stop.wait(0.25)
    out.put(res)


async def main(a) -> None:
    import httpx

    src = Path(a.src).resolve() if a.src else ROOT / "src"
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(src))
    proc = subprocess.Popen([sys.executable, "-c", "from gpuplan.cli import main; main()", "serve",
                             "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=src.parent, start_new_session=True, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    statuses: collections.Counter = collections.Counter()
    lat: list[float] = []
    peak = peak_all = 0.0
    try:
        async with httpx.AsyncClient(timeout=5) as c:
            for _ in range(300):
                try:
                    if (await c.get(base + "/api/fit", params=NORMAL)).status_code == 200:
                        break
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)
            start_rss = rss_mb(proc.pid, children=False)
            bodies = hostile_bodies(a.mib)
            done = asyncio.Event()

            async def hostile(i: int) -> None:
                path, name, data, *models = bodies[i % len(bodies)]
                files = [("file", (name, data))] + [("models", m) for m in (models[0] if models else [])]
                async with httpx.AsyncClient(timeout=a.timeout) as h:
                    try:
                        r = await h.post(base + path, files=files)
                        statuses[f"{name}: {r.status_code}"] += 1
                    except httpx.HTTPError as e:
                        statuses[f"{name}: {type(e).__name__}"] += 1

            async def watch() -> None:
                nonlocal peak, peak_all
                while not done.is_set():
                    peak = max(peak, rss_mb(proc.pid, children=False))
                    peak_all = max(peak_all, rss_mb(proc.pid, children=True))
                    await asyncio.sleep(0.05)

            # the normal client is a process of its own: this one is busy sending the uploads
            ctx = multiprocessing.get_context("spawn")
            out, stop = ctx.Queue(), ctx.Event()
            prober = ctx.Process(target=probe, args=(base, stop, out))
            prober.start()
            t0 = time.perf_counter()
            side = [asyncio.create_task(watch())]
            await asyncio.sleep(0.5)
            await asyncio.gather(*(hostile(i) for i in range(a.uploads)))
            took = time.perf_counter() - t0
            await asyncio.sleep(1.0)
            stop.set()
            done.set()
            await asyncio.gather(*side)
            for code, dt in out.get(timeout=30):
                statuses[f"normal: {code}"] += 1
                lat.append(dt)
            prober.join(timeout=10)
            end_rss = rss_mb(proc.pid, children=False)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    print(f"{a.uploads} hostile uploads ({a.mib} MiB files among them) in {took:.1f} s")
    print(f"server RSS: {start_rss:.0f} MB at start, {peak:.0f} MB peak, {end_rss:.0f} MB after; "
          f"with its worker processes {peak_all:.0f} MB peak")
    q = statistics.quantiles(lat, n=10) if len(lat) > 1 else lat * 9
    print(f"normal GET /api/fit meanwhile: {len(lat)} requests, median {statistics.median(lat) * 1000:.0f} ms, "
          f"p90 {q[8] * 1000:.0f} ms, max {max(lat) * 1000:.0f} ms, over 1 s: {sum(x > 1 for x in lat)}")
    if a.verbose:
        print("  latencies, ms:", " ".join(f"{x * 1000:.0f}" for x in lat))
    for k, n in sorted(statuses.items()):
        print(f"  {n:4d} x {k}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--uploads", type=int, default=50)
    ap.add_argument("--mib", type=int, default=60)
    ap.add_argument("--timeout", type=float, default=120)
    ap.add_argument("--verbose", action="store_true", help="print every normal request's latency")
    ap.add_argument("--src", help="gpuplan source folder to serve (default: this checkout's src/)")
    asyncio.run(main(ap.parse_args()))
