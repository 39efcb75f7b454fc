"""The API's answers as their JSON (what `--json` prints and the web returns), for tests:
plan(model, gpus, quant=..., ...) builds the typed request, asks gpuplan.api, dumps the result."""

from __future__ import annotations

from gpuplan import api
from gpuplan.requests import BuildsRequest, CompareRequest, FitRequest, PlanRequest, ScalingRequest


def _ask(fn, cls, **kw) -> dict:
    return fn(cls.parse("web", **{k: v for k, v in kw.items() if v is not None})).model_dump(mode="json")


def fit(model: str, gpus: str | None = None, **kw) -> dict:
    return _ask(api.fit, FitRequest, model=model, gpus=gpus, **kw)


def plan(model: str, gpus: str | None = None, **kw) -> dict:
    return _ask(api.plan, PlanRequest, model=model, gpus=gpus, **kw)


def scaling(model: str, gpus: str | None = None, **kw) -> dict:
    return _ask(api.scaling, ScalingRequest, model=model, gpus=gpus, **kw)


def compare(model: str | None, setups=(), **kw) -> dict:
    return _ask(api.compare, CompareRequest, model=model, setup=tuple(setups), **kw)


def builds(model: str, **kw) -> dict:
    return _ask(api.builds, BuildsRequest, model=model, **kw)
