"""Ollama: `ollama serve` with its environment, a Modelfile (num_gpu, num_ctx), `ollama create`.

Ollama (since 2026) runs upstream llama-server with `-c num_ctx x OLLAMA_NUM_PARALLEL
-np OLLAMA_NUM_PARALLEL -ngl num_gpu` (llm/llama_server.go): num_ctx is one slot's context and
num_gpu counts llama.cpp's n_layer+1 slots. Names: facts.OLLAMA (envconfig/config.go, api/types.go).
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base, llama_cpp, placement

NAME = "ollama"
ENV = {"spread": "OLLAMA_SCHED_SPREAD", "parallel": "OLLAMA_NUM_PARALLEL",
       "flash_attention": "OLLAMA_FLASH_ATTENTION", "kv": "OLLAMA_KV_CACHE_TYPE",
       "host": "OLLAMA_HOST"}
PARAMS = {"gpu_layers": "num_gpu", "ctx": "num_ctx"}
KV_TYPES = ("f16", "q8_0", "q4_0")
PORT = 11434


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
    fam = base.family(model)
    if fam not in ("gguf", "float"):
        return f"Ollama runs GGUF models; {model.quant.id} ({fam}) is not a GGUF type"
    if plan.split in (Split.ROW, Split.TENSOR):
        return "Ollama only splits by layers (no row/tensor split); use llama.cpp -sm row"
    if plan.pp > 1:
        return "Ollama runs on one machine"
    if plan.experts_on_host or plan.n_cpu_moe:
        return "Ollama cannot pin MoE experts to RAM (no -ot / --n-cpu-moe); use llama.cpp"
    if plan.kv_type not in KV_TYPES:
        return f"Ollama's KV cache types are {', '.join(KV_TYPES)}, not {plan.kv_type}"
    return placement.unplaceable(plan, model) or placement.head_too_big(plan, model, "Ollama")


def _env(plan: Plan, hw: Hardware, wl: Workload, ids, port: int) -> dict[str, str]:
    pairs = [
        ("spread", "1" if len(ids) > 1 else None),
        ("parallel", str(base.slots(plan, wl))),
        ("flash_attention", "1" if llama_cpp._fa(plan) else None),
        ("kv", plan.kv_type if plan.kv_type != "f16" else None),
        ("host", f"{base.BIND}:{port}"),
    ]
    return {**base.visible_env(ids, hw), **{ENV[k]: v for k, v in pairs if v is not None}}


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    ref = model_ref or base.gguf_placeholder(model)
    name = f"{base.hf_name(model).split('/')[-1]}-{model.quant.id}".lower()
    place = placement.without_override(plan, model)
    modelfile = "\n".join([f"FROM {ref}",
                           f"PARAMETER {PARAMS['gpu_layers']} {place.ngl}",
                           f"PARAMETER {PARAMS['ctx']} {wl.context}"])  # per slot: Ollama multiplies
    groups = base.replica_devices(plan, hw)
    procs, notes = [], []
    for r, ids in enumerate(groups):
        env = _env(plan, hw, wl, ids, PORT + r)
        label = f" (replica {r})" if len(groups) > 1 else ""
        procs.append(base.Process(argv=["ollama", "serve"], env=env, notes=[f"server{label}, left running:"]))
        procs.append(base.Process(argv=["ollama", "create", name, "-f", "Modelfile"],
                                  env={ENV["host"]: env[ENV["host"]]},
                                  notes=[f"then, in another shell{label}:"]))
    long = base.over_trained_context(model, wl)
    if long:
        notes.append(long + "; Ollama's llama-server starts and warns")
    notes += placement.notes(plan, model, exact=False, split_flag=None)
    if len(plan.device_ids) > 1:
        notes.append("Ollama chooses its own per-GPU split (it passes no --tensor-split); use "
                     "llama.cpp to pin the planned layers per GPU")
    if len(groups) > 1:
        ports = ", ".join(str(PORT + r) for r in range(len(groups)))
        notes.append(f"put a load balancer in front of ports {ports}")
    return base.LaunchCommand(engine=NAME, processes=procs, notes=notes, files={"Modelfile": modelfile})
