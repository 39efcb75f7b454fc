"""A constraint no plan meets (issue 11): the planner says so, answers with the closest plan and
exits 0 with `meets_constraints: false`; the old planner scored every such plan 0 and silently
returned whichever sorted first."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import gpuplan

M8 = "meta-llama/Meta-Llama-3-8B"


def _plan(*args: str) -> tuple[int, dict, str]:
    env = dict(os.environ, PYTHONPATH=str(Path(gpuplan.__file__).parents[1]), GPUPLAN_CALIBRATION="")
    r = subprocess.run([sys.executable, "-m", "gpuplan.cli", "plan", M8, "--gpus", "2x rtx-3090", "--users", "8",
                        *args, "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert "Traceback" not in r.stderr, r.stderr
    return r.returncode, json.loads(r.stdout), r.stderr


def test_unattainable_min_user_speed_gives_the_closest_plan_and_says_so():
    rc, plan, _ = _plan("--goal", "throughput", "--min-user-tok-s", "500")
    assert rc == 0 and plan["fits"] and plan["meets_constraints"] is False
    fitting = [a for a in plan["alternatives"] if a["fits"]]
    assert fitting and all(plan["per_user_tok_s"] >= a["per_user_tok_s"] for a in fitting)  # the closest
    assert plan["explanation"][0].startswith("No plan serves each of 8 user(s) at 500 tok/s (--min-user-tok-s): "
                                             f"the closest, shown here, gives {plan['per_user_tok_s']:.1f} tok/s")


def test_attainable_min_user_speed_is_met_by_the_best_throughput_that_meets_it():
    _, free, _ = _plan("--goal", "throughput")
    speeds = sorted(c["per_user_tok_s"] for c in [free, *free["alternatives"]] if c["fits"])
    floor = (speeds[-1] + speeds[-2]) / 2 if speeds[-1] > speeds[-2] else speeds[-1]  # only the fastest meets it
    rc, plan, _ = _plan("--goal", "throughput", "--min-user-tok-s", f"{floor:.2f}")
    assert rc == 0 and plan["meets_constraints"] is True and plan["per_user_tok_s"] >= floor
    meeting = [a for a in plan["alternatives"] if a["fits"] and a["per_user_tok_s"] >= floor]
    assert all(plan["throughput_tok_s"] >= a["throughput_tok_s"] for a in meeting)


def test_min_user_speed_holds_for_every_goal():
    for goal in ("latency", "cost"):
        rc, plan, _ = _plan("--goal", goal, "--min-user-tok-s", "500")
        assert rc == 0 and plan["meets_constraints"] is False and plan["explanation"][0].startswith("No plan serves")
    rc, plan, _ = _plan("--goal", "latency")
    assert plan["meets_constraints"] is True
