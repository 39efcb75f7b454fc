"""CLI cold start and in-process `fit` time (targets: cold start < 0.5 s, fit in-process few ms).

    python benchmarks/bench_cli.py
"""
import statistics
import subprocess
import sys
import time


def cold(args, n=5):
    times = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "gpuplan.cli", *args], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main():
    print(f"cold start `gpuplan --help`: {cold(['--help']):.3f} s (target < 0.5 s)")
    fit_args = ["fit", "meta-llama/Meta-Llama-3-8B", "--quant", "Q4_K_M", "--gpus", "rtx-4090", "--json"]
    print(f"cold `gpuplan fit ... --json`: {cold(fit_args):.3f} s")
    from gpuplan import api
    from gpuplan.requests import FitRequest

    api.fit(FitRequest(model="meta-llama/Meta-Llama-3-8B", gpus="rtx-4090", quant="Q4_K_M"))  # warm the catalog
    req = FitRequest(model="meta-llama/Meta-Llama-3-8B", gpus="2x rtx-3090", quant="Q4_K_M", context=16384)
    n = 200
    t = time.perf_counter()
    for _ in range(n):
        api.fit(req)
    print(f"in-process fit (2x rtx-3090, with max-context search): {(time.perf_counter() - t) / n * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
