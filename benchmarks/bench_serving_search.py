#!/usr/bin/env python3
"""Plan search with the serving simulator: every candidate plan (replicas x TP x PP) of a model on
8 GPUs, each searched for the most users it holds under TTFT/TPOT targets, then the curve of the
best. Prints the wall time of the whole search (target: under 1 s), the simulations run and the
simulated engine steps per second.

    python benchmarks/bench_serving_search.py [--model meta-llama/Llama-3.1-70B-Instruct] [--quant FP8]
                                              [--gpus "8x h100-sxm-80gb"] [--ttft 2s] [--tpot 100ms]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpuplan.perf import serving  # noqa: E402
from gpuplan.planner import targets  # noqa: E402
from gpuplan.planner.search import candidates  # noqa: E402
from gpuplan.sources.resolve import resolve_model  # noqa: E402
from gpuplan.types import Engine, Workload  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="meta-llama/Llama-3.1-70B-Instruct")
    ap.add_argument("--quant", default="FP8")
    ap.add_argument("--gpus", default="8x h100-sxm-80gb")
    ap.add_argument("--ttft", default="2s")
    ap.add_argument("--tpot", default="100ms")
    ap.add_argument("--prompt", type=int, default=512)
    ap.add_argument("--output", type=int, default=256)
    ap.add_argument("--context", type=int, default=8192)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    from gpuplan.sources.hardware import parse_hardware

    model = resolve_model(args.model, args.quant)
    hw = parse_hardware(args.gpus)
    slo = targets.parse_slo(None, args.ttft, args.tpot)
    wl = Workload(context=args.context, prompt_tokens=args.prompt, output_tokens=args.output, users=64)
    fitting = [c.plan for c in candidates(model, hw, wl, [Engine.VLLM]) if c.fits]
    plans = targets.serving_plans(model, hw, fitting, args.context, args.prompt, args.output)

    steps = [0]
    sims = [0]
    orig = serving.simulate

    def counted(*a, **k):
        r = orig(*a, **k)
        steps[0] += r.steps
        sims[0] += 1
        return r

    targets.simulate = counted
    times, cpu = [], []
    for _ in range(args.repeat):
        targets._RUNS.clear()
        steps[0] = sims[0] = 0
        t0, c0 = time.perf_counter(), time.process_time()
        ans = targets.plan_for_targets(model, hw, plans, slo, args.prompt, args.output, args.context, users=64)
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
    best = ans.candidates[ans.best]
    t = min(times)
    print(f"{args.model} {args.quant} on {args.gpus}: {len(fitting)} fitting plans, {len(plans)} serving candidates "
          f"(replicas x TP x PP x engine on all the GPUs), {sims[0]} simulations")
    print(f"plan search: {t:.3f} s wall, {min(cpu):.3f} s CPU (best of {args.repeat}; target < 1 s)")
    print(f"simulated engine steps: {steps[0]:,} -> {steps[0] / t:,.0f} steps/s")
    print(f"best: {best.strategy} ({best.engine}) holds {best.max_users} users ({best.binding})")
    for c in ans.candidates:
        print(f"  {c.strategy:40s} {c.engine:14s} {c.max_users or 0:6d} users  {c.binding}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
