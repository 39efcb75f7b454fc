"""The answers gpuplan gives, as typed results: the planner fills them, the CLI renders them
with rich, `--json` prints `model_dump()`, the web API declares them as its response models
(so /openapi.json and docs/schema/ show the same schema).

The plan result keeps the contract of DESIGN.md (add fields, never rename or remove): `fits`,
`plan` (strategy and per-device assignment), `decode_tok_s`, `prefill_tok_s`,
`throughput_tok_s`, `memory` per device in GB, `alternatives` with the same fields and a
verdict, `explanation`, `commands` (engine -> command line).

Speeds are null on plans that do not fit: a plan that cannot start has no speed.
"""

from __future__ import annotations

from typing import Generic, Literal, Optional, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from .engines.base import LaunchCommand
from .results_serving import ServingAnswer

T = TypeVar("T")
SpeedMetric = Literal["decode_tok_s", "per_user_tok_s", "throughput_tok_s", "score"]
METRIC_WORDS = {"decode_tok_s": "one-user tok/s", "per_user_tok_s": "tok/s per user",
                "throughput_tok_s": "total tok/s", "score": "total tok/s per $1,000 of GPUs"}


class Result(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ---------------------------------------------------------------- what the planner assumed
class Assumption(Result, Generic[T]):
    value: T
    source: Literal["given", "default", "chosen", "probed", "file"] = Field(
        description="given: the user said so; default: gpuplan's fixed default; chosen: the planner picked it"
                    " among options; probed: measured on this machine; file: read from the model file")
    why: str


class StrAssumption(Assumption[str]):
    pass


class OptStrAssumption(Assumption[Optional[str]]):
    pass


class BoolAssumption(Assumption[bool]):
    pass


class IntAssumption(Assumption[int]):
    pass


class OptFloatAssumption(Assumption[Optional[float]]):
    pass


class EngineVerdict(Result):
    """What another engine would answer for the same question, when it answers differently."""

    engine: str
    fits: bool
    decode_tok_s: Optional[float] = None
    note: str


class Assumptions(Result):
    engine: StrAssumption
    quant: StrAssumption
    kv_type: StrAssumption
    flash_attention: BoolAssumption
    link: OptStrAssumption
    ram_gib: OptFloatAssumption = Field(description="system RAM size, GiB")
    ram_bandwidth_gb_s: OptFloatAssumption = Field(description="system RAM peak bandwidth")
    context_per_slot: IntAssumption = Field(description="tokens the KV cache holds for each sequence")
    slots: IntAssumption = Field(description="sequences one copy of the model runs at once")
    other_engines: list[EngineVerdict] = Field(default_factory=list,
                                               description="engines whose verdict differs from this one's")


# ---------------------------------------------------------------- one plan
class MemoryRow(Result):
    name: str
    weights_gb: float
    kv_cache_gb: float
    overhead_gb: float
    total_gb: float
    capacity_gb: float
    free_gb: float


class PlanDevice(Result):
    index: int
    id: str
    share: Optional[float] = None


class PlanShape(Result):
    strategy: str
    split: str
    engine: str
    devices: list[PlanDevice]
    tp: int
    pp: int
    replicas: int
    gpu_layers: Optional[int] = None
    kv_type: str
    experts_on_host: bool
    n_cpu_moe: int = Field(0, description="MoE layers whose experts sit in RAM (llama.cpp --n-cpu-moe)")
    flash_attention: bool = True
    hardware: str
    layers_per_device: Optional[list[int]] = None


class Ratio(Result):
    """A printed ratio with the two printed figures it is computed from: ratio = value / baseline."""

    ratio: float
    metric: SpeedMetric
    value: float
    baseline: float
    baseline_is: str = Field(description="what the baseline is: 'the recommended plan', 'the first setup'")


class Candidate(Result):
    fits: bool
    plan: PlanShape
    decode_tok_s: Optional[float] = Field(None, description="one user, tokens/s; null when the plan does not fit")
    decode_tok_s_range: Optional[list[float]] = Field(
        None, description="[low, high] tokens/s: where 80% of published measurements of this class of setup fell"
                          " relative to the model's prediction (perf/uncertainty.py)")
    decode_range_measurements: Optional[int] = Field(
        None, description="measurements behind decode_tok_s_range; 0: none of this class (widest range observed)")
    decode_range_class: Optional[str] = Field(None, description="which class of measurements the range comes from")
    prefill_tok_s: Optional[float] = None
    prefill_tok_s_range: Optional[list[float]] = None
    throughput_tok_s: Optional[float] = Field(None, description="all users together, tokens/s")
    per_user_tok_s: Optional[float] = None
    concurrent_per_replica: int = 0
    bound: Optional[str] = None
    roofline_fraction: Optional[float] = None
    breakdown_ms_per_token: dict[str, float] = Field(default_factory=dict)
    memory: list[MemoryRow]
    verdict: str = ""
    reason: Optional[str] = Field(None, description="why it does not fit: which device, by how much")
    vs_recommended: Optional[Ratio] = None


class Workload(Result):
    context: int
    users: int
    prompt_tokens: int
    output_tokens: int
    min_user_tok_s: float


class PlanResult(Candidate):
    meets_constraints: bool = Field(True, description="the plan fits and serves each user at least"
                                                      " min_user_tok_s; false: no plan does, this is the closest")
    model: str = Field(description="the catalog architecture entry (or file) the numbers come from")
    model_label: str = Field(description="the model as the user named it; launch commands use this name")
    quant: str
    goal: str
    workload: Workload
    assumptions: Assumptions
    commands: dict[str, str] = Field(default_factory=dict, description="engine -> shell command line")
    launch: dict[str, LaunchCommand] = Field(default_factory=dict,
                                             description="engine -> how to start it: processes (argv, env, notes),"
                                                         " files to write first, notes, and the shell text")
    unsupported_engines: dict[str, str] = Field(default_factory=dict)
    alternatives: list[Candidate] = Field(default_factory=list)
    explanation: list[str] = Field(default_factory=list)
    time_to_first_token_s: Optional[float] = None
    engine_settings: dict[str, object] = Field(default_factory=dict,
                                               description="the engine settings the memory was computed with")
    engine_defaults: dict[str, str] = Field(default_factory=dict, description="which of them are the engine's defaults")
    serving: Optional[ServingAnswer] = Field(None, description="serving simulator: with several users, the plan at"
                                                               " that load; with latency targets or a rate, how much"
                                                               " load each candidate holds under them")


# ---------------------------------------------------------------- fit
class DeviceFit(MemoryRow):
    fits: bool
    repacked_gb: Optional[float] = Field(None, description="llama.cpp's CPU_REPACK copy of weights held here"
                                                           " (in neither weights nor total)")


class FitPlan(Result):
    strategy: str
    split: str
    shares: list[float]
    tp: int
    pp: int
    gpu_layers: Optional[int] = None


class FitResult(Result):
    fits: bool
    model: str
    model_label: str
    quant: str
    engine: str
    context: int
    users: int
    kv_type: str
    plan: FitPlan
    devices: list[DeviceFit]
    max_context: int = Field(description="largest context per sequence that fits at these users (0: none)")
    model_max_context: int
    verdict: str = Field(description="the answer in one sentence: what fits, or which device is short by how much")
    assumptions: Assumptions
    allocated_context: Optional[int] = Field(None, description="context the engine allocates (rounded up as it pads)")
    engine_settings: dict[str, object] = Field(default_factory=dict,
                                               description="the engine settings the memory was computed with")
    engine_defaults: dict[str, str] = Field(default_factory=dict, description="which of them are the engine's defaults")


# ---------------------------------------------------------------- compare
class CompareRow(Result):
    setup: str
    fits: bool
    plan: Optional[PlanShape] = None
    decode_tok_s: Optional[float] = None
    decode_tok_s_range: Optional[list[float]] = None
    decode_range_measurements: Optional[int] = None
    decode_range_class: Optional[str] = None
    prefill_tok_s: Optional[float] = None
    prefill_tok_s_range: Optional[list[float]] = None
    throughput_tok_s: Optional[float] = None
    per_user_tok_s: Optional[float] = None
    concurrent_per_replica: int = 0
    bound: Optional[str] = None
    memory: list[MemoryRow] = Field(default_factory=list)
    memory_used_gb: Optional[float] = None
    memory_capacity_gb: Optional[float] = None
    verdict: str
    reason: Optional[str] = None
    vs_first: Optional[float] = Field(None, description="= vs_baseline.ratio")
    vs_baseline: Optional[Ratio] = None


class CompareResult(Result):
    model: str
    model_label: str
    quant: str
    context: int
    users: int
    scenario: Optional[str] = None
    title: Optional[str] = None
    compared_on: SpeedMetric = Field(description="the column every verdict's ratio is computed from")
    rows: list[CompareRow]
    article: Optional[str] = None
    measured: Optional[str] = None


# ---------------------------------------------------------------- builds
class BuildRow(Result):
    id: str
    name: str
    gpus: str
    price_usd: float
    price_kind: str
    price_date: str
    power_w: float
    notes: str
    source: str
    vram_gb: float = Field(description="the build's GPU memory in all (GB, 10^9 bytes)")
    vram_used_gb: Optional[float] = Field(None, description="what the best plan uses of it")
    fits: bool
    over_budget: bool
    strategy: Optional[str] = None
    engine: Optional[str] = None
    decode_tok_s: Optional[float] = None
    throughput_tok_s: Optional[float] = None
    tok_s_per_1000_usd: Optional[float] = None
    tok_s_per_100_w: Optional[float] = None
    usd_per_million_tokens_electricity: Optional[float] = None
    usd_per_million_tokens_3y: Optional[float] = None
    verdict: Optional[str] = None


class BuildsResult(Result):
    model: str
    model_label: str
    quant: str
    users: int
    context: int
    budget_usd: Optional[float] = None
    electricity_usd_per_kwh: float
    builds: list[BuildRow] = Field(description="builds within the budget (all builds when none is given)")
    over_budget: list[BuildRow] = Field(default_factory=list, description="builds over the budget, apart")
    note: str


# ---------------------------------------------------------------- charts
class Series(Result):
    name: str
    metric: SpeedMetric
    x: list[float]
    y: list[Optional[float]]
    dashed: bool = False


class Point(Result):
    x: float
    y: Optional[float]
    label: str


class Chart(Result):
    title: str
    x_label: str
    y_label: str
    series: list[Series]
    recommended: Optional[Point] = Field(None, description="the recommended plan's own point on this chart")
    note: str = Field("", description="what this chart changes from the recommended plan")


class ScalingResult(Result):
    model: str
    quant: str
    fits: bool
    strategy: str
    engine: str
    hardware: str
    context: int
    users: int
    by_gpus: Chart
    by_context: Chart
    by_users: Chart


# ---------------------------------------------------------------- errors
class ErrorBody(Result):
    input: Optional[str] = Field(None, description="which input: context, gpus, model, ...")
    value: Optional[str | int | float | bool] = None
    message: str = Field(description="one line for people")
    accepted: Optional[str] = None


class ErrorResult(Result):
    error: ErrorBody


# ---------------------------------------------------------------- the published JSON Schema
def json_schemas() -> dict[str, dict]:
    """JSON Schema of every answer (what `--json` prints) and request, by file name under
    docs/schema/ (scripts/write_schema.py writes them; a test keeps them current)."""
    from .requests import BuildsRequest, CompareRequest, FitRequest, PlanRequest, ScalingRequest

    out = {}
    for name, cls in (("plan", PlanResult), ("fit", FitResult), ("compare", CompareResult),
                      ("builds", BuildsResult), ("scaling", ScalingResult), ("error", ErrorResult)):
        out[f"{name}.json"] = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                               **cls.model_json_schema(mode="serialization")}
    for name, cls in (("plan", PlanRequest), ("fit", FitRequest), ("compare", CompareRequest),
                      ("builds", BuildsRequest), ("scaling", ScalingRequest)):
        out[f"{name}-request.json"] = {"$schema": "https://json-schema.org/draft/2020-12/schema",
                                       **cls.model_json_schema(mode="validation")}
    return out
