"""MLX: `mlx_lm.server` on Apple silicon (batched decoding of concurrent requests).

Flags: mlx_lm/server.py main() of mlx-lm 0.32.2
(https://github.com/ml-explore/mlx-lm/blob/v0.32.2/mlx_lm/server.py); tests rebuild that
argument parser from the PyPI wheel's source. --decode-concurrency (default 32) sequences decode
together, --prompt-concurrency (default 8) prompts are processed together in steps of
--prefill-step-size (default 2048) tokens.
"""

from __future__ import annotations

from ..types import Hardware, LoadedModel, Plan, Split, Workload
from . import base

NAME = "mlx"
PORT = 8080
VERSION = "mlx-lm 0.32.2"
FLAGS = {"model": "--model", "host": "--host", "port": "--port", "decode": "--decode-concurrency",
         "prompt": "--prompt-concurrency", "max_tokens": "--max-tokens", "kv_bits": "--kv-bits"}
DECODE_CONCURRENCY = 32
PROMPT_CONCURRENCY = 8
FORMATS = ("float", "mlx")  # Hugging Face safetensors in 16 bits, or mlx-community quantized repos


def supports(plan: Plan, model: LoadedModel, hw: Hardware | None = None, wl: Workload | None = None) -> str | None:
    if hw is not None and any(hw.devices[i].kind != "apple" for i in plan.device_ids):
        return "mlx_lm.server runs on Apple silicon (Metal)"
    if base.family(model) not in FORMATS:
        return f"MLX loads safetensors (16-bit or MLX-quantized), not {model.quant.id}"
    if plan.split != Split.NONE or len(plan.device_ids) > 1 or plan.replicas > 1:
        return "gpuplan runs mlx_lm.server on one Mac"
    if plan.kv_type not in ("f16", "bf16"):
        return "mlx_lm.server's quantized KV cache (--kv-bits) turns batching off; gpuplan keeps it 16-bit"
    return None


def launch(plan: Plan, model: LoadedModel, hw: Hardware, wl: Workload,
           model_ref: str | None = None) -> base.LaunchCommand:
    ref = model_ref or base.hf_name(model)
    users = base.per_replica_users(plan, wl)
    pairs = [
        ("model", ref),
        ("decode", max(users, 1) if users != DECODE_CONCURRENCY else None),
        ("prompt", min(max(users, 1), PROMPT_CONCURRENCY) if users < PROMPT_CONCURRENCY else None),
        ("max_tokens", wl.output_tokens),
        ("host", base.BIND), ("port", PORT),
    ]
    notes = ["mlx_lm.server grows each sequence's KV cache as it goes (no preallocated context): "
             "memory is weights + the tokens the running requests hold"]
    return base.LaunchCommand(engine=NAME, processes=[base.Process(argv=["mlx_lm.server", *base.argv(FLAGS, pairs)])],
                              notes=notes)
