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
