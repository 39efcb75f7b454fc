"""Golden files for emitted launch commands (regenerate: GPUPLAN_UPDATE_GOLDEN=1).

Objects are built here, not read from the catalog, so these tests pin the engine layer only.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from gpuplan import engines
from gpuplan.catalog.schema import Device, ModelSpec, Quant
from gpuplan.types import Engine, Hardware, LoadedModel, Plan, Split, Weights, Workload

GOLDEN = Path(__file__).parent / "golden" / "engines"
SRC = "https://example.invalid/test-fixture"


def gpu(id: str, mem: float, bw: float = 1000.0, arch: str = "ada") -> Device:
    return Device(id=id, name=id, vendor="nvidia", kind="gpu", segment="consumer",
                  architecture=arch, backend="cuda", release_date="2022-10", memory_gib=mem,
                  memory_bandwidth_gb_s=bw, memory_type="GDDR6X", fp32_tflops=80,
                  fp16_tflops=160, tdp_w=450, source=SRC)


def spec(id: str, layers: int, hidden: int, heads: int, kv: int, inter: int, vocab: int,
         ctx: int, **kw) -> ModelSpec:
    return ModelSpec(id=id, name=id.split("/")[-1], architecture=kw.pop("arch", "llama"),
                     n_layers=layers, hidden_size=hidden, n_heads=heads, n_kv_heads=kv,
                     head_dim=hidden // heads, intermediate_size=inter, vocab_size=vocab,
                     max_context=ctx, source=SRC, **kw)


def quant(id: str, kind: str, bpw: float) -> Quant:
    extra = {"block_weights": 256, "block_bytes": 144} if kind == "gguf" else {}
    return Quant(id=id, name=id, kind=kind, bits_per_weight=bpw, source=SRC,
                 base="Q4_K" if kind == "gguf-mix" else None, **extra)


def loaded(s: ModelSpec, q: Quant, total_gb: float, expert_frac: float = 0.0,
           bpw: float | None = None) -> LoadedModel:
    per_layer = int(total_gb * 0.95e9 / s.n_layers)
    w = Weights(layer_bytes=(per_layer,) * s.n_layers,
                layer_expert_bytes=(int(per_layer * expert_frac),) * s.n_layers,
                embed_bytes=int(total_gb * 0.025e9), output_bytes=int(total_gb * 0.025e9))
    return LoadedModel(spec=s, quant=q, weights=w, label=s.id, bits_per_weight_override=bpw)


L3_8B = spec("meta-llama/Meta-Llama-3-8B-Instruct", 32, 4096, 32, 8, 14336, 128256, 8192)
L3_70B = spec("meta-llama/Meta-Llama-3-70B-Instruct", 80, 8192, 64, 8, 28672, 128256, 8192)
L31_405B = spec("meta-llama/Llama-3.1-405B-Instruct-FP8", 126, 16384, 128, 8, 53248, 128256,
                131072, native_dtype="FP8")
QWEN3_MOE = spec("Qwen/Qwen3-30B-A3B", 48, 2048, 32, 4, 6144, 151936, 40960, arch="qwen3_moe",
                 n_experts=128, n_experts_active=8, moe_intermediate_size=768)
Q4KM = quant("Q4_K_M", "gguf-mix", 4.85)
AWQ, FP16 = quant("AWQ", "awq", 4.25), quant("FP16", "float", 16.0)
FP8, EXL2 = quant("FP8", "fp8", 8.0), quant("EXL2", "exl2", 4.5)

R4090, R3060 = gpu("rtx-4090", 24), gpu("rtx-3060-12gb", 12, 360, "ampere")
R3090, A100, H100 = gpu("rtx-3090", 24, 936, "ampere"), gpu("a100-80gb", 80), gpu("h100-sxm", 80)


def hw(*devs: Device, nodes: int = 1) -> Hardware:
    return Hardware(devices=devs, memory_gib=tuple(d.memory_gib for d in devs), nodes=nodes)


CASES = {
    "single_4090_llama3_8b_q4km": (
        Plan(Split.NONE, Engine.LLAMA_CPP, (0,)), loaded(L3_8B, Q4KM, 4.9), hw(R4090),
        Workload(context=8192)),
    "layer_split_uneven_4090_3060": (
        Plan(Split.LAYER, Engine.LLAMA_CPP, (0, 1), shares=(0.67, 0.33)),
        loaded(L3_70B, quant("IQ2_XS", "gguf", 2.31), 21.1), hw(R4090, R3060),
        Workload(context=4096, users=2)),
    "row_split_2x3090": (
        Plan(Split.ROW, Engine.LLAMA_CPP, (0, 1), shares=(0.5, 0.5), kv_type="q8_0"),
        loaded(L3_70B, Q4KM, 42.5), hw(R3090, R3090), Workload(context=8192)),
    "partial_offload_70b_40_of_80": (
        Plan(Split.NONE, Engine.LLAMA_CPP, (0,), gpu_layers=40), loaded(L3_70B, Q4KM, 42.5),
        hw(R4090), Workload(context=4096)),
    "two_replicas_8b": (
        Plan(Split.NONE, Engine.LLAMA_CPP, (0,), replicas=2), loaded(L3_8B, Q4KM, 4.9),
        hw(R3090, R3090), Workload(context=8192, users=8)),
    "tp2_vllm_awq_70b": (
        Plan(Split.TENSOR, Engine.VLLM, (0, 1), shares=(0.5, 0.5), tp=2),
        loaded(L3_70B, AWQ, 39.8), hw(A100, A100), Workload(context=16384, users=16)),
    "tp4_fp16_fp8_kv_70b": (
        Plan(Split.TENSOR, Engine.VLLM, (0, 1, 2, 3), tp=4, kv_type="fp8"),
        loaded(L3_70B, FP16, 141.1), hw(A100, A100, A100, A100), Workload(context=32768, users=32)),
    "exl2_2x3090_gpu_split": (
        Plan(Split.LAYER, Engine.EXLLAMAV2, (0, 1), shares=(0.55, 0.45), kv_type="q4_0"),
        loaded(L3_70B, EXL2, 39.7, bpw=4.5), hw(R3090, R3090), Workload(context=16384)),
    "moe_experts_on_host_qwen3_30b": (
        Plan(Split.NONE, Engine.LLAMA_CPP, (0,), experts_on_host=True),
        loaded(QWEN3_MOE, Q4KM, 18.6, expert_frac=0.9), hw(gpu("rtx-4060-ti-8gb", 8, 288)),
        Workload(context=16384)),
    "moe_n_cpu_moe_qwen3_30b_16gb": (
        Plan(Split.NONE, Engine.LLAMA_CPP, (0,), n_cpu_moe=10, n_ubatch=1024),
        loaded(QWEN3_MOE, Q4KM, 18.6, expert_frac=0.9), hw(gpu("rtx-4080", 16, 717)),
        Workload(context=16384)),
    "multinode_405b_fp8_2x8_h100": (
        Plan(Split.TENSOR, Engine.VLLM, tuple(range(16)), tp=8, pp=2, kv_type="fp8"),
        loaded(L31_405B, FP8, 410.0), hw(*(H100,) * 16, nodes=2), Workload(context=32768, users=64)),
}


def render_case(name: str) -> str:
    plan, model, hardware, workload = CASES[name]
    out = [f"## plan: {plan.strategy}"]
    for eng, text in engines.commands_for(plan, model, hardware, workload).items():
        out += [f"### {eng}", text]
    for eng, reason in engines.explain_unsupported(plan, model, hardware).items():
        out.append(f"### not {eng}: {reason}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden(name):
    path = GOLDEN / f"{name}.txt"
    text = render_case(name)
    if os.environ.get("GPUPLAN_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"missing {path}; run with GPUPLAN_UPDATE_GOLDEN=1"
    assert text == path.read_text()


def _argv(text: str, prog: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if prog in ln and not ln.startswith("#"))
    return shlex.split(line)


def test_uneven_split_flags():
    plan, model, hardware, workload = CASES["layer_split_uneven_4090_3060"]
    cmds = engines.commands_for(plan, model, hardware, workload)
    a = _argv(cmds["llama.cpp"], "llama-server")
    assert a[0] == "CUDA_VISIBLE_DEVICES=0,1"
    assert a[a.index("--tensor-split") + 1] == "0.67,0.33"
    assert a[a.index("--main-gpu") + 1] == "0"
    assert a[a.index("-c") + 1] == str(4096 * 2)  # context x slots
    assert set(cmds) == {"llama.cpp", "llama-cpp-python", "ollama"}


def test_engine_support_by_quant():
    plan = Plan(Split.NONE, Engine.VLLM, (0,))
    h, w = hw(A100), Workload()
    assert set(engines.commands_for(plan, loaded(L3_8B, Q4KM, 4.9), h, w)) == {
        "llama.cpp", "llama-cpp-python", "ollama"}
    assert set(engines.commands_for(plan, loaded(L3_8B, AWQ, 5.7), h, w)) == {"vllm", "sglang", "tgi"}
    assert set(engines.commands_for(plan, loaded(L3_8B, EXL2, 4.6), h, w)) == {"exllamav2"}
    reasons = engines.explain_unsupported(plan, loaded(L3_8B, Q4KM, 4.9))
    assert "experimental" in reasons["vllm"] and "tensorrt-llm" in reasons


def test_offload_and_row_are_llama_cpp_family_only():
    for name in ("row_split_2x3090", "partial_offload_70b_40_of_80"):
        plan, model, hardware, workload = CASES[name]
        cmds = engines.commands_for(plan, model, hardware, workload)
        assert set(cmds) <= {"llama.cpp", "llama-cpp-python", "ollama"}
    plan, model, hardware, workload = CASES["partial_offload_70b_40_of_80"]
    a = _argv(engines.commands_for(plan, model, hardware, workload)["llama.cpp"], "llama-server")
    assert a[a.index("-ngl") + 1] == "40"


def test_quantized_v_cache_turns_flash_attention_on():
    plan, model, hardware, workload = CASES["row_split_2x3090"]
    plan = Plan(**{**plan.__dict__, "flash_attention": False})
    a = _argv(engines.commands_for(plan, model, hardware, workload)["llama.cpp"], "llama-server")
    assert a[a.index("-fa") + 1] == "on" and a[a.index("-ctv") + 1] == "q8_0"
    assert a[a.index("-sm") + 1] == "row"


def test_replicas_get_own_devices_and_ports():
    plan, model, hardware, workload = CASES["two_replicas_8b"]
    text = engines.commands_for(plan, model, hardware, workload)["llama.cpp"]
    lines = [shlex.split(ln) for ln in text.splitlines() if ln.startswith("CUDA")]
    assert [ln[0] for ln in lines] == ["CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"]
    assert [ln[ln.index("--port") + 1] for ln in lines] == ["8080", "8081"]
    assert "load balancer" in text


def test_multinode_vllm_uses_ray_tp_in_node_pp_across():
    plan, model, hardware, workload = CASES["multinode_405b_fp8_2x8_h100"]
    cmds = engines.commands_for(plan, model, hardware, workload)
    assert "llama.cpp" not in cmds and "tgi" not in cmds
    text = cmds["vllm"]
    assert "ray start --head --port=6379" in text and "NCCL_SOCKET_IFNAME" in text
    a = _argv(text, "vllm serve")
    assert a[a.index("--tensor-parallel-size") + 1] == "8"
    assert a[a.index("--pipeline-parallel-size") + 1] == "2"
    assert a[a.index("--distributed-executor-backend") + 1] == "ray"
    assert "--quantization" not in a  # FP8 checkpoint: read from its config


def test_exl2_gpu_split_in_gb():
    plan, model, hardware, workload = CASES["exl2_2x3090_gpu_split"]
    text = engines.commands_for(plan, model, hardware, workload)["exllamav2"]
    assert "gpu_split: [22.4, 18.4]" in text and "cache_mode: Q4" in text
