"""Predict one measurement row (the schema of data/measurements/README.md in the repository)."""

from __future__ import annotations

import math
import re
from functools import lru_cache

from .. import catalog
from ..errors import InputError
from ..types import Engine, Estimate, Hardware, LoadedModel, Metric, Plan, Split, Workload
from . import rates
from .constants import DEFAULT, Constants
from .speed import decode, prefill, throughput

# GPU APIs a llama.cpp build can use, as notes and llama-bench's backend column name them
_BACKENDS = {"cuda": "cuda", "rocm": "rocm", "hip": "rocm", "vulkan": "vulkan", "opencl": "opencl",
             "clblast": "opencl", "metal": "metal", "sycl": "sycl", "cpu": "cpu"}
_BACKEND_RE = [re.compile(r"\bbackend[:\s]+(" + "|".join(_BACKENDS) + r")\b", re.I),
               re.compile(r"\b(" + "|".join(_BACKENDS) + r")\s+backend\b", re.I)]

# 'ddr5-dual-channel' style names in published rows: assume a common speed of that generation
_HOST_GUESS = {"ddr4": "ddr4-3200", "ddr5": "ddr5-5600"}
_CHANNELS = {"single": 1, "dual": 2, "quad": 4, "octa": 8, "eight": 8, "twelve": 12}


def host_memory_id(text: str) -> str | None:
    t = (text or "").strip().lower()
    if not t:
        return None
    if t in catalog.host_memories():
        return t
    gen = t.split("-")[0]
    for word, n in _CHANNELS.items():
        if word in t and gen in _HOST_GUESS:
            return f"{_HOST_GUESS[gen]}-{n}ch"
    raise InputError(f"unknown host memory '{text}'")


MAX_GPUS = 4096  # the largest published rigs; more is a typo or an attempt to burn CPU


@lru_cache(maxsize=256)
def _model(model_id: str, quant: str, allow_paths: bool = True) -> LoadedModel:
    from ..sources.resolve import resolve_model

    return resolve_model(model_id, quant, allow_paths=allow_paths)


def _row_model(m, allow_paths: bool, models: dict | None) -> LoadedModel:
    name = (m.model or "").strip()
    if models and name in models:
        return models[name](m.quant)
    if models and name.lower().endswith((".gguf", ".json")):
        raise InputError(f"model '{name[:200]}' is not one of the model files sent with the rows "
                         f"({', '.join(sorted(models))}); accepted: catalog ids or those file names")
    return _model(m.model, m.quant, allow_paths)


def _link_for(interconnect: str, dev) -> object | None:
    ic = (interconnect or "").strip().lower()
    if ic in ("xgmi", "infinity-fabric"):
        try:
            return catalog.link("xgmi")
        except InputError:  # no entry yet: the PCIe slot is a lower bound (layer split sends little)
            ic = ""
    if ic in ("", "none", "unknown"):
        # SXM/OAM modules only come on boards that join them by NVLink/NVSwitch (HGX); other
        # published multi-GPU rigs (cloud servers) give each card its own x16 slot
        if dev.nvlink and catalog.link(dev.nvlink).kind in ("nvlink", "nvswitch"):
            return catalog.link(dev.nvlink)
        gen = max(3, min(dev.pcie_gen or 4, 5))
        return catalog.link(f"pcie{gen}-x16")
    if ic == "nvlink":
        return catalog.link(dev.nvlink) if dev.nvlink else catalog.link("nvlink3")
    if ic in catalog.links():
        return catalog.link(ic)
    if ic.startswith("pcie") and ic[4:].isdigit():
        return catalog.link(f"pcie{ic[4:]}-x16")
    raise InputError(f"unknown interconnect '{interconnect}'")


def row_device(gpu: str):
    """The catalog device of a row. An id that stops short of a variant (apple-m4-pro: the row
    does not say 16 or 20 GPU cores) gets the smallest variant, the conservative reading."""
    try:
        return catalog.device(gpu)
    except InputError:
        variants = [d for k, d in catalog.devices().items() if k.startswith(gpu + "-") and re.fullmatch(
            r"\d+c", k[len(gpu) + 1:])]
        if not variants:
            raise
        return min(variants, key=lambda d: (d.cores or 0, d.id))


@lru_cache(maxsize=1)
def _cpu_names() -> list[tuple[str, str]]:
    out = []
    for k, d in catalog.devices().items():
        if d.kind == "cpu" and k != "cpu":
            for name in (d.name, *d.aliases):
                out.append((name.lower(), k))
    return sorted(out, key=lambda t: -len(t[0]))


def cpu_from_note(note: str) -> str | None:
    """A CPU the catalog knows, named in a row's note ("AMD Ryzen 9 7950X"); None otherwise."""
    t = (note or "").lower()
    for name, k in _cpu_names():
        if re.search(r"(?<![\w-])" + re.escape(name) + r"(?![\w-])", t):
            return k
    return None


def row_backend(m) -> str | None:
    """The GPU API of the row's engine build: its `backend` column, else the note's "backend X"."""
    b = (getattr(m, "backend", "") or "").strip().lower()
    if b:
        return _BACKENDS.get(b, b)
    found = {_BACKENDS[g.lower()] for pat in _BACKEND_RE for g in pat.findall(getattr(m, "note", "") or "")}
    return found.pop() if len(found) == 1 else None


def row_cpu(m):
    """(catalog CPU, threads, build ISA) of a CPU row: columns first (`cpu_model` naming a CPU
    the catalog knows, `threads`), then the note, else the generic desktop CPU with every core."""
    note = getattr(m, "note", "") or ""
    cid = cpu_from_note(getattr(m, "cpu_model", "") or "") or cpu_from_note(note) or "cpu"
    threads = getattr(m, "threads", None) or rates.threads_from_note(note)
    return catalog.device(cid), threads, rates.build_simd_from_note(note)


def _host_from_row(m, cpu):
    from ..catalog.schema import HostMemory

    bw = getattr(m, "host_bw_gb_s", None)
    if not bw:
        return None
    return HostMemory(id="measured", name=f"{bw:g} GB/s (row)", memory_type=cpu.memory_type if cpu else "DDR5",
                      speed_mt_s=1, channels=1, bandwidth_gb_s=float(bw), source="measurement row")


def row_setup(m, hardware: Hardware | None = None, allow_paths: bool = True, models: dict | None = None
              ) -> tuple[LoadedModel, Hardware, Plan, Workload]:
    """Turn a measurement row into (model, hardware, plan, workload); `hardware` replaces the
    row's catalog devices (a bench on this machine is predicted for the probed machine).
    allow_paths=False: the row's model must be a catalog id (rows a web client uploaded), or
    the name of one of `models` (name -> function(quant) -> LoadedModel: files uploaded with them)."""
    n = int(m.n_gpus)
    if not 0 <= n <= MAX_GPUS:
        raise InputError(f"n_gpus {n:,} is out of range; accepted: 0 to {MAX_GPUS:,}")
    model = _row_model(m, allow_paths, models)
    host_id = host_memory_id(getattr(m, "host_mem", "") or "")
    host = catalog.host_memory(host_id) if host_id else None
    threads, simd, backend = None, None, row_backend(m)
    cpu_only = (m.gpu or "").lower() == "cpu"
    cpu = None
    if cpu_only:
        cpu, threads, simd = row_cpu(m)
        if hardware is None and getattr(m, "cpu_cores", None):
            hardware = row_cpu_hardware(m)  # the machine the row was measured on, as `gpuplan bench` probed it
    host = _host_from_row(m, cpu) or host
    dev = cpu if cpu_only else row_device(m.gpu)
    if n == 0 or dev.kind == "cpu":
        n = 1
        mem = (512.0,)
        backend = f"cpu-{simd}" if simd else None
    else:
        mem = (dev.memory_gib,) * n
    link = _link_for(getattr(m, "interconnect", ""), dev) if n > 1 else None
    hw = hardware or Hardware(devices=(dev,) * n, memory_gib=mem, link=link, host=host)
    if hardware is not None:
        dev, n = hardware.devices[0], hardware.n
    split = Split(m.split) if m.split in {s.value for s in Split} else Split.LAYER
    if n == 1:
        split = Split.NONE
    engine = Engine.parse(m.engine)
    tp = n if split == Split.TENSOR else 1
    ngl = getattr(m, "n_gpu_layers", None)
    ngl = int(ngl) if ngl not in (None, "") and not (isinstance(ngl, float) and math.isnan(ngl)) else None
    if dev.kind == "cpu":
        ngl = None
    plan = Plan(split=split, engine=engine, device_ids=tuple(range(n)), tp=tp, gpu_layers=ngl,
                engine_date=(getattr(m, "date", None) or None),
                backend=backend if backend != "cpu" or dev.kind == "cpu" else None, threads=threads)
    wl = Workload(context=max(int(m.n_depth) + int(m.n_prompt) + int(m.n_gen), 1),
                  prompt_tokens=int(m.n_prompt), output_tokens=int(m.n_gen), users=int(m.batch) or 1,
                  depth=int(m.n_depth))
    return model, hw, plan, wl


def row_cpu_hardware(m) -> Hardware:
    """A CPU-only row's own machine: its cores, SIMD width, clock and the RAM bandwidth measured."""
    from ..sources.cpu_device import cpu_device

    dev = cpu_device(m.cpu_model or "CPU", int(m.cpu_cores), m.host_bw_gb_s, simd=m.cpu_simd or None,
                     ghz=m.cpu_ghz)
    ram = m.ram_gib or 512.0
    return Hardware(devices=(dev,), memory_gib=(ram,), host_ram_gib=ram)


def max_batch_for(model: LoadedModel, hw: Hardware, plan: Plan, seq_tokens: int, limit: int = 1 << 16) -> int:
    """Concurrent sequences of `seq_tokens` whose KV cache fits beside the weights, per replica
    (0 when not even one does): a doubling then bisection over the exact memory model."""
    from .memory import device_memory, fits, largest

    reps = max(plan.replicas, 1)

    def ok(u: int) -> bool:
        return fits(device_memory(model, hw, plan, Workload(context=seq_tokens, users=u * reps)))

    return largest(ok, limit)


def predict_estimate(m, calibration: Constants | None = None, hardware: Hardware | None = None, setup=None,
                     allow_paths: bool = True, models: dict | None = None):
    """The Estimate (value, breakdown, range) for a measurement row, or raise InputError saying
    why it can't be. `setup` is row_setup's result when the caller already has it; allow_paths,
    models (uploaded model files by name): as row_setup."""
    c = calibration or DEFAULT
    model, hw, plan, wl = setup or row_setup(m, hardware, allow_paths, models)
    date = getattr(m, "date", None) or None
    metric = Metric(m.metric)
    if metric == Metric.DECODE:
        if wl.output_tokens <= 0:
            raise InputError("decode row with n_gen = 0")
        return decode(model, hw, plan, depth=wl.depth, n_gen=wl.output_tokens, c=c, date=date)
    if metric == Metric.PREFILL:
        if wl.prompt_tokens <= 0:
            raise InputError("prefill row with n_prompt = 0")
        return prefill(model, hw, plan, prompt=wl.prompt_tokens, depth=wl.depth, c=c, date=date)
    # serving benchmarks: the simulator runs the harness the row came from (perf/serving_predict.py);
    # the speed model's serving estimate gives the breakdown, and its range (relative) moves with it
    from dataclasses import replace

    from .serving_predict import predict_serving

    if metric.is_latency:
        # a median TTFT / TPOT (ms) of the replayed benchmark: no speed-model breakdown, and no range
        # (the residual table behind ranges holds speeds only)
        value = predict_serving(m, model, hw, plan, date, c, metric=metric)
        return Estimate(value=value, metric=metric, bound="serving simulation",
                        notes=("serving simulator: the benchmark's harness, scheduler and KV pool; "
                               f"{metric.value} in milliseconds",))

    # paged KV caches (vLLM, TensorRT-LLM) hold what each sequence has so far: on average its
    # prompt and half its output
    seq = wl.prompt_tokens + wl.output_tokens // 2
    mb = max(max_batch_for(model, hw, plan, seq), 1) if plan.engine not in (Engine.LLAMA_CPP, Engine.LLAMA_CPP_PYTHON, Engine.OLLAMA) else None
    est = throughput(model, hw, plan, wl.users, wl.prompt_tokens, max(wl.output_tokens, 1), max_batch=mb, c=c,
                     date=date, count_prompt=metric == Metric.THROUGHPUT_TOTAL)
    value = predict_serving(m, model, hw, plan, date, c, metric=metric)
    k = value / est.value if est.value else 0.0
    return replace(est, value=value, range=(est.range[0] * k, est.range[1] * k) if est.range and k else None,
                   notes=est.notes + ("serving simulator: the benchmark's harness, scheduler and KV pool",))


def predict_row(m, calibration: Constants | None = None, hardware: Hardware | None = None, setup=None,
                allow_paths: bool = True, models: dict | None = None) -> float:
    """Predicted tok/s (ms for a latency metric) for a measurement row, or raise InputError saying why it can't be."""
    return predict_estimate(m, calibration, hardware, setup, allow_paths, models).value
