"""Each engine's memory rules, one test per defect of issue 13 (and the MoE placement of issue 9),
on gpuplan's own numbers; tests/test_memory_llama_cpp.py checks the same rules against the real
llama.cpp. Figures quoted from issue 13's check against llama-cpp-python 0.3.36."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import answers
from gpuplan import catalog
from gpuplan.cli import app
from gpuplan.errors import InputError
from gpuplan.perf import layout
from gpuplan.perf.engine_profiles import profiles
from gpuplan.perf.memory import device_memory, experts_on_host_layers, max_context
from gpuplan.perf.weights import estimate_weights
from gpuplan.sources.hardware import parse_hardware
from gpuplan.sources.resolve import resolve_model
from gpuplan.types import Engine, Plan, Split, Workload

MIB, GIB = 2**20, 2**30
runner = CliRunner()


def mem(mid, quant, hw, context=4096, users=1, engine=Engine.LLAMA_CPP, **plan):
    m = resolve_model(mid, quant)
    p = Plan(split=Split.NONE, engine=engine, device_ids=(0,), **plan)
    return m, device_memory(m, parse_hardware(hw), p, Workload(context=context, users=users))


# ---------------------------------------------------------------- profiles are data with sources
def test_every_engine_has_a_sourced_profile():
    ps = profiles()
    assert set(ps) >= {e.value for e in Engine}
    for p in ps.values():
        assert p.allocations and all(a.source.startswith("https://") for a in p.allocations)
        assert p.sources and all(s.startswith("https://") for s in p.sources.values())
    assert ps["llama-cpp-python"].defaults.flash_attn == "off" and ps["llama-cpp-python"].defaults.swa_full
    assert ps["llama.cpp"].defaults.flash_attn == "auto" and not ps["llama.cpp"].defaults.swa_full
    assert ps["ollama"].gpu_reserve_mib == 457 and ps["vllm"].defaults.block_size == 16


# ---------------------------------------------------------------- tied embeddings
@pytest.mark.parametrize("mid", ["meta-llama/Llama-3.2-1B", "google/gemma-2-9b-it", "google/gemma-3-270m-it"])
def test_tied_embedding_once_on_the_cpu(mid):
    """llama.cpp maps the one table once on the CPU (gpuplan used to add it again: +501 MiB on
    Llama 3.2 1B, +492 MiB on Gemma 2 9B)."""
    m, (cpu,) = mem(mid, "Q4_K_M", "cpu")
    assert catalog.model(mid).tied_embeddings
    assert cpu.weights == pytest.approx(m.weights.total_bytes)


def test_tied_embedding_duplicated_for_an_offloaded_output_layer():
    m, (gpu, host) = mem("meta-llama/Llama-3.2-1B", "Q4_0", "rtx-4090")
    w = m.weights
    assert host.weights == pytest.approx(w.embed_bytes)  # token_embd stays in RAM (get_rows)
    assert gpu.weights == pytest.approx(w.total_bytes)  # layers + the output copy of token_embd
    # on a Mac the two buffers map the same file pages: no copy
    _, ms = mem("meta-llama/Llama-3.2-1B", "Q4_0", "apple-m2-max-38c:64gb")
    assert sum(d.weights for d in ms) == pytest.approx(w.total_bytes)


# ---------------------------------------------------------------- sliding windows, per engine
def test_sliding_window_kv_per_engine():
    """Gemma 3 27B at 32K: llama-server keeps window + n_ubatch cells on the window layers,
    llama-cpp-python passes swa_full=true (every layer keeps the context), vLLM the window."""
    spec = catalog.model("google/gemma-3-27b-it")
    row = 2 * spec.n_kv_heads * spec.head_dim * 2
    n_full = spec.n_layers - spec.n_layers * 5 // 6 - (1 if spec.n_layers % 6 else 0)
    _, (srv, _) = mem("google/gemma-3-27b-it", "Q4_K_M", "rtx-4090", context=32768)
    _, (py, _) = mem("google/gemma-3-27b-it", "Q4_K_M", "rtx-4090", context=32768, engine=Engine.LLAMA_CPP_PYTHON)
    window_cells = -(-(spec.sliding_window + 512) // 256) * 256
    n_swa = sum(i % 6 < 5 for i in range(spec.n_layers))
    assert srv.kv_cache == row * ((spec.n_layers - n_swa) * 32768 + n_swa * window_cells)
    assert py.kv_cache == row * spec.n_layers * 32768
    assert py.kv_cache > 4 * srv.kv_cache
    _, (srv_full, _) = mem("google/gemma-3-27b-it", "Q4_K_M", "rtx-4090", context=32768, swa_full=True)
    assert srv_full.kv_cache == py.kv_cache  # --swa-full says so
    assert n_full >= 1


def test_mistral_v01_has_no_window_in_llama_cpp():
    """llama.cpp converts Mistral 7B v0.1 to its `llama` architecture, which applies no window:
    4.29 GB of KV at 32K (gpuplan said 0.54); vLLM honours the 4096 window."""
    _, (lc, _) = mem("mistralai/Mistral-7B-Instruct-v0.1", "Q4_K_M", "rtx-4090", context=32768)
    assert lc.kv_cache == pytest.approx(4.29e9, rel=0.01)
    _, (vl,) = mem("mistralai/Mistral-7B-Instruct-v0.1", "BF16", "rtx-4090", context=32768, engine=Engine.VLLM)
    assert vl.kv_cache < 0.6e9


# ---------------------------------------------------------------- compute buffers
def test_compute_buffer_with_and_without_flash_attention():
    """Llama 3 8B at 32K without flash attention: 2156 MiB of compute buffer (gpuplan said 0.35
    GB); llama-cpp-python's default is off; no cap past 32K (8470 MiB for a 1B model at 128K)."""
    _, (on, _) = mem("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090", context=32768, flash_attention=True)
    _, (off, _) = mem("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090", context=32768, flash_attention=False)
    from gpuplan.perf.engine_profiles import gpu_context_bytes

    ctx = gpu_context_bytes(profiles()["llama.cpp"], catalog.device("rtx-4090"))
    assert (off.overhead - ctx) / MIB == pytest.approx(2156, rel=0.01)
    assert (on.overhead - ctx) / MIB == pytest.approx(267, rel=0.02)
    _, (py, _) = mem("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090", context=32768, engine=Engine.LLAMA_CPP_PYTHON)
    assert py.overhead == off.overhead
    _, (cpu,) = mem("meta-llama/Llama-3.2-1B", "Q4_0", "cpu", context=131072, flash_attention=False)
    assert cpu.overhead / MIB == pytest.approx(8470 + 0.5, rel=0.01)


def test_moe_compute_buffer_counts_active_experts():
    """Mixtral at 32K with flash attention: one intermediate per active expert, 2 x 14336 wide."""
    _, (cpu,) = mem("mistralai/Mixtral-8x7B-v0.1", "Q4_K_M", "cpu", context=32768, flash_attention=True)
    assert (cpu.overhead / MIB) == pytest.approx(232.1, rel=0.01)


# ---------------------------------------------------------------- smaller items
def test_context_padded_to_256_and_max_context_a_multiple():
    _, (a, _) = mem("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090", context=1000)
    _, (b, _) = mem("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090", context=1024)
    assert a.kv_cache == b.kv_cache
    m = resolve_model("meta-llama/Llama-3.1-8B", "Q8_0")
    hw = parse_hardware("rtx-3060-12gb")
    for eng in (Engine.LLAMA_CPP, Engine.LLAMA_CPP_PYTHON, Engine.OLLAMA):
        mc = max_context(m, hw, Plan(split=Split.NONE, engine=eng, device_ids=(0,)), Workload())
        assert mc % 256 == 0 and 0 < mc < m.spec.max_context
        over = device_memory(m, hw, Plan(split=Split.NONE, engine=eng, device_ids=(0,)), Workload(context=mc + 1))
        assert min(d.free for d in over) < 0
    mv = max_context(resolve_model("meta-llama/Llama-3.1-8B", "BF16"), parse_hardware("rtx-4090"),
                     Plan(split=Split.NONE, engine=Engine.VLLM, device_ids=(0,)), Workload())
    assert mv % 16 == 0  # vLLM pages 16-token blocks


def test_output_buffer_and_llama_cpp_python_scores():
    spec = catalog.model("Qwen/Qwen2.5-32B-Instruct")
    _, srv = mem("Qwen/Qwen2.5-32B-Instruct", "Q4_K_M", "rtx-4090", context=32768)
    _, py = mem("Qwen/Qwen2.5-32B-Instruct", "Q4_K_M", "rtx-4090", context=32768, engine=Engine.LLAMA_CPP_PYTHON)
    scores = 32768 * spec.vocab_size * 4  # logits_all: n_ctx x n_vocab float32 in RAM (18.6 GiB)
    assert scores / GIB == pytest.approx(18.6, abs=0.1)
    assert py[-1].overhead - srv[-1].overhead >= scores


def test_cpu_repack_copy_reported():
    """An 8B Q4_0 file on AVX2: llama.cpp keeps a CPU_REPACK copy of 3.7 GB beside the mapped file."""
    m, (cpu,) = mem("meta-llama/Meta-Llama-3-8B", "Q4_0", "cpu")
    assert cpu.repacked / 1e9 == pytest.approx(3.93, abs=0.05)  # every matrix but token_embd
    assert cpu.weights == pytest.approx(m.weights.total_bytes)
    _, (off,) = mem("meta-llama/Meta-Llama-3-8B", "Q4_0", "cpu", repack=False)
    assert off.repacked == 0
    _, (q8,) = mem("meta-llama/Meta-Llama-3-8B", "Q8_0", "cpu")
    assert q8.repacked == 0  # no x86 interleaved kernel for Q8_0


def test_q2_k_file_type_and_k_aliases():
    spec = catalog.model("meta-llama/Meta-Llama-3-8B")
    w = estimate_weights(spec, catalog.quant("Q2_K"))
    from gpuplan.sources.tensors import param_count

    assert 8 * w.total_bytes / param_count(spec)[0] == pytest.approx(3.16, abs=0.02)
    for alias, mix in (("Q4_K", "Q4_K_M"), ("Q3_K", "Q3_K_M"), ("Q5_K", "Q5_K_M")):
        assert estimate_weights(spec, catalog.quant(alias)).total_bytes == estimate_weights(spec, catalog.quant(mix)).total_bytes
    with pytest.raises(InputError, match="not a GGUF file type"):
        estimate_weights(spec, catalog.quant("Q8_K"))


# ---------------------------------------------------------------- paged engines and Ollama
def test_vllm_reserves_by_gpu_memory_utilization():
    _, (d90,) = mem("meta-llama/Llama-3.1-8B", "BF16", "rtx-4090", engine=Engine.VLLM)
    _, (d50,) = mem("meta-llama/Llama-3.1-8B", "BF16", "rtx-4090", engine=Engine.VLLM, gpu_memory_utilization=0.5)
    assert d50.overhead - d90.overhead == pytest.approx(0.4 * d90.capacity)
    r = answers.fit("meta-llama/Llama-3.1-8B", "rtx-4090", quant="BF16", context=8192, gpu_memory_utilization=0.95,
                    engine="vllm")
    assert r["engine_settings"]["gpu_memory_utilization"] == 0.95 and "gpu_memory_utilization" not in r["engine_defaults"]


def test_ollama_keeps_its_minimum_per_gpu():
    _, (srv, _) = mem("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090")
    _, (oll, _) = mem("meta-llama/Meta-Llama-3-8B", "Q4_K_M", "rtx-4090", engine=Engine.OLLAMA)
    assert (oll.overhead - srv.overhead) / MIB == pytest.approx(457, abs=1)


# ---------------------------------------------------------------- MoE placement (issue 9 Build 3)
def test_n_cpu_moe_keeps_the_first_layers_experts_in_ram():
    m = resolve_model("Qwen/Qwen3-30B-A3B", "Q4_K_M")
    hw = parse_hardware("rtx-4080")
    p = Plan(split=Split.NONE, engine=Engine.LLAMA_CPP, device_ids=(0,), n_cpu_moe=10)
    assert experts_on_host_layers(m.spec, p) == set(range(10))
    gpu, host = device_memory(m, hw, p, Workload(context=8192))
    moved = sum(m.weights.layer_expert_bytes[:10])
    assert host.weights == pytest.approx(m.weights.embed_bytes + moved)
    full = device_memory(m, hw, Plan(split=Split.NONE, engine=Engine.LLAMA_CPP, device_ids=(0,)), Workload(context=8192))
    assert gpu.weights == pytest.approx(full[0].weights - moved)


def test_planner_fills_a_16gb_card_with_n_cpu_moe():
    """Qwen3-30B-A3B on a 16 GB card: --cpu-moe leaves most of the card empty; the planner picks
    --n-cpu-moe N with the fewest layers' experts in RAM that fit."""
    r = answers.plan("Qwen/Qwen3-30B-A3B", "rtx-4080", quant="Q4_K_M", context=8192)
    assert r["fits"] and "experts of" in r["plan"]["strategy"]
    gpu = r["memory"][0]
    assert gpu["total_gb"] > 0.85 * gpu["capacity_gb"]
    all_host = [a for a in r["alternatives"] if a["plan"]["experts_on_host"]]
    assert all_host and r["decode_tok_s"] > 1.5 * all_host[0]["decode_tok_s"]
    assert all_host[0]["memory"][0]["total_gb"] < 0.4 * gpu["capacity_gb"]


def test_experts_in_ram_read_only_the_active_share():
    """Mixtral with 12 layers on the GPU and the rest in RAM: the RAM part holds the experts as
    expert bytes (read at the active share), not as dense bytes read whole every token."""
    m = resolve_model("mistralai/Mixtral-8x7B-v0.1", "Q4_K_M")
    hw = parse_hardware("rtx-4090 + ddr5-6000-2ch")
    p = Plan(split=Split.NONE, engine=Engine.LLAMA_CPP, device_ids=(0,), gpu_layers=12)
    host = [x for x in layout.parts(m, hw, p) if x.on_host]
    assert len(host) == 1 and host[0].expert_bytes == pytest.approx(sum(m.weights.layer_expert_bytes[:20]))
    from gpuplan.perf import speed

    assert speed.decode(m, hw, p, depth=128, n_gen=64).value > 8  # was about 3.5 tok/s


# ---------------------------------------------------------------- options and the answer naming its defaults
def test_fit_json_names_the_engine_defaults_it_assumed():
    r = runner.invoke(app, ["fit", "meta-llama/Meta-Llama-3-8B", "--quant", "Q4_K_M", "--gpus", "rtx-4090", "--json"])
    d = json.loads(r.stdout)
    assert set(d["engine_defaults"]) >= {"flash_attn", "swa_full", "n_ubatch"}
    assert d["engine_settings"]["flash_attn"] is True and d["engine_settings"]["ctx_multiple"] == 256
    r = runner.invoke(app, ["fit", "meta-llama/Meta-Llama-3-8B", "--quant", "Q4_K_M", "--gpus", "rtx-4090", "--json",
                            "--flash-attn", "off", "--ubatch", "1024", "--no-swa-full"])
    d2 = json.loads(r.stdout)
    assert not {"flash_attn", "n_ubatch", "swa_full"} & set(d2["engine_defaults"])
    assert d2["devices"][0]["overhead_gb"] > d["devices"][0]["overhead_gb"]
    text = runner.invoke(app, ["fit", "meta-llama/Meta-Llama-3-8B", "--quant", "Q4_K_M", "--gpus", "rtx-4090"]).stdout
    assert "assumed engine defaults" in text


def test_plan_takes_kv_and_engine_options():
    r = answers.plan("meta-llama/Meta-Llama-3-8B", "rtx-4090", quant="Q4_K_M", context=16384, kv="q8_0", flash_attn="on")
    assert r["plan"]["kv_type"] == "q8_0" and r["engine_settings"]["flash_attn"] is True
    assert "flash_attn" not in r["engine_defaults"]


@pytest.mark.parametrize("args, needle", [
    (["--flash-attn", "yes"], "on, off, auto"), (["--ubatch", "0"], "1 to 65,536"),
    (["--gpu-memory-utilization", "1.5"], "0.05 to 1")])
def test_bad_engine_options_exit_2(args, needle, capsys):
    import sys

    from gpuplan.cli import main

    argv = ["gpuplan", "fit", "meta-llama/Meta-Llama-3-8B", "--gpus", "rtx-4090", *args]
    old = sys.argv
    sys.argv = argv
    try:
        with pytest.raises(SystemExit) as e:
            main()
    finally:
        sys.argv = old
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------- checkpoint formats (issue 12)
def _parts(mid, qid):
    from gpuplan.sources.tensors import tensor_list

    spec = catalog.model(mid)
    body = sum(t.n_elements for t in tensor_list(spec) if t.is_matrix and t.kind not in ("token_embd", "output", "ffn_gate_inp"))
    head = sum(t.n_elements for t in tensor_list(spec) if t.kind in ("token_embd", "output"))
    small = sum(t.n_elements for t in tensor_list(spec)) - body - head
    return spec, estimate_weights(spec, catalog.quant(qid)).total_bytes, body, head, small


@pytest.mark.parametrize("mid, gib", [("openai/gpt-oss-120b", 60.8), ("openai/gpt-oss-20b", 12.8)])
def test_mxfp4_checkpoints_match_the_model_card(mid, gib):
    """gpt-oss ships its routed experts in MXFP4 and the rest in BF16: 60.8 GiB and 12.8 GiB
    (gpt-oss model card, https://arxiv.org/abs/2508.10925, table 1)."""
    assert estimate_weights(catalog.model(mid), catalog.quant("MXFP4")).total_bytes / GIB == pytest.approx(gib, rel=0.01)


@pytest.mark.parametrize("qid, body_bits, head_bits", [("NVFP4", 4.5, 16), ("NF4", 4.5, 16), ("AWQ", 4.15625, 16),
                                                      ("GPTQ", 4.15625, 16), ("MLX-4bit", 4.5, 4.5), ("MLX-8bit", 8.5, 8.5)])
def test_checkpoint_formats_quantize_what_their_tools_quantize(qid, body_bits, head_bits):
    """NVFP4 (16-weight blocks, FP8 scale), bitsandbytes NF4 (fp32 absmax per 64), AWQ/GPTQ keep the
    embedding and lm_head in 16 bits; mlx_lm.convert quantizes them too."""
    spec, total, body, head, small = _parts("meta-llama/Meta-Llama-3-8B", qid)
    want = body * body_bits / 8 + head * head_bits / 8 + small * 2
    assert total == pytest.approx(want, rel=0.002)


def test_fp8_block_scaled_adds_one_scale_per_tile():
    spec, total, body, head, small = _parts("deepseek-ai/DeepSeek-V3", "FP8-block")
    _, per_tensor, *_ = _parts("deepseek-ai/DeepSeek-V3", "FP8")
    assert total > per_tensor and (total - per_tensor) / body == pytest.approx(4 / 128**2, rel=0.05)


def test_new_formats_pick_their_engines():
    r = answers.fit("meta-llama/Llama-3.1-8B", "apple-m4-pro-20c:48gb", quant="MLX-4bit", context=8192)
    assert r["engine"] == "mlx" and r["devices"][0]["overhead_gb"] > 0  # a prefill step's activations
    r = answers.plan("openai/gpt-oss-120b", "h100-sxm-80gb", quant="MXFP4", context=8192)
    assert r["fits"] and r["plan"]["engine"] == "vllm" and "vllm" in r["commands"]
    assert catalog.quant("mlx-4bit").id == "MLX-4bit" and catalog.quant("Q2_K_S").kind == "gguf-mix"
