"""Speed of the performance model: one estimate in-process (target < 1 ms) and validating the
dev set (target < 2 s).

    python benchmarks/bench_perf.py [data/measurements/dev.csv]
"""
import sys
import time
from pathlib import Path


def main():
    from gpuplan.perf import speed
    from gpuplan.sources.hardware import parse_hardware
    from gpuplan.sources.resolve import resolve_model
    from gpuplan.types import Engine, Plan, Split

    model = resolve_model("meta-llama/Meta-Llama-3-70B", "Q4_K_M")
    hw = parse_hardware("2x rtx-3090")
    plan = Plan(split=Split.LAYER, engine=Engine.LLAMA_CPP, device_ids=(0, 1), shares=(0.5, 0.5))
    speed.decode(model, hw, plan)
    n = 2000
    t = time.perf_counter()
    for _ in range(n):
        speed.decode(model, hw, plan, depth=512, n_gen=128)
    print(f"one decode estimate (70B, layer split over 2): {(time.perf_counter() - t) / n * 1e3:.3f} ms (target < 1 ms)")
    t = time.perf_counter()
    for _ in range(n):
        speed.prefill(model, hw, plan, prompt=512)
    print(f"one prefill estimate: {(time.perf_counter() - t) / n * 1e3:.3f} ms")

    dev = sys.argv[1] if len(sys.argv) > 1 else str(Path(__file__).parents[1] / "data/measurements/dev.csv")
    if Path(dev).is_file():
        from gpuplan.bench.validate import validate

        t = time.perf_counter()
        res = validate([dev])
        dt = time.perf_counter() - t
        print(f"validate {res['summary']['rows']} rows: {dt:.2f} s (target < 2 s)")
    else:
        print(f"(no {dev}: skipped the validation timing)")


if __name__ == "__main__":
    main()
