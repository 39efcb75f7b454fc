"""vLLM: `vllm serve` (one node) or a Ray cluster (several nodes: TP inside, PP across).

Flags: https://github.com/vllm-project/vllm/blob/main/vllm/engine/arg_utils.py
(checked against the v0.33.0 wheel). VLLM_PP_LAYER_PARTITION is in vllm/envs.py.
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base

NAME = "vllm"
MULTI_NODE = True
PORT = 8000
FLAGS = {
    "tp": "--tensor-parallel-size", "pp": "--pipeline-parallel-size",
    "dp": "--data-parallel-size", "ctx": "--max-model-len", "users": "--max-num-seqs",
    "mem": "--gpu-memory-utilization", "kv": "--kv-cache-dtype", "quant": "--quantization",
    "backend": "--distributed-executor-backend", "port": "--port",
}
KV = {"f16": None, "fp8": "fp8"}


def supports(plan: Plan, model: LoadedModel) -> str | None:
    fam = base.family(model)
    if fam == "gguf":
        return ("vLLM's GGUF loading is experimental (single-file, slower, not in recent "
                "releases); use llama.cpp/Ollama, or an AWQ/GPTQ/FP8 checkpoint for vLLM")
    if fam not in base.HF_KINDS:
        return f"vLLM does not load {model.quant.id} ({fam}) weights"
    if plan.split == Split.ROW:
        return "row split is llama.cpp's (-sm row); vLLM splits with tensor parallelism"
    if plan.gpu_layers is not None:
        return "partial RAM offload by layer count is llama.cpp/Ollama's (vLLM's --cpu-offload-gb is slow)"
    if plan.experts_on_host or plan.n_cpu_moe:
        return "vLLM cannot keep MoE experts in host RAM"
    if plan.kv_type not in KV:
        return f"vLLM's KV cache is fp16/bf16 or fp8, not {plan.kv_type}"
    return None


def _pp(plan: Plan) -> int:
    return len(plan.device_ids) if plan.split == Split.LAYER else plan.pp


def quant_flag(model: LoadedModel) -> str | None:
    """Only FP8 from a 16-bit checkpoint needs the flag (online quantization). AWQ/GPTQ/FP8
    checkpoints carry quantization_config; forcing `awq` would skip the Marlin kernels."""
    if base.family(model) == "fp8" and model.spec.native_dtype != "FP8":
        return "fp8"
    return None


def command(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
            model_ref: str | None = None) -> str:
    ref = model_ref or model.spec.id
    pairs = [
        ("tp", plan.tp if plan.tp > 1 else None),
        ("pp", _pp(plan) if _pp(plan) > 1 else None),
        ("dp", plan.replicas if plan.replicas > 1 else None),
        ("ctx", workload.context),
        ("users", base.per_replica_users(plan, workload)),
        ("mem", f"{getattr(plan, 'gpu_memory_utilization', None) or 0.90:.2f}"),
        ("kv", KV[plan.kv_type]),
        ("quant", quant_flag(model)),
        ("backend", "ray" if hw.nodes > 1 else None),
        ("port", PORT),
    ]
    args = ["vllm", "serve", ref, *base.argv(FLAGS, pairs)]
    ids = tuple(i for g in base.replica_devices(plan, hw) for i in g)
    env = [] if hw.nodes > 1 else base.visible_env(ids, hw)
    if plan.split == Split.LAYER and base.uneven(plan):
        parts = base.layer_counts(plan, model.spec.n_layers)
        env.append(f"VLLM_PP_LAYER_PARTITION={','.join(map(str, parts))}")
    lines = []
    if base.family(model) in base.PREQUANT_KINDS:
        lines.append(base.comment(f"{ref} must be a checkpoint quantized with {model.quant.id}; vLLM reads the "
                                  "method from its config.json (no --quantization needed)"))
    if hw.nodes > 1:
        lines += _ray_lines(plan, hw)
    lines.append(base.render(args, env))
    return "\n".join(lines)


def _ray_lines(plan: Plan, hw: Hardware) -> list[str]:
    return [
        base.comment(f"{hw.nodes} nodes x {plan.tp} GPUs: TP={plan.tp} inside a node, "
                     f"PP={plan.pp} across nodes, over a Ray cluster"),
        base.comment("NCCL: export NCCL_SOCKET_IFNAME=<interface between nodes, e.g. eth0> on "
                     "every node; with InfiniBand keep NCCL_IB_DISABLE=0 and set NCCL_IB_HCA=mlx5"),
        base.comment("same model path, vLLM version and env on every node; on the head node:"),
        base.render(["ray", "start", "--head", "--port=6379"]),
        base.comment("on each worker node:"),
        base.render(["ray", "start", "--address=HEAD_IP:6379"]),
        base.comment("then, on the head node:"),
    ]
