"""Typed results of the serving answers (planner/targets.py): load levels as vLLM's serving
benchmark reports them, a plan's capacity under latency targets and what binds it, the decode step
and its breakdown. PlanResult.serving carries a ServingAnswer (results.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from .engines.base import LaunchCommand


class _R(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LatencyStats(_R):
    """Milliseconds over the measured requests (ITL: over every token gap)."""

    mean: float | None = None
    median: float | None = None
    p90: float | None = None
    p99: float | None = None


class ServingPoint(_R):
    """One load level of a plan, as vLLM's serving benchmark reports it (all replicas together)."""

    users: int | None = None
    rate_rps: float | None = None
    request_throughput: float
    output_throughput: float
    total_token_throughput: float
    ttft_ms: LatencyStats
    tpot_ms: LatencyStats
    itl_ms: LatencyStats
    e2el_ms: LatencyStats
    mean_batch: float
    kv_peak_fraction: float
    preemptions: int
    meets_targets: bool | None = None


class StepBreakdown(_R):
    """One decode step at the plan's operating point: its time and what it is made of (ms)."""

    batch: int
    context: int
    step_ms: float
    weights_ms: float
    kv_cache_ms: float
    compute_ms: float
    communication_ms: float
    fixed_ms: float
    engine_overhead_ms: float
    bound: str


class ServingCapacity(_R):
    """The most load one candidate holds under the targets, and what stops it there."""

    strategy: str
    engine: str
    replicas: int
    tp: int
    pp: int
    kv_pool_tokens_per_replica: int
    max_seqs_per_replica: int
    max_users: int | None = None
    max_rate_rps: float | None = None
    at_capacity: ServingPoint | None = None
    binding: str
    step: StepBreakdown | None = None
    curve: list[ServingPoint] = []
    notes: list[str] = []


class ServingAnswer(_R):
    """The serving section of a plan: with latency targets or a request rate, the most load every
    candidate (replicas x TP x PP x engine on all the devices) holds and what binds it; without
    targets, the recommended plan at the users asked for. Figures from the serving simulator."""

    mode: str = Field(description="users (closed loop of concurrent users), rate (Poisson requests/s) or trace"
                                  " (a request trace replayed on every candidate)")
    targets: dict = Field(description="ttft_s, tpot_s, e2el_s (null: none) and the percentile they hold at")
    prompt_tokens: int
    output_tokens: int
    requested: float | None = Field(None, description="the users or requests/s asked about (trace: its requests)")
    candidates: list[ServingCapacity]
    best: int | None = Field(None, description="index into candidates of the one that holds the most")
    explanation: list[str] = []
    launch: dict[str, LaunchCommand] = Field(
        default_factory=dict, description="how to start the best candidate (its engine, its replicas, TP and PP, its "
                                          "sequence limit set to the load it holds): with targets, a rate or a trace")
