"""llama.cpp: `llama-server` and the `llama-cpp-python` server (same library, other flags).

llama-server flags: https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md
(checked by the real llama-server built from the llama.cpp llama-cpp-python vendors);
llama-cpp-python flags are its pydantic settings fields (llama_cpp/server/settings.py), turned
into `--field` options by llama_cpp/server/cli.py; tests parse our argv with it.
Placement: see placement.py (n_layer+1 slots, what -ngl and --tensor-split mean).
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base, placement
from .facts import LLAMA_SERVER

NAME = "llama.cpp"
PY_NAME = "llama-cpp-python"
PORT = 8080

FLAGS = {
    "model": "-m", "gpu_layers": "-ngl", "split": "-sm", "shares": "--tensor-split",
    "main_gpu": "--main-gpu", "device": "-dev", "ctx": "-c", "parallel": "--parallel",
    "kv_k": "-ctk", "kv_v": "-ctv", "flash_attention": "-fa", "override": "-ot",
    "n_cpu_moe": "--n-cpu-moe", "ubatch": "-ub", "swa_full": "--swa-full", "no_repack": "--no-repack",
    "host": "--host", "port": "--port",
}
PY_FLAGS = {
    "model": "--model", "gpu_layers": "--n_gpu_layers", "split": "--split_mode",
    "shares": "--tensor_split", "main_gpu": "--main_gpu", "ctx": "--n_ctx",
    "kv_k": "--type_k", "kv_v": "--type_v", "flash_attention": "--flash_attn", "ubatch": "--n_ubatch",
    "logits_all": "--logits_all", "interrupt": "--interrupt_requests",
    "host": "--host", "port": "--port",
}
KV_TYPES = ("f16", "q8_0", "q4_0", "q4_1", "q5_0", "q5_1", "iq4_nl", "bf16", "f32")
# ggml_type enum values (ggml.h) that llama-cpp-python's --type_k/--type_v take
GGML_TYPE = {"f32": 0, "f16": 1, "q4_0": 2, "q4_1": 3, "q5_0": 6, "q5_1": 7, "q8_0": 8,
             "iq4_nl": 20, "bf16": 30}
SPLIT_MODE = {"none": 0, "layer": 1, "row": 2, "tensor": 3}  # llama.h LLAMA_SPLIT_MODE_*
# what upstream's --cpu-moe / --n-cpu-moe match (common/common.h LLM_FFN_EXPS_REGEX), _chexps too
EXPERTS_TO_CPU = LLAMA_SERVER["cpu_moe_regex"].value + "=CPU"
HEAD_TO_CPU = r"^(output|token_embd)\.weight$=CPU"  # the output head (or the tied embedding)
TENSOR_NOTE = ("-sm tensor (weights and KV split across the GPUs, run together) is EXPERIMENTAL in "
               "llama.cpp and only for some architectures; -sm row is the mature alternative")


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
    fam = base.family(model)
    if fam not in ("gguf", "float"):
        return f"llama.cpp loads GGUF files; {model.quant.id} ({fam}) is not a GGUF type"
    if plan.pp > 1:
        return "llama.cpp has no pipeline parallelism across nodes (only layer split in one box)"
    if plan.kv_type not in KV_TYPES:
        return f"llama.cpp has no {plan.kv_type} KV cache (it takes {', '.join(KV_TYPES[:4])}, ...)"
    return placement.unplaceable(plan, model)


def python_supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None,
                    wl: Workload | None = None) -> str | None:
    reason = supports(plan, model, hw, wl)
    if reason:
        return reason.replace("llama.cpp", "llama-cpp-python", 1)
    if plan.experts_on_host or plan.n_cpu_moe:
        return "llama-cpp-python has no tensor override (-ot), so MoE experts cannot be pinned to RAM"
    if plan.swa_full is False:
        return "llama-cpp-python's server always keeps full-size sliding-window caches (swa_full)"
    if plan.kv_type not in GGML_TYPE:
        return f"llama-cpp-python takes no {plan.kv_type} KV cache type"
    if plan.split == Split.TENSOR:
        return "llama-cpp-python 0.3.36's split_mode has no tensor mode in its settings; use llama-server"
    if plan.gpu_layers is not None and len(plan.device_ids) > 1:
        return ("llama-cpp-python has no -ot to keep the output head in RAM, so a split with layers in "
                "RAM cannot keep the planned layers per GPU; use llama-server")
    return placement.head_too_big(plan, model, PY_NAME)


def _split_mode(plan: Plan) -> str | None:
    if len(plan.device_ids) < 2:
        return None
    return {Split.ROW: "row", Split.TENSOR: "tensor"}.get(plan.split, "layer")


def _fa(plan: Plan) -> bool:
    # flash attention as the plan's memory was computed: the user's choice, else the engine's
    # default resolved (perf/engine_profiles.settings; a quantized V cache forces it on)
    from ..perf.engine_profiles import settings

    return settings(plan, host_layers=plan.gpu_layers is not None).flash_attn


def _sycl_devices(plan: Plan, hw: Hardware, ids) -> str | None:
    """-dev SYCL0,...: the cards ONEAPI_DEVICE_SELECTOR left visible, in its order."""
    if hw.devices[ids[0]].backend != "sycl":
        return None
    return ",".join(f"SYCL{i}" for i in range(len(ids)))


def _server_argv(plan, model, hw, wl, ref, port, ids) -> list[str]:
    n = base.slots(plan, wl)
    kv = plan.kv_type if plan.kv_type != "f16" else None
    place = placement.llama_server(plan, model)
    overrides = [EXPERTS_TO_CPU] if plan.experts_on_host else []
    if place.head_on_cpu:
        overrides.append(HEAD_TO_CPU)
    mode = _split_mode(plan)
    pairs = [
        ("model", ref),
        ("gpu_layers", place.ngl),
        ("split", mode),
        ("shares", place.tensor_split),
        ("main_gpu", placement.main_gpu(plan, hw) if mode == "row" else None),
        ("device", _sycl_devices(plan, hw, ids)),
        ("ctx", wl.context * n),  # --parallel N gives each slot -c / N cells
        ("parallel", n),
        ("kv_k", kv), ("kv_v", kv),
        ("flash_attention", "on" if _fa(plan) else "off"),
        ("override", ",".join(overrides) or None),
        ("n_cpu_moe", plan.n_cpu_moe if plan.n_cpu_moe and not plan.experts_on_host else None),
        # settings the plan's memory was computed with, when the user chose them
        ("ubatch", plan.n_ubatch), ("swa_full", True if plan.swa_full else None),
        ("no_repack", True if plan.repack is False else None),
        ("host", base.BIND), ("port", port),
    ]
    return ["llama-server", *base.argv(FLAGS, pairs)]


def _python_argv(plan, model, hw, wl, ref, port, ids) -> list[str]:
    kv = GGML_TYPE[plan.kv_type] if plan.kv_type != "f16" else None
    mode = _split_mode(plan)
    place = placement.without_override(plan, model)
    pairs = [
        ("model", ref),
        ("gpu_layers", -1 if place.ngl == placement.ALL else place.ngl),
        ("split", SPLIT_MODE[mode] if mode else None),
        ("shares", place.tensor_split.split(",") if place.tensor_split else None),
        ("main_gpu", placement.main_gpu(plan, hw) if mode == "row" else None),
        ("ctx", wl.context),  # one request at a time: one sequence's context
        ("kv_k", kv), ("kv_v", kv),
        ("flash_attention", "true" if _fa(plan) else "false"),
        ("ubatch", plan.n_ubatch),
        ("logits_all", "false"),  # default true: an n_ctx x n_vocab float32 buffer in RAM
        ("interrupt", "False"),  # default True: a new request would end the running one
        ("host", base.BIND), ("port", port),
    ]
    return ["python", "-m", "llama_cpp.server", *base.argv(PY_FLAGS, pairs)]


def _launch(engine, plan, model, hw, wl, model_ref, build) -> base.LaunchCommand:
    ref = model_ref or base.gguf_placeholder(model)
    notes = []
    if plan.split == Split.TENSOR and len(plan.device_ids) > 1:
        notes.append(TENSOR_NOTE)
    long = base.over_trained_context(model, wl)
    if long:
        notes.append(long + "; llama.cpp starts and warns")
    exact = build is _server_argv
    notes += placement.notes(plan, model, exact, "--tensor-split" if exact else "--tensor_split")
    groups = base.replica_devices(plan, hw)
    ports = [PORT + r for r in range(len(groups))]
    procs = []
    for ids, port in zip(groups, ports):
        pn = [f"replica on port {port}"] if len(groups) > 1 else []
        procs.append(base.Process(argv=build(plan, model, hw, wl, ref, port, ids),
                                  env=base.visible_env(ids, hw), notes=pn))
    if len(groups) > 1:
        notes.append("put a load balancer (nginx upstream, LiteLLM, ...) in front of ports "
                     + ", ".join(map(str, ports)))
    return base.LaunchCommand(engine=engine, processes=procs, notes=notes)


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    return _launch(NAME, plan, model, hw, wl, model_ref, _server_argv)


def python_launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
                  model_ref: str | None = None) -> base.LaunchCommand:
    cmd = _launch(PY_NAME, plan, model, hw, wl, model_ref, _python_argv)
    if base.per_replica_users(plan, wl) > 1:
        note = ("llama-cpp-python answers one request at a time per process (the others wait); "
                "use llama-server for concurrent users")
        cmd = base.LaunchCommand(engine=cmd.engine, processes=cmd.processes, notes=[note, *cmd.notes])
    return cmd
