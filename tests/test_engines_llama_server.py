"""Every llama-server command of the grid (test_engines_grid.py) checked by the real llama-server
built from llama-cpp-python's vendored llama.cpp (scripts/build_llama_cpp.sh):

- each passes its argument parser: the command runs with `--list-devices` appended, which exits
  once every argument before it was handled (unknown flags and bad values fail there); on a CPU
  build the only failure allowed is a device this machine does not have (-dev SYCL0);
- the CPU plans start and answer one request;
- every layer split, run over local rpc-server processes as its GPUs, puts each layer on the
  device the plan's memory table says (llama-server's own "layer N assigned to device" log).
"""

from __future__ import annotations

import queue
import re
import shlex
import subprocess
import threading
import time

import httpx
import pytest

import llama_rpc
from test_engines_grid import GEMMA, gemma_path, grid, model, server_argv
from gpuplan.engines import placement
from gpuplan.types import Engine, Plan, Split

pytestmark = pytest.mark.e2e
LISTENING = "llama_server: listening on"
DEVICE_ONLY = re.compile(r'error while handling argument "(-dev|--device)": invalid device')


def _gemma_rows():
    return [r for r in grid() if r[2].label == model(GEMMA).label]


def _parse_check(server: str, argv: list[str]) -> str | None:
    """None when llama-server's parser accepts argv; else its error line."""
    r = llama_rpc.run([server, *argv[1:], "--list-devices"], timeout=60)
    if r.returncode == 0 and "Available devices" in r.stdout:
        return None
    if DEVICE_ONLY.search(r.stdout):
        return None  # a device this CPU build does not have: expected, told apart from bad flags
    err = [ln for ln in r.stdout.splitlines() if "error" in ln.lower()]
    return (err[0] if err else r.stdout[-500:]) + "  <- " + shlex.join(argv)


def test_every_grid_command_passes_the_real_parser():
    server = str(llama_rpc.require("llama-server"))
    path = gemma_path() or "/models/model.gguf"
    failures, n = [], 0
    for name, plan, m, hw, wl in grid():
        for argv in server_argv(plan, m, hw, wl, path):
            n += 1
            bad = _parse_check(server, argv)
            if bad:
                failures.append(f"{name}: {bad}")
    print(f"\n{n} llama-server commands through the real parser")
    assert n >= 60 and not failures, "\n".join(failures)


def test_device_only_failure_is_told_apart():
    server = str(llama_rpc.require("llama-server"))
    assert _parse_check(server, ["llama-server", "-m", "x.gguf", "-dev", "SYCL0"]) is None
    assert _parse_check(server, ["llama-server", "-m", "x.gguf", "-ts", "1,bogus"]) is not None
    assert _parse_check(server, ["llama-server", "-m", "x.gguf", "--tensor-splitt", "1,1"]) is not None


def _start(argv: list[str], port: int, extra: list[str] = ()) -> tuple[subprocess.Popen, list[str]]:
    a = list(argv)
    a[a.index("--port") + 1] = str(port)
    a[0] = str(llama_rpc.require("llama-server"))
    a += ["-t", "2", *extra]
    return subprocess.Popen(a, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), a


def _wait_log(proc: subprocess.Popen, until: str = LISTENING, timeout: float = 180) -> str:
    """llama-server's output up to the first line containing `until` (read on a thread, so a
    quiet server cannot block the wait past its timeout)."""
    lines: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [lines.put(ln) for ln in proc.stdout] + [lines.put(None)],
                     daemon=True).start()
    out, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        out.append(line)
        if until in line:
            return "".join(out)
    raise AssertionError(f"llama-server did not log '{until}':\n" + "".join(out)[-3000:])


def _stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_cpu_plans_start_and_answer():
    llama_rpc.require("llama-server")
    rows = [r for r in _gemma_rows() if all(r[3].devices[i].kind == "cpu" for i in r[1].device_ids)]
    assert len(rows) >= 3
    seen = set()
    for name, plan, m, hw, wl in rows:
        for argv in server_argv(plan, m, hw, wl, gemma_path()):
            key = shlex.join(argv[1:])
            if key in seen:
                continue
            seen.add(key)
            port = llama_rpc.free_port()
            proc, a = _start(argv, port)
            try:
                _wait_log(proc)
                body = {"prompt": "The capital of France is", "max_tokens": 8, "temperature": 0}
                r = httpx.post(f"http://127.0.0.1:{port}/v1/completions", json=body, timeout=120)
                assert r.status_code == 200, (name, r.text)
                assert r.json()["usage"]["completion_tokens"] >= 1, (name, r.text)
                slots = httpx.get(f"http://127.0.0.1:{port}/slots", timeout=10)
                if slots.status_code == 200:  # one slot per planned sequence, each the plan's context
                    js = slots.json()
                    assert len(js) == int(a[a.index("--parallel") + 1]), name
                    assert js[0]["n_ctx"] >= wl.context, name
            finally:
                _stop(proc)
    print(f"\n{len(seen)} CPU plans started and answered")


LAYER = re.compile(r"layer\s+(\d+) assigned to device (\S+?),")
BUFFER = re.compile(r"load_tensors:\s+RPC\d+\[([\d.:]+)\] model buffer size")


def _placement(log: str, endpoints: list[str], n_layers: int) -> list[int]:
    """Repeating layers per RPC device from llama-server's log (the last pass: --fit logs a dry run
    first). llama.cpp names RPC devices RPC0, RPC1, ... in --rpc order."""
    where = {}
    for il, dev in LAYER.findall(log):
        where[int(il)] = dev
    counts = [0] * len(endpoints)
    for il in range(n_layers):
        dev = where.get(il, "CPU")
        if dev.startswith("RPC"):
            counts[int(dev[3:])] += 1
    return counts


def test_layer_placement_over_rpc_devices_equals_the_plan():
    llama_rpc.require("llama-server")
    rows = [r for r in _gemma_rows() if r[1].split in (Split.LAYER, Split.NONE)
            and any(r[3].devices[i].kind == "gpu" for i in r[1].device_ids)
            and (len(r[1].device_ids) > 1 or r[1].gpu_layers is not None)]
    assert any(len(r[1].device_ids) == 15 for r in rows) and any(r[1].gpu_layers is not None for r in rows)
    done = set()
    for name, plan, m, hw, wl in rows:
        argv = server_argv(plan, m, hw, wl, gemma_path())[0]
        key = shlex.join(argv)
        if key in done:
            continue
        done.add(key)
        k = len(plan.device_ids)
        with llama_rpc.rpc_devices(k) as eps:
            a = [x for x in argv]
            a[a.index("-c") + 1] = str(512 * int(a[a.index("--parallel") + 1]))  # small KV: placement only
            if "-dev" in a:  # SYCL cards pinned by name: the RPC devices stand in for them
                a[a.index("-dev") + 1] = ",".join(f"RPC{i}" for i in range(k))
            a = [a[0], "--rpc", ",".join(eps), *a[1:]]  # before -dev, which needs the devices registered
            proc, _ = _start(a, llama_rpc.free_port(), ["-v"])
            try:
                log = _wait_log(proc)
            finally:
                _stop(proc)
        got = _placement(log, eps, m.spec.n_layers)
        want = placement.plan_layers(plan, m)
        assert got == want, f"{name}: llama-server placed {got}, the plan {want}\n{shlex.join(argv)}"
        head = re.findall(r"tensor (output|token_embd)\.weight .* buffer type overridden to CPU", log)
        assert bool(head) == (plan.gpu_layers is not None and plan.gpu_layers > 0), name
        ngl = re.findall(r"offloaded (\d+)/(\d+) layers to GPU", log)[-1]
        assert int(ngl[1]) == m.spec.n_layers + 1
    print(f"\n{len(done)} layer placements over RPC devices equal the plan")
    assert len(done) >= 5


def test_sixteen_gpus_abort_so_llama_cpp_plans_stop_at_fifteen():
    """The fact behind refusing 16-GPU llama.cpp plans: over 16 devices llama-server aborts
    (GGML_SCHED_MAX_BACKENDS: 16 backends, the CPU is one), over 15 it starts."""
    g = model(GEMMA)
    for k, ok in ((16, False), (15, True)):
        with llama_rpc.rpc_devices(k) as eps:
            a = ["llama-server", "--rpc", ",".join(eps), "-m", gemma_path(), "-ngl", "999", "-c", "256",
                 "--parallel", "1", "--host", "127.0.0.1", "--port", "0"]
            proc, _ = _start(a, llama_rpc.free_port())
            try:
                log = _wait_log(proc, LISTENING if ok else "GGML_SCHED_MAX_BACKENDS")
            finally:
                _stop(proc)
        assert ("n_backends <= GGML_SCHED_MAX_BACKENDS" in log) != ok, log[-2000:]
    assert "at most 15 GPUs" in placement.unplaceable(Plan(Split.LAYER, Engine.LLAMA_CPP, tuple(range(16))), g)


def _tiny(tmp_path, **cfg):
    from gguf_writer import write_gguf
    from gpuplan.sources.hf_config import spec_from_config
    from gpuplan.sources.resolve import resolve_model

    base = dict(hidden_size=256, num_attention_heads=4, num_key_value_heads=2, head_dim=64,
                intermediate_size=512, vocab_size=128, max_position_embeddings=65536,
                tie_word_embeddings=False, model_type="llama", num_hidden_layers=12)
    base.update(cfg)
    path = tmp_path / f"tiny-{base['model_type']}-{base['num_hidden_layers']}.gguf"
    write_gguf(spec_from_config(base, "tiny", "tiny", "test"), path)
    return path, resolve_model(str(path))


def _run_over_rpc(argv: list[str], path, k: int) -> str:
    with llama_rpc.rpc_devices(k) as eps:
        a = [argv[0], "--rpc", ",".join(eps), *argv[1:]]
        a[a.index("-m") + 1] = str(path)
        a[a.index("-c") + 1] = str(256 * int(a[a.index("--parallel") + 1]))
        proc, _ = _start(a, llama_rpc.free_port(), ["-v"])
        try:
            return _wait_log(proc)
        finally:
            _stop(proc)


def test_untied_head_and_moe_experts_are_pinned_for_real(tmp_path):
    """With a separate output.weight (zero-data GGUFs written with the real shapes), -ot keeps
    the head in RAM when layers are offloaded, and the expert pattern sends every routed-expert
    tensor to the CPU, in the real llama-server."""
    from gpuplan import engines
    from gpuplan.sources.hardware import parse_hardware
    from gpuplan.types import Workload

    llama_rpc.require("llama-server")
    path, m = _tiny(tmp_path)
    wl = Workload(context=256)
    for plan, hw in ((Plan(Split.NONE, Engine.LLAMA_CPP, (0,), gpu_layers=5), parse_hardware("rtx-4090")),
                     (Plan(Split.LAYER, Engine.LLAMA_CPP, (0, 1), shares=(0.6, 0.4), gpu_layers=8),
                      parse_hardware("2x rtx-3090")),
                     (Plan(Split.LAYER, Engine.LLAMA_CPP, (0, 1, 2), shares=(0.5, 0.3, 0.2)),
                      parse_hardware("3x rtx-3090"))):
        argv = engines.launch_for(plan, m, hw, wl)["llama.cpp"].processes[0].argv
        log = _run_over_rpc(argv, path, len(plan.device_ids))
        assert _placement(log, [""] * len(plan.device_ids), m.spec.n_layers) == placement.plan_layers(plan, m)
        pinned = re.search(r"tensor output\.weight .* overridden to CPU", log)
        assert bool(pinned) == (plan.gpu_layers is not None), shlex.join(argv)
    path, m = _tiny(tmp_path, model_type="qwen3_moe", num_experts=8, num_experts_per_tok=2,
                    moe_intermediate_size=64, num_hidden_layers=4)
    plan = Plan(Split.NONE, Engine.LLAMA_CPP, (0,), experts_on_host=True)
    argv = engines.launch_for(plan, m, parse_hardware("rtx-4060-ti-8gb"), wl)["llama.cpp"].processes[0].argv
    log = _run_over_rpc(argv, path, 1)
    moved = set(re.findall(r"tensor (blk\.\d+\.ffn_\w+_exps\.weight) .* overridden to CPU", log))
    assert len(moved) == 3 * m.spec.n_layers, sorted(moved)
