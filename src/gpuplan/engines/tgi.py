"""Hugging Face TGI: `text-generation-launcher` (tensor parallel shards only).

Flags: https://github.com/huggingface/text-generation-inference/blob/main/docs/source/reference/launcher.md
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base, vllm

NAME = "tgi"
PORT = 3000
FLAGS = {
    "model": "--model-id", "shards": "--num-shard", "total": "--max-total-tokens",
    "users": "--max-concurrent-requests", "kv": "--kv-cache-dtype", "quant": "--quantize",
    "port": "--port",
}
KV = {"f16": None, "fp8": "fp8_e4m3fn"}


def supports(plan: Plan, model: LoadedModel) -> str | None:
    if base.family(model) == "gguf":
        return "TGI loads safetensors checkpoints, not GGUF; use llama.cpp/Ollama"
    reason = vllm.supports(plan, model)
    if reason:
        return reason.replace("vLLM", "TGI")
    if plan.pp > 1 or plan.split in (Split.LAYER, Split.PIPELINE):
        return "TGI shards with tensor parallelism only (no layer or pipeline split)"
    return None


def command(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
            model_ref: str | None = None) -> str:
    ref = model_ref or model.spec.id
    groups = base.replica_devices(plan, hw)
    lines = []
    if base.family(model) in base.PREQUANT_KINDS:
        lines.append(base.comment(f"{ref} must be a checkpoint quantized with {model.quant.id}; TGI reads the "
                                  "method from its config (no --quantize needed)"))
    for r, ids in enumerate(groups):
        pairs = [
            ("model", ref),
            ("shards", max(plan.tp, len(ids))),
            ("total", workload.context),
            ("users", base.per_replica_users(plan, workload)),
            ("kv", KV[plan.kv_type]),
            ("quant", vllm.quant_flag(model)),
            ("port", PORT + r),
        ]
        if len(groups) > 1:
            lines.append(base.comment(f"replica on port {PORT + r}"))
        lines.append(base.render(["text-generation-launcher", *base.argv(FLAGS, pairs)],
                                 base.visible_env(ids, hw)))
    if len(groups) > 1:
        lines.append(base.comment("put a load balancer in front of the replicas"))
    return "\n".join(lines)
