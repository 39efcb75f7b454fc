"""Ask the real llama.cpp (the library llama-cpp-python ships) what it allocates.

Test support for tests/test_memory_llama_cpp.py; run as a subprocess so that a GGML_ASSERT in
llama.cpp fails one test run instead of killing pytest:

    python tests/llama_cpp_memory_probe.py < cases.json > results.json

Each case is {"path", "n_ctx", "kv", "flash_attn", "swa_full", "n_ubatch", "n_batch", "n_seq",
"kv_unified", "extra_bufts", "alloc"} (a load), {"quantize": src_path, "ftype": LLAMA_FTYPE}
(a dry-run quantization) or {"system": true} (llama_print_system_info: the CPU features built in). A load answers with llama.cpp's own memory breakdown per buffer type
(llama_get_memory_breakdown: what common/fit.cpp, behind llama-server's --fit, uses), the sizes of
its "... buffer size = X MiB" log lines and the n_ctx it settled on. With alloc false the model is
loaded with no_alloc (llama.cpp's "only load metadata and simulate memory allocations" mode, added
for --fit): nothing is allocated or read, so a 70B file at 128K context costs a few MB. A dry-run
quantization answers with the type llama.cpp's quantizer picks for each tensor, read from its log.
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys

import llama_cpp as L

_LIB = os.path.join(os.path.dirname(L.__file__), "lib")
_BUF = re.compile(r"(\w+(?:_\w+)*)\s+(model|KV|compute|output|RS) buffer size =\s+([\d.]+) MiB")
_CTX = re.compile(r"llama_context: n_ctx\s+= (\d+)")
_QUANT = re.compile(r"^\[\s*\d+/\s*\d+\]\s+(\S+)\s+- \[.*?\], type =\s+(\w+), (?:size = .*\((\w+)\)|size)")

_lines: list[str] = []


@L.llama_log_callback
def _log(level, text, user_data):
    _lines.append(text.decode(errors="replace"))


def _breakdown_fn():
    """llama_get_memory_breakdown returns a std::map<buft, {model, context, compute}> by value; it
    has no C wrapper, so read the libstdc++ red-black tree directly: 48 bytes of map (comparator,
    header node {color, parent, left, right}, count), nodes of 32 bytes of links then the pair."""
    lib = ctypes.CDLL(os.path.join(_LIB, "libllama.so"))
    base = ctypes.CDLL(os.path.join(_LIB, "libggml-base.so"))
    f = getattr(lib, "_Z26llama_get_memory_breakdownPK13llama_context")
    f.argtypes, f.restype = [ctypes.c_void_p, ctypes.c_void_p], ctypes.c_void_p
    name = base.ggml_backend_buft_name
    name.argtypes, name.restype = [ctypes.c_void_p], ctypes.c_char_p

    def breakdown(ctx) -> dict:
        m = (ctypes.c_uint64 * 6)()
        f(ctypes.addressof(m), ctx)
        out: dict = {}

        def walk(node):
            if node:
                q = (ctypes.c_uint64 * 8).from_address(node)
                walk(q[2])
                out[name(q[4]).decode()] = {"model": q[5], "context": q[6], "compute": q[7]}
                walk(q[3])

        walk(m[2])
        if len(out) != m[5]:
            raise RuntimeError(f"memory breakdown: read {len(out)} entries of {m[5]}")
        return out

    return breakdown


def _mib_lines(text: str) -> dict:
    out: dict = {}
    for buft, kind, mib in _BUF.findall(text):
        key = f"{buft} {kind}"
        out[key] = out.get(key, 0.0) + float(mib)
    return out


def load(case: dict, breakdown) -> dict:
    _lines.clear()
    mp = L.llama_model_default_params()
    mp.n_gpu_layers = 0
    mp.use_extra_bufts = bool(case.get("extra_bufts", True))
    alloc = bool(case.get("alloc", False))
    mp.no_alloc = not alloc
    # mmap as llama-server does when allocating for real; no_alloc needs the plain loader
    mp.load_mode = L.LLAMA_LOAD_MODE_MMAP if alloc else L.LLAMA_LOAD_MODE_NONE
    model = L.llama_model_load_from_file(case["path"].encode(), mp)
    if not model:
        return {"error": "load failed", "log": "".join(_lines)[-3000:]}
    cp = L.llama_context_default_params()
    cp.n_ctx = case["n_ctx"]
    cp.n_batch = case.get("n_batch", 2048)
    cp.n_ubatch = case.get("n_ubatch", 512)
    cp.n_seq_max = case.get("n_seq", 1)
    cp.kv_unified = bool(case.get("kv_unified", False))
    cp.flash_attn_type = {"on": L.LLAMA_FLASH_ATTN_TYPE_ENABLED, "off": L.LLAMA_FLASH_ATTN_TYPE_DISABLED,
                          "auto": L.LLAMA_FLASH_ATTN_TYPE_AUTO}[case.get("flash_attn", "off")]
    cp.swa_full = bool(case.get("swa_full", True))
    kv = {"f16": 1, "q8_0": 8, "q4_0": 2, "bf16": 30, "f32": 0}[case.get("kv", "f16")]
    cp.type_k = cp.type_v = kv
    cp.n_threads = cp.n_threads_batch = 1
    ctx = L.llama_init_from_model(model, cp)
    if not ctx:
        L.llama_model_free(model)
        return {"error": "context failed", "log": "".join(_lines)[-3000:]}
    text = "".join(_lines)
    res = {"breakdown": breakdown(ctx), "lines": _mib_lines(text),
           "model_size": L.llama_model_size(model),
           "n_ctx": int(_CTX.search(text).group(1)),
           "swa": [int(x) for x in re.findall(r"layer\s+\d+ assigned to device \w+, is_swa = (\d)", text)]}
    L.llama_free(ctx)
    L.llama_model_free(model)
    return res


def quantize(case: dict) -> dict:
    _lines.clear()
    qp = L.llama_model_quantize_default_params()
    qp.ftype = case["ftype"]
    qp.dry_run = True
    qp.nthread = 1
    rc = L.llama_model_quantize(case["quantize"].encode(), os.devnull.encode(), ctypes.byref(qp))
    types = {}
    for line in "".join(_lines).splitlines():
        m = _QUANT.match(line.strip())
        if m:
            types[m.group(1)] = (m.group(3) or m.group(2)).upper()
    return {"rc": rc, "types": types} if types else {"rc": rc, "error": "no tensors", "log": "".join(_lines)[-3000:]}


def main() -> None:
    cases = json.load(sys.stdin)
    L.llama_log_set(_log, ctypes.c_void_p())
    L.llama_backend_init()
    breakdown = _breakdown_fn()
    out = []
    for case in cases:
        if "system" in case:
            out.append({"system": L.llama_print_system_info().decode()})
        else:
            out.append(quantize(case) if "quantize" in case else load(case, breakdown))
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
