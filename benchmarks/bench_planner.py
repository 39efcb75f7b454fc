"""Planning a model over 8 GPUs with every strategy, in-process (target < 200 ms).

    python benchmarks/bench_planner.py
"""
import time


def main():
    from gpuplan import api
    from gpuplan.requests import PlanRequest

    cases = [("meta-llama/Meta-Llama-3-70B", "8x rtx-3090", "Q4_K_M", 1),
             ("meta-llama/Meta-Llama-3-70B", "8x rtx-3090", "Q4_K_M", 64),
             ("meta-llama/Meta-Llama-3-70B", "8x h100-sxm-80gb", "FP16", 64),
             ("Qwen/Qwen3-30B-A3B", "4x rtx-4090,4x rtx-3090", "Q4_K_M", 8)]
    api.plan(PlanRequest(model=cases[0][0], gpus=cases[0][1], quant=cases[0][2]))  # warm imports and catalog
    for model, gpus, quant, users in cases:
        t = time.perf_counter()
        res = api.plan(PlanRequest(model=model, gpus=gpus, quant=quant, users=users,
                                   goal="throughput" if users > 1 else "latency"))
        dt = time.perf_counter() - t
        print(f"{model} {quant} on {gpus}, {users} users: {dt * 1e3:.0f} ms, "
              f"{1 + len(res.alternatives)} plans, chose {res.plan.strategy} (target < 200 ms)")


if __name__ == "__main__":
    main()
