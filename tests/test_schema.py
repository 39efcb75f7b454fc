"""The published JSON Schema (docs/schema/, generated from the result and request models): the
committed files are what scripts/write_schema.py writes, `plan --json` (and the other answers)
validate against them, and the web API's /openapi.json declares the same models."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "docs" / "schema"
sys.path.insert(0, str(ROOT / "scripts"))
M8 = "meta-llama/Meta-Llama-3-8B"


def _schema(name: str) -> dict:
    return json.loads((SCHEMA / name).read_text())


def test_committed_schema_is_current():
    from write_schema import render

    from gpuplan.results import json_schemas

    want = json_schemas()
    assert sorted(p.name for p in SCHEMA.glob("*.json")) == sorted(want), "run python scripts/write_schema.py"
    for name, schema in want.items():
        assert (SCHEMA / name).read_text() == render(schema), f"docs/schema/{name} is stale: run scripts/write_schema.py"


def _cli_json(*args: str) -> tuple[int, dict]:
    import os

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), GPUPLAN_CALIBRATION="")
    p = subprocess.run([sys.executable, "-m", "gpuplan.cli", *args, "--json"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=120)
    return p.returncode, json.loads(p.stdout)


@pytest.mark.parametrize("args", [
    ["plan", M8, "--quant", "Q4_K_M", "--gpus", "2x rtx-3090", "--users", "4"],
    ["plan", "meta-llama/Meta-Llama-3-70B", "--quant", "Q4_K_M", "--gpus", "rtx-4090 + ddr5-6000-2ch:64gb"],
    ["plan", "meta-llama/Llama-3.1-405B-Instruct", "--quant", "FP16", "--gpus", "rtx-3060-12gb"],  # does not fit
])
def test_plan_json_validates_against_the_published_schema(args):
    rc, out = _cli_json(*args)
    assert rc == 0
    jsonschema.validate(out, _schema("plan.json"))
    # commands are objects too: processes with argv lists and env, and the shell text people read
    assert set(out["launch"]) == set(out["commands"])
    for name, cmd in out["launch"].items():
        assert cmd["text"] == out["commands"][name] and cmd["processes"]
        assert all(isinstance(p["argv"], list) and p["argv"] and isinstance(p["env"], dict) for p in cmd["processes"])


@pytest.mark.parametrize("name, args", [
    ("fit", ["fit", M8, "--gpus", "rtx-4090"]),
    ("compare", ["compare", "--scenario", "does-not-fit"]),
    ("builds", ["builds", M8, "--quant", "Q4_K_M", "--budget", "3000"]),
])
def test_other_answers_validate(name, args):
    rc, out = _cli_json(*args)
    assert rc == 0
    jsonschema.validate(out, _schema(f"{name}.json"))


def test_json_error_validates_and_exits_2():
    rc, out = _cli_json("plan", M8, "--gpus", "2x rtx-4090 nvlink-bridge-3090")
    assert rc == 2
    jsonschema.validate(out, _schema("error.json"))
    assert out["error"]["input"] == "link" and "rtx-3090" in out["error"]["message"]


def test_a_broken_answer_does_not_validate():
    """The schema is not vacuous: a plan without `fits`, or with a speed as a string, is refused."""
    rc, out = _cli_json("plan", M8, "--quant", "Q4_K_M", "--gpus", "rtx-4090")
    for broken in ({k: v for k, v in out.items() if k != "fits"}, {**out, "decode_tok_s": "fast"},
                   {**out, "memory": [{"name": "x"}]}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, _schema("plan.json"))


def test_openapi_declares_the_same_models():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from gpuplan.results import PlanResult
    from gpuplan.web.app import create_app

    spec = TestClient(create_app()).get("/openapi.json").json()
    ok = spec["paths"]["/api/plan"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"].endswith("/PlanResult")
    published = spec["components"]["schemas"]["PlanResult"]
    assert set(published["properties"]) == set(PlanResult.model_json_schema(mode="serialization")["properties"])
    params = {p["name"] for p in spec["paths"]["/api/plan"]["get"]["parameters"]}
    assert {"model", "gpus", "context", "users", "quant", "engine", "kv", "goal"} <= params
    assert "hardware" not in params  # the server never reads a file a client names
    ctx = next(p for p in spec["paths"]["/api/plan"]["get"]["parameters"] if p["name"] == "context")
    assert ctx["schema"]["minimum"] == 2 and ctx["schema"]["maximum"] == 10_000_000
