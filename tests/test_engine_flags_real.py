"""Emitted flags checked against the engines' own argument definitions.

- llama-cpp-python: parsed by its real CLI parser (llama_cpp.server.cli.add_args_from_model
  over llama_cpp.server.settings.Settings), then validated into ModelSettings/ServerSettings.
- llama-server, vLLM, SGLang, TGI, Ollama, TabbyAPI: no parser can run here (no binary on
  PyPI / CUDA-only packages), so flags are checked against tables transcribed below, each
  with the URL (and version) it was read from.
"""

from __future__ import annotations

import argparse
import shlex

import pytest
import yaml

from gpuplan import engines
from gpuplan.engines import exllamav2, llama_cpp, ollama, sglang, tgi, vllm
from test_engines import CASES

# --- llama-server -----------------------------------------------------------------------
# https://github.com/ggml-org/llama.cpp/blob/master/tools/server/README.md
# (read at commit 00dc8057ab28c9cb4c79a6dd6dfce07fe779f63b). flag -> allowed values
# (None: any value).
KV = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
LLAMA_SERVER = {
    "-m": None, "--model": None, "-ngl": None, "--n-gpu-layers": None, "--gpu-layers": None,
    "-sm": ("none", "layer", "row", "tensor"), "--split-mode": ("none", "layer", "row", "tensor"),
    "-ts": None, "--tensor-split": None, "-mg": None, "--main-gpu": None,
    "-c": None, "--ctx-size": None, "-np": None, "--parallel": None,
    "-ctk": KV, "--cache-type-k": KV, "-ctv": KV, "--cache-type-v": KV,
    "-fa": ("on", "off", "auto"), "--flash-attn": ("on", "off", "auto"),
    "-ot": None, "--override-tensor": None, "--host": None, "--port": None,
    "-ncmoe": None, "--n-cpu-moe": None, "-ub": None, "--ubatch-size": None, "--swa-full": None,
    "-nr": None, "--no-repack": None,
}

# --- vLLM ---------------------------------------------------------------------------------
# https://github.com/vllm-project/vllm/blob/main/vllm/engine/arg_utils.py, read from the
# vllm 0.33.0 wheel (EngineArgs.add_cli_args); --port from vllm/entrypoints/common/cli_args.py;
# choices from vllm/config/cache.py (CacheDType), config/parallel.py
# (DistributedExecutorBackend), model_executor/layers/quantization/__init__.py.
VLLM = {
    "--tensor-parallel-size": None, "--pipeline-parallel-size": None,
    "--data-parallel-size": None, "--max-model-len": None, "--max-num-seqs": None,
    "--gpu-memory-utilization": None, "--kv-cache-dtype": ("auto", "float16", "bfloat16", "fp8",
                                                            "fp8_e4m3", "fp8_e5m2"),
    "--quantization": ("awq", "gptq", "fp8", "awq_marlin", "gptq_marlin", "compressed-tensors"),
    "--distributed-executor-backend": ("ray", "mp", "uni", "external_launcher"),
    "--port": None, "--host": None,
}

# --- SGLang -------------------------------------------------------------------------------
# https://github.com/sgl-project/sglang/blob/main/python/sglang/srt/server_args.py, read from
# the sglang 0.5.23 wheel (flags derive from fields in sglang/srt/arg_groups/fields/*.py).
SGLANG = {
    "--model-path": None, "--tp-size": None, "--dp-size": None, "--pp-size": None,
    "--context-length": None, "--mem-fraction-static": None, "--max-running-requests": None,
    "--kv-cache-dtype": ("auto", "fp8_e5m2", "fp8_e4m3", "bf16", "bfloat16"),
    "--quantization": ("awq", "gptq", "fp8"), "--nnodes": None, "--node-rank": None,
    "--dist-init-addr": None, "--port": None, "--host": None,
}

# --- TGI ----------------------------------------------------------------------------------
# https://github.com/huggingface/text-generation-inference/blob/main/docs/source/reference/launcher.md
TGI = {
    "--model-id": None, "--num-shard": None, "--max-total-tokens": None,
    "--max-concurrent-requests": None, "--kv-cache-dtype": ("fp8_e4m3fn", "fp8_e5m2"),
    "--quantize": ("awq", "compressed-tensors", "eetq", "exl2", "gptq", "marlin", "bitsandbytes",
                   "bitsandbytes-nf4", "bitsandbytes-fp4", "fp8"),
    "--port": None, "-p": None,
}

# --- Ollama / TabbyAPI --------------------------------------------------------------------
# https://github.com/ollama/ollama/blob/main/envconfig/config.go and docs/modelfile.md
OLLAMA_ENV = {"CUDA_VISIBLE_DEVICES", "OLLAMA_SCHED_SPREAD", "OLLAMA_NUM_PARALLEL",
              "OLLAMA_FLASH_ATTENTION", "OLLAMA_KV_CACHE_TYPE", "OLLAMA_HOST"}
OLLAMA_PARAMS = {"num_ctx", "num_gpu", "num_thread", "num_predict", "temperature"}
# https://github.com/theroyallab/tabbyAPI/blob/main/config_sample.yml
TABBY = {"network": {"host", "port"},
         "model": {"model_name", "max_seq_len", "max_batch_size", "cache_mode", "cache_size",
                   "tensor_parallel", "gpu_split_auto", "gpu_split", "autosplit_reserve"}}
TABBY_CACHE = {"FP16", "Q8", "Q6", "Q4"}


def all_commands():
    for name, (plan, model, hw, wl) in sorted(CASES.items()):
        yield name, engines.commands_for(plan, model, hw, wl)


def command_lines(text: str, prog: str) -> list[list[str]]:
    """argv (env assignments dropped) of every line running `prog`."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or prog not in line:
            continue
        argv = shlex.split(line)
        while "=" in argv[0] and not argv[0].startswith("-"):
            argv.pop(0)
        out.append(argv)
    return out


def check_table(argv: list[str], table: dict, skip: int) -> None:
    i = skip
    while i < len(argv):
        flag = argv[i]
        assert flag in table, f"{flag} is not a known flag: {shlex.join(argv)}"
        value = argv[i + 1]
        allowed = table[flag]
        assert allowed is None or value in allowed, f"{flag} {value} not in {allowed}"
        i += 2


def test_flag_tables_use_known_flags():
    assert set(llama_cpp.FLAGS.values()) <= set(LLAMA_SERVER)
    assert set(vllm.FLAGS.values()) <= set(VLLM)
    assert set(sglang.FLAGS.values()) <= set(SGLANG)
    assert set(tgi.FLAGS.values()) <= set(TGI)
    assert set(ollama.ENV.values()) <= OLLAMA_ENV and set(ollama.PARAMS.values()) <= OLLAMA_PARAMS
    assert set(exllamav2.CACHE_MODE.values()) <= TABBY_CACHE


@pytest.mark.parametrize("name,cmds", list(all_commands()))
def test_transcribed_flags(name, cmds):
    checks = {"llama.cpp": ("llama-server", LLAMA_SERVER, 1), "vllm": ("vllm serve", VLLM, 3),
              "sglang": ("sglang.launch_server", SGLANG, 3),
              "tgi": ("text-generation-launcher", TGI, 1)}
    for eng, (prog, table, skip) in checks.items():
        if eng in cmds:
            lines = command_lines(cmds[eng], prog)
            assert lines, f"{eng}: no {prog} line"
            for argv in lines:
                check_table(argv, table, skip)
    if "ollama" in cmds:
        for line in cmds["ollama"].splitlines():
            if line.endswith("ollama serve"):
                assert {t.split("=")[0] for t in shlex.split(line)[:-2]} <= OLLAMA_ENV
            if line.startswith("PARAMETER"):
                assert line.split()[1] in OLLAMA_PARAMS
    if "exllamav2" in cmds:
        cfg = yaml.safe_load("\n".join(ln for ln in cmds["exllamav2"].splitlines()
                                       if not ln.startswith("#")))
        for section, keys in cfg.items():
            assert set(keys) <= TABBY[section]
        assert cfg["model"]["cache_mode"] in TABBY_CACHE


# --- llama-cpp-python: the real parser ------------------------------------------------------
def _real_parser():
    pytest.importorskip("llama_cpp", reason="llama-cpp-python not installed (see /tmp/llama_build.log)")
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

    seen = 0
    for name, cmds in all_commands():
        if "llama-cpp-python" not in cmds:
            continue
        for argv in command_lines(cmds["llama-cpp-python"], "llama_cpp.server"):
            assert argv[:3] == ["python", "-m", "llama_cpp.server"]
            args = parser.parse_args(argv[3:])  # unknown flags raise SystemExit
            model = parse_model_from_args(ModelSettings, args)
            parse_model_from_args(ServerSettings, args)
            plan = CASES[name][0]
            assert model.n_gpu_layers == (-1 if plan.gpu_layers is None else plan.gpu_layers)
            if len(plan.device_ids) > 1:
                assert model.tensor_split == pytest.approx(list(plan.shares), abs=0.005)
                mode = {"row": lib.LLAMA_SPLIT_MODE_ROW}.get(plan.split.value,
                                                                    lib.LLAMA_SPLIT_MODE_LAYER)
                assert model.split_mode == mode
            if plan.kv_type == "q8_0":
                assert model.type_k == model.type_v == lib.GGML_TYPE_Q8_0
            assert model.flash_attn is True
            seen += 1
    assert seen >= 4


def test_ggml_type_table_matches_library():
    _real_parser()
    import llama_cpp as lib

    checked = [n for n in llama_cpp.GGML_TYPE if hasattr(lib, f"GGML_TYPE_{n.upper()}")]
    assert {"f16", "q8_0", "q4_0"} <= set(checked)  # bf16 (30) is not exported by the bindings
    for name in checked:
        assert getattr(lib, f"GGML_TYPE_{name.upper()}") == llama_cpp.GGML_TYPE[name]
    for name, value in llama_cpp.SPLIT_MODE.items():
        assert getattr(lib, f"LLAMA_SPLIT_MODE_{name.upper()}") == value


def test_real_parser_rejects_llama_server_spelling():
    parser = _real_parser()
    with pytest.raises((SystemExit, argparse.ArgumentError)):
        parser.parse_args(["--model", "m.gguf", "--tensor-split", "1,1"])
