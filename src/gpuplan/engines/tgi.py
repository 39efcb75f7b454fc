"""Hugging Face TGI: `text-generation-launcher` (tensor parallel shards only). TGI is in
maintenance mode (its README): the command says so.

Flags: the launcher's clap Args struct (launcher/src/main.rs), transcribed in
tests/test_engine_flags_real.py with the commit it was read at (facts.TGI_COMMIT).
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base, vllm
from .facts import TGI

NAME = "tgi"
PORT = 3000
FLAGS = {
    "model": "--model-id", "shards": "--num-shard", "total": "--max-total-tokens",
    "users": "--max-concurrent-requests", "kv": "--kv-cache-dtype", "quant": "--quantize",
    "host": "--hostname", "port": "--port", "master_port": "--master-port",
    "uds": "--shard-uds-path", "prometheus": "--prometheus-port",
}
KV = {"f16": None, "fp8": "fp8_e4m3fn"}
MAINTENANCE = ("TGI is in maintenance mode (its README: minor fixes only); vLLM or SGLang are "
               "the maintained engines for the same checkpoints")


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
    if base.family(model) == "gguf":
        return "TGI loads safetensors checkpoints, not GGUF; use llama.cpp/Ollama"
    reason = vllm.supports(plan, model, hw, wl, name="TGI")
    if reason:
        return reason
    if plan.pp > 1 or plan.split in (Split.LAYER, Split.PIPELINE):
        return "TGI shards with tensor parallelism only (no layer or pipeline split)"
    return None


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    ref = model_ref or base.hf_name(model)
    groups = base.replica_devices(plan, hw)
    users = base.per_replica_users(plan, wl)
    cap = int(TGI["max_concurrent_requests"].value)
    notes = [MAINTENANCE, *vllm.prequant_note(model, ref, "TGI")]
    notes.append(f"--max-concurrent-requests refuses (HTTP 429) what is past it instead of queueing: "
                 f"set to {max(users, cap)}, at least the {users} client(s) per replica; the KV "
                 f"cache runs {base.slots(plan, wl)} at once and the rest wait")
    procs = []
    for r, ids in enumerate(groups):
        # every launcher on a host needs its own ports and shard socket (defaults collide)
        pairs = [
            ("model", ref),
            ("shards", max(plan.tp, len(ids))),
            ("total", wl.context),
            ("users", max(users, cap)),
            ("kv", KV[plan.kv_type]),
            ("quant", vllm.quant_flag(model)),
            ("host", base.BIND), ("port", PORT + r),
            ("master_port", int(TGI["default_master_port"].value) + r if len(groups) > 1 else None),
            ("uds", f"{TGI['default_shard_uds_path'].value}-{r}" if len(groups) > 1 else None),
            ("prometheus", int(TGI["default_prometheus_port"].value) + r if len(groups) > 1 else None),
        ]
        procs.append(base.Process(argv=["text-generation-launcher", *base.argv(FLAGS, pairs)],
                                  env=base.visible_env(ids, hw),
                                  notes=[f"replica on port {PORT + r}"] if len(groups) > 1 else []))
    if len(groups) > 1:
        notes.append("put a load balancer in front of the replicas")
    return base.LaunchCommand(engine=NAME, processes=procs, notes=notes)
