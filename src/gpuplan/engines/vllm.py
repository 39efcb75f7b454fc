"""vLLM: `vllm serve` (one node) or a Ray cluster (several nodes: TP inside, PP across).

Flags: https://github.com/vllm-project/vllm/blob/main/vllm/engine/arg_utils.py, checked by the
real parser of the vllm 0.33.0 wheel (tests). VLLM_PP_LAYER_PARTITION is in vllm/envs.py.
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base
from .facts import VLLM

NAME = "vllm"
MULTI_NODE = True
PORT = 8000
FLAGS = {
    "tp": "--tensor-parallel-size", "pp": "--pipeline-parallel-size",
    "dp": "--data-parallel-size", "ctx": "--max-model-len", "users": "--max-num-seqs",
    "mem": "--gpu-memory-utilization", "kv": "--kv-cache-dtype", "quant": "--quantization",
    "backend": "--distributed-executor-backend", "host": "--host", "port": "--port",
}
KV = {"f16": None, "fp8": "fp8"}


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None,
             name: str = "vLLM") -> str | None:
    fam = base.family(model)
    if fam == "gguf":
        return (f"{name}'s GGUF loading is experimental (single-file, slower, not in recent "
                f"releases); use llama.cpp/Ollama, or an AWQ/GPTQ/FP8 checkpoint for {name}")
    if fam not in base.HF_KINDS:
        return f"{name} does not load {model.quant.id} ({fam}) weights"
    if plan.split == Split.ROW:
        return f"row split is llama.cpp's (-sm row); {name} splits with tensor parallelism"
    if plan.gpu_layers is not None:
        return f"partial RAM offload by layer count is llama.cpp/Ollama's ({name} has no such placement)"
    if plan.experts_on_host or plan.n_cpu_moe:
        return f"{name} cannot keep MoE experts in host RAM"
    if plan.kv_type not in KV:
        return f"{name}'s KV cache is fp16/bf16 or fp8, not {plan.kv_type}"
    if wl is not None and model.spec.max_context and wl.context > model.spec.max_context:
        return (f"context {wl.context} is above {model.spec.name}'s maximum of "
                f"{model.spec.max_context} tokens, and {name} refuses to start with it; gpuplan "
                "emits no override (past the trained length RoPE models give garbage or NaN)")
    return None


def pp_size(plan: Plan) -> int:
    return len(plan.device_ids) if plan.split == Split.LAYER else plan.pp


def layer_partition(plan: Plan, model: LoadedModel) -> str | None:
    """Layers per pipeline stage when the plan's shares are uneven (VLLM_/SGLANG_PP_LAYER_PARTITION)."""
    if plan.split != Split.LAYER or not base.uneven(plan):
        return None
    from ..perf.memory import layers_per_device

    return ",".join(map(str, layers_per_device(model.spec.n_layers, plan.shares)))


def quant_flag(model: LoadedModel) -> str | None:
    """Only FP8 from a 16-bit checkpoint needs the flag (online quantization). AWQ/GPTQ/FP8
    checkpoints carry quantization_config; forcing `awq` would skip the Marlin kernels."""
    if base.family(model) == "fp8" and model.spec.native_dtype != "FP8":
        return "fp8"
    return None


def prequant_note(model: LoadedModel, ref: str, name: str) -> list[str]:
    if base.family(model) in base.PREQUANT_KINDS:
        return [f"{ref} must be a checkpoint quantized with {model.quant.id}; {name} reads the "
                "method from its config.json (no quantization flag needed)"]
    return []


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    ref = model_ref or base.hf_name(model)
    pp = pp_size(plan)
    pairs = [
        ("tp", plan.tp if plan.tp > 1 else None),
        ("pp", pp if pp > 1 else None),
        ("dp", plan.replicas if plan.replicas > 1 else None),
        ("ctx", wl.context),
        ("users", base.slots(plan, wl)),
        ("mem", f"{getattr(plan, 'gpu_memory_utilization', None) or 0.90:.2f}"),
        ("kv", KV[plan.kv_type]),
        ("quant", quant_flag(model)),
        ("backend", "ray" if hw.nodes > 1 else None),
        ("host", base.BIND), ("port", PORT),
    ]
    argv = ["vllm", "serve", ref, *base.argv(FLAGS, pairs)]
    ids = tuple(i for g in base.replica_devices(plan, hw) for i in g)
    env = {} if hw.nodes > 1 else base.visible_env(ids, hw)
    part = layer_partition(plan, model)
    if part:
        env[VLLM["pp_partition_env"].value] = part
    notes = prequant_note(model, ref, "vLLM")
    if hw.nodes == 1:
        return base.LaunchCommand(engine=NAME, processes=[base.Process(argv=argv, env=env)], notes=notes)
    notes += [
        f"{hw.nodes} nodes x {plan.tp} GPUs: TP={plan.tp} inside a node, PP={plan.pp} across "
        "nodes, over a Ray cluster",
        "vLLM does not install Ray: `pip install ray` (the version vLLM's docs name) on every node",
        "NCCL: export NCCL_SOCKET_IFNAME=<interface between nodes, e.g. eth0> on every node; with "
        "InfiniBand keep NCCL_IB_DISABLE=0 and set NCCL_IB_HCA=mlx5",
        "same model path, vLLM version and env on every node",
    ]
    procs = [base.Process(argv=["ray", "start", "--head", "--port=6379"], host="node 0 (HEAD_IP)")]
    procs += [base.Process(argv=["ray", "start", "--address=HEAD_IP:6379"], host=f"node {r}")
              for r in range(1, hw.nodes)]
    procs.append(base.Process(argv=argv, env=env, host="node 0 (HEAD_IP)"))
    # on Kubernetes, vLLM's documented multi-node deployment: a LeaderWorkerSet of one pod per node
    from . import lws

    per_node = len(plan.device_ids) // hw.nodes
    manifest = lws.to_yaml(lws.manifest("vllm", argv, nodes=hw.nodes, gpus_per_node=per_node))
    notes.append("on Kubernetes instead of the Ray steps: kubectl apply -f lws.yaml (a LeaderWorkerSet, "
                 "https://lws.sigs.k8s.io/docs/installation/), then kubectl port-forward svc/vllm-leader 8080:8080")
    return base.LaunchCommand(engine=NAME, processes=procs, notes=notes, files={"lws.yaml": manifest})
