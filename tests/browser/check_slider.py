"""Check in a real browser that notebook 03's β slider redraws its figure.

    pip install playwright            # a driver only: it uses the system's Chromium
    python tests/browser/check_slider.py [--chromium /usr/bin/chromium]

Starts JupyterLab on the repository, opens ``solutions/03_closed_form.ipynb`` in headless
Chromium, runs all cells, moves the slider with the keyboard and checks that the slider's value
and the figure under it both change. Screenshots go to ``browser_check/`` (not committed).
Not part of the test suite: it needs a browser, which CI does not have.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[2]
PORT, TOKEN = 8899, "rlhf-lab-check"


def start_lab() -> subprocess.Popen:
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={PORT}",
                            f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={ROOT}",
                            "--allow-root"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "TQDM_DISABLE": "1"})
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/status?token={TOKEN}", timeout=1)
            return lab
        except OSError:
            time.sleep(1)
    lab.kill()
    raise RuntimeError("JupyterLab did not start within 60 s")


def figure_hash(page) -> str | None:
    images = page.locator(".widget-output img, .jupyter-widgets-output-area img")
    return hashlib.sha1(images.last.get_attribute("src").encode()).hexdigest()[:12] \
        if images.count() else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    shots = ROOT / "browser_check"
    shots.mkdir(exist_ok=True)
    lab = start_lab()
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, headless=True,
                                        args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(f"http://127.0.0.1:{PORT}/lab/tree/solutions/03_closed_form.ipynb"
                      f"?token={TOKEN}")
            page.wait_for_selector(".jp-Notebook", timeout=120_000)
            time.sleep(5)
            page.click("text=Run", timeout=30_000)
            page.click("text=Run All Cells", timeout=30_000)
            page.wait_for_selector(".widget-hslider", timeout=300_000)
            time.sleep(10)
            page.locator(".widget-hslider").first.scroll_into_view_if_needed()
            time.sleep(3)
            value_before, figure_before = page.locator(".widget-readout").first.inner_text(), \
                figure_hash(page)
            page.screenshot(path=str(shots / "slider_before.png"))
            page.locator(".noUi-handle").first.focus()
            for _ in range(8):
                page.keyboard.press("ArrowRight")
                time.sleep(0.2)
            time.sleep(8)
            value_after, figure_after = page.locator(".widget-readout").first.inner_text(), \
                figure_hash(page)
            page.screenshot(path=str(shots / "slider_after.png"))
            browser.close()
    finally:
        lab.terminate()
    ok = None not in (figure_before, figure_after) and figure_before != figure_after \
        and value_before != value_after
    print(f"β {value_before} -> {value_after}; figure {figure_before} -> {figure_after}: "
          f"{'the slider redraws the figure' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
