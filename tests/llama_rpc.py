"""Helpers for tests that run the real llama.cpp binaries built by scripts/build_llama_cpp.sh:
find them (skip with the reason when absent; fail under CI, where scripts/test.sh builds them),
start rpc-server processes on loopback as stand-in devices, run llama-server and read its log."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from gpuplan.engines import binaries


def require(name: str) -> Path:
    path = binaries.binary(name)
    if path is None:
        where = binaries.bin_dir()
        msg = (f"{name} not built (looked in {where}); run scripts/build_llama_cpp.sh "
               "(scripts/test.sh does)")
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def rpc_devices(n: int, threads: int = 1):
    """n rpc-server processes on 127.0.0.1, each one device for llama-server (--rpc); yields
    their endpoints in device order (RPC0, RPC1, ...)."""
    exe = require("rpc-server")
    procs, endpoints = [], []
    try:
        for _ in range(n):
            port = free_port()
            procs.append(subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port), "-t", str(threads)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
            endpoints.append(f"127.0.0.1:{port}")
        for ep in endpoints:
            host, port = ep.split(":")
            t0 = time.monotonic()
            while True:
                try:
                    socket.create_connection((host, int(port)), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() - t0 > 20:
                        raise RuntimeError(f"rpc-server on {ep} did not start")
                    time.sleep(0.05)
        yield endpoints
    finally:
        for p in procs:
            _stop(p)


def run(argv: list[str], timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run a llama.cpp binary to completion (llama-server exits after loading with
    --list-devices or a failure), stdout and stderr together."""
    return subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})
