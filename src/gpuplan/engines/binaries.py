"""Where the llama.cpp binaries built by scripts/build_llama_cpp.sh live.

The script builds llama-server, llama-bench and rpc-server from the llama.cpp source that the
installed llama-cpp-python vendors, into ~/.cache/gpuplan/llama.cpp/<llama-cpp-python version>/bin
(GPUPLAN_CACHE moves ~/.cache/gpuplan; GPUPLAN_LLAMA_CPP_BIN names a bin folder directly).
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

BINARIES = ("llama-server", "llama-bench", "rpc-server")


def llama_cpp_version() -> str | None:
    """The installed llama-cpp-python version, whose vendored llama.cpp the script builds."""
    try:
        return metadata.version("llama_cpp_python")
    except metadata.PackageNotFoundError:
        return None


def bin_dir() -> Path | None:
    if os.environ.get("GPUPLAN_LLAMA_CPP_BIN"):
        return Path(os.environ["GPUPLAN_LLAMA_CPP_BIN"])
    version = llama_cpp_version()
    if version is None:
        return None
    cache = Path(os.environ.get("GPUPLAN_CACHE") or Path.home() / ".cache" / "gpuplan")
    return cache / "llama.cpp" / version / "bin"


def binary(name: str) -> Path | None:
    """Path of a built llama.cpp binary (llama-server, llama-bench, rpc-server), or None."""
    if name not in BINARIES:
        raise ValueError(f"unknown llama.cpp binary '{name}'; built: {', '.join(BINARIES)}")
    d = bin_dir()
    p = d / name if d else None
    return p if p and p.exists() and os.access(p, os.X_OK) else None
