"""Engine facts the commands depend on, each with the source it was read from and the version.

What a default implies for memory is said in `implies`. Tests check these against the real
engines where one runs here (llama-server built from llama-cpp-python's vendored llama.cpp,
llama-cpp-python, vLLM's and SGLang's argument parsers from their wheels) and against the
sources named here otherwise (Ollama, TGI, TabbyAPI).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Fact:
    value: object
    source: str
    version: str
    implies: str = ""


LLAMA_CPP_VERSION = "llama.cpp 0c1e570 (vendored by llama-cpp-python 0.3.36)"
_LC = "https://github.com/ggml-org/llama.cpp/blob/0c1e57098bba43ac29e6e3b677cdceebdd22334f/"
LLAMA_SERVER = {
    "max_devices": Fact(16, _LC + "src/llama.cpp (llama_max_devices)", LLAMA_CPP_VERSION,
                        "--tensor-split takes at most 15 values: common/arg.cpp refuses "
                        "size() >= llama_max_devices(), so 16 GPUs cannot be given shares"),
    "max_gpus": Fact(15, _LC + "ggml/src/ggml-backend.cpp (GGML_SCHED_MAX_BACKENDS 16; "
                     "GGML_ASSERT(n_backends <= GGML_SCHED_MAX_BACKENDS)); "
                     "https://github.com/ggml-org/llama.cpp/issues/11433", LLAMA_CPP_VERSION,
                     "the scheduler holds 16 backends and the CPU is always one: 16 GPUs abort at "
                     "start (tests run it over 16 RPC devices), 15 work"),
    "layer_slots": Fact("n_layer + 1", _LC + "src/llama-model.cpp (load_tensors: i_gpu_start, "
                        "act_gpu_layers, dev_output = get_layer_buft_list(n_layer))", LLAMA_CPP_VERSION,
                        "the output layer is one more slot after the repeating layers: -ngl N keeps "
                        "the last N-1 repeating layers and the output on the GPU(s), and "
                        "--tensor-split divides the n_layer+1 slots"),
    "default_parallel": Fact(-1, _LC + "tools/server/server.cpp (n_parallel auto -> 4, kv_unified)",
                             LLAMA_CPP_VERSION, "without --parallel: 4 slots sharing one unified "
                             "KV cache of -c cells; with --parallel N: N slots of -c/N cells each "
                             "(rounded up to 256), so -c must be slots x context"),
    "ctx_pad": Fact(256, _LC + "src/llama-context.cpp (n_ctx_seq = GGML_PAD(n_ctx / n_seq_max, 256))",
                    LLAMA_CPP_VERSION, "cells per slot are rounded up to a multiple of 256"),
    "default_host": Fact("127.0.0.1", _LC + "common/common.h (hostnames)", LLAMA_CPP_VERSION),
    "default_port": Fact(8080, _LC + "common/common.h (port)", LLAMA_CPP_VERSION),
    "split_modes": Fact(("none", "layer", "row", "tensor"), _LC + "common/arg.cpp (-sm)",
                        LLAMA_CPP_VERSION, "tensor: weights and KV split across GPUs, EXPERIMENTAL "
                        "and only for some architectures (llm_arch_supports_sm_tensor)"),
    "row_kv_on_main_gpu": Fact(True, _LC + "common/arg.cpp (-mg: 'for intermediate results and "
                               "KV (with split-mode = row)')", LLAMA_CPP_VERSION,
                               "with -sm row all of the KV cache is on --main-gpu"),
    "cpu_moe_regex": Fact(r"\.ffn_(up|down|gate|gate_up)_(ch|)exps",
                          _LC + "common/common.h (LLM_FFN_EXPS_REGEX, used by --cpu-moe and "
                          "--n-cpu-moe)", LLAMA_CPP_VERSION),
    "fit_default": Fact(True, _LC + "common/common.h (fit_params)", LLAMA_CPP_VERSION,
                        "--fit only changes parameters left unset; gpuplan sets -c, -ngl and the split"),
    # prompt reuse (perf/serving_prefix.py models these; tests/test_serving_prefix.py runs the real server)
    "cache_prompt": Fact(True, _LC + "common/common.h (cache_prompt); tools/server/server-context.cpp "
                         "(n_past = slot.prompt.tokens.get_common_prefix(input_tokens))", LLAMA_CPP_VERSION,
                         "a slot reuses the KV of what its previous request has in common with the new prompt"),
    "slot_prompt_similarity": Fact(0.1, _LC + "common/common.h; tools/server/server-context.cpp "
                                   "(get_available_slot)", LLAMA_CPP_VERSION,
                                   "a request goes to the idle slot sharing the largest fraction of its prompt "
                                   "(above 0.1), else to the least recently used slot"),
    "cache_ram_mib": Fact(8192, _LC + "common/common.h (cache_ram_mib); tools/server/server-task.cpp "
                          "(server_prompt_cache)", LLAMA_CPP_VERSION,
                          "slot states move through a host-RAM prompt cache: a slot taken by LRU loads the "
                          "cached state that keeps most, if at least a quarter of it matches"),
    "cache_idle_slots": Fact(True, _LC + "common/common.h (cache_idle_slots)", LLAMA_CPP_VERSION,
                             "every launch saves the idle slots to the host cache (and clears them when the KV "
                             "cache is unified)"),
    "ctx_checkpoints": Fact(32, _LC + "common/common.h (n_ctx_checkpoints); tools/server/server-context.cpp "
                            "(checkpoint_offsets {4 + n_ubatch, 4}, user-message starts)", LLAMA_CPP_VERSION,
                            "sliding-window (without --swa-full) and recurrent models reuse a prefix only while "
                            "the window still holds it or from a checkpoint"),
}

_LCP = ("https://github.com/abetlen/llama-cpp-python/blob/v0.3.36/llama_cpp/server/settings.py")
LLAMA_CPP_PYTHON = {
    "logits_all": Fact(True, _LCP + " (ModelSettings.logits_all)", "llama-cpp-python 0.3.36",
                       "an n_ctx x n_vocab float32 logits buffer in host RAM (18.6 GiB for a "
                       "152k-vocabulary model at 32K): gpuplan turns it off (--logits_all false)"),
    "interrupt_requests": Fact(True, _LCP + " (ServerSettings.interrupt_requests)",
                               "llama-cpp-python 0.3.36", "a new request ends the running one: "
                               "with several clients gpuplan sets --interrupt_requests False"),
    "one_request_at_a_time": Fact(True, "llama_cpp/server/app.py (one Llama object behind a lock)",
                                  "llama-cpp-python 0.3.36", "n_ctx is one sequence's context"),
    "default_host": Fact("localhost", _LCP + " (ServerSettings.host)", "llama-cpp-python 0.3.36"),
    "default_port": Fact(8000, _LCP + " (ServerSettings.port)", "llama-cpp-python 0.3.36"),
}

OLLAMA_COMMIT = "fb30760996871fa9460115c753afd2c60d4ab0f7"
_OL = f"https://github.com/ollama/ollama/blob/{OLLAMA_COMMIT}/"
OLLAMA = {
    "env": Fact(("OLLAMA_HOST", "OLLAMA_NUM_PARALLEL", "OLLAMA_FLASH_ATTENTION",
                 "OLLAMA_KV_CACHE_TYPE", "OLLAMA_SCHED_SPREAD", "OLLAMA_CONTEXT_LENGTH",
                 "OLLAMA_GPU_OVERHEAD", "OLLAMA_MAX_LOADED_MODELS", "OLLAMA_MAX_QUEUE",
                 "OLLAMA_KEEP_ALIVE", "OLLAMA_MODELS", "OLLAMA_DEBUG", "OLLAMA_LOAD_TIMEOUT",
                 "OLLAMA_VULKAN", "OLLAMA_LLM_LIBRARY"),
                _OL + "envconfig/config.go", f"ollama {OLLAMA_COMMIT[:7]}"),
    "modelfile_parameters": Fact(("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap",
                                  "num_thread", "draft_num_predict", "num_keep", "seed",
                                  "num_predict", "top_k", "top_p", "min_p", "typical_p",
                                  "repeat_last_n", "temperature", "repeat_penalty",
                                  "presence_penalty", "frequency_penalty", "stop"),
                                 _OL + "api/types.go (Options and Runner json tags)",
                                 f"ollama {OLLAMA_COMMIT[:7]}"),
    "ctx_times_parallel": Fact(True, _OL + "llm/llama_server.go (startLlamaServer: "
                               "\"-c\", NumCtx * numParallel, \"-np\", numParallel)",
                               f"ollama {OLLAMA_COMMIT[:7]}",
                               "num_ctx is one slot's context; the KV cache holds "
                               "num_ctx x OLLAMA_NUM_PARALLEL tokens"),
    "num_gpu_is_ngl": Fact(True, _OL + "llm/llama_server.go (\"-ngl\", NumGPU)",
                           f"ollama {OLLAMA_COMMIT[:7]}", "num_gpu counts llama.cpp's n_layer+1 "
                           "slots: num_gpu N = the last N-1 layers and the output head"),
    "default_parallel": Fact(1, _OL + "envconfig/config.go (NumParallel = Uint(..., 1))",
                             f"ollama {OLLAMA_COMMIT[:7]}"),
    "default_host": Fact("127.0.0.1:11434", _OL + "envconfig/config.go (Host)",
                         f"ollama {OLLAMA_COMMIT[:7]}"),
}

_VL = "vllm 0.33.0 wheel"
VLLM = {
    "ray_dependency": Fact(False, "vllm-0.33.0.dist-info/METADATA (no Requires-Dist on ray)", _VL,
                           "multi-node needs `pip install ray` on every node"),
    "default_host": Fact(None, "vllm/entrypoints/common/cli_args.py (host: str | None = None)", _VL,
                         "no --host: listens on all interfaces; gpuplan passes --host 127.0.0.1"),
    "default_port": Fact(8000, "vllm/entrypoints/common/cli_args.py", _VL),
    "default_max_num_seqs": Fact(256, "vllm/engine/arg_utils.py (default_max_num_seqs; 1024 on "
                                 "H100-class cards)", _VL, "sequences scheduled at once"),
    "long_context_env": Fact("VLLM_ALLOW_LONG_MAX_MODEL_LEN", "vllm/config/model.py "
                             "(_get_and_verify_max_len)", _VL, "without it --max-model-len above "
                             "the model's config refuses to start; with it RoPE models give NaN "
                             "past the trained length"),
    "pp_partition_env": Fact("VLLM_PP_LAYER_PARTITION", "vllm/envs.py", _VL),
    "prefix_caching": Fact(True, "vllm/engine/arg_utils.py (_set_default_chunked_prefill_and_prefix_caching_args: "
                           "enable_prefix_caching None -> ModelConfig.is_prefix_caching_supported, True for "
                           "generative decoder models); vllm/config/cache.py", _VL,
                           "automatic prefix caching: full 16-token blocks of a cached prefix are shared (the V0 "
                           "engine, before v0.8.0, had it off)"),
}

_SG = "sglang 0.5.23 wheel"
SGLANG = {
    "default_host": Fact("127.0.0.1", "sglang/srt/arg_groups/fields/serving.py", _SG),
    "default_port": Fact(30000, "sglang/srt/arg_groups/fields/serving.py", _SG),
    "pp_partition_env": Fact("SGLANG_PP_LAYER_PARTITION", "sglang/srt/distributed/utils.py "
                             "(get_pp_indices: comma-separated layers per rank, must add up to "
                             "num_hidden_layers)", _SG, "uneven pipeline splits are supported"),
    "long_context_env": Fact("SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN",
                             "sglang/srt/configs/model_config.py (_derive_context_length)", _SG,
                             "without it --context-length above the model's refuses to start"),
    "radix_cache": Fact(True, "sglang/srt/arg_groups/fields/memory.py (disable_radix_cache = False)", _SG,
                        "RadixAttention prefix caching on (page size 1: every cached token is reused)"),
}

_LMD = "https://github.com/InternLM/lmdeploy/blob/1263d5cd889b7ad500e85b8eb20401327a4516ab/"
LMDEPLOY = {
    "prefix_caching": Fact(False, _LMD + "lmdeploy/messages.py (TurbomindEngineConfig, PytorchEngineConfig: "
                           "enable_prefix_caching = False); lmdeploy/cli/utils.py (--enable-prefix-caching, "
                           "store_true)", "lmdeploy 1263d5c", "every prompt token is computed unless "
                           "--enable-prefix-caching is given"),
}

_TRT = "https://github.com/NVIDIA/TensorRT-LLM/blob/main/"
TRTLLM = {
    "block_reuse": Fact(True, _TRT + "tensorrt_llm/llmapi/llm_args.py (KvCacheConfig.enable_block_reuse, "
                        "enable_partial_reuse, copy_on_partial_reuse: True)", "TensorRT-LLM main (LLM API, trtllm-serve)",
                        "KV blocks of a matching prefix are reused and shared; a partly matched block is copied"),
}

TGI_COMMIT = "db931fcf42da018a3657580c64bf2720f167f9ab"
_TG = f"https://github.com/huggingface/text-generation-inference/blob/{TGI_COMMIT}/"
TGI = {
    "maintenance": Fact(True, _TG + "README.md ('now in maintenance mode')", f"tgi {TGI_COMMIT[:7]}"),
    "default_hostname": Fact("0.0.0.0", _TG + "launcher/src/main.rs (Args.hostname)", f"tgi {TGI_COMMIT[:7]}"),
    "default_port": Fact(3000, _TG + "launcher/src/main.rs (Args.port)", f"tgi {TGI_COMMIT[:7]}"),
    "default_master_port": Fact(29500, _TG + "launcher/src/main.rs (Args.master_port)",
                                f"tgi {TGI_COMMIT[:7]}", "a second launcher on the host collides"),
    "default_shard_uds_path": Fact("/tmp/text-generation-server", _TG + "launcher/src/main.rs "
                                   "(Args.shard_uds_path)", f"tgi {TGI_COMMIT[:7]}",
                                   "a second launcher on the host collides"),
    "default_prometheus_port": Fact(9000, _TG + "launcher/src/main.rs (Args.prometheus_port)",
                                    f"tgi {TGI_COMMIT[:7]}", "a second launcher on the host collides"),
    "max_concurrent_requests": Fact(128, _TG + "launcher/src/main.rs (Args.max_concurrent_requests: "
                                    "'will refuse clients requests instead of having them wait')",
                                    f"tgi {TGI_COMMIT[:7]}", "requests past it get HTTP 429, not a queue"),
}

TABBY_COMMIT = "79126f904c2e00aece026b36bb70bbb87e4892b2"  # branch exl2-checkpoint
_TB = f"https://github.com/theroyallab/tabbyAPI/blob/{TABBY_COMMIT}/"
TABBYAPI = {
    "exl2_branch": Fact("exl2-checkpoint", "https://github.com/theroyallab/tabbyAPI/blob/"
                        "e632af41eba68abeadc3437c62674360f2f8cbf1/README.md ('ExLlamaV2 models are "
                        "no longer supported in the main branch')", "tabbyAPI main e632af4"),
    "config_keys": Fact({"network": ("host", "port", "disable_auth", "api_servers"),
                         "model": ("model_dir", "model_name", "backend", "max_seq_len", "cache_size",
                                   "cache_mode", "tensor_parallel", "gpu_split_auto",
                                   "autosplit_reserve", "gpu_split", "max_batch_size", "chunk_size")},
                        _TB + "config_sample.yml", f"tabbyAPI exl2-checkpoint {TABBY_COMMIT[:7]}"),
    "backends": Fact(("exllamav2", "exllamav3"), _TB + "config_sample.yml (model.backend)",
                     f"tabbyAPI exl2-checkpoint {TABBY_COMMIT[:7]}"),
    "cache_modes": Fact(("FP16", "Q8", "Q6", "Q4"), _TB + "common/config_models.py (CACHE_SIZES)",
                        f"tabbyAPI exl2-checkpoint {TABBY_COMMIT[:7]}"),
    "cache_size_multiple": Fact(256, _TB + "config_sample.yml (cache_size: 'Must be a multiple of 256')",
                                f"tabbyAPI exl2-checkpoint {TABBY_COMMIT[:7]}"),
    "default_host": Fact("127.0.0.1", _TB + "common/config_models.py (NetworkConfig.host)",
                         f"tabbyAPI exl2-checkpoint {TABBY_COMMIT[:7]}"),
    "default_port": Fact(5000, _TB + "common/config_models.py (NetworkConfig.port)",
                         f"tabbyAPI exl2-checkpoint {TABBY_COMMIT[:7]}", "replicas need their own ports"),
}
