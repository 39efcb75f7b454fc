"""The API both front ends use. Each question is a typed request (gpuplan.requests), each answer
a typed result (gpuplan.results): the CLI renders results for a terminal and `--json` dumps them,
the web API returns them. Bad input raises InputError (one line naming the input).

    from gpuplan import api
    from gpuplan.requests import PlanRequest
    res = api.plan(PlanRequest(model="meta-llama/Meta-Llama-3-8B", gpus="2x rtx-4090"))
    res.decode_tok_s, res.model_dump()
"""

from __future__ import annotations

from .errors import InputError
from .requests import BuildsRequest, CompareRequest, FitRequest, PlanRequest, ScalingRequest
from .results import BuildsResult, CompareResult, FitResult, PlanResult, ScalingResult


def fit(req: FitRequest) -> FitResult:
    """Does the model fit, split the default way: memory per device, verdict, largest context."""
    from .planner.fit import fit as run

    return run(req)


def plan(req: PlanRequest) -> PlanResult:
    """The best plan, its alternatives, the explanation, the assumptions and launch commands."""
    from .planner.report import plan as run

    return run(req)


def compare(req: CompareRequest) -> CompareResult:
    """Setups side by side (or one of the article's scenarios)."""
    from .planner.compare import compare as run

    return run(req)


def builds(req: BuildsRequest) -> BuildsResult:
    """Catalog builds for a model: fit, speed and cost per token."""
    from .planner.builds import builds as run

    return run(req)


def scaling(req: ScalingRequest) -> ScalingResult:
    """Chart data for the recommended plan: against GPU count, context and users."""
    from .planner.charts import scaling as run

    return run(req)


def catalog_list(kind: str, search: str | None = None) -> list[dict]:
    from . import catalog

    tables = {"gpus": catalog.devices, "devices": catalog.devices, "models": catalog.models,
              "links": catalog.links, "host-memory": catalog.host_memories, "quants": catalog.quants,
              "builds": catalog.builds}
    if kind not in tables:
        raise InputError(f"unknown catalog '{kind}'; accepted: {', '.join(tables)}", input="kind", value=kind,
                         accepted=", ".join(tables))
    words = (search or "").lower().split()
    out = []
    for e in tables[kind]().values():
        d = e.model_dump()
        hay = " ".join(str(v) for v in (d.get("id"), d.get("name"), *(d.get("aliases") or []))).lower()
        if all(w in hay for w in words):
            out.append(d)
    return out


def validate_file(paths: list[str], allow_model_paths: bool = True, budget=None, models=None,
                  **read_limits) -> dict:
    """allow_model_paths=False: rows must name catalog models (the web: a client's file never
    makes the server open a path) or one of `models` (model files uploaded with the rows, by
    name -> function(quant) -> LoadedModel); budget, read_limits: see bench.validate.validate."""
    from .bench.validate import validate

    res = validate(paths, allow_paths=allow_model_paths, budget=budget, models=models, **read_limits)
    return {"rows": res["rows"], "summary": res["summary"]}
