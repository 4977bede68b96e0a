"""Check in a real browser that no cell of a notebook needs a horizontal scrollbar.

    pip install playwright            # a driver only: it uses the system's Chromium
    python tests/browser/check_layout.py [--chromium /usr/bin/chromium] [--width 1280]
        [solutions/02_reward_model.ipynb ...]

Starts JupyterLab, opens each notebook (default: every one in solutions/) in headless Chromium
without running it, waits for the markdown and its math to render, and lists every element of a
cell that scrolls sideways (a markdown paragraph whose inline math does not fit, a code line too
long for the editor). Before #26, 02 section 3's markdown and code lines over 100 characters had
such scrollbars. Not part of the test suite: it needs a browser, which CI does not install
(docs/lab_notes.md, "Browser checks").
"""
from __future__ import annotations

import argparse
import sys
import time

from playwright.sync_api import sync_playwright

from lab import ROOT, launch, open_notebook, start_lab

SCROLLING = """() => {
  const found = [];
  const cells = document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Cell');
  cells.forEach((cell, index) => {
    for (const el of cell.querySelectorAll('*')) {
      const style = getComputedStyle(el);
      if (['auto', 'scroll'].includes(style.overflowX) && el.scrollWidth > el.clientWidth + 1
          && el.clientWidth > 0) {
        found.push(`cell ${index} (${el.className}): ${el.scrollWidth} px in ${el.clientWidth}: `
                   + el.innerText.replace(/\\s+/g, ' ').slice(0, 70));
        break;
      }
    }
  });
  return found;
}"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--width", type=int, default=1280, help="browser window, pixels")
    parser.add_argument("notebooks", nargs="*")
    args = parser.parse_args()
    notebooks = args.notebooks or sorted(str(p.relative_to(ROOT))
                                         for p in (ROOT / "solutions").glob("*.ipynb"))
    lab = start_lab({"TQDM_DISABLE": "1"})
    problems = []
    try:
        with sync_playwright() as p:
            browser, page = launch(p, args.chromium, args.width)
            for notebook in notebooks:
                open_notebook(page, notebook)
                time.sleep(8)                   # markdown and MathJax render
                found = page.evaluate(SCROLLING)
                problems += [f"{notebook}: {line}" for line in found]
                print(f"{notebook}: {len(found)} cell(s) scroll sideways", flush=True)
            browser.close()
    finally:
        lab.terminate()
    print("\n".join(problems) or "no cell scrolls sideways")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
