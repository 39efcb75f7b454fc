"""What each serving engine's scheduler does, as documented defaults: how it pages the KV
cache, how many sequences and tokens one step may carry, whether prompts are chunked and
mixed into decode steps, and how much memory it gives the KV cache. One entry per engine
(not per backend), each with the source it was read from. `gpuplan` simulates these rules
step by step in perf/serving.py; the costs of a step come from perf/serving_step.py.

Dates are the YYYY-MM a measurement was taken (the engine release of that time); None means
today's release.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..types import Engine

GIB = 2**30


@dataclass(frozen=True)
class Scheduler:
    """One engine's batching rules.

    policy: "mixed"         decode tokens of every running sequence plus prompt chunks, one step
            "prefill-first" a step of new prompts whenever one can be admitted, else a decode step
            "static"        a batch starts together and ends together (no continuous batching)
    fused: a mixed step runs as one forward pass (weights read once); False: prompt work and
        decode work run one after the other inside the step (TurboMind's context + decode).
    block_tokens: KV page size in tokens (1: token-level pool; 0: one contiguous slot per sequence).
    max_seqs: sequences running at once (vLLM max_num_seqs, SGLang max_running_requests, ...).
    budget_tokens: tokens one step may carry, decode tokens counting one each.
    chunk_tokens: the most tokens of one prompt per step (None: whole prompts).
    ubatch: tokens per forward pass (llama.cpp n_ubatch); a bigger step runs several passes.
    kv_rule / kv_fraction: how the KV pool is sized (see kv_pool_bytes).
    prefix_cache: how the engine reuses the KV of a prompt prefix it already holds (perf/serving_prefix.py):
        "blocks"          full KV blocks of a computed prefix are shared by every later request that
                          starts with it (vLLM V1 automatic prefix caching, SGLang's radix cache)
        "blocks-partial"  the same, and a partly matched last block is copied (TensorRT-LLM block reuse)
        "slots"           llama-server: a slot reuses what its previous prompt has in common with the new
                          one (cache_prompt), and idle slots' prompts move through a host-RAM prompt cache
        None              every prompt token is computed (LMDeploy's default, vLLM V0, static batching)
    """

    engine: str
    policy: str
    fused: bool
    block_tokens: int
    max_seqs: int
    budget_tokens: int
    chunk_tokens: int | None
    kv_rule: str
    kv_fraction: float
    ubatch: int | None = None
    slot_tokens: int | None = None  # llama-server: context per slot when the KV cache is not unified
    # SGLang admits a prompt only if the pool keeps room for `ratio` x the remaining output of every
    # running request; the ratio starts at reserve[0], decays to reserve[1] over reserve[2] steps and
    # is reset by a retraction (sglang/srt/managers/scheduler.py, global_config.py)
    reserve: tuple[float, float, float] | None = None
    prefix_cache: str | None = None
    source: str = ""
    # the API-server process in front of the engine (perf/serving_frontend.py), seconds per request:
    # a delay before the request reaches the scheduler, and a service time in one FIFO front end
    frontend_s: float = 0.0
    frontend_serial_s: float = 0.0

    def with_overrides(self, **kw) -> "Scheduler":
        return replace(self, **{k: v for k, v in kw.items() if v is not None})


VLLM_SRC = ("https://github.com/vllm-project/vllm/blob/main/vllm/engine/arg_utils.py "
            "(get_batch_defaults); block size 16: vllm/config/cache.py; V1 raised max_num_seqs to 1024 "
            "in v0.8.0 and PR #16158 (2025-04) kept 1024 only for >= 70 GiB cards")
SGLANG_SRC = ("https://github.com/sgl-project/sglang/blob/main/python/sglang/srt/server_args.py "
              "(mem_fraction_static by TP size, chunked_prefill_size by GPU memory; page size 1)")
LMDEPLOY_SRC = ("https://github.com/InternLM/lmdeploy/blob/main/docs/en/inference/turbomind_config.md "
                "(cache_block_seq_len 128, cache_max_entry_count: share of total memory before v0.2.1, "
                "of free memory after, default 0.8; max_batch_size; max_prefill_token_num 8192)")
TRTLLM_SRC = ("https://github.com/NVIDIA/TensorRT-LLM/blob/main/tensorrt_llm/commands/serve.py "
              "(max_batch_size 2048, max_num_tokens 8192) and tensorrt_llm/llmapi/llm_args.py KvCacheConfig "
              "(free_gpu_memory_fraction 0.9, tokens_per_block 32); v0.6 gptSessionBenchmark is static batching")
LLAMA_SRC = ("https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md "
             "(-np/--parallel slots, -b 2048 / -ub 512, -c total context split over slots unless --kv-unified; "
             "continuous batching on by default)")
# Prefix caching defaults, read in each engine's source (engines/facts.py keeps the same facts)
VLLM_PREFIX_SRC = ("vllm 0.33.0 vllm/engine/arg_utils.py (_set_default_chunked_prefill_and_prefix_caching_args: "
                   "enable_prefix_caching None -> ModelConfig.is_prefix_caching_supported, True for decoder models); "
                   "only full blocks are hashed and reused (vllm/v1/core/kv_cache_manager.py); V0 defaulted it off")
SGLANG_PREFIX_SRC = "sglang 0.5.23 sglang/srt/arg_groups/fields/memory.py (disable_radix_cache = False)"
TRTLLM_PREFIX_SRC = ("https://github.com/NVIDIA/TensorRT-LLM/blob/main/tensorrt_llm/llmapi/llm_args.py KvCacheConfig "
                     "(enable_block_reuse True, enable_partial_reuse True, copy_on_partial_reuse True); "
                     "docs/source/kv_cache_reuse.md: gptSession has no block reuse")
LMDEPLOY_PREFIX_SRC = ("https://github.com/InternLM/lmdeploy/blob/main/lmdeploy/messages.py (TurbomindEngineConfig and "
                       "PytorchEngineConfig enable_prefix_caching = False; lmdeploy/cli/utils.py --enable-prefix-caching)")
LLAMA_PREFIX_SRC = ("llama.cpp 0c1e570 (llama-cpp-python 0.3.36) common/common.h (cache_prompt true, cache_ram_mib 8192, "
                    "cache_idle_slots true, slot_prompt_similarity 0.1, n_ctx_checkpoints 32) and "
                    "tools/server/server-context.cpp (get_available_slot, n_past = get_common_prefix)")
MLX_SRC = ("https://github.com/ml-explore/mlx-lm/blob/main/mlx_lm/server.py "
           "(batched generation of concurrent requests; KV grows per sequence, no paging)")

V1_CUDA = "2025-03"  # vLLM v0.8.0 made the V1 engine (chunked prefill always on) the default
V1_ROCM = "2025-06"  # ROCm builds followed with v0.9 (the ROCm dev-docker README switches to V1 env vars)
BIG_DEFAULTS = "2025-04"  # PR #16158: 1024 sequences only on >= 70 GiB cards (A100 excluded by PR #17885)


def _later(date: str | None, start: str) -> bool:
    return date is None or date >= start


def vllm(device, date: str | None, offline: bool, max_model_len: int = 4096) -> Scheduler:
    rocm = device is not None and device.backend == "rocm"
    v1 = _later(date, V1_ROCM if rocm else V1_CUDA)
    mem_gib = device.memory_gib if device is not None and device.memory_gib else 0.0
    if not v1:
        # V0: prefill batches take priority over decode; max_num_batched_tokens is
        # max(max_model_len, 2048) without chunked prefill (scheduler config of v0.2-v0.7)
        return Scheduler("vllm", "prefill-first", True, 16, 256, max(max_model_len, 2048), None, "utilization",
                         0.90, source=VLLM_SRC + "; " + VLLM_PREFIX_SRC)
    big = mem_gib >= 70 and "a100" not in (device.id if device is not None else "")
    if date is not None and date < BIG_DEFAULTS:
        big = True  # v0.8.0-v0.8.3: 1024 on every card
    seqs = 1024 if big else 256
    budget = (16384 if big else 8192) if offline else (8192 if big else 2048)
    return Scheduler("vllm", "mixed", True, 16, seqs, budget, budget, "utilization", 0.90, prefix_cache="blocks",
                     source=VLLM_SRC + "; " + VLLM_PREFIX_SRC)


def sglang(device, tp: int, date: str | None) -> Scheduler:
    mem_gib = device.memory_gib if device is not None and device.memory_gib else 80.0
    frac = 0.88 if tp < 2 else 0.87 if tp < 4 else 0.85 if tp < 8 else 0.81
    chunk = 2048 if mem_gib < 25 else 8192
    # prefill ("extend") batches run apart from decode batches unless --enable-mixed-chunk
    return Scheduler("sglang", "prefill-first", True, 1, 4096, 16384, chunk, "static", frac,
                     reserve=(0.7, 0.7 * 0.14, 600.0), prefix_cache="blocks", source=SGLANG_SRC + "; " + SGLANG_PREFIX_SRC)


def lmdeploy(device, date: str | None) -> Scheduler:
    if date is not None and date < "2024-03":
        # TurboMind 2.x before v0.2.1: cache_max_entry_count is a share of total memory;
        # a step runs the new prompts' context decoding, then one decode step of all sequences
        return Scheduler("lmdeploy", "mixed", False, 128, 128, 16384, None, "total", 0.5,
                         source=LMDEPLOY_SRC + "; " + LMDEPLOY_PREFIX_SRC)
    return Scheduler("lmdeploy", "mixed", False, 64, 256, 8192, 8192, "free", 0.8,
                     source=LMDEPLOY_SRC + "; " + LMDEPLOY_PREFIX_SRC)


def trtllm(device, date: str | None, static: bool = False) -> Scheduler:
    if static:
        return Scheduler("tensorrt-llm", "static", True, 64, 1 << 20, 1 << 30, None, "free", 0.9,
                         source=TRTLLM_SRC + "; " + TRTLLM_PREFIX_SRC)
    return Scheduler("tensorrt-llm", "mixed", True, 32, 2048, 8192, 8192, "free", 0.9, prefix_cache="blocks-partial",
                     source=TRTLLM_SRC + "; " + TRTLLM_PREFIX_SRC)


def llama_server(parallel: int, n_ctx: int, unified: bool = True, prefix: bool = True) -> Scheduler:
    """llama-server's slots. prefix False: an engine built on llama.cpp whose own prompt reuse
    (Ollama's input cache, llama-cpp-python's prefix match, TabbyAPI's) is not modelled: every
    prompt token is computed."""
    slot = None if unified else max(n_ctx // max(parallel, 1), 1)
    return Scheduler("llama.cpp", "mixed", True, 1, max(parallel, 1), 2048, None, "fixed", float(n_ctx),
                     ubatch=512, slot_tokens=slot, prefix_cache="slots" if prefix else None,
                     source=LLAMA_SRC + "; " + LLAMA_PREFIX_SRC)


def mlx(parallel: int, n_ctx: int) -> Scheduler:
    return Scheduler("mlx", "prefill-first", True, 1, max(parallel, 1), 2048, 2048, "fixed", float(n_ctx),
                     source=MLX_SRC)


def scheduler_for(engine: Engine, device=None, date: str | None = None, tp: int = 1, offline: bool = False,
                  static: bool = False, parallel: int | None = None, n_ctx: int | None = None,
                  max_model_len: int = 4096, frontend: bool = True) -> Scheduler:
    """The documented defaults of `engine` on `device` at `date`, behind its API server's front end
    (perf/serving_frontend.py); frontend False: driven from Python, no API server."""
    s = _scheduler(engine, device, date, tp, offline, static, parallel, n_ctx, max_model_len)
    if not frontend:
        return s
    from .serving_frontend import frontend_for

    fe = frontend_for(engine.value if isinstance(engine, Engine) else str(engine))  # Ollama is not llama-server
    return replace(s, frontend_s=fe.latency_s, frontend_serial_s=fe.serial_s)


def _scheduler(engine, device, date, tp, offline, static, parallel, n_ctx, max_model_len) -> Scheduler:
    e = engine.value if isinstance(engine, Engine) else str(engine)
    if e == "vllm" or e == "tgi":
        return vllm(device, date, offline, max_model_len)
    if e == "sglang":
        return sglang(device, tp, date)
    if e == "lmdeploy":
        return lmdeploy(device, date)
    if e == "tensorrt-llm":
        return trtllm(device, date, static)
    if e == "mlx":
        return mlx(parallel or 4, n_ctx or 8192)
    # llama.cpp, Ollama, llama-cpp-python, ExLlamaV2: slots with a fixed context
    return llama_server(parallel or 1, n_ctx or 4096, prefix=e == "llama.cpp")


PAGED_ENGINES = ("vllm", "sglang", "tensorrt-llm", "lmdeploy", "tgi")


def kv_tokens_held(engine: Engine, context: int, prompt: int, output: int) -> int:
    """KV tokens one sequence holds at most: paged engines (vLLM, SGLang, TensorRT-LLM, LMDeploy,
    TGI) allocate blocks as a sequence grows, so its prompt and output (capped by the context);
    llama.cpp slots, ExLlamaV2 and MLX reserve or grow to the whole context."""
    e = engine.value if isinstance(engine, Engine) else str(engine)
    if e in PAGED_ENGINES:
        return max(1, min(context, prompt + output))
    return context


def kv_pool_tokens(model, hw, plan, sched: Scheduler) -> tuple[int, dict]:
    """Tokens of KV cache the engine's pool holds on one replica, and how it was sized.

    The reservation is the memory model's (perf/memory.py over the engine's memory profile in
    perf/engine_memory.yaml: vLLM's gpu_memory_utilization of the card less weights, activation
    peak, context and CUDA graphs; SGLang's mem_fraction_static; TensorRT-LLM's and TurboMind's share
    of what the weights leave); the pool is what that leaves for KV, divided by the KV bytes one token
    takes on the fullest device. llama.cpp and MLX: the context the server was started with."""
    from dataclasses import replace

    from ..types import Workload
    from .layout import parts
    from .memory import device_memory

    if sched.kv_rule == "fixed":
        return int(sched.kv_fraction), {"rule": "fixed", "tokens": int(sched.kv_fraction)}
    if sched.engine == "sglang" and getattr(plan, "gpu_memory_utilization", None) is None:
        plan = replace(plan, gpu_memory_utilization=sched.kv_fraction)  # mem_fraction_static by TP size
    mem = [m for m in device_memory(model, hw, plan, Workload(context=1, users=1)) if m.name != "host RAM"]
    kv_per_tok: dict[int, float] = {}
    gpu_parts = [p for p in parts(model, hw, plan) if not p.on_host and p.device is not None]
    for k, p in enumerate(gpu_parts):
        d = min(k, len(mem) - 1)
        kv_per_tok[d] = kv_per_tok.get(d, 0.0) + p.kv_bytes_per_ctx + p.swa_kv_bytes
    best = None
    for d, m in enumerate(mem):
        per = kv_per_tok.get(d, 0.0)
        if per <= 0:
            continue
        tokens = max(m.free + m.kv_cache, 0.0) / per
        best = tokens if best is None else min(best, tokens)
    tokens = int(best or 0)
    return tokens, {"rule": sched.kv_rule, "tokens": tokens}
