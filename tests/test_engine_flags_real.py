"""Emitted commands checked by the engines' own argument parsers, or their sources.

- llama-server: the real binary (tests/test_engines_llama_server.py, every grid command).
- llama-cpp-python: its real CLI parser (llama_cpp.server.cli over its pydantic Settings).
- vLLM 0.33.0 and SGLang 0.5.23: their real parsers from the PyPI wheels (installed by
  scripts/test.sh from requirements/engine-parsers*.txt): vLLM's `serve` subcommand parser and
  AsyncEngineArgs.from_cli_args, SGLang's prepare_server_args; every value read back.
- TGI, Ollama, TabbyAPI: no parser runs here (a Rust launcher, a Go server, a git-only app), so
  the names are checked against tables transcribed from their sources at the commits in
  gpuplan.engines.facts.
"""

from __future__ import annotations

import argparse
import os
import shlex

import pytest
import yaml

from gpuplan import engines
from gpuplan.engines import facts, llama_cpp, sglang, tgi, vllm
from test_engines import CASES, hw, loaded, spec, A100, AWQ, FP16, FP8, L3_8B, L3_70B
from gpuplan.types import Engine, Plan, Split, Workload

L31_8B = spec("meta-llama/Llama-3.1-8B-Instruct", 32, 4096, 32, 8, 14336, 128256, 131072)
# plans for the safetensors engines, beyond the golden cases
HF_CASES = {
    "one_gpu_fp16": (Plan(Split.NONE, Engine.VLLM, (0,), slots=12), loaded(L31_8B, FP16, 16.1), hw(A100),
                     Workload(context=32768, users=40)),
    "tp2_fp8_online": (Plan(Split.TENSOR, Engine.VLLM, (0, 1), tp=2, kv_type="fp8"), loaded(L31_8B, FP8, 8.5),
                       hw(A100, A100), Workload(context=65536, users=8)),
    "pp2_uneven_awq": (Plan(Split.LAYER, Engine.VLLM, (0, 1), shares=(0.65, 0.35)), loaded(L3_70B, AWQ, 39.8),
                       hw(A100, A100), Workload(context=8192, users=4)),
    "dp4": (Plan(Split.NONE, Engine.VLLM, (0,), replicas=4), loaded(L31_8B, AWQ, 5.7),
            hw(A100, A100, A100, A100), Workload(context=16384, users=64)),
}


def all_cases():
    return {**CASES, **HF_CASES}


def launches():
    for name, (plan, model, h, wl) in sorted(all_cases().items()):
        yield name, (plan, model, h, wl), engines.launch_for(plan, model, h, wl)


def processes(cmd, prog: str):
    return [p for p in cmd.processes if prog in " ".join(p.argv)]


def value(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


def _need(module: str, why: str):
    try:
        return pytest.importorskip(module, reason=why)
    except pytest.skip.Exception:
        if os.environ.get("CI"):
            pytest.fail(f"{module} must be installed in CI: {why}")
        raise


# --- vLLM: the real parser -------------------------------------------------------------------
@pytest.fixture(scope="module")
def vllm_parser():
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")  # the CUDA wheel's platform check, on a CPU box
    _need("vllm", "pip install -r requirements/engine-parsers.txt and --no-deps vllm (scripts/test.sh)")
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.entrypoints.cli.serve import ServeSubcommand
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm")
    ServeSubcommand().subparser_init(parser.add_subparsers(dest="subparser"))

    import typing

    from vllm.config.cache import CacheConfig
    from vllm.config.parallel import DistributedExecutorBackend
    from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS

    def parse(argv):
        args = parser.parse_args(argv[1:])  # unknown flags and bad types exit here
        args.model = args.model_tag  # what `vllm serve` does before building the engine args
        ea = AsyncEngineArgs.from_cli_args(args)
        # value choices vLLM checks when it builds its config, not in argparse
        CacheConfig(cache_dtype=ea.kv_cache_dtype, gpu_memory_utilization=ea.gpu_memory_utilization)
        if ea.quantization is not None and ea.quantization not in QUANTIZATION_METHODS:
            raise ValueError(f"vLLM has no quantization {ea.quantization}")
        backend = ea.distributed_executor_backend
        if backend is not None and backend not in typing.get_args(DistributedExecutorBackend):
            raise ValueError(f"vLLM has no executor backend {backend}")
        return args, ea

    return parse


def test_vllm_commands_pass_the_real_parser(vllm_parser):
    seen = 0
    for name, (plan, model, h, wl), cmds in launches():
        if "vllm" not in cmds:
            continue
        for p in processes(cmds["vllm"], "vllm serve"):
            args, ea = vllm_parser(p.argv)
            assert ea.model == p.argv[2]
            assert ea.tensor_parallel_size == plan.tp
            assert ea.pipeline_parallel_size == vllm.pp_size(plan)
            assert ea.data_parallel_size == plan.replicas
            assert ea.max_model_len == wl.context
            assert ea.max_num_seqs == (plan.slots or -(-wl.users // plan.replicas))
            assert ea.kv_cache_dtype == {"f16": "auto", "fp8": "fp8"}[plan.kv_type]
            assert ea.quantization == vllm.quant_flag(model)
            assert (ea.distributed_executor_backend == "ray") == (h.nodes > 1)
            assert args.host == "127.0.0.1" and args.port == vllm.PORT
            seen += 1
    assert seen >= 6


def test_vllm_parser_rejects_what_it_must(vllm_parser):
    with pytest.raises(ValueError, match="Invalid kv_cache_dtype"):
        vllm_parser(["vllm", "serve", "m", "--kv-cache-dtype", "fp4_bogus"])
    with pytest.raises(SystemExit):
        vllm_parser(["vllm", "serve", "m", "--tensor-parallel-sizes", "2"])


# --- SGLang: the real parser -----------------------------------------------------------------
@pytest.fixture(scope="module")
def sglang_parse():
    _need("sglang", "pip install -r requirements/engine-parsers.txt and --no-deps sglang (scripts/test.sh)")
    from sglang.srt.server_args import prepare_server_args

    return prepare_server_args


def test_sglang_commands_pass_the_real_parser(sglang_parse):
    seen = 0
    for name, (plan, model, h, wl), cmds in launches():
        if "sglang" not in cmds:
            continue
        for p in processes(cmds["sglang"], "sglang.launch_server"):
            assert p.argv[:3] == ["python", "-m", "sglang.launch_server"]
            a = sglang_parse(p.argv[3:])
            assert a.model_path == value(p.argv, "--model-path")
            assert a.tp_size == plan.tp and a.pp_size == vllm.pp_size(plan) and a.dp_size == plan.replicas
            assert a.context_length == wl.context
            assert a.max_running_requests == (plan.slots or -(-wl.users // plan.replicas))
            assert a.kv_cache_dtype == {"f16": "auto", "fp8": "fp8_e4m3"}[plan.kv_type]
            assert a.mem_fraction_static == pytest.approx(0.85)
            assert a.host == "127.0.0.1" and a.port == sglang.PORT
            if h.nodes > 1:
                assert a.nnodes == h.nodes and a.dist_init_addr == "HEAD_IP:50000"
            part = p.env.get("SGLANG_PP_LAYER_PARTITION")
            if part:  # what get_pp_indices checks: one count per rank, adding up to the layers
                counts = [int(x) for x in part.split(",")]
                assert len(counts) == a.pp_size and sum(counts) == model.spec.n_layers
            seen += 1
    assert seen >= 6


def test_sglang_parser_rejects_what_it_must(sglang_parse):
    with pytest.raises(SystemExit):
        sglang_parse(["--model-path", "m", "--kv-cache-dtype", "int3"])


# --- TGI: the launcher's Args struct --------------------------------------------------------
# https://github.com/huggingface/text-generation-inference/blob/db931fcf42da018a3657580c64bf2720f167f9ab/launcher/src/main.rs
# (struct Args: clap long flags are the field names in kebab-case; enums Quantization, KVCacheDtype)
TGI_ARGS = (
    "model_id revision validation_workers sharded num_shard quantize speculate dtype kv_cache_dtype "
    "trust_remote_code max_concurrent_requests max_best_of max_stop_sequences max_top_n_tokens "
    "max_input_tokens max_input_length max_total_tokens waiting_served_ratio max_batch_prefill_tokens "
    "max_batch_total_tokens max_waiting_tokens max_batch_size cuda_graphs hostname port prometheus_port "
    "shard_uds_path master_addr master_port huggingface_hub_cache weights_cache_override "
    "disable_custom_kernels cuda_memory_fraction rope_scaling rope_factor json_output otlp_endpoint "
    "otlp_service_name cors_allow_origin api_key watermark_gamma watermark_delta ngrok ngrok_authtoken "
    "ngrok_edge tokenizer_config_path disable_grammar_support env max_client_batch_size lora_adapters "
    "usage_stats payload_limit enable_prefill_logprobs graceful_termination_timeout").split()
TGI_FLAGS = {"--" + a.replace("_", "-") for a in TGI_ARGS}
TGI_VALUES = {"--quantize": {"awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin", "bitsandbytes",
                             "bitsandbytes-nf4", "bitsandbytes-fp4", "fp8"},
              "--kv-cache-dtype": {"fp8_e4m3fn", "fp8_e5m2"}}


def test_tgi_flags_are_the_launchers():
    assert set(tgi.FLAGS.values()) <= TGI_FLAGS
    seen = 0
    for name, _, cmds in launches():
        for p in processes(cmds.get("tgi", engines.LaunchCommand(engine="tgi", processes=[])),
                           "text-generation-launcher"):
            flags = p.argv[1::2]
            assert set(flags) <= TGI_FLAGS, (name, p.argv)
            for f, allowed in TGI_VALUES.items():
                assert value(p.argv, f) in allowed | {None}, (name, f)
            seen += 1
    assert seen >= 3


# --- Ollama and TabbyAPI: names from their sources ------------------------------------------
def test_ollama_names_are_ollamas():
    env_names = set(facts.OLLAMA["env"].value) | {"CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER",
                                                  "HIP_VISIBLE_DEVICES", "ONEAPI_DEVICE_SELECTOR"}
    params = set(facts.OLLAMA["modelfile_parameters"].value)
    seen = 0
    for name, _, cmds in launches():
        if "ollama" not in cmds:
            continue
        for p in cmds["ollama"].processes:
            assert p.argv[0] == "ollama" and set(p.env) <= env_names, (name, p.env)
        for line in cmds["ollama"].files["Modelfile"].splitlines():
            word, *rest = line.split()
            assert word in ("FROM", "PARAMETER") and (word == "FROM" or rest[0] in params), line
        seen += 1
    assert seen >= 5


def test_tabbyapi_config_is_the_exl2_branchs():
    keys = facts.TABBYAPI["config_keys"].value
    seen = 0
    for name, _, cmds in launches():
        if "exllamav2" not in cmds:
            continue
        for body in cmds["exllamav2"].files.values():
            cfg = yaml.safe_load(body)
            for section, values in cfg.items():
                assert set(values) <= set(keys[section]), (name, section)
            assert cfg["model"]["cache_mode"] in facts.TABBYAPI["cache_modes"].value
            assert cfg["model"]["backend"] in facts.TABBYAPI["backends"].value
            assert cfg["model"]["cache_size"] % 256 == 0
            seen += 1
    assert seen >= 1


# --- llama-cpp-python: the real parser ------------------------------------------------------
def _real_parser():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (pip install '.[test]')")
    from llama_cpp.server.cli import add_args_from_model
    from llama_cpp.server.settings import Settings

    parser = argparse.ArgumentParser(exit_on_error=False)
    add_args_from_model(parser, Settings)
    return parser


def test_llama_cpp_python_flags_parse_with_real_parser():
    parser = _real_parser()
    import llama_cpp as lib
    from llama_cpp.server.cli import parse_model_from_args
    from llama_cpp.server.settings import ModelSettings, ServerSettings

    from gpuplan.engines import placement

    seen = 0
    for name, (plan, model, h, wl), cmds in launches():
        if "llama-cpp-python" not in cmds:
            continue
        for p in processes(cmds["llama-cpp-python"], "llama_cpp.server"):
            assert p.argv[:3] == ["python", "-m", "llama_cpp.server"]
            args = parser.parse_args(p.argv[3:])  # unknown flags raise
            m = parse_model_from_args(ModelSettings, args)
            server = parse_model_from_args(ServerSettings, args)
            place = placement.without_override(plan, model)
            assert m.n_gpu_layers == (-1 if place.ngl == placement.ALL else place.ngl)
            if len(plan.device_ids) > 1 and plan.split == Split.LAYER:
                assert m.tensor_split == [float(c) for c in place.slots]
                assert m.split_mode == lib.LLAMA_SPLIT_MODE_LAYER
            if plan.split == Split.ROW:
                assert m.split_mode == lib.LLAMA_SPLIT_MODE_ROW
            if plan.kv_type == "q8_0":
                assert m.type_k == m.type_v == lib.GGML_TYPE_Q8_0
            assert m.flash_attn is True and m.n_ctx == wl.context
            assert m.logits_all is False and server.interrupt_requests is False
            assert server.host == "127.0.0.1"
            seen += 1
    assert seen >= 5


def test_ggml_type_table_matches_library():
    _real_parser()
    import llama_cpp as lib

    checked = [n for n in llama_cpp.GGML_TYPE if hasattr(lib, f"GGML_TYPE_{n.upper()}")]
    assert {"f16", "q8_0", "q4_0"} <= set(checked)  # bf16 (30) is not exported by the bindings
    for name in checked:
        assert getattr(lib, f"GGML_TYPE_{name.upper()}") == llama_cpp.GGML_TYPE[name]
    for name, val in llama_cpp.SPLIT_MODE.items():
        if hasattr(lib, f"LLAMA_SPLIT_MODE_{name.upper()}"):
            assert getattr(lib, f"LLAMA_SPLIT_MODE_{name.upper()}") == val


def test_real_parser_rejects_llama_server_spelling():
    parser = _real_parser()
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parser.parse_args(["--model", "m.gguf", "--tensor-split", "1,1"])


def test_llama_cpp_facts_match_the_vendored_source():
    """The -ot expert pattern is upstream's LLM_FFN_EXPS_REGEX and the device limits are the
    source's, read from the llama.cpp that scripts/build_llama_cpp.sh unpacked."""
    from gpuplan.engines import binaries

    d = binaries.bin_dir()
    src = d.parent / "src" / f"llama_cpp_python-{binaries.llama_cpp_version()}" / "vendor" / "llama.cpp" if d else None
    if src is None or not (src / "common" / "common.h").exists():
        if os.environ.get("CI"):
            pytest.fail(f"vendored llama.cpp source missing under {src}")
        pytest.skip(f"vendored llama.cpp source not unpacked ({src}); run scripts/build_llama_cpp.sh")
    common = (src / "common" / "common.h").read_text()
    regex = facts.LLAMA_SERVER["cpu_moe_regex"].value
    assert f'LLM_FFN_EXPS_REGEX = "{regex.replace(chr(92), chr(92) * 2)}"' in common
    assert "return 16;" in (src / "src" / "llama.cpp").read_text().split("llama_max_devices(void)")[1][:40]
    assert "#define GGML_SCHED_MAX_BACKENDS 16" in (src / "ggml" / "src" / "ggml-backend.cpp").read_text()
    arg = (src / "common" / "arg.cpp").read_text()
    assert "split_arg.size() >= llama_max_devices()" in arg
    assert '"- tensor: split weights and KV across GPUs (parallelized, EXPERIMENTAL)' in arg


def test_commands_render_with_shlex():
    for name, _, cmds in launches():
        for cmd in cmds.values():
            for p in cmd.processes:
                assert shlex.split(p.shell())[-len(p.argv):] == p.argv


# --- the serving answer's own command (plan with latency targets) ----------------------------
SEQ_FLAG = {"vllm": "--max-num-seqs", "sglang": "--max-running-requests", "lmdeploy": "--max-batch-size",
            "tensorrt-llm": "--max_batch_size"}


def _serving(gpus: str, **kw):
    from gpuplan import api
    from gpuplan.requests import PlanRequest

    req = PlanRequest.parse("test", model="meta-llama/Llama-3.1-8B-Instruct", gpus=gpus, ttft="2s", tpot="50ms",
                            context=8192, **kw)
    return api.plan(req).serving


@pytest.mark.parametrize("gpus,engine", [("2x a100-sxm-80gb", None), ("2x a100-sxm-80gb", "vllm"),
                                         ("1x h100-sxm-80gb", "sglang"), ("4x l40s", "vllm"),
                                         ("4x l40s", "tensorrt-llm")])
def test_the_serving_answer_carries_a_command_that_admits_the_load_it_found(gpus, engine, vllm_parser, sglang_parse):
    """With targets, the plan's serving section carries the command for its best candidate, and
    that command lets the engine run as many sequences per replica as the simulator found the
    candidate holds (not the one user the interactive plan was sized for); vLLM and SGLang
    commands go through their real parsers. A named --engine is the only one compared."""
    sv = _serving(gpus, **({"engine": engine} if engine else {}))
    best = sv.candidates[sv.best]
    if engine:
        assert {c.engine for c in sv.candidates} == {engine}
    assert list(sv.launch) == [best.engine] and best.max_users > 8
    want = -(-best.max_users // best.replicas)
    procs = sv.launch[best.engine].processes
    assert len(procs) >= 1
    for p in procs:
        assert value(p.argv, SEQ_FLAG[best.engine]) == str(want), p.argv
        if best.engine == "vllm":
            _, ea = vllm_parser(p.argv)
            assert (ea.max_num_seqs, ea.tensor_parallel_size) == (want, best.tp)
        elif best.engine == "sglang":
            args = sglang_parse(p.argv[p.argv.index("sglang.launch_server") + 1:])
            assert (args.max_running_requests, args.tp_size) == (want, best.tp)
