#!/usr/bin/env bash
# Installs everything the tests need and runs them: the README's test command, and what CI runs.
#   - Debian's Chromium for the browser test (nothing downloads a browser of its own)
#   - a virtual environment with gpuplan and its test extras, including llama-cpp-python[server],
#     built from source once, portable, into a wheel cached under ~/.cache (about 8 minutes on 2 cores)
#   - llama.cpp's llama-server, llama-bench and rpc-server (scripts/build_llama_cpp.sh, cached)
#   - vLLM's and SGLang's wheels for their argument parsers (requirements/engine-parsers*.txt)
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install Debian's chromium; the browser test will be skipped"
  elif command -v sudo >/dev/null 2>&1; then
    (sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
      || echo "warning: could not install Debian's chromium; the browser test will be skipped"
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
. .venv/bin/activate
python -m pip install -q --upgrade pip
# llama-cpp-python compiles llama.cpp, by default for this CPU (-march=native); on Sapphire Rapids
# in a VM that brings in ggml's AMX matmul, which segfaults (ggml_backend_amx_mul_mat, seen
# 2026-12-01). It is built portable instead (GGML_NATIVE=OFF: AVX2 on x86), once, into a wheel
# cached under ~/.cache, and installed from there (pip's own cache ignores CMAKE_ARGS).
WHEELS="${XDG_CACHE_HOME:-$HOME/.cache}/gpuplan/wheels/llama-cpp-python-portable"
if ! ls "$WHEELS"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "building llama-cpp-python without -march=native (once; several minutes on 2 cores)" >&2
  CMAKE_ARGS="-DGGML_NATIVE=OFF" python -m pip wheel -q --no-deps --no-cache-dir -w "$WHEELS" llama-cpp-python
fi
python -m pip install -q --force-reinstall --no-deps "$(ls "$WHEELS"/llama_cpp_python-*.whl | tail -1)"
python -m pip install -q -e '.[test]'
# vLLM's and SGLang's real argument parsers (the CPU torch build, then the engines --no-deps)
python -m pip install -q -r requirements/engine-parsers.txt
python -m pip install -q --no-deps -r requirements/engine-parsers-nodeps.txt
# llama-server, llama-bench and rpc-server from the llama.cpp that llama-cpp-python vendors
# (built once into ~/.cache/gpuplan/llama.cpp/<version>/bin; about 11 minutes on 2 cores)
bash scripts/build_llama_cpp.sh python >/dev/null

set +e
python -m pytest -q "$@"
rc=$?
set -e
if [ "$rc" = 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
