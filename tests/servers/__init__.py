"""Helper servers for tests: start a stub in a subprocess, stop it by pid."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

STUB = Path(__file__).with_name("openai_stub.py")


@contextmanager
def stub_server(mode: str = "normal", *args: str):
    """Yield the base URL of a stub server in `mode`; the process is killed by pid at the end."""
    proc = subprocess.Popen([sys.executable, str(STUB), "--mode", mode, *args],
                            stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("PORT "):
            raise RuntimeError(f"stub server did not start: {line!r}")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def gpuplan_server(*args: str):
    """Yield (base URL, Popen) of `gpuplan serve` on a free loopback port, started from the
    gpuplan being tested; stopped by SIGTERM (SIGKILL after 20 s) at the end."""
    import socket
    import time

    import httpx

    import gpuplan

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(Path(gpuplan.__file__).parents[1]))
    proc = subprocess.Popen([sys.executable, "-c", "from gpuplan.cli import main; main()", "serve",
                             "--port", str(port), "--log-level", "warning", *args],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        t0 = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"gpuplan serve exited: {proc.stderr.read()[-2000:]}")
            try:
                if httpx.get(base + "/api/catalog/quants", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - t0 > 60:
                raise RuntimeError("gpuplan serve did not answer within 60 s")
            time.sleep(0.2)
        yield base, proc
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


def rss_mb(pid: int, children: bool = True) -> float:
    """Resident memory of a process, MB; with children, the proportional set size (PSS) of it and
    every process it started (the web server's worker processes)."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        try:
            # PSS: pages a forked worker shares with its parent count once, not once per process
            with open(f"/proc/{p}/smaps_rollup" if children else f"/proc/{p}/status") as f:
                key = "Pss:" if children else "VmRSS:"
                total += next(int(ln.split()[1]) for ln in f if ln.startswith(key)) / 1024
            if children:
                for t in os.listdir(f"/proc/{p}/task"):
                    with open(f"/proc/{p}/task/{t}/children") as f:
                        todo.extend(int(c) for c in f.read().split())
        except (OSError, StopIteration):
            continue
    return total
