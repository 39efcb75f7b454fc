"""Refresh docs/screenshot.png: start `gpuplan serve`, open the page in Debian's Chromium with
Playwright, plan the README's example and save the page. The browser test never writes there.

    python scripts/screenshot.py [--out docs/screenshot.png]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "model=meta-llama%2FMeta-Llama-3-8B&quant=Q4_K_M&gpus=2x+rtx-3090&context=16384&users=2"


def main() -> None:
    import httpx
    from playwright.sync_api import sync_playwright

    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshot.png"))
    ap.add_argument("--chromium", default=os.environ.get("GPUPLAN_CHROMIUM", "/usr/bin/chromium"))
    a = ap.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), GPUPLAN_CALIBRATION="")
    proc = subprocess.Popen([sys.executable, "-m", "gpuplan.cli", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                if httpx.get(base + "/api/catalog/quants", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=a.chromium, args=["--headless", "--no-sandbox", "--disable-gpu"])
            page = b.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"{base}/?{QUERY}")
            for c in ("chart-gpus", "chart-context", "chart-users", "chart-builds"):
                page.wait_for_selector(f"#{c} .main-svg", state="attached", timeout=60_000)
            page.screenshot(path=a.out, full_page=True)
            b.close()
        print(f"wrote {a.out}")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
