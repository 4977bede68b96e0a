"""What the browser checks share: a JupyterLab of their own, and a notebook opened and run in it.

The lab gets a new, empty workspaces folder: JupyterLab otherwise restores the tabs of the last
session, and the notebook asked for may then open behind another tab, hidden (the first
``.jp-Notebook`` on the page is not the one that runs). :func:`open_and_run_all` also waits for
the visible notebook, not the first one. Autosave is off, so that the run's outputs never land in
the committed notebook, and every cell is in the page (no windowing), so that a check can find it.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PORT = int(os.environ.get("RLHF_LAB_CHECK_PORT", "8899"))   # two checks at once: set another
TOKEN = "rlhf-lab-check"
SHOTS = ROOT / "browser_check"          # screenshots (not committed)


def start_lab(env: dict | None = None) -> subprocess.Popen:
    """JupyterLab on the repository with no saved workspace; ``env``: extra variables."""
    workspaces = tempfile.mkdtemp(prefix="rlhf-lab-workspaces-")
    settings = Path(tempfile.mkdtemp(prefix="rlhf-lab-settings-"))
    docmanager = settings / "@jupyterlab" / "docmanager-extension"
    docmanager.mkdir(parents=True)
    (docmanager / "plugin.jupyterlab-settings").write_text('{"autosave": false}')
    notebook = settings / "@jupyterlab" / "notebook-extension"      # every cell in the page,
    notebook.mkdir(parents=True)                                     # not only those in view
    (notebook / "tracker.jupyterlab-settings").write_text('{"windowingMode": "none"}')
    lab = subprocess.Popen([sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={PORT}",
                            f"--ServerApp.token={TOKEN}", f"--ServerApp.root_dir={ROOT}",
                            f"--LabApp.workspaces_dir={workspaces}",
                            f"--LabApp.user_settings_dir={settings}", "--allow-root"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, **(env or {})})
    for _ in range(60):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{PORT}/api/status?token={TOKEN}", timeout=1)
            return lab
        except OSError:
            time.sleep(1)
    lab.kill()
    raise RuntimeError("JupyterLab did not start within 60 s")


def launch(playwright, chromium: str, width: int = 1400):
    """A headless Chromium page, large enough that a notebook's cells are not squeezed."""
    browser = playwright.chromium.launch(executable_path=chromium, headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
    return browser, browser.new_page(viewport={"width": width, "height": 1000})


def open_notebook(page, notebook: str) -> None:
    """Open ``notebook`` (a path under the repository) and wait until it shows."""
    page.goto(f"http://127.0.0.1:{PORT}/lab/tree/{notebook}?reset&token={TOKEN}")
    page.locator(".jp-Notebook:visible").first.wait_for(timeout=120_000)


def open_and_run_all(page, notebook: str) -> None:
    """Open ``notebook`` and run all its cells."""
    open_notebook(page, notebook)
    time.sleep(5)                       # the kernel starts
    page.click("text=Run", timeout=30_000)
    page.click("text=Run All Cells", timeout=30_000)
