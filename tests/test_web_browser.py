"""The page in a real browser: Debian's Chromium driven by Playwright against `gpuplan serve`.

Needs /usr/bin/chromium and the playwright Python package (never `playwright install`: the system
Chromium is used). Screenshots go to pytest's temporary directory; the tracked docs/screenshot.png
is refreshed only by scripts/screenshot.py.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("GPUPLAN_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
MODEL = "meta-llama/Meta-Llama-3-8B"
CHARTS = ("chart-gpus", "chart-context", "chart-users", "chart-builds")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server():
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium)")
    pytest.importorskip("playwright.sync_api", reason="the playwright Python package is not installed")
    import httpx

    port = _free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "gpuplan.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--log-level", "warning"], env=env, cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 30
        while True:
            try:
                if httpx.get(base + "/api/catalog/quants", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                out = proc.stdout.read().decode(errors="replace") if proc.poll() is not None else ""
                pytest.fail(f"gpuplan serve did not start: {out[-2000:]}")
            time.sleep(0.2)
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the process group we started (start_new_session)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    pg.outside = []  # any request off this machine: the page must work with no internet
    pg.route("**/*", lambda route: (route.continue_() if route.request.url.startswith(server)
                                    else (pg.outside.append(route.request.url), route.abort())))
    pg.js_errors = []
    pg.on("pageerror", lambda e: pg.js_errors.append(str(e)))
    yield pg
    ctx.close()


def _wait_charts(page):
    for c in CHARTS:
        page.wait_for_selector(f"#{c} .main-svg", state="attached", timeout=30_000)


def test_plan_in_browser(page, server, tmp_path):
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model-list option').length > 10", timeout=20_000)
    page.fill("#model", MODEL)
    page.select_option("#quant", "Q4_K_M")
    page.select_option("#preset", label="2x RTX 3090")
    page.fill("#context", "16384")
    page.fill("#users", "2")
    assert "2x rtx-3090" in page.text_content("#gpus-spec")
    page.click("#submit")
    page.wait_for_selector("#answer:not([hidden])", timeout=60_000)
    assert page.is_hidden("#error"), page.text_content("#error")
    verdict = page.text_content("#verdict")
    assert "Fits" in verdict, verdict
    decode = float(page.text_content("#num-decode-tok-s b").replace(",", ""))
    assert decode > 0
    assert page.locator("#memory .memrow").count() >= 2
    assert page.locator("#memory .bar .w").count() >= 2
    assert page.locator("#alternatives tr").count() >= 2
    assert page.locator("#commands pre").count() >= 1 and "llama" in page.text_content("#commands")
    _wait_charts(page)

    q = parse_qs(urlparse(page.url).query)
    assert q["model"] == [MODEL] and q["gpus"] == ["2x rtx-3090"] and q["context"] == ["16384"]
    assert q["quant"] == ["Q4_K_M"] and q["users"] == ["2"]
    page.screenshot(path=str(tmp_path / "plan.png"), full_page=True)

    page.reload()  # the URL alone restores the form and runs it
    page.wait_for_selector("#answer:not([hidden])", timeout=60_000)
    assert page.input_value("#model") == MODEL and page.input_value("#context") == "16384"
    assert page.input_value("#users") == "2" and "2x rtx-3090" in page.text_content("#gpus-spec")
    assert float(page.text_content("#num-decode-tok-s b").replace(",", "")) == decode
    _wait_charts(page)
    assert not page.outside, page.outside
    assert not page.js_errors, page.js_errors


def test_mixed_cards_and_link(page, server):
    page.goto(server + "/?model=meta-llama%2FMeta-Llama-3-70B&quant=Q4_K_M&gpus=rtx-4090%2Crtx-3060-12gb&context=4096")
    page.wait_for_selector("#answer:not([hidden]), #error:not([hidden])", timeout=60_000)
    assert page.locator(".gpu-row").count() == 2
    assert page.locator("#memory .memrow").count() >= 2
    assert page.text_content("#verdict")


def test_error_box(page, server):
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model-list option').length > 10", timeout=20_000)
    page.fill("#model", "no-such-model")
    page.click("#submit")
    page.wait_for_selector("#error:not([hidden])", timeout=20_000)
    assert "no-such-model" in page.text_content("#error")
    assert not page.js_errors, page.js_errors


def test_docs_page_offline(page, server):
    page.goto(server + "/docs")
    page.wait_for_selector(".swagger-ui .opblock", timeout=20_000)
    assert not page.outside, page.outside


def test_upload_config_json(page, server):
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model-list option').length > 10", timeout=20_000)
    page.select_option("#preset", label="1x RTX 4090")
    page.set_input_files("#model-file", str(ROOT / "tests" / "fixtures" / "configs" / "Meta-Llama-3-8B.json"))
    page.wait_for_selector("#inspected:not([hidden])", timeout=30_000)
    assert "llama" in page.text_content("#inspected")
    page.wait_for_function("document.getElementById('model').value.length > 0", timeout=30_000)
    assert page.input_value("#model") == MODEL  # recognised as the catalog model, then planned
    page.wait_for_selector("#answer:not([hidden])", timeout=60_000)
    assert "model=meta-llama" in page.url


def _chart(page, div: str) -> list[dict]:
    """The traces Plotly drew in a chart div (name, x, y)."""
    return page.evaluate(f"(document.getElementById('{div}').data || []).map(t => ({{name: t.name, x: t.x, y: t.y}}))")


def _num(page, sel: str) -> float:
    return float(page.text_content(sel).replace(",", ""))


def test_charts_answer_the_recommended_plans_question(page, server):
    """The charts are drawn for the plan the page recommends: same hardware, engine, split, context and
    users; the star on each chart is the plan's own figure; what a chart changes is written under it."""
    import httpx

    q = "model=meta-llama%2FMeta-Llama-3-8B&quant=Q4_K_M&gpus=2x+rtx-3090&link=nvlink-bridge-3090&context=16384&users=4"
    page.goto(server + "/?" + q)
    page.wait_for_selector("#answer:not([hidden])", timeout=60_000)
    _wait_charts(page)
    plan = httpx.get(server + "/api/plan?" + q, timeout=60).json()
    strategy, hardware, engine = plan["plan"]["strategy"], plan["plan"]["hardware"], plan["plan"]["engine"]
    head = page.text_content("#charts-for")
    assert strategy in head and hardware in head and engine in head and "16,384" in head
    for cap in ("#chart-context-note", "#chart-users-note"):
        assert strategy in page.text_content(cap) and hardware in page.text_content(cap)
    users = _chart(page, "chart-users")
    star = next(t for t in users if t["name"].startswith("recommended"))
    assert star["x"] == [4] and star["y"][0] == plan["throughput_tok_s"]
    assert _num(page, "#num-throughput-tok-s b") == pytest.approx(plan["throughput_tok_s"], abs=0.5)  # as shown
    total = next(t for t in users if t["name"] == "all users together")
    assert total["y"][total["x"].index(4)] == plan["throughput_tok_s"]  # the chart at the plan's users is the plan
    gpus = _chart(page, "chart-gpus")
    assert all("(llama.cpp)" in t["name"] for t in gpus if "one user" in t["name"])  # a GGUF: llama.cpp's splits
    assert not any("tensor parallel" in t["name"] for t in gpus)
    assert "NVLink" in page.text_content("#chart-gpus-note")
    ctx = _chart(page, "chart-context")
    assert 16384 in ctx[0]["x"]
    assert not page.js_errors, page.js_errors


def test_a_bridge_does_not_stick_when_the_gpus_change(page, server):
    page.goto(server + "/")
    page.wait_for_function("document.querySelectorAll('#model-list option').length > 10", timeout=20_000)
    page.select_option("#preset", label="2x RTX 3090 NVLink")
    assert page.input_value("#link") == "nvlink-bridge-3090" and page.is_hidden("#link-note")
    page.select_option(".gpu-row .gpu", "rtx-4090")
    assert page.input_value("#link") == ""  # back to automatic
    assert "nvlink-bridge-3090" in page.text_content("#link-note") and page.is_visible("#link-note")
    page.select_option("#preset", label="2x RTX 3090 NVLink")  # a fitting bridge stays
    page.fill(".gpu-row .count", "2")
    page.dispatch_event(".gpu-row .count", "input")
    assert page.input_value("#link") == "nvlink-bridge-3090"


def test_a_plan_that_does_not_fit_shows_no_speeds_and_stale_text_is_cleared(page, server):
    page.goto(server + "/?model=meta-llama%2FLlama-3.1-405B&quant=F16&gpus=rtx-3060-12gb")
    page.wait_for_selector("#answer:not([hidden])", timeout=60_000)
    assert "Does not fit" in page.text_content("#verdict")
    assert page.locator("#num-decode-tok-s").count() == 0 and page.locator("#num-throughput-tok-s").count() == 0
    assert "No speeds" in page.text_content("#numbers")
    page.wait_for_function("document.getElementById('chart-users').textContent.includes('no data')", timeout=60_000)
    assert "does not fit" in page.text_content("#chart-users-note")
    page.fill("#model", "meta-llama/Meta-Llama-3-8B")
    page.select_option("#quant", "Q4_K_M")
    page.click("#submit")
    page.wait_for_selector("#verdict.ok", timeout=60_000)
    _wait_charts(page)
    for c in CHARTS:
        assert "no data" not in page.text_content("#" + c), c
    assert _num(page, "#num-decode-tok-s b") > 0
    assert not page.js_errors, page.js_errors


def test_serving_targets_show_the_candidates_and_the_command_for_the_load(page, server):
    """With TTFT/TPOT targets the page shows the load each candidate holds and the command that
    starts the best one, its sequence limit set to that load (from the API's serving.launch)."""
    import httpx

    q = "model=meta-llama%2FLlama-3.1-8B-Instruct&gpus=2x+a100-sxm-80gb&context=8192&ttft=2s&tpot=50ms"
    page.goto(server + "/?" + q)
    page.wait_for_selector("#serving:not([hidden])", timeout=90_000)
    sv = httpx.get(server + "/api/plan?" + q, timeout=90).json()["serving"]
    best = sv["candidates"][sv["best"]]
    assert page.locator("#serving-candidates tr").count() == len(sv["candidates"]) + 1
    assert page.locator("#serving-candidates tr.best").count() == 1
    text = page.text_content("#serving-commands")
    assert best["strategy"] in text and best["engine"] in text
    assert sv["launch"][best["engine"]]["text"] in text
    assert not page.js_errors, page.js_errors
