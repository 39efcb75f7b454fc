"""TensorRT-LLM: `trtllm-serve` (its PyTorch backend: no engine build step).

Flags: tensorrt_llm/commands/serve.py (click options of `serve`) at
https://github.com/NVIDIA/TensorRT-LLM/blob/00209af149e7774406881a37283dce303571eb11/tensorrt_llm/commands/serve.py;
KV cache options that have no flag go in the YAML given to --config (llmapi KvCacheConfig:
`dtype`, `free_gpu_memory_fraction`). The wheel needs CUDA to import, so tests check the argv
against the option table transcribed here from that source.
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base

NAME = "tensorrt-llm"
PORT = 8000  # serve.py --port default
SOURCE = ("https://github.com/NVIDIA/TensorRT-LLM/blob/00209af149e7774406881a37283dce303571eb11/"
          "tensorrt_llm/commands/serve.py")
FLAGS = {
    "backend": "--backend", "tp": "--tp_size", "pp": "--pp_size", "users": "--max_batch_size",
    "tokens": "--max_num_tokens", "ctx": "--max_seq_len", "kv_frac": "--kv_cache_free_gpu_memory_fraction",
    "config": "--config", "host": "--host", "port": "--port",
}
# every option `serve` declares (names and aliases), transcribed from SOURCE for the tests
DECLARED = ("--tokenizer", "--custom_tokenizer", "--host", "--port", "--backend", "--custom_module_dirs",
            "--log_level", "--max_beam_width", "--max_batch_size", "--max_num_tokens", "--max_seq_len",
            "--tensor_parallel_size", "--tp_size", "--pipeline_parallel_size", "--pp_size",
            "--context_parallel_size", "--cp_size", "--moe_expert_parallel_size", "--ep_size",
            "--moe_cluster_parallel_size", "--cluster_size", "--gpus_per_node", "--free_gpu_memory_fraction",
            "--kv_cache_free_gpu_memory_fraction", "--num_postprocess_workers", "--trust_remote_code",
            "--revision", "--config", "--extra_llm_api_options", "--reasoning_parser", "--tool_parser",
            "--metadata_server_config_file", "--server_role", "--fail_fast_on_attention_window_too_large",
            "--otlp_traces_endpoint", "--disagg_cluster_uri", "--enable_chunked_prefill", "--media_io_kwargs",
            "--chat_template")
BACKENDS = ("pytorch", "tensorrt", "_autodeploy")
MAX_NUM_TOKENS = 8192  # BuildConfig.max_num_tokens default: the token budget of one step
KV_FRACTION = 0.9  # KvCacheConfig.free_gpu_memory_fraction default
KV_DTYPE = {"f16": None, "bf16": None, "fp8": "fp8"}
FORMATS = ("float", "fp8", "awq", "gptq")


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
    fam = base.family(model)
    if fam not in FORMATS:
        return f"TensorRT-LLM loads Hugging Face checkpoints (16-bit, FP8, AWQ, GPTQ), not {model.quant.id}"
    if hw is not None and any(hw.devices[i].backend != "cuda" for i in plan.device_ids):
        return "TensorRT-LLM runs on NVIDIA GPUs (CUDA) only"
    if plan.split == Split.ROW or plan.gpu_layers is not None or plan.experts_on_host:
        return "TensorRT-LLM splits by tensor/pipeline parallelism and keeps the model on the GPUs"
    if plan.split == Split.LAYER and base.uneven(plan):
        return "TensorRT-LLM's pipeline stages hold equal numbers of layers"
    if plan.kv_type not in KV_DTYPE:
        return f"TensorRT-LLM's KV cache is 16-bit or FP8, not {plan.kv_type}"
    if wl is not None and model.spec.max_context and wl.context > model.spec.max_context:
        return (f"context {wl.context} is above {model.spec.name}'s maximum of {model.spec.max_context} tokens; "
                f"gpuplan emits no RoPE override for TensorRT-LLM")
    if hw is not None and hw.nodes > 1:
        return "gpuplan renders TensorRT-LLM for one machine (several nodes need its MPI/Slurm launcher)"
    return None


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    ref = model_ref or base.hf_name(model)
    pp = len(plan.device_ids) if plan.split == Split.LAYER else plan.pp
    tp = plan.tp if plan.split == Split.TENSOR else 1
    files = {}
    if KV_DTYPE[plan.kv_type]:
        files["trtllm-kv.yml"] = f"kv_cache_config:\n  dtype: {KV_DTYPE[plan.kv_type]}\n"
    groups = base.replica_devices(plan, hw)
    procs = []
    for r, ids in enumerate(groups):
        pairs = [
            ("backend", "pytorch"),
            ("tp", tp if tp > 1 else None),
            ("pp", pp if pp > 1 else None),
            ("users", base.slots(plan, wl)),
            ("tokens", MAX_NUM_TOKENS),
            ("ctx", wl.context),
            ("kv_frac", KV_FRACTION),
            ("config", "trtllm-kv.yml" if files else None),
            ("host", base.BIND), ("port", PORT + r),
        ]
        procs.append(base.Process(argv=["trtllm-serve", ref, *base.argv(FLAGS, pairs)],
                                  env=base.visible_env(ids, hw),
                                  notes=[f"replica on port {PORT + r}"] if len(groups) > 1 else []))
    notes = [f"in-flight batching: up to --max_batch_size requests and {MAX_NUM_TOKENS} tokens per step; "
             f"KV blocks take {KV_FRACTION:.0%} of the memory left after the weights"]
    if len(groups) > 1:
        notes.append("put a load balancer in front of the replicas")
    return base.LaunchCommand(engine=NAME, processes=procs, notes=notes, files=files)
