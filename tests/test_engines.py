"""Golden files for emitted launch commands (regenerate: GPUPLAN_UPDATE_GOLDEN=1).

Objects are built here, not read from the catalog, so these tests pin the engine layer only.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest
import yaml

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
ARC = Device(id="arc-a770-16gb", name="Arc A770", vendor="intel", kind="gpu", segment="consumer",
             architecture="alchemist", backend="sycl", release_date="2022-10", memory_gib=16,
             memory_bandwidth_gb_s=560, memory_type="GDDR6", fp32_tflops=19.7, fp16_tflops=39.3,
             tdp_w=225, source=SRC)


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
    "tgi_two_replicas_awq_8b": (
        Plan(Split.NONE, Engine.VLLM, (0,), replicas=2), loaded(L3_8B, AWQ, 5.7), hw(A100, A100),
        Workload(context=8192, users=40)),
    "sglang_vllm_uneven_pipeline_awq_70b": (
        Plan(Split.LAYER, Engine.VLLM, (0, 1), shares=(0.6, 0.4)), loaded(L3_70B, AWQ, 39.8),
        hw(A100, gpu("a6000", 48)), Workload(context=8192, users=8)),
    "arc_a770_sycl_8b": (
        Plan(Split.NONE, Engine.LLAMA_CPP, (0,)), loaded(L3_8B, Q4KM, 4.9), hw(ARC), Workload(context=8192)),
    "row_split_mixed_3060_4090": (
        Plan(Split.ROW, Engine.LLAMA_CPP, (0, 1), shares=(0.3, 0.7)), loaded(L3_8B, quant("Q8_0", "gguf", 8.5), 8.5),
        hw(R3060, R4090), Workload(context=8192, users=2)),
    "sixteen_gpus_layer_split_70b": (
        Plan(Split.LAYER, Engine.LLAMA_CPP, tuple(range(16)), shares=(6.0,) + (5.0,) * 14 + (4.0,)),
        loaded(L3_70B, Q4KM, 42.5), hw(*(R3090,) * 16), Workload(context=4096, users=4)),
}


def render_case(name: str) -> str:
    plan, model, hardware, workload = CASES[name]
    out = [f"## plan: {plan.strategy}"]
    for eng, text in engines.commands_for(plan, model, hardware, workload).items():
        out += [f"### {eng}", text]
    for eng, reason in engines.explain_unsupported(plan, model, hardware, workload).items():
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




def launch(name: str, **plan_changes):
    plan, model, hardware, workload = CASES[name]
    if plan_changes:
        plan = Plan(**{**plan.__dict__, **plan_changes})
    return engines.launch_for(plan, model, hardware, workload)


def proc(cmd, prog: str):
    return next(p for p in cmd.processes if prog in " ".join(p.argv))


def flag(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_commands_are_data_and_text_is_rendered_from_them():
    for name in CASES:
        for eng, cmd in launch(name).items():
            assert cmd.engine == eng and cmd.processes
            for p in cmd.processes:
                assert p.shell() in cmd.text  # every process line is shlex.join of env + argv
                assert all(isinstance(a, str) for a in p.argv)
            for fname, body in cmd.files.items():
                assert f"cat > {fname} <<'EOF'\n{body.rstrip()}\nEOF" in cmd.text
    plan, model, hardware, workload = CASES["single_4090_llama3_8b_q4km"]
    assert engines.commands_for(plan, model, hardware, workload) == {
        k: v.text for k, v in engines.launch_for(plan, model, hardware, workload).items()}


def test_uneven_split_flags():
    a = proc(launch("layer_split_uneven_4090_3060")["llama.cpp"], "llama-server")
    assert a.env == {"CUDA_DEVICE_ORDER": "PCI_BUS_ID", "CUDA_VISIBLE_DEVICES": "0,1"}
    # plan: 54 and 26 of 80 layers; llama.cpp counts the output layer as an 81st slot on the last
    assert flag(a.argv, "--tensor-split") == "54,27"
    assert "--main-gpu" not in a.argv  # only row split keeps anything on a main GPU
    assert flag(a.argv, "-c") == str(4096 * 2) and flag(a.argv, "--parallel") == "2"
    assert set(launch("layer_split_uneven_4090_3060")) == {"llama.cpp", "llama-cpp-python", "ollama"}


def test_engine_support_by_quant():
    plan = Plan(Split.NONE, Engine.VLLM, (0,))
    h, w = hw(A100), Workload()
    assert set(engines.commands_for(plan, loaded(L3_8B, Q4KM, 4.9), h, w)) == {
        "llama.cpp", "llama-cpp-python", "ollama"}
    assert set(engines.commands_for(plan, loaded(L3_8B, AWQ, 5.7), h, w)) == {
        "vllm", "sglang", "tgi", "lmdeploy", "tensorrt-llm"}
    assert set(engines.commands_for(plan, loaded(L3_8B, EXL2, 4.6), h, w)) == {"exllamav2"}
    reasons = engines.explain_unsupported(plan, loaded(L3_8B, Q4KM, 4.9))
    assert "experimental" in reasons["vllm"] and "tensorrt-llm" in reasons


def test_offload_counts_the_output_layer():
    """-ngl N is N-1 repeating layers plus the output layer: 40 planned layers are -ngl 41 with
    the head pinned to RAM (-ot), as the plan's memory table has it."""
    cmds = launch("partial_offload_70b_40_of_80")
    assert set(cmds) <= {"llama.cpp", "llama-cpp-python", "ollama"}
    a = proc(cmds["llama.cpp"], "llama-server").argv
    assert flag(a, "-ngl") == "41" and "output" in flag(a, "-ot")
    # no -ot in llama-cpp-python and Ollama: the head goes to the GPU, so fewer layers go there
    py = proc(cmds["llama-cpp-python"], "llama_cpp.server").argv
    assert int(flag(py, "--n_gpu_layers")) <= 40
    assert f"PARAMETER num_gpu {flag(py, '--n_gpu_layers')}" in cmds["ollama"].files["Modelfile"]


def test_quantized_v_cache_turns_flash_attention_on():
    a = proc(launch("row_split_2x3090", flash_attention=False)["llama.cpp"], "llama-server").argv
    assert flag(a, "-fa") == "on" and flag(a, "-ctv") == "q8_0" and flag(a, "-sm") == "row"


def test_replicas_get_own_devices_and_ports():
    cmd = launch("two_replicas_8b")["llama.cpp"]
    servers = [p for p in cmd.processes if p.argv[0] == "llama-server"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in servers] == ["0", "1"]
    assert [flag(p.argv, "--port") for p in servers] == ["8080", "8081"]
    assert "load balancer" in cmd.text


def test_planned_slots_size_the_kv_cache():
    """-c is slots x context with slots = the concurrency the plan computed, not users per replica."""
    plan, model, hardware, workload = CASES["two_replicas_8b"]
    plan = Plan(**{**plan.__dict__, "slots": 3})
    cmds = engines.launch_for(plan, model, hardware, workload)
    a = proc(cmds["llama.cpp"], "llama-server").argv
    assert flag(a, "-c") == str(3 * 8192) and flag(a, "--parallel") == "3"
    assert proc(cmds["ollama"], "ollama serve").env["OLLAMA_NUM_PARALLEL"] == "3"
    assert "PARAMETER num_ctx 8192" in cmds["ollama"].files["Modelfile"]  # Ollama multiplies by slots


def test_plan_json_commands_use_the_planned_concurrency():
    """gpuplan plan Meta-Llama-3-8B Q4_K_M on 2x rtx-4090, 128 users at 4096: the KV cache holds
    what the plan computed, not 64 slots of 4096 (34 GB of f16 KV on a 24 GB card)."""
    import answers

    out = answers.plan("meta-llama/Meta-Llama-3-8B", gpus="2x rtx-4090", quant="Q4_K_M", users=128,
                       context=4096, goal="throughput")
    slots = out["concurrent_per_replica"]
    line = next(ln for ln in out["commands"]["llama.cpp"].splitlines() if "llama-server" in ln)
    a = shlex.split(line)
    assert flag(a, "--parallel") == str(slots) and flag(a, "-c") == str(slots * 4096)
    assert out["commands"]["llama.cpp"] == out["launch"]["llama.cpp"]["text"]
    assert all(m["free_gb"] >= 0 for m in out["memory"])


def test_near_equal_shares_are_not_merged():
    a = proc(launch("layer_split_uneven_4090_3060", shares=(0.504, 0.496))["llama.cpp"], "llama-server").argv
    assert flag(a, "--tensor-split") == "40,41"  # 40 + 40 layers, the output slot on the last
    r = proc(launch("row_split_mixed_3060_4090", shares=(0.3333, 0.6667))["llama.cpp"], "llama-server").argv
    assert flag(r, "--tensor-split") == "0.3333,0.6667"


def test_sixteen_gpus_are_refused_fifteen_take_fifteen_shares():
    """llama.cpp runs at most 15 GPUs (ggml's scheduler: 16 backends, the CPU is one) and refuses
    16 --tensor-split values (its check is >= 16 devices): a 16-GPU plan gets a reason, not a
    command that fails; 15 GPUs get 15 whole-slot values."""
    plan, model, hardware, workload = CASES["sixteen_gpus_layer_split_70b"]
    assert "llama.cpp" not in engines.launch_for(plan, model, hardware, workload)
    reason = engines.explain_unsupported(plan, model, hardware, workload)["llama.cpp"]
    assert "at most 15 GPUs" in reason and "ollama" not in engines.launch_for(plan, model, hardware, workload)
    p15 = Plan(Split.LAYER, Engine.LLAMA_CPP, tuple(range(15)))
    a = proc(engines.launch_for(p15, model, hw(*(R3090,) * 15), workload)["llama.cpp"], "llama-server").argv
    assert len(flag(a, "--tensor-split").split(",")) == 15


def test_row_split_kv_on_the_main_gpu_the_command_names():
    from gpuplan.perf.memory import device_memory

    plan, model, hardware, workload = CASES["row_split_mixed_3060_4090"]
    a = proc(launch("row_split_mixed_3060_4090")["llama.cpp"], "llama-server").argv
    main = int(flag(a, "--main-gpu"))
    mem = device_memory(model, hardware, plan, workload)
    assert main == 1  # the 4090, the bigger card
    assert mem[main].kv_cache > 0 and mem[1 - main].kv_cache == 0


def test_llama_cpp_python_turns_off_logits_all_and_interrupts():
    py = proc(launch("two_replicas_8b")["llama-cpp-python"], "llama_cpp.server").argv
    assert flag(py, "--logits_all") == "false" and flag(py, "--interrupt_requests") == "False"


def test_context_above_the_trained_maximum_is_said():
    plan, model, hardware, workload = CASES["tp2_vllm_awq_70b"]
    wl = Workload(context=20000, users=2)  # the fixture's Llama 3 70B is trained to 8192
    cmds = engines.launch_for(plan, model, hardware, wl)
    reasons = engines.explain_unsupported(plan, model, hardware, wl)
    assert not {"vllm", "sglang", "tgi"} & set(cmds)
    assert "refuses to start" in reasons["vllm"] and "8192" in reasons["sglang"]
    plan, model, hardware, _ = CASES["single_4090_llama3_8b_q4km"]
    text = engines.launch_for(plan, model, hardware, Workload(context=20000))["llama.cpp"].text
    assert "above Meta-Llama-3-8B-Instruct's trained maximum of 8192" in text


def test_vllm_multinode_says_ray_is_not_installed():
    text = launch("multinode_405b_fp8_2x8_h100")["vllm"].text
    assert "`pip install ray`" in text and "every node" in text


def test_uneven_pipeline_split_for_sglang_and_vllm():
    cmds = launch("sglang_vllm_uneven_pipeline_awq_70b")
    assert proc(cmds["sglang"], "sglang").env["SGLANG_PP_LAYER_PARTITION"] == "48,32"
    assert proc(cmds["vllm"], "vllm serve").env["VLLM_PP_LAYER_PARTITION"] == "48,32"


def test_tgi_replicas_do_not_collide_and_requests_queue():
    cmd = launch("tgi_two_replicas_awq_8b")["tgi"]
    ps = [p.argv for p in cmd.processes]
    for f in ("--port", "--master-port", "--shard-uds-path", "--prometheus-port"):
        assert len({flag(a, f) for a in ps}) == 2, f
    assert all(int(flag(a, "--max-concurrent-requests")) >= 20 for a in ps)
    assert "maintenance mode" in cmd.text and "429" in cmd.text


def test_tabbyapi_exl2_branch_and_replica_ports():
    plan, model, hardware, workload = CASES["exl2_2x3090_gpu_split"]
    one = engines.launch_for(plan, model, hardware, workload)["exllamav2"]
    cfg = yaml.safe_load(one.files["tabbyAPI/config.yml"])
    assert cfg["model"]["gpu_split"] == [22.4, 18.4] and cfg["model"]["cache_mode"] == "Q4"
    assert cfg["model"]["backend"] == "exllamav2" and "--branch exl2-checkpoint" in one.text
    reps = Plan(Split.NONE, Engine.EXLLAMAV2, (0,), replicas=2)
    two = engines.launch_for(reps, model, hw(R3090, R3090), workload)["exllamav2"]
    ports = [yaml.safe_load(b)["network"]["port"] for b in two.files.values()]
    assert ports == [5000, 5001]


def test_sycl_commands_pin_a_device():
    cmd = launch("arc_a770_sycl_8b")["llama.cpp"]
    a = proc(cmd, "llama-server")
    assert a.env["ONEAPI_DEVICE_SELECTOR"] == "level_zero:0" and flag(a.argv, "-dev") == "SYCL0"


def test_mixed_nvidia_cards_use_pci_bus_order():
    for eng, cmd in launch("layer_split_uneven_4090_3060").items():
        for p in cmd.processes:
            if "CUDA_VISIBLE_DEVICES" in p.env:
                assert p.env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID", eng


def test_every_engine_binds_loopback():
    for name in CASES:
        for eng, cmd in launch(name).items():
            for p in cmd.processes:
                host = next((p.argv[i + 1] for i, a in enumerate(p.argv)
                             if a in ("--host", "--hostname", "--server-name")), None)
                if p.argv[:2] in (["ollama", "serve"], ["ollama", "create"]):
                    host = p.env["OLLAMA_HOST"].split(":")[0]
                elif p.argv[0] in ("ray", "git") or p.argv[:2] == ["python", "main.py"]:
                    continue
                assert host == "127.0.0.1", (name, eng, p.argv)
            for body in cmd.files.values():
                for cfg in yaml.safe_load_all(body):  # a Kubernetes manifest has several documents
                    if "network" in (cfg or {}):
                        assert cfg["network"]["host"] == "127.0.0.1"


def test_llama_cpp_tensor_split_mode_is_not_called_missing():
    cmd = launch("row_split_2x3090", split=Split.TENSOR)["llama.cpp"]
    assert flag(proc(cmd, "llama-server").argv, "-sm") == "tensor" and "EXPERIMENTAL" in cmd.text
    assert "no true tensor parallelism" not in cmd.text


def test_no_vllm_gguf_comment_in_llama_cpp_blocks():
    for name in CASES:
        for eng in ("llama.cpp", "llama-cpp-python", "ollama"):
            cmd = launch(name).get(eng)
            assert cmd is None or "vLLM" not in cmd.text


def test_moe_pattern_matches_what_cpu_moe_matches():
    import re

    a = proc(launch("moe_experts_on_host_qwen3_30b")["llama.cpp"], "llama-server").argv
    pattern = flag(a, "-ot").split("=")[0]
    for t in ("blk.0.ffn_up_exps.weight", "blk.3.ffn_gate_exps.weight", "blk.9.ffn_down_chexps.weight",
              "blk.1.ffn_gate_up_exps.weight"):
        assert re.search(pattern, t), t
    for t in ("blk.0.ffn_up_shexp.weight", "blk.0.ffn_gate_inp.weight", "blk.0.attn_q.weight"):
        assert not re.search(pattern, t), t
