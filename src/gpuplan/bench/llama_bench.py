"""llama-bench output (json, jsonl, csv, markdown table) -> Measurement rows; running llama-bench.

Field names follow llama.cpp tools/llama-bench (README, "Output formats"): each result has
model_filename, model_type ("qwen2 7B Q4_K - Medium"), gpu_info (device names joined by
", "), n_gpu_layers, split_mode, n_prompt, n_gen, n_depth, avg_ts, test_time, build_commit.
Mapping to the schema:
- n_prompt > 0, n_gen = 0 -> `prefill`; n_gen > 0, n_prompt = 0 -> `decode`;
  both (a `-pg` test, "pp512+tg128") -> `throughput_total` at batch 1 (llama-bench counts
  prompt and generated tokens over the whole time). Every llama-bench test is one sequence.
- model: a catalog id when the file name or model_type matches a catalog alias, else the raw
  text (the validator then reports "unknown model").
- ngl 99/-1 (or >= 99) means "all layers" -> n_gpu_layers empty; a smaller ngl is kept.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
from pathlib import Path

from ..errors import InputError
from ..types import Metric
from .measurements import INT_RANGES, MAX_TOK_S, Measurement

# llama.cpp's ftype names (llama_model_ftype_name) -> the quant ids of the catalog/schema.
_SIZE = {"Small": "S", "Medium": "M", "Large": "L", "Extra Small": "XS"}
_QUANT_IN_NAME = re.compile(
    r"(?i)(?<![a-z0-9])(IQ\d_[A-Z]+|Q\d_K_[SML]|Q\d_K|Q\d_\d|BF16|F16|F32)(?![a-z0-9])")
_TEST = re.compile(r"^(?:(pp|tg)\s*(\d{1,7})|pp\s*(\d{1,7})\s*\+\s*tg\s*(\d{1,7}))(?:\s*@\s*d\s*(\d{1,7}))?$")
_ALL_LAYERS = 99


def quant_from_type(model_type: str, filename: str = "") -> str:
    """"llama 8B Q4_K - Medium" -> Q4_K_M; "llama 7B mostly Q4_0" -> Q4_0; else from the file name."""
    m = re.search(r"(?:mostly\s+)?([A-Z0-9]+_[A-Z0-9]+|BF16|F16|F32)(?:\s*-\s*([A-Za-z ]+?))?"
                  r"(?:\s*-\s*[\d.]+ bpw)?$", model_type.strip())
    if m:
        base, size = m.group(1), (m.group(2) or "").strip()
        if size in _SIZE:
            return f"{base}_{_SIZE[size]}"
        return base
    m = _QUANT_IN_NAME.search(Path(filename).name)
    return m.group(1).upper() if m else "unknown"


# llama-bench's table names only "architecture size quant". Models of one row share their
# shapes, so a representative catalog entry stands for them (Llama 1 and 2 7B/13B are identical;
# "llama 8B"/"llama 70B" are Llama 3, whose vocabulary llama-bench's size reflects).
_TYPE_REPRESENTATIVE = {
    "llama 1b": "meta-llama/Llama-3.2-1B", "llama 3b": "meta-llama/Llama-3.2-3B",
    "llama 7b": "meta-llama/Llama-2-7b-hf", "llama 8b": "meta-llama/Meta-Llama-3-8B",
    "llama 13b": "meta-llama/Llama-2-13b-hf", "llama 30b": "huggyllama/llama-30b",
    "llama 65b": "huggyllama/llama-65b", "llama 70b": "meta-llama/Meta-Llama-3-70B",
    "qwen2 7b": "Qwen/Qwen2.5-7B", "qwen2 14b": "Qwen/Qwen2.5-14B", "qwen2 32b": "Qwen/Qwen2.5-32B",
    "qwen2 72b": "Qwen/Qwen2.5-72B", "qwen3 8b": "Qwen/Qwen3-8B", "qwen3 32b": "Qwen/Qwen3-32B",
    "gemma3 27b": "google/gemma-3-27b-it", "gemma2 9b": "google/gemma-2-9b",
}


def model_id(model_type: str, filename: str = "") -> str:
    """A catalog model id when the file name or type names one; else the raw text."""
    stem = Path(filename).name
    stem = re.sub(r"(?i)\.gguf$", "", stem)
    stem = re.sub(r"-\d{5}-of-\d{5}$", "", stem)
    bare = _QUANT_IN_NAME.sub("", stem).strip("-_. ")
    try:
        from .. import catalog

        index = catalog._alias_index("model")
    except Exception:  # catalog not available or broken: keep the raw text
        index = {}
    for key in (stem, bare, bare.replace("-GGUF", ""), model_type):
        k = key.strip().lower()
        if k and k in index:
            return index[k]
        for real_id in set(index.values()):  # "Meta-Llama-3-8B" matches "meta-llama/Meta-Llama-3-8B"
            if k and real_id.lower().split("/")[-1] == k:
                return real_id
    arch_size = " ".join(_QUANT_IN_NAME.sub("", model_type or "").lower().split()[:2])
    rep = _TYPE_REPRESENTATIVE.get(arch_size)
    if rep and not stem and (index.get(rep.lower()) or index.get(rep.lower() + "-instruct")):
        return index.get(rep.lower()) or index[rep.lower() + "-instruct"]
    return stem or model_type


def gpu_from_info(gpu_info: str, backend: str = "") -> tuple[str, int]:
    """("rtx-4080", 1) from "NVIDIA GeForce RTX 4080"; ("cpu", 0) for CPU-only runs."""
    names = [n.strip() for n in (gpu_info or "").split(",") if n.strip()]
    if not names:
        if backend.upper() in ("", "CPU", "BLAS"):
            return "cpu", 0
        return "unknown", 1
    from ..sources.probe import match_device

    first = names[0]
    return (match_device(first) or first), len(names)


def _layers(ngl) -> int | None:
    try:
        n = int(ngl)
    except (TypeError, ValueError, OverflowError):
        return None
    return None if n < 0 or n >= _ALL_LAYERS else n


def _row(*, n_prompt: int, n_gen: int, n_depth: int, tok_s: float, model: str, quant: str,
         gpu: str, n_gpus: int, split: str, ngl, source: str, date: str, note: str) -> Measurement:
    if n_prompt and n_gen:
        metric = Metric.THROUGHPUT_TOTAL
    elif n_gen:
        metric = Metric.DECODE
    else:
        metric = Metric.PREFILL
    if n_gpus > INT_RANGES["n_gpus"][1]:
        raise ValueError(f"{n_gpus:,} GPUs; accepted: at most {INT_RANGES['n_gpus'][1]:,}")
    split = (split or "layer") if n_gpus > 1 else "none"
    return Measurement(engine="llama.cpp", model=model, quant=quant, gpu=gpu, n_gpus=n_gpus,
                       n_prompt=n_prompt, n_gen=n_gen, batch=1, metric=metric, tok_s=tok_s,
                       source=source, date=date, split=split,
                       interconnect="unknown" if n_gpus > 1 else "none",
                       n_gpu_layers=_layers(ngl) if n_gpus or gpu != "cpu" else None,
                       n_depth=n_depth, note=note)


def _count(o: dict, key: str) -> int:
    """A token count of a result: a whole number in the schema's range (0 when absent)."""
    from .measurements import cell_number

    return cell_number(key, o.get(key) or 0)


def _tok_s(v) -> float:
    from .measurements import cell_number

    return cell_number("tok_s", "" if v is None else v)


def from_objects(items) -> list:
    """[(line, llama-bench result dict)] -> [(line, Measurement | reason)]."""
    out = []
    for line, o in items:
        try:
            n_prompt, n_gen = _count(o, "n_prompt"), _count(o, "n_gen")
            if n_prompt == 0 and n_gen == 0:
                raise ValueError("a test with neither prompt nor generated tokens")
            tok_s = _tok_s(o.get("avg_ts"))
            gpu, n_gpus = gpu_from_info(str(o.get("gpu_info") or ""), str(o.get("backends") or ""))
            devices = str(o.get("devices") or "auto")
            if devices not in ("auto", "none", "") and n_gpus:
                n_gpus = len([d for d in devices.split("/") if d])  # -dev CUDA0/CUDA1
            filename = str(o.get("model_filename") or "")
            mtype = str(o.get("model_type") or "")
            build = f"llama-bench build {o.get('build_commit', '?')} ({o.get('build_number', '?')})"
            extras = [f"{k}={o[k]}" for k in ("backends", "n_batch", "n_ubatch", "flash_attn",
                                              "type_k", "n_threads") if k in o]
            out.append((line, _row(
                n_prompt=n_prompt, n_gen=n_gen, n_depth=_count(o, "n_depth"), tok_s=tok_s,
                model=model_id(mtype, filename), quant=quant_from_type(mtype, filename),
                gpu=gpu, n_gpus=n_gpus, split=str(o.get("split_mode") or ""),
                ngl=o.get("n_gpu_layers"), source=filename or "llama-bench",
                date=str(o.get("test_time") or "")[:7],
                note=f"{build}; {mtype}; " + ", ".join(extras))))
        except KeyError as e:
            out.append((line, f"llama-bench result without {e.args[0]}"))
        except (TypeError, ValueError, AttributeError) as e:
            out.append((line, f"llama-bench result not understood: {str(e)[:200]}"))
    return out


def looks_like_markdown(text: str) -> bool:
    return any(ln.lstrip().startswith("| model") for ln in text.splitlines())


def from_markdown(text: str) -> list:
    """The default llama-bench table (maybe after log lines) -> [(line, Measurement | reason)]."""
    out, header, devices = [], None, []
    for n, raw in enumerate(text.splitlines(), start=1):
        ln = raw.strip()
        dev = re.match(r"^Device \d+: ([^,]+),", ln)  # ggml_cuda_init log lines before the table
        if dev:
            devices.append(dev.group(1).strip())
        if not ln.startswith("|"):
            continue
        cells = [c.strip() for c in ln.strip("|").split("|")]
        if cells and cells[0] == "model":
            header = cells
            continue
        if header is None or all(set(c) <= set("-: ") for c in cells):
            continue  # separator row
        if len(cells) != len(header):
            out.append((n, f"table row has {len(cells)} cells, header has {len(header)}"))
            continue
        row = dict(zip(header, cells))
        test = _TEST.match(row.get("test", "").replace("  ", " "))
        ts = re.match(r"^\s*(\d{1,12}(?:\.\d{0,12})?)(?!\d)", row.get("t/s", ""))
        if not test:
            out.append((n, f"test '{row.get('test', '')}' not understood; expected ppN, tgN, "
                           "ppN+tgM, optionally '@ dN'"))
            continue
        if not ts or not 0 < float(ts.group(1)) <= MAX_TOK_S:
            out.append((n, f"t/s '{row.get('t/s', '')}' is not a positive number"))
            continue
        kind, n1, pp, tg, depth = test.groups()
        n_prompt = int(n1) if kind == "pp" else int(pp or 0)
        n_gen = int(n1) if kind == "tg" else int(tg or 0)
        backend = row.get("backend", "")
        cpu = backend.upper() in ("CPU", "BLAS") or row.get("ngl") == "0"
        gpu, n_gpus = gpu_from_info(", ".join(devices), backend) if devices else ("unknown", 1)
        mtype = row.get("model", "")
        try:
            out.append((n, _row(
                n_prompt=n_prompt, n_gen=n_gen, n_depth=int(depth or 0), tok_s=float(ts.group(1)),
                model=model_id(mtype), quant=quant_from_type(mtype), gpu="cpu" if cpu else gpu,
                n_gpus=0 if cpu else n_gpus, split=row.get("sm", ""), ngl=row.get("ngl"),
                source="llama-bench markdown", date="",
                note=f"llama-bench table; {mtype}; backend={backend}; " + (
                    f"devices from the log: {', '.join(devices)}" if devices
                    else "GPU and GPU count not in the markdown output"))))
        except ValueError as e:  # more GPUs than any rig has
            out.append((n, f"table row not understood: {e}"))
    return out


def run(model_path: str, n_prompt: int = 512, n_gen: int = 128, ngl: int = 99,
        extra: list[str] | None = None, timeout_s: float = 1800) -> list:
    """Run llama-bench on PATH with `-o json` and return [(0, Measurement | reason)]."""
    exe = shutil.which("llama-bench")
    if exe is None:
        raise InputError("llama-bench is not on PATH; build llama.cpp (it makes build/bin/llama-bench) "
                         "and add that folder to PATH, or benchmark a running server with `gpuplan bench URL`")
    if not Path(model_path).is_file():
        raise InputError(f"model file '{model_path}' does not exist; give a .gguf file")
    cmd = [exe, "-m", model_path, "-o", "json", "-p", str(n_prompt), "-n", str(n_gen),
           "-ngl", str(ngl), *(extra or [])]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise InputError(f"llama-bench did not finish within {timeout_s:.0f} s") from None
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise InputError(f"llama-bench failed (exit {proc.returncode}): {tail}")
    import json

    try:
        data = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise InputError("llama-bench printed no JSON; is it a recent build (needs -o json)?") from None
    return from_objects([(0, o) for o in data])
