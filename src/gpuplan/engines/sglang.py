"""SGLang: `python -m sglang.launch_server`.

Flags: https://github.com/sgl-project/sglang/blob/main/python/sglang/srt/server_args.py
(v0.5.23 declares them as dataclass fields in sglang/srt/arg_groups/fields/*.py:
--tp-size (alias --tensor-parallel-size), --dp-size, --pp-size, --context-length, ...).
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base, vllm

NAME = "sglang"
MULTI_NODE = True
PORT = 30000
FLAGS = {
    "model": "--model-path", "tp": "--tp-size", "dp": "--dp-size", "pp": "--pp-size",
    "ctx": "--context-length", "mem": "--mem-fraction-static",
    "users": "--max-running-requests", "kv": "--kv-cache-dtype", "quant": "--quantization",
    "nnodes": "--nnodes", "rank": "--node-rank", "dist": "--dist-init-addr", "port": "--port",
}
KV = {"f16": None, "fp8": "fp8_e4m3"}


def supports(plan: Plan, model: LoadedModel) -> str | None:
    if base.family(model) == "gguf":
        return "SGLang loads safetensors checkpoints, not GGUF; use llama.cpp/Ollama"
    reason = vllm.supports(plan, model)
    if reason:
        return reason.replace("vLLM", "SGLang")
    if plan.split == Split.LAYER and base.uneven(plan):
        return "SGLang's pipeline parallelism splits layers evenly; this plan's shares are uneven"
    return None


def command(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
            model_ref: str | None = None) -> str:
    pp = len(plan.device_ids) if plan.split == Split.LAYER else plan.pp

    def args(rank: int | None) -> list[str]:
        pairs = [
            ("model", model_ref or model.spec.id),
            ("tp", plan.tp if plan.tp > 1 else None),
            ("pp", pp if pp > 1 else None),
            ("dp", plan.replicas if plan.replicas > 1 else None),
            ("ctx", workload.context),
            ("mem", f"{getattr(plan, 'mem_fraction_static', 0.85):.2f}"),
            ("users", base.per_replica_users(plan, workload)),
            ("kv", KV[plan.kv_type]),
            ("quant", vllm.quant_flag(model)),
            ("nnodes", hw.nodes if rank is not None else None),
            ("rank", rank),
            ("dist", "HEAD_IP:50000" if rank is not None else None),
            ("port", PORT),
        ]
        return ["python", "-m", "sglang.launch_server", *base.argv(FLAGS, pairs)]

    lines = []
    if base.family(model) in base.PREQUANT_KINDS:
        lines.append(base.comment(f"{model_ref or model.spec.id} must be a checkpoint quantized "
                                  f"with {model.quant.id}; SGLang reads the method from its config"))
    if hw.nodes <= 1:
        ids = tuple(i for g in base.replica_devices(plan, hw) for i in g)
        return "\n".join([*lines, base.render(args(None), base.visible_env(ids, hw))])
    lines += [base.comment(f"{hw.nodes} nodes; NCCL: set NCCL_SOCKET_IFNAME (and NCCL_IB_HCA "
                          "with InfiniBand) on every node")]
    for rank in range(hw.nodes):
        lines.append(base.comment(f"node {rank}" + (" (HEAD_IP)" if rank == 0 else "")))
        lines.append(base.render(args(rank)))
    return "\n".join(lines)
