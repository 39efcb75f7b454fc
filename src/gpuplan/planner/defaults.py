"""What the planner assumes when the user does not say, and why: the engine, the weight format,
the KV cache type, flash attention, the link, system RAM. Every answer carries these as its
`assumptions`, so no default is silent."""

from __future__ import annotations

from ..perf.engine_profiles import profile, settings
from ..results import (Assumptions, BoolAssumption, EngineVerdict, IntAssumption, OptFloatAssumption,
                       OptStrAssumption, StrAssumption)
from ..types import DeviceMemory, Engine, Hardware, LoadedModel, Plan, Workload

# Float formats llama.cpp also stores as GGUF types: F16/BF16/F32 on a GeForce card or a Mac
# are GGUF files run by llama.cpp, not checkpoints for vLLM.
GGUF_FLOATS = ("F16", "BF16", "F32")
# A quantized KV cache costs accuracy (q4_0 more than q8_0), so it must buy a real gain: fitting at
# all, or at least this much speed over the best f16 plan. gpuplan's median decode error is 5.4%
# (docs/accuracy.md): a gain under twice that is within what the model can tell apart.
KV_QUANT_MIN_GAIN = 0.10
KV_LEVEL = {"f32": 0, "bf16": 0, "f16": 0, "fp8": 1, "q8_0": 1, "q5_1": 2, "q5_0": 2, "q4_1": 2,
            "q4_0": 2, "iq4_nl": 2}


def _where(hw: Hardware) -> str:
    kinds = {d.kind for d in hw.devices}
    if "apple" in kinds:
        return "a Mac"
    if "cpu" in kinds:
        return "a CPU"
    segs = {d.segment for d in hw.devices}
    return {"consumer": "GeForce/Radeon cards", "workstation": "workstation cards",
            "datacenter": "datacenter GPUs"}.get(segs.pop(), "these GPUs") if len(segs) == 1 else "mixed GPUs"


def engine_choice(model: LoadedModel, hw: Hardware, given: Engine | None) -> tuple[Engine, StrAssumption, list[Engine]]:
    """The engine to plan for, why, and the engines whose answer is worth checking against it."""
    q = model.quant
    if given is not None:
        return given, StrAssumption(value=given.value, source="given", why="given (--engine)"), []
    where = _where(hw)
    no_cuda = any(d.kind in ("apple", "cpu") or d.backend in ("metal", "sycl", "cpu") for d in hw.devices)
    if no_cuda and q.kind != "mlx":
        eng, why, others = Engine.LLAMA_CPP, (f"{where}: llama.cpp (its Metal/CPU back ends); vLLM and SGLang"
                                              " need CUDA or ROCm"), []
    elif q.kind == "mlx":
        eng, why, others = Engine.MLX, f"{q.id} weights run in MLX (mlx-lm, Apple silicon)", []
    elif q.kind in ("gguf", "gguf-mix"):
        eng, why, others = Engine.LLAMA_CPP, f"{q.id} is a GGUF type, the format llama.cpp (and Ollama) run", []
    elif q.kind == "exl2":
        eng, why, others = Engine.EXLLAMAV2, "EXL2 is ExLlamaV2's format (TabbyAPI serves it)", []
    elif q.id in GGUF_FLOATS and all(d.segment == "consumer" for d in hw.devices):
        eng, why, others = Engine.LLAMA_CPP, (f"{q.id} is a GGUF type too, and on {where} llama.cpp is the usual"
                                              " engine (it can also keep layers in RAM); vLLM would reserve 10% of"
                                              " each card"), [Engine.VLLM]
    else:
        eng = Engine.VLLM
        why = f"a {q.id} safetensors checkpoint on {where}: vLLM"
        others = [Engine.LLAMA_CPP] if q.id in GGUF_FLOATS else []
    return eng, StrAssumption(value=eng.value, source="default", why=why), others


# Back ends each GPU server runs on (their install guides): none of them on a Mac's Metal or a bare CPU.
ENGINE_BACKENDS = {"exllamav2": ("cuda", "rocm"), "tensorrt-llm": ("cuda",),
                   "vllm": ("cuda", "rocm", "sycl", "hpu"), "sglang": ("cuda", "rocm"), "tgi": ("cuda", "rocm", "hpu")}


def engine_unavailable(engine_name: str, hw: Hardware) -> str | None:
    """Why an engine cannot run on this hardware at all (vLLM on a Mac), or None."""
    ok = ENGINE_BACKENDS.get(engine_name)
    bad = [d for d in hw.devices if ok is not None and d.backend not in ok]
    if bad:
        return f"{engine_name} runs on {'/'.join(ok)} GPUs; {bad[0].name} has a {bad[0].backend} back end"
    return None


def quant_assumption(model: LoadedModel, given: str | None) -> StrAssumption:
    q = model.quant.id
    if model.weights.origin == "gguf":
        return StrAssumption(value=q, source="file", why=f"the GGUF file is stored as {q}")
    if given:
        return StrAssumption(value=q, source="given", why="given (--quant)")
    native = model.spec.native_dtype
    dtype_note = next((x for x in (model.spec.note or "").split("; ") if "dtype" in x), None)
    return StrAssumption(value=q, source="default",
                           why=f"no --quant: the format {model.spec.id} ships in ({native}"
                               + (f", as llama.cpp's {q} GGUF" if q != native else "")
                               + (f"; {dtype_note}" if dtype_note else "")
                               + "); give --quant Q4_K_M for the usual 4-bit GGUF download")


def kv_assumption(plan: Plan, given: str | None, why_chosen: str | None) -> StrAssumption:
    if given:
        return StrAssumption(value=plan.kv_type, source="given", why="given (--kv)")
    if plan.kv_type in ("f16", "bf16"):
        return StrAssumption(value=plan.kv_type, source="default",
                               why="16-bit KV cache: full precision; a quantized cache is chosen only when it is"
                                   f" needed to fit or is at least {KV_QUANT_MIN_GAIN:.0%} faster")
    return StrAssumption(value=plan.kv_type, source="chosen", why=why_chosen or "chosen by the planner")


def flash_assumption(plan: Plan) -> BoolAssumption:
    """Flash attention as the engine will run it (its default, or --flash-attn), from its profile."""
    st = settings(plan)
    if plan.flash_attention is not None:
        return BoolAssumption(value=st.flash_attn, source="given", why="given (--flash-attn)")
    why = next((w for k, w in st.assumed if k == "flash_attn"), f"{plan.engine.value} default")
    return BoolAssumption(value=st.flash_attn, source="default", why=why)


def link_assumption(hw: Hardware, plan: Plan) -> OptStrAssumption:
    link = hw.link.id if hw.link else None
    if len(plan.device_ids) * max(plan.replicas, 1) < 2 and hw.n < 2:
        return OptStrAssumption(value=None, source="default", why="one device: no link between GPUs")
    if hw.link_given:
        return OptStrAssumption(value=link, source="probed" if hw.origin == "probed" else "given",
                                      why=f"{hw.link.name}" + (" (probed)" if hw.origin == "probed" else " (given)"))
    if hw.link and hw.link.kind == "pcie":
        why = (f"{hw.link.name} assumed: a desktop's two x16 slots run at x8/x8 with two cards; give --link"
               " pcie4-x16 (or an NVLink bridge your cards take) if yours differ")
    else:
        why = f"{hw.link.name if hw.link else 'no link'}: how these cards are joined in their servers"
    return OptStrAssumption(value=link, source="default", why=why)


def ram_assumptions(hw: Hardware) -> tuple[OptFloatAssumption, OptFloatAssumption]:
    from ..perf.speed import _host_bw
    from ..sources.hardware import DEFAULT_HOST_RAM_GIB

    cpu = next((d for d in hw.devices if d.kind == "cpu"), None)
    if hw.origin == "probed":
        size = OptFloatAssumption(value=hw.host_ram_gib, source="probed", why="this machine's RAM (probed)")
    elif hw.host_ram_gib is not None:
        size = OptFloatAssumption(value=hw.host_ram_gib, source="given", why="given")
    else:
        size = OptFloatAssumption(value=DEFAULT_HOST_RAM_GIB, source="default",
                                        why=f"no RAM size given: {DEFAULT_HOST_RAM_GIB:g} GiB assumed (a common"
                                            " desktop); give --ram-gib N or 'ddr5-6000-2ch:128gb' in --gpus")
    bw, mtype = _host_bw(hw, cpu)
    if hw.host is not None:
        band = OptFloatAssumption(value=bw, source="given", why=f"{hw.host.name}: peak {bw:g} GB/s")
    elif cpu is not None and hw.origin in ("probed", "file"):
        band = OptFloatAssumption(value=bw, source="probed",
                                        why=f"measured by gpuplan probe on this machine ({cpu.name})")
    elif cpu is not None:
        band = OptFloatAssumption(value=bw, source="default", why=f"{cpu.name}: its platform's peak")
    else:
        band = OptFloatAssumption(value=bw, source="default",
                                        why=f"no --ram given: {mtype} dual channel at {bw:g} GB/s assumed (a"
                                            " DDR5-5200 desktop); give --ram ddr5-6000-2ch or the like")
    return size, band


def slots_assumption(plan: Plan, wl: Workload, concurrent: int) -> IntAssumption:
    per = -(-wl.users // max(plan.replicas, 1))
    if concurrent < per:
        return IntAssumption(value=concurrent, source="chosen",
                               why=f"KV cache room for {concurrent} sequences of {wl.context:,} tokens per copy of"
                                   f" the model; the other {per - concurrent} of {per} users wait")
    return IntAssumption(value=concurrent, source="default",
                           why="one slot per user" + (f", {plan.replicas} copies of the model" if plan.replicas > 1 else ""))


def assumptions(model: LoadedModel, hw: Hardware, plan: Plan, wl: Workload, engine: StrAssumption, quant: str | None,
                kv_given: str | None, kv_why: str | None, concurrent: int, context_given: bool,
                others: list[EngineVerdict] | None = None) -> Assumptions:
    size, band = ram_assumptions(hw)
    ctx = IntAssumption(value=wl.context, source="given" if context_given else "default",
                          why="given (--context)" if context_given else
                          "no --context: 8,192 tokens per sequence assumed")
    if plan.engine != Engine.parse(engine.value):  # the plan's engine wins over the default's name
        engine = StrAssumption(value=plan.engine.value, source="chosen", why=engine.why)
    return Assumptions(engine=engine, quant=quant_assumption(model, quant), kv_type=kv_assumption(plan, kv_given, kv_why),
                       flash_attention=flash_assumption(plan), link=link_assumption(hw, plan), ram_gib=size,
                       ram_bandwidth_gb_s=band, context_per_slot=ctx, slots=slots_assumption(plan, wl, concurrent),
                       other_engines=others or [])


def reserve_fraction(engine: Engine) -> float:
    """Share of each card a paged engine leaves unused by default (1 - gpu_memory_utilization)."""
    util = profile(engine).defaults.gpu_memory_utilization
    return 1.0 - util if util else 0.0


def engine_overhead_note(engine: Engine) -> str:
    """What the 'overhead' column holds for this engine, in words."""
    p = profile(engine)
    parts = ["compute buffers", "CUDA context"]
    if p.cuda_graphs_mib:
        parts.append("CUDA graphs")
    if reserve_fraction(engine):
        parts.append(f"the {reserve_fraction(engine):.0%} of each card {engine.value} leaves unused")
    return ", ".join(parts)


def shortfall(mem: list[DeviceMemory], engine: Engine | None = None) -> str:
    """Which devices are short, by how much, of what: 'rtx-3090 #2 is short by 1.3 GB (weights 22.1
    + KV cache 2.1 + overhead 1.1 = 25.3 GB > 24.0 GB)'. Empty when everything fits."""
    names = [m.name for m in mem]
    out = []
    for i, m in enumerate(mem):
        if m.free >= 0:
            continue
        label = m.name + (f" #{names[:i + 1].count(m.name)}" if names.count(m.name) > 1 else "")
        out.append(f"{label} is short by {-m.free / 1e9:.2f} GB (weights {m.weights / 1e9:.2f} + KV cache"
                   f" {m.kv_cache / 1e9:.2f} + overhead {m.overhead / 1e9:.2f} = {m.total / 1e9:.2f} GB"
                   f" > {m.capacity / 1e9:.2f} GB)")
    text = "; ".join(out)
    if text and engine is not None:
        text += f"; overhead is {engine_overhead_note(engine)}"
    return text


DEFAULT_REQUEST = (512, 256)  # prompt and answer tokens of a request nobody described (PlanRequest's defaults)


def default_lengths(context: int, prompt: int = DEFAULT_REQUEST[0], output: int = DEFAULT_REQUEST[1]) -> tuple[int, int]:
    """Default request lengths cut to a context too short for them, in their own proportion
    (a context holds at least one prompt and one answer token: requests.Context starts at 2)."""
    if prompt + output <= context:
        return prompt, output
    p = min(max(1, context * prompt // (prompt + output)), context - 1)
    return p, max(1, context - p)
