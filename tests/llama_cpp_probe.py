"""Load a GGUF into the real llama.cpp (llama-cpp-python's libllama) and read what it allocated
from its log: the KV cache and recurrent-state sizes, or the loader's error. Each load runs in a
child process: llama.cpp aborts the whole process on some bad inputs (GGML_ABORT)."""

from __future__ import annotations

import ctypes
import re
from dataclasses import dataclass, field

_KV = re.compile(r"llama_kv_cache: size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers, +(\d+)/(\d+) seqs\)")
_RS = re.compile(r"llama_memory_recurrent: size = +([\d.]+) MiB \( *(\d+) cells, +(\d+) layers, +(\d+) seqs[^)]*\)"
                 r", R \(\w+\): +([\d.]+) MiB, S \(\w+\): +([\d.]+) MiB")


@dataclass
class Loaded:
    ok: bool
    log: str
    kv: list[tuple[float, int, int]] = field(default_factory=list)  # (MiB, cells, layers) per cache
    rs: list[tuple[float, int, float, float]] = field(default_factory=list)  # (MiB, layers, R MiB, S MiB)
    error: str = ""


def load(path, n_ctx: int, n_seq: int = 1, swa_full: bool = True) -> Loaded:
    """Load the model and create a context (CPU only), as llama-server would, in a child process."""
    import json
    import subprocess
    import sys

    r = subprocess.run([sys.executable, __file__, str(path), str(n_ctx), str(n_seq), str(int(swa_full))],
                       capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        tail = " ".join(ln.strip() for ln in r.stderr.splitlines() if "error" in ln.lower())[-400:]
        return Loaded(False, r.stderr, error=f"llama.cpp exited with {r.returncode}: {tail}")
    d = json.loads(r.stdout.splitlines()[-1])
    return Loaded(d["ok"], d["log"], [tuple(x) for x in d["kv"]], [tuple(x) for x in d["rs"]], d["error"])


def _load_here(path, n_ctx: int, n_seq: int, swa_full: bool) -> Loaded:
    import llama_cpp

    lines: list[str] = []

    @llama_cpp.llama_log_callback
    def cb(level, text, user):
        lines.append(text.decode(errors="replace"))

    llama_cpp.llama_backend_init()
    llama_cpp.llama_log_set(cb, ctypes.c_void_p())
    ok = True
    try:
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = 0
        model = llama_cpp.llama_model_load_from_file(str(path).encode(), mp)
        if not model:
            ok = False
        else:
            cp = llama_cpp.llama_context_default_params()
            cp.n_ctx, cp.n_seq_max, cp.swa_full = n_ctx, n_seq, swa_full
            cp.n_batch = cp.n_ubatch = 512
            cp.kv_unified = True
            ctx = llama_cpp.llama_init_from_model(model, cp)
            ok = bool(ctx)
            if ctx:
                llama_cpp.llama_free(ctx)
            llama_cpp.llama_model_free(model)
    finally:
        llama_cpp.llama_log_set(llama_cpp.llama_log_callback(0), ctypes.c_void_p())
    log = "".join(lines)
    out = Loaded(ok, log)
    out.kv = [(float(m[1]), int(m[2]), int(m[3])) for m in _KV.finditer(log)]
    out.rs = [(float(m[1]), int(m[3]), float(m[5]), float(m[6])) for m in _RS.finditer(log)]
    if not ok:
        errs = [ln.strip() for ln in lines if "error" in ln.lower() or "missing" in ln or "wrong" in ln]
        out.error = "; ".join(errs[-3:]) or "llama.cpp did not load the model"
    return out


if __name__ == "__main__":
    import json
    import sys

    got = _load_here(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), bool(int(sys.argv[4])))
    print(json.dumps({"ok": got.ok, "log": got.log, "kv": got.kv, "rs": got.rs, "error": got.error}))
