"""LMDeploy: `lmdeploy serve api_server` with its TurboMind engine (CUDA).

Flags: lmdeploy/cli/serve.py (add_parser_api_server) and lmdeploy/cli/utils.py (ArgumentHelper)
of lmdeploy 0.18.0 (https://github.com/InternLM/lmdeploy/blob/v0.18.0/lmdeploy/cli/serve.py);
tests read those declarations from the PyPI wheel's source. KV cache sizing and block size:
docs/en/inference/turbomind_config.md.
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base

NAME = "lmdeploy"
PORT = 23333  # --server-port's effective default
VERSION = "lmdeploy 0.18.0"
FLAGS = {
    "backend": "--backend", "tp": "--tp", "ctx": "--session-len", "users": "--max-batch-size",
    "cache": "--cache-max-entry-count", "kv": "--quant-policy", "fmt": "--model-format",
    "host": "--server-name", "port": "--server-port",
}
# --quant-policy (lmdeploy.messages.QuantPolicy): 0 keeps the KV cache in 16 bits, 8 stores it as
# int8, 4 as int4, 16 as FP8 e4m3 (docs/en/quantization/kv_quant.md)
KV = {"f16": None, "bf16": None, "q8_0": 8, "q4_0": 4, "fp8": 16}
QUANT_POLICIES = (0, 4, 8, 16, 17, 42)
# --model-format for each weight family TurboMind loads
FORMAT = {"float": "hf", "awq": "awq", "gptq": "gptq", "fp8": "fp8"}
CACHE_FRACTION = 0.8  # cache_max_entry_count: share of the memory the weights leave, for KV blocks


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
    fam = base.family(model)
    if fam not in FORMAT:
        return f"LMDeploy TurboMind loads Hugging Face checkpoints (16-bit, AWQ, GPTQ, FP8), not {model.quant.id}"
    if hw is not None and any(hw.devices[i].backend != "cuda" for i in plan.device_ids):
        return "LMDeploy's TurboMind engine runs on NVIDIA GPUs (CUDA) only"
    if plan.split in (Split.ROW, Split.LAYER) or plan.pp > 1:
        return "TurboMind splits a model by tensor parallelism only (--tp), not by layers"
    if plan.gpu_layers is not None or plan.experts_on_host:
        return "TurboMind keeps the whole model on the GPUs (no RAM offload)"
    if plan.kv_type not in KV:
        return f"TurboMind's KV cache is 16-bit, int8, int4 or FP8 (--quant-policy 0/8/4/16), not {plan.kv_type}"
    if wl is not None and model.spec.max_context and wl.context > model.spec.max_context:
        return (f"context {wl.context} is above {model.spec.name}'s maximum of {model.spec.max_context} tokens; "
                f"gpuplan emits no RoPE override for LMDeploy")
    if hw is not None and hw.nodes > 1:
        return "TurboMind serves from one machine"
    return None


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    ref = model_ref or base.hf_name(model)
    groups = base.replica_devices(plan, hw)
    procs = []
    for r, ids in enumerate(groups):
        pairs = [
            ("backend", "turbomind"),
            ("tp", plan.tp if plan.tp > 1 else None),
            ("ctx", wl.context),
            ("users", base.slots(plan, wl)),
            ("cache", CACHE_FRACTION),
            ("kv", KV[plan.kv_type]),
            ("fmt", FORMAT[base.family(model)] if base.family(model) != "float" else None),
            ("host", base.BIND), ("port", PORT + r),
        ]
        procs.append(base.Process(argv=["lmdeploy", "serve", "api_server", ref, *base.argv(FLAGS, pairs)],
                                  env=base.visible_env(ids, hw),
                                  notes=[f"replica on port {PORT + r}"] if len(groups) > 1 else []))
    notes = [f"KV blocks take {CACHE_FRACTION:.0%} of the memory the weights leave (--cache-max-entry-count); "
             f"--max-batch-size sequences run at once, the rest queue"]
    if len(groups) > 1:
        notes.append("put a load balancer in front of the replicas")
    return base.LaunchCommand(engine=NAME, processes=procs, notes=notes)
