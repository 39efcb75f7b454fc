"""The per-request cost of a serving engine's front end: the API-server process that takes the HTTP
request, applies the chat template, tokenizes the prompt, hands it to the engine, and turns the
engine's token ids back into text and server-sent events. None of it runs on the GPU, so the step
costs of perf/serving_step.py leave it out. What each engine does (read in its source):

- vLLM V1: `vllm serve` runs a FastAPI/uvicorn process (vllm/entrypoints/openai/: chat template)
  whose AsyncLLM (vllm/v1/engine/async_llm.py; tokenizing in vllm/v1/engine/input_processor.py,
  processor.py before) sends the request over ZMQ (core_client.py) to a separate EngineCore process
  (core.py) and detokenizes its outputs in the same asyncio loop (output_processor.py,
  detokenizer.py). One API-server process by default
  (`--api-server-count` adds more: PR #17546, 2025-05).
- SGLang: the HTTP server and its TokenizerManager run in one process (sglang/srt/managers/
  tokenizer_manager.py) that tokenizes and streams results; a DetokenizerManager process turns ids
  into text; the Scheduler process runs the GPU. One TokenizerManager by default
  (`--tokenizer-worker-num`, PR #6555, 2025-05).
- TensorRT-LLM: `trtllm-serve` (tensorrt_llm/serve/openai_server.py) tokenizes and detokenizes in
  the Python process of its LLM API, apart from the C++ executor.
- llama-server: C++ HTTP threads (tools/server/server-http.cpp) parse and tokenize; the one main
  loop that runs the model also serves the slots (tools/server/server-context.cpp).

Two numbers per engine, both per request, in seconds:
latency_s: time a request spends outside the GPU before its first token that other requests do not
    share (IPC hops, the HTTP stack, the first token's trip back). Added once to its TTFT, and so
    to its end-to-end latency; TPOT is unchanged.
serial_s: time the one front-end process is busy with a request (parsing, template, tokenizing,
    detokenizing, events). Requests queue for it first come first served, so it bounds a server's
    request throughput at 1 / serial_s however fast the GPU is.

Only servers pay it: a harness that drives the engine from Python (vLLM's LLM.generate, LMDeploy's
profile scripts, gptSessionBenchmark) has no API server, and scheduler_for(frontend=False) leaves
both at 0.

Sourced values:
- llama-server (Engine.LLAMA_CPP only: Ollama's Go server and llama-cpp-python's Python one are
  other front ends): latency 4 ms, measured with scripts/measure_llama_frontend.py against the real
  llama-server 0c1e570 (llama-cpp-python 0.3.36's build) serving Gemma 3 270M Q4_K_M on CPU, one
  streamed chat request at a time, ~34-token prompt, 4 tokens out: client TTFT less the server's own
  timings.prompt_ms, median over 30 requests with -t 1 (4.2 ms; p10 4.0, p90 14.3) on this 2-core
  machine under a CI load, 2026-12-01. With -t 2 the compute threads contend with the HTTP thread
  and the median rises to 8.3 ms while the p10 stays at 4.3 ms, so 4 ms is the uncontended cost
  here; a faster, idle host pays less. Re-run on the same machine idle (2026-12-01, after the
  script moved to bench.serving_compare's start_llama_server): medians 5.0, 5.3 and 8.1 ms with -t 1
  (p10 4.3-6.7), 6.1 ms with -t 2 (p10 4.7): 4 ms is the floor of what was seen, not its median.
  serial_s 0: HTTP threads tokenize side by side, and what
  the main loop does per request is in its step times.

vLLM, SGLang, TensorRT-LLM and LMDeploy have no sourced value yet and keep 0, simulating as before
the front end was modelled. The held-out GPUStack runs (docs/serving.md) show the term matters
there (vLLM's median TTFT at --max-concurrency 1 is 60 ms where the GPU prefill is ~10 ms; 44
requests/s of 128 + 4 tokens where the GPU allows ~130), but they are held out and are not
fitted on; a value goes here only with a source of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FrontEnd:
    latency_s: float = 0.0
    serial_s: float = 0.0
    source: str = ""


NONE_SOURCED = "no sourced value: 0 (the front end is not simulated)"

FRONTENDS: dict[str, FrontEnd] = {
    "vllm": FrontEnd(0.0, 0.0, NONE_SOURCED),
    "sglang": FrontEnd(0.0, 0.0, NONE_SOURCED),
    "tensorrt-llm": FrontEnd(0.0, 0.0, NONE_SOURCED),
    "lmdeploy": FrontEnd(0.0, 0.0, NONE_SOURCED),
    "llama.cpp": FrontEnd(0.004, 0.0, "scripts/measure_llama_frontend.py, llama-server 0c1e570, 2026-12-01 (see above)"),
}


def frontend_for(engine: str) -> FrontEnd:
    """The front-end cost of `engine` (the scheduler's engine name), 0 where it has none."""
    return FRONTENDS.get(engine, FrontEnd(0.0, 0.0, NONE_SOURCED))
