"""Check in a real browser that notebook 03's β slider redraws its figure.

    pip install playwright            # a driver only: it uses the system's Chromium
    python tests/browser/check_slider.py [--chromium /usr/bin/chromium]

Starts JupyterLab on the repository, opens ``solutions/03_closed_form.ipynb`` in headless
Chromium, runs all cells, moves the slider with the keyboard and checks that the slider's value
and the figure under it both change, at the same size. Screenshots go to ``browser_check/``
(not committed). JupyterLab starts with an empty workspace, so tabs saved by an earlier session
are not restored (``lab.py``). Not part of the test suite: it needs a browser, which CI does not
install (docs/lab_notes.md, "Browser checks").
"""
from __future__ import annotations

import argparse
import hashlib
import sys
import time

from playwright.sync_api import sync_playwright

from lab import SHOTS, launch, open_and_run_all, start_lab


def figure(page) -> tuple[str, tuple[int, int]] | None:
    """The slider's figure: a hash of its image and its size in pixels."""
    images = page.locator(".widget-output img, .jupyter-widgets-output-area img")
    if not images.count():
        return None
    image = images.last
    size = image.evaluate("img => [img.naturalWidth, img.naturalHeight]")
    return hashlib.sha1(image.get_attribute("src").encode()).hexdigest()[:12], tuple(size)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    args = parser.parse_args()
    shots = SHOTS
    shots.mkdir(exist_ok=True)
    lab = start_lab({"TQDM_DISABLE": "1"})
    try:
        with sync_playwright() as p:
            browser, page = launch(p, args.chromium)
            open_and_run_all(page, "solutions/03_closed_form.ipynb")
            page.wait_for_selector(".widget-hslider", timeout=300_000)
            time.sleep(10)
            page.locator(".widget-hslider").first.scroll_into_view_if_needed()
            time.sleep(3)
            value_before, figure_before = page.locator(".widget-readout").first.inner_text(), \
                figure(page)
            page.screenshot(path=str(shots / "slider_before.png"))
            page.locator(".noUi-handle").first.focus()
            for _ in range(8):
                page.keyboard.press("ArrowRight")
                time.sleep(0.2)
            time.sleep(8)
            value_after, figure_after = page.locator(".widget-readout").first.inner_text(), \
                figure(page)
            page.screenshot(path=str(shots / "slider_after.png"))
            browser.close()
    finally:
        lab.terminate()
    ok = None not in (figure_before, figure_after) and value_before != value_after \
        and figure_before[0] != figure_after[0] and figure_before[1] == figure_after[1]
    print(f"β {value_before} -> {value_after}; figure {figure_before} -> {figure_after}: "
          f"{'the slider redraws the figure at the same size' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
