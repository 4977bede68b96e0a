"""Check in a real browser that a long cell fed by worker processes shows one live progress bar.

    pip install playwright            # a driver only: it uses the system's Chromium
    python tests/browser/check_progress.py [--chromium /usr/bin/chromium]
        [--notebook solutions/06_overoptimisation.ipynb --cell "overoptimisation_study("]
        [--upstream-from ~/.cache/rlhf_lab]

Starts JupyterLab with an empty cache (a new folder as RLHF_LAB_CACHE), opens notebook 05 in
headless Chromium, runs all cells and watches the β sweep's cell, whose PPO runs train in two
worker processes: every two seconds it reads the workers' bar ("… steps [mm:ss, …]") and takes a
screenshot of it. It passes if the bar's step count and clock both advance while the cell runs,
the screenshots of the bar differ, and once the cell is done it holds no stderr box (before #26
the workers' text bars came out raw in a pink stderr box and the bar sat at 0/11, 00:00).

``--upstream-from`` copies the default run's base, SFT and reward-model artifacts from a cache into
the new one, which saves the minute that cell spends training them before the workers start. Screenshots go to
``browser_check/`` (not committed). It takes the cell's time from an empty cache (3–5 minutes on
2 cores, docs/benchmarks.md). Not part of the test suite: it needs a browser, which CI does not
install (docs/lab_notes.md, "Browser checks").
"""
from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from playwright.sync_api import sync_playwright

from lab import SHOTS, launch, open_and_run_all, start_lab

BAR = re.compile(r"(\d+) steps \[(\d+:\d\d)")        # the bar's text: "345 steps [01:30, ..."
STDERR = '.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]'


def new_cache(upstream_from: str | None) -> str:
    """An empty cache folder, or one holding only the default run's base, SFT and RM artifacts,
    copied from another cache."""
    from rlhf_lab.pipeline.runs import RunConfig, stage_keys
    cache = tempfile.mkdtemp(prefix="rlhf-lab-cache-")
    if upstream_from:
        keys = stage_keys(RunConfig())
        for stage in ("base", "sft", "rm"):
            folder = Path(upstream_from).expanduser() / f"{stage}-{keys[stage]}"
            if folder.is_dir():
                shutil.copytree(folder, Path(cache) / folder.name)
    return cache


def watch(cell, limit_s: float) -> tuple[list[tuple[int, str]], list[bytes]]:
    """Until ``cell`` has run: the bar's (count, clock) and a screenshot of it every 2 s."""
    samples, shots, start = [], [], time.monotonic()
    while time.monotonic() - start < limit_s:
        prompt = cell.locator(".jp-InputPrompt").first.inner_text()
        if re.search(r"\[\d+\]", prompt):
            return samples, shots
        bar = cell.locator(".jp-OutputArea-output", has_text=" at a time")
        if bar.count():
            text = " ".join(bar.first.inner_text().split())     # the widget writes &nbsp;
            match = BAR.search(text)
            if match:
                samples.append((int(match.group(1)), match.group(2)))
                shots.append(bar.first.screenshot())
            print(f"  bar: {text}", flush=True)
        elif len(samples) == 0:
            print(f"  {time.monotonic() - start:.0f} s: no bar yet, prompt {prompt}", flush=True)
        time.sleep(2)
    raise TimeoutError(f"the cell did not finish within {limit_s:.0f} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--notebook", default="solutions/05_beta_sweep.ipynb")
    parser.add_argument("--cell", default="sweep.beta_sweep(", help="text of the long cell")
    parser.add_argument("--upstream-from", default=None, help="a cache to copy base/SFT/RM from")
    parser.add_argument("--limit-s", type=float, default=900)
    args = parser.parse_args()
    SHOTS.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "TQDM_DISABLE"}
    os.environ.clear()
    os.environ.update(env)                  # the bars must be drawn
    lab = start_lab({"RLHF_LAB_CACHE": new_cache(args.upstream_from)})
    try:
        with sync_playwright() as p:
            browser, page = launch(p, args.chromium)
            open_and_run_all(page, args.notebook)
            cell = page.locator(".jp-CodeCell", has_text=args.cell).first
            cell.wait_for(timeout=60_000)
            samples, shots = watch(cell, args.limit_s)
            cell.scroll_into_view_if_needed()
            time.sleep(2)
            stderr_boxes = cell.locator(STDERR).count()
            cell.screenshot(path=str(SHOTS / "progress_after.png"))
            for i, shot in enumerate(shots[:: max(1, len(shots) // 4)]):
                (SHOTS / f"progress_bar_{i}.png").write_bytes(shot)
            browser.close()
    finally:
        lab.terminate()
    counts, clocks = [n for n, _ in samples], [c for _, c in samples]
    advances = len(set(counts)) >= 2 and counts == sorted(counts)
    ticks = len(set(clocks)) >= 2
    redrawn = len({hashlib.sha1(s).hexdigest() for s in shots}) >= 2
    ok = advances and ticks and redrawn and stderr_boxes == 0
    print(f"{len(samples)} samples of the workers' bar: steps {counts[:1]}…{counts[-1:]}, clock "
          f"{clocks[:1]}…{clocks[-1:]}, {'different' if redrawn else 'identical'} screenshots; "
          f"{stderr_boxes} stderr box(es) after the cell: "
          f"{'the bar is live and nothing is left on stderr' if ok else 'FAILED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
