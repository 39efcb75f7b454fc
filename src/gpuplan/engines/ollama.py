"""Ollama: server environment plus a Modelfile (num_gpu = layers on GPU, num_ctx).

Env vars: https://github.com/ollama/ollama/blob/main/envconfig/config.go
Modelfile parameters: https://github.com/ollama/ollama/blob/main/docs/modelfile.md
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base, llama_cpp

NAME = "ollama"
ENV = {"spread": "OLLAMA_SCHED_SPREAD", "parallel": "OLLAMA_NUM_PARALLEL",
       "flash_attention": "OLLAMA_FLASH_ATTENTION", "kv": "OLLAMA_KV_CACHE_TYPE",
       "host": "OLLAMA_HOST"}
PARAMS = {"gpu_layers": "num_gpu", "ctx": "num_ctx"}
KV_TYPES = ("f16", "q8_0", "q4_0")
PORT = 11434


def supports(plan: Plan, model: LoadedModel) -> str | None:
    fam = base.family(model)
    if fam not in ("gguf", "float"):
        return f"Ollama runs GGUF models; {model.quant.id} ({fam}) is not a GGUF type"
    if plan.split in (Split.ROW, Split.TENSOR):
        return "Ollama only splits by layers (no row/tensor split); use llama.cpp -sm row"
    if plan.pp > 1:
        return "Ollama runs on one machine"
    if plan.experts_on_host or plan.n_cpu_moe:
        return "Ollama cannot pin MoE experts to RAM (no -ot); use llama.cpp"
    if plan.kv_type not in KV_TYPES:
        return f"Ollama's KV cache types are {', '.join(KV_TYPES)}, not {plan.kv_type}"
    return None


def _env(plan: Plan, hw: Hardware, workload: Workload, ids, port: int) -> list[str]:
    pairs = [
        ("spread", "1" if len(ids) > 1 else None),
        ("parallel", str(base.per_replica_users(plan, workload))),
        ("flash_attention", "1" if llama_cpp._fa(plan) else None),
        ("kv", plan.kv_type if plan.kv_type != "f16" else None),
        ("host", f"127.0.0.1:{port}" if plan.replicas > 1 else None),
    ]
    return base.visible_env(ids, hw) + [f"{ENV[k]}={v}" for k, v in pairs if v is not None]


def command(plan: Plan, model: LoadedModel, hw: Hardware, workload: Workload,
            model_ref: str | None = None) -> str:
    ref = model_ref or base.gguf_placeholder(model)
    name = f"{model.spec.id.split('/')[-1]}-{model.quant.id}".lower()
    groups = base.replica_devices(plan, hw)
    lines = []
    for r, ids in enumerate(groups):
        lines.append(base.comment(f"server{f' (replica {r})' if len(groups) > 1 else ''}:"))
        lines.append(base.render(["ollama", "serve"], _env(plan, hw, workload, ids, PORT + r)))
    if base.uneven(plan):
        lines.append(base.comment("Ollama chooses its own per-GPU split (no --tensor-split); "
                                  "use llama.cpp to pin the planned shares"))
    lines.append(base.comment("Modelfile:"))
    lines.append(f"FROM {ref}")
    params = [("gpu_layers", 999 if plan.gpu_layers is None else plan.gpu_layers),
              ("ctx", workload.context)]
    lines += [f"PARAMETER {PARAMS[k]} {v}" for k, v in params]
    lines.append(base.render(["ollama", "create", name, "-f", "Modelfile"]))
    if len(groups) > 1:
        ports = ", ".join(str(PORT + r) for r in range(len(groups)))
        lines.append(base.comment("run `ollama create` once per server, with OLLAMA_HOST set to it"))
        lines.append(base.comment(f"put a load balancer in front of ports {ports}"))
    return "\n".join(lines)
