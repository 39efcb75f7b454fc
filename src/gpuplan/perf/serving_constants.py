"""Fitted constants of the serving simulator, kept apart from the speed model's (constants.py).

Each is per engine kernel family (never per GPU): an engine, or an engine on a backend whose
kernels differ (`vllm_rocm`: vLLM's ROCm attention and GEMM kernels), with a "default" used for
an engine that has no value of its own (per backend: `default` on CUDA, `default_rocm` on ROCm; a
backend with neither gets the priors below). `scripts/fit_serving.py` fits them on the serving rows of data/measurements/ and writes
`fitted_serving.yaml` beside this file, which overrides the priors below; the YAML says what it
was fitted on. What they stand for:

step_s: host-side cost of one engine step that the GPU waits for (scheduler, input preparation,
    sampling launch), seconds. CUDA/HIP graphs remove kernel launches, not this.
seq_s: the same cost per sequence in the step (per-sequence bookkeeping, sampling, detokenizing),
    seconds. It is what bounds very large batches (thousands of sequences) on Python engines.
kv_eff: share of the weight stream's bandwidth that paged-attention reads of the KV cache reach
    (replaces the speed model's kv_read_eff, fitted on llama.cpp's single-sequence attention).
attn_eff: attention FLOPs run at this share of the GEMM rate (FlashAttention-style kernels;
    replaces the speed model's attn_eff, fitted on llama.cpp).
gemm_eff: share of the tensor-core peak a serving step's large matrix multiplies reach, replacing
    the speed model's prompt-processing share for this engine (None: keep that share).
allreduce_eff: share of the link's bandwidth a tensor-parallel all-reduce reaches.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path


def _d(**kw):
    return field(default_factory=lambda: dict(kw))


@dataclass(frozen=True)
class ServingConstants:
    step_s: dict = _d(default=1.0e-3, llama_cpp=0.0, mlx=0.0)
    seq_s: dict = _d(default=2.0e-5, llama_cpp=0.0, mlx=0.0)
    kv_eff: dict = _d(default=0.9, llama_cpp=None, mlx=None)
    attn_eff: dict = _d(default=0.5, llama_cpp=None, mlx=None)
    gemm_eff: dict = _d(default=None)
    allreduce_eff: float = 0.7
    fitted_on: str = "priors"

    def get(self, table: str, engine: str, backend: str | None = None):
        """The value for `engine` on `backend` (cuda is every engine's own), else the engine's,
        else the default."""
        t = getattr(self, table)
        key = family_key(engine)
        if not backend or backend == "cuda":
            return t.get(key, t.get("default"))
        if f"{key}_{backend}" in t:
            return t[f"{key}_{backend}"]
        if key in t:
            return t[key]
        # an engine without constants of its own on this backend: the backend's default, else the
        # prior (the fitted CUDA default says nothing about another backend's kernels)
        if f"default_{backend}" in t:
            return t[f"default_{backend}"]
        return ServingConstants.__dataclass_fields__[table].default_factory().get("default")

    def with_overrides(self, data: dict) -> "ServingConstants":
        merged = {}
        for k, v in data.items():
            if k not in self.__dataclass_fields__ or k == "fitted_on":
                from ..errors import InputError

                raise InputError(f"unknown serving constant '{k}'; known: step_s, seq_s, kv_eff, attn_eff, gemm_eff, allreduce_eff")
            cur = getattr(self, k)
            merged[k] = {**cur, **v} if isinstance(cur, dict) and isinstance(v, dict) else v
        return replace(self, **merged)


def family_key(engine: str) -> str:
    return engine.replace(".", "_").replace("-", "_")


SHIPPED = Path(__file__).with_name("fitted_serving.yaml")


def load_serving(path: Path | None = None) -> ServingConstants:
    p = path or SHIPPED
    if not p.is_file():
        return ServingConstants()
    from ..errors import read_yaml_file

    data = read_yaml_file(p, "serving constants file") or {}
    c = ServingConstants().with_overrides(data.get("constants", {}))
    return replace(c, fitted_on=str(data.get("fitted_on", p)))


SERVING = load_serving()
