"""SGLang: `python -m sglang.launch_server`.

Flags: https://github.com/sgl-project/sglang/blob/main/python/sglang/srt/server_args.py, checked
by the real parser of the sglang 0.5.23 wheel (prepare_server_args, in tests). Uneven pipeline
stages: SGLANG_PP_LAYER_PARTITION (sglang/srt/distributed/utils.py, get_pp_indices).
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Workload
from . import base, vllm
from .facts import SGLANG

NAME = "sglang"
MULTI_NODE = True
PORT = 30000
FLAGS = {
    "model": "--model-path", "tp": "--tp-size", "dp": "--dp-size", "pp": "--pp-size",
    "ctx": "--context-length", "mem": "--mem-fraction-static",
    "users": "--max-running-requests", "kv": "--kv-cache-dtype", "quant": "--quantization",
    "nnodes": "--nnodes", "rank": "--node-rank", "dist": "--dist-init-addr",
    "host": "--host", "port": "--port",
}
KV = {"f16": None, "fp8": "fp8_e4m3"}


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
    if base.family(model) == "gguf":
        return "SGLang loads safetensors checkpoints, not GGUF; use llama.cpp/Ollama"
    return vllm.supports(plan, model, hw, wl, name="SGLang")


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    pp = vllm.pp_size(plan)
    ref = model_ref or base.hf_name(model)

    def argv(rank: int | None) -> list[str]:
        pairs = [
            ("model", ref),
            ("tp", plan.tp if plan.tp > 1 else None),
            ("pp", pp if pp > 1 else None),
            ("dp", plan.replicas if plan.replicas > 1 else None),
            ("ctx", wl.context),
            ("mem", f"{getattr(plan, 'mem_fraction_static', 0.85):.2f}"),
            ("users", base.slots(plan, wl)),
            ("kv", KV[plan.kv_type]),
            ("quant", vllm.quant_flag(model)),
            ("nnodes", hw.nodes if rank is not None else None),
            ("rank", rank),
            ("dist", "HEAD_IP:50000" if rank is not None else None),
            ("host", base.BIND), ("port", PORT),
        ]
        return ["python", "-m", "sglang.launch_server", *base.argv(FLAGS, pairs)]

    env = {}
    part = vllm.layer_partition(plan, model)
    if part:
        env[SGLANG["pp_partition_env"].value] = part
    notes = vllm.prequant_note(model, ref, "SGLang")
    if hw.nodes <= 1:
        ids = tuple(i for g in base.replica_devices(plan, hw) for i in g)
        env = {**base.visible_env(ids, hw), **env}
        return base.LaunchCommand(engine=NAME, processes=[base.Process(argv=argv(None), env=env)], notes=notes)
    notes.append(f"{hw.nodes} nodes; NCCL: set NCCL_SOCKET_IFNAME (and NCCL_IB_HCA with InfiniBand) "
                 "on every node")
    procs = [base.Process(argv=argv(r), env=env, host=f"node {r}" + (" (HEAD_IP)" if r == 0 else ""))
             for r in range(hw.nodes)]
    return base.LaunchCommand(engine=NAME, processes=procs, notes=notes)
