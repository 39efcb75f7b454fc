"""llama.cpp: `llama-server` and the `llama-cpp-python` server (same library, other flags).

llama-server flags: https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md
llama-cpp-python flags are its pydantic settings fields (llama_cpp/server/settings.py),
turned into `--field` options by llama_cpp/server/cli.py; tests parse our argv with it.
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base

NAME = "llama.cpp"
PY_NAME = "llama-cpp-python"
PORT = 8080

FLAGS = {
    "model": "-m", "gpu_layers": "-ngl", "split": "-sm", "shares": "--tensor-split",
    "main_gpu": "--main-gpu", "ctx": "-c", "parallel": "--parallel", "kv_k": "-ctk",
    "kv_v": "-ctv", "flash_attention": "-fa", "experts_on_host": "-ot", "n_cpu_moe": "--n-cpu-moe",
    "ubatch": "-ub", "swa_full": "--swa-full", "no_repack": "--no-repack",
    "host": "--host", "port": "--port",
}
PY_FLAGS = {
    "model": "--model", "gpu_layers": "--n_gpu_layers", "split": "--split_mode",
    "shares": "--tensor_split", "main_gpu": "--main_gpu", "ctx": "--n_ctx",
    "kv_k": "--type_k", "kv_v": "--type_v", "flash_attention": "--flash_attn", "ubatch": "--n_ubatch",
    "host": "--host", "port": "--port",
}
KV_TYPES = ("f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "bf16", "f32")
# ggml_type enum values (ggml.h) that llama-cpp-python's --type_k/--type_v take
GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
             "iq4_nl": 20, "bf16": 30}
SPLIT_MODE = {"none": 0, "layer": 1, "row": 2}  # llama.h LLAMA_SPLIT_MODE_*
EXPERTS_TO_CPU = r"\.ffn_.*_exps\.=CPU"  # every routed-expert tensor stays in host RAM
NOT_TENSOR = "llama.cpp has no true tensor parallelism; -sm row is its nearest form"


def supports(plan: Plan, model: LoadedModel) -> str | None:
    fam = base.family(model)
    if fam not in ("gguf", "float"):
        return f"llama.cpp loads GGUF files; {model.quant.id} ({fam}) is not a GGUF type"
    if plan.pp > 1:
        return "llama.cpp has no pipeline parallelism across nodes (only layer split in one box)"
    if plan.kv_type not in KV_TYPES:
        return f"llama.cpp has no {plan.kv_type} KV cache (it takes {', '.join(KV_TYPES[:4])}, ...)"
    return None


def python_supports(plan: Plan, model: LoadedModel) -> str | None:
    reason = supports(plan, model)
    if reason:
        return reason.replace("llama.cpp", "llama-cpp-python", 1)
    if plan.experts_on_host or plan.n_cpu_moe:
        return "llama-cpp-python has no tensor override (-ot), so MoE experts cannot be pinned to RAM"
    if plan.swa_full is False:
        return "llama-cpp-python's server always keeps full-size sliding-window caches (swa_full)"
    if plan.kv_type not in GGML_TYPE:
        return f"llama-cpp-python takes no {plan.kv_type} KV cache type"
    return None


def _split_mode(plan: Plan) -> str | None:
    if len(plan.device_ids) < 2:
        return None
    return "row" if plan.split in (Split.ROW, Split.TENSOR) else "layer"


def _fa(plan: Plan) -> bool:
    # flash attention as the plan's memory was computed: the user's choice, else the engine's
    # default resolved (perf/engine_profiles.settings; a quantized V cache forces it on)
    from ..perf.engine_profiles import settings

    return settings(plan, host_layers=plan.gpu_layers is not None).flash_attn


def _server_args(plan, model, workload, ref, port) -> list[str]:
    users = base.per_replica_users(plan, workload)
    kv = plan.kv_type if plan.kv_type != "f16" else None
    pairs = [
        ("model", ref),
        ("gpu_layers", 999 if plan.gpu_layers is None else plan.gpu_layers),
        ("split", _split_mode(plan)),
        ("shares", base.shares_text(plan)),
        ("main_gpu", base.main_index(plan) if base.shares_text(plan) else None),
        ("ctx", workload.context * users),  # one KV pool shared by all slots
        ("parallel", users),
        ("kv_k", kv), ("kv_v", kv),
        ("flash_attention", "on" if _fa(plan) else "off"),
        ("experts_on_host", EXPERTS_TO_CPU if plan.experts_on_host else None),
        ("n_cpu_moe", plan.n_cpu_moe if plan.n_cpu_moe and not plan.experts_on_host else None),
        # settings the plan's memory was computed with, when the user chose them
        ("ubatch", plan.n_ubatch), ("swa_full", True if plan.swa_full else None),
        ("no_repack", True if plan.repack is False else None),
        ("host", "127.0.0.1"), ("port", port),
    ]
    return ["llama-server", *base.argv(FLAGS, pairs)]


def _python_args(plan, model, workload, ref, port) -> list[str]:
    kv = GGML_TYPE[plan.kv_type] if plan.kv_type != "f16" else None
    split = _split_mode(plan)
    shares = base.shares_text(plan, sep=" ")
    pairs = [
        ("model", ref),
        ("gpu_layers", -1 if plan.gpu_layers is None else plan.gpu_layers),
        ("split", SPLIT_MODE[split] if split else None),
        ("shares", shares.split() if shares else None),
        ("main_gpu", base.main_index(plan) if shares else None),
        ("ctx", workload.context),
        ("kv_k", kv), ("kv_v", kv),
        ("flash_attention", "true" if _fa(plan) else "false"),
        ("ubatch", plan.n_ubatch),
        ("host", "127.0.0.1"), ("port", port),
    ]
    return ["python", "-m", "llama_cpp.server", *base.argv(PY_FLAGS, pairs)]


def _lines(plan, model, hw, workload, model_ref, build) -> str:
    ref = model_ref or base.gguf_placeholder(model)
    lines = []
    if plan.split == Split.TENSOR and len(plan.device_ids) > 1:
        lines.append(base.comment(NOT_TENSOR))
    if base.family(model) == "gguf" and build is _server_args:
        lines.append(base.comment("vLLM's GGUF loading is experimental (and slower); "
                                  "llama.cpp/Ollama are the engines for GGUF"))
    groups = base.replica_devices(plan, hw)
    ports = [PORT + r for r in range(len(groups))]
    for ids, port in zip(groups, ports):
        if len(groups) > 1:
            lines.append(base.comment(f"replica on port {port}"))
        lines.append(base.render(build(plan, model, workload, ref, port), base.visible_env(ids, hw)))
    if len(groups) > 1:
        lines.append(base.comment("put a load balancer (nginx upstream, LiteLLM, ...) in front of "
                                  f"ports {', '.join(map(str, ports))}"))
    return "\n".join(lines)


def command(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
            model_ref: str | None = None) -> str:
    return _lines(plan, model, hw, workload, model_ref, _server_args)


def python_command(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
                   model_ref: str | None = None) -> str:
    text = _lines(plan, model, hw, workload, model_ref, _python_args)
    if workload.users > plan.replicas:
        text = base.comment("llama-cpp-python answers one request at a time per process; "
                            "use llama-server for concurrent users") + "\n" + text
    return text
