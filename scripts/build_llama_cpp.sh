#!/usr/bin/env bash
# Builds llama.cpp's llama-server, llama-bench and ggml-rpc-server (linked as rpc-server) from
# the llama.cpp source that the installed llama-cpp-python's sdist vendors, so the tests run the
# same llama.cpp the Python bindings use. CPU build with the RPC backend, only those targets.
#
#   bin dir:  ${GPUPLAN_CACHE:-~/.cache/gpuplan}/llama.cpp/<llama-cpp-python version>/bin/
#   skipped when the three binaries are already there (delete the folder to rebuild).
#
# Usage: scripts/build_llama_cpp.sh [PYTHON]   (PYTHON: the interpreter that has llama-cpp-python;
#        default: python on PATH). Prints the bin dir on its last line.
# Env:   GPUPLAN_BUILD_JOBS (default 2), GPUPLAN_CACHE.
set -euo pipefail

PY="${1:-python}"
JOBS="${GPUPLAN_BUILD_JOBS:-2}"
VERSION="$("$PY" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
ROOT="${GPUPLAN_CACHE:-$HOME/.cache/gpuplan}/llama.cpp/$VERSION"
BIN="$ROOT/bin"
TARGETS=(llama-server llama-bench ggml-rpc-server)

have_all() {
  for t in llama-server llama-bench rpc-server; do [ -x "$BIN/$t" ] || return 1; done
}

if have_all; then
  echo "llama.cpp $VERSION binaries already built" >&2
  echo "$BIN"
  exit 0
fi

mkdir -p "$ROOT/src"
SDIST="$(ls "$ROOT/src"/llama_cpp_python-"$VERSION".tar.gz 2>/dev/null || true)"
if [ -z "$SDIST" ]; then
  # the sdist from the package index (pip's own cache serves it when it has it)
  "$PY" -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$VERSION" -d "$ROOT/src" \
    2> >(grep -v "^WARNING: Location" >&2)
  SDIST="$ROOT/src/llama_cpp_python-$VERSION.tar.gz"
fi
SRC="$ROOT/src/llama_cpp_python-$VERSION/vendor/llama.cpp"
[ -f "$SRC/CMakeLists.txt" ] || tar -xzf "$SDIST" -C "$ROOT/src"

GEN=()
command -v ninja >/dev/null 2>&1 && GEN=(-G Ninja)
start=$(date +%s)
# GGML_NATIVE=OFF: portable (AVX2/FMA/F16C stay on, ggml's defaults when not native);
# no web UI assets (no network at build time), no OpenSSL, static so bin/ is self-contained.
cmake -S "$SRC" -B "$ROOT/build" "${GEN[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DGGML_RPC=ON -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TOOLS=ON \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF >"$ROOT/cmake.log" 2>&1 \
  || { tail -30 "$ROOT/cmake.log" >&2; exit 1; }
cmake --build "$ROOT/build" --target "${TARGETS[@]}" -j "$JOBS" >"$ROOT/build.log" 2>&1 \
  || { tail -30 "$ROOT/build.log" >&2; exit 1; }

mkdir -p "$BIN"
for t in "${TARGETS[@]}"; do
  cp "$(find "$ROOT/build" -type f -name "$t" -perm -u+x | head -1)" "$BIN/$t"
done
ln -sf ggml-rpc-server "$BIN/rpc-server"
rm -rf "$ROOT/build"  # a few hundred MB of objects; the binaries are all the tests need
echo "built llama.cpp $VERSION (${TARGETS[*]}) in $(( $(date +%s) - start )) s" >&2
echo "$BIN"
