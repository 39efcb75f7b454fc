"""The llama.cpp binaries scripts/build_llama_cpp.sh builds are there and work: llama-server
reports its build, registers rpc-server processes as devices, and rejects what it must."""

from __future__ import annotations

import llama_rpc


def test_llama_server_and_bench_report_their_build():
    for name in ("llama-server", "llama-bench"):
        out = llama_rpc.run([str(llama_rpc.require(name)), "--version"], timeout=30).stdout
        assert "version:" in out and "built with" in out, out


def test_rpc_servers_are_devices():
    server = llama_rpc.require("llama-server")
    with llama_rpc.rpc_devices(2) as eps:
        out = llama_rpc.run([str(server), "--rpc", ",".join(eps), "--list-devices"], timeout=30).stdout
    for i, ep in enumerate(eps):
        assert f"RPC{i}: {ep}" in out, out


def test_unknown_flag_and_bad_value_are_told_apart():
    server = str(llama_rpc.require("llama-server"))
    r = llama_rpc.run([server, "-m", "none.gguf", "--no-such-flag"], timeout=30)
    assert "error: invalid argument: --no-such-flag" in r.stdout
    r = llama_rpc.run([server, "-m", "none.gguf", "-ctk", "q9"], timeout=30)
    assert r.returncode != 0 and 'error while handling argument "-ctk"' in r.stdout
