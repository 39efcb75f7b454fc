"""Every numeric option of every command and every numeric query parameter of every API route,
generated from the request models (issue 11): NaN, infinities, absurd sizes and words are one
line (`error: --NAME ...; accepted: ...`, exit 2) on the command line and a 422 naming the
parameter on the web, in the one message format. On the old main the option parser printed three
lines of usage text, or a value reached the planner unbounded."""

from __future__ import annotations

import typing

import pytest
import typer
from fastapi.testclient import TestClient

from gpuplan import cli
from gpuplan.requests import COMMAND_REQUESTS

from console import run_main

BAD = ("nan", "inf", "-inf", "1e309", "-1e30", "1e30", "abc", "")
M8 = "meta-llama/Meta-Llama-3-8B"
ARGS = {"fit": [M8, "--gpus", "rtx-4090"], "plan": [M8, "--gpus", "rtx-4090"], "compare": ["--setup", "rtx-4090"],
        "builds": [M8], "bench": ["http://127.0.0.1:9"], "serve": []}


def _numeric(cls) -> list[str]:
    def kinds(t):
        if typing.get_origin(t) is typing.Annotated:
            return kinds(typing.get_args(t)[0])
        args = typing.get_args(t)
        return set().union(*(kinds(a) for a in args)) if args else {t}

    return [name for name, f in cls.model_fields.items() if kinds(f.annotation) & {int, float}]


def _cases():
    group = typer.main.get_command(cli.app)
    for command, cls in COMMAND_REQUESTS.items():
        params = {p.name: p for p in group.commands[command].params}
        for field in _numeric(cls):
            if field in params:  # a request field the command line takes
                opt = max(params[field].opts, key=len)
                for v in BAD:
                    yield command, field, opt, v


CASES = list(_cases())




def test_every_numeric_option_is_covered():
    covered = {(c, f) for c, f, _, _ in CASES}
    assert {("fit", "context"), ("plan", "min_user_tok_s"), ("builds", "electricity"), ("bench", "timeout"),
            ("bench", "n_gpus"), ("serve", "port"), ("compare", "users"), ("plan", "gpu_memory_utilization")} <= covered
    assert len(covered) >= 29, sorted(covered)  # 29 numeric options in all today


@pytest.mark.parametrize("command,field,opt,value", CASES, ids=[f"{c} {o} {v!r}" for c, _, o, v in CASES])
def test_bad_numbers_on_the_command_line(capsys, command, field, opt, value):
    code, err = run_main([command, *ARGS[command], opt, value], capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1, err
    assert lines[0].startswith(f"error: {opt} ") and "accepted: " in lines[0], lines[0]
    assert (" is out of range; accepted: " in lines[0] or " is not a whole number; accepted: a whole number, "
            in lines[0] or " is not a finite number; accepted: a finite number, " in lines[0]), lines[0]


# ------------------------------------------------------------------ the web API's query parameters
ROUTES = {"/api/fit": ("FitQuery", {"model": M8, "gpus": "rtx-4090"}),
          "/api/plan": ("PlanQuery", {"model": M8, "gpus": "rtx-4090"}),
          "/api/scaling": ("ScalingQuery", {"model": M8, "gpus": "rtx-4090"}),
          "/api/compare": ("CompareQuery", {"setup": "rtx-4090"}),
          "/api/builds": ("BuildsQuery", {"model": M8})}


def _web_cases():
    from gpuplan.web import app as web

    for route, (query, base) in ROUTES.items():
        for field in _numeric(getattr(web, query)):
            for v in BAD:
                yield route, base, field, v


WEB = list(_web_cases())


@pytest.fixture(scope="module")
def client():
    from gpuplan.web.app import create_app

    with TestClient(create_app(), raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("route,base,field,value", WEB, ids=[f"{r} {f} {v!r}" for r, _, f, v in WEB])
def test_bad_numbers_on_the_web(client, route, base, field, value):
    r = client.get(route, params={**base, field: value})
    if value == "" and r.status_code == 200:
        return  # an empty optional parameter is the default (a form's empty field)
    assert r.status_code == 422, (r.status_code, r.text[:300])
    err = r.json()["error"]
    assert err["input"] == field and err["message"].startswith(f"{field} ") and err["accepted"], err
