"""The notebooks in a real browser: JupyterLab on 127.0.0.1, driven by Debian's headless Chromium.

Notebook 07 (GRPO training) and then notebook 08 (save and evaluate) run, unchanged, under
``GRPO_PROFILE=ci`` in a JupyterLab server started by the test (token-protected, loopback only), in a
fresh run folder (``GRPO_RUN_DIR``). Chromium, driven by Playwright's Python client, opens each
notebook, runs all cells from the "Run" menu as a user would, and checks what the page shows:

- 07: the live dashboard widget rendered (header, curves image, samples table) and its curves image
  *changed at least twice while the training cell was running*: the page is polled, the image's
  bytes are fetched from its ``src`` and hashed, and the distinct decoded images are counted;
- 08: the results tables rendered as HTML tables (base and GRPO rows) and the accuracy chart as a
  decoded image.

With ``GRPO_BROWSER_SFT=1`` notebook 06 (SFT warm-up) runs headless first (papermill) into the same run
folder, as in the suite's order: 07 then starts from the SFT adapter and 08 compares base, SFT and GRPO
(about half a minute more; off by default to keep CI's stage short: 07 then starts from the base model).

Screenshots go to the test's ``tmp_path`` and, when ``$GRPO_BROWSER_ARTIFACTS`` is set, are copied
there too. The notebooks are copied into the server's temporary root, so JupyterLab never writes
outputs into the checkout.

Runs only when selected (``pytest -m browser``, or ``GRPO_BROWSER_TESTS=1``), and skips with the
reason when Chromium, JupyterLab or Playwright is missing (fails instead with ``GRPO_BROWSER_REQUIRED=1``);
``.ci/browser-stage`` installs them.
Never run ``playwright install``: the browser is Debian's ``/usr/bin/chromium``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"
CHROMIUM = os.environ.get("GRPO_CHROMIUM", "/usr/bin/chromium")
# The flags this machine's notes ask for (Playwright adds --headless itself and passes its own fresh
# --user-data-dir through launch_persistent_context).
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
NOTEBOOK_TIMEOUT_S = float(os.environ.get("GRPO_BROWSER_NOTEBOOK_TIMEOUT", "900"))
VIEWPORT = {"width": 1600, "height": 1000}


# ---------------------------------------------------------------------------------------------------
# Not a browser test: the DOM hooks the browser test relies on (runs in the main suite)


def test_dashboard_widget_has_stable_css_hooks(tmp_path):
    from helpers.dashboard.callback import DOM_CLASSES, DashboardCallback

    cb = DashboardCallback(tmp_path / "run", notebook=True)
    assert DOM_CLASSES["dashboard"] in cb.widget._dom_classes
    assert DOM_CLASSES["header"] in cb.header._dom_classes
    assert DOM_CLASSES["plot"] in cb.image._dom_classes
    assert DOM_CLASSES["samples"] in cb.samples_box._dom_classes


# ---------------------------------------------------------------------------------------------------
# Fixtures: prerequisites, the JupyterLab server, the browser


def _missing() -> str | None:
    if not (Path(CHROMIUM).is_file() and os.access(CHROMIUM, os.X_OK)):
        return f"Chromium not found at {CHROMIUM} (Debian: apt-get install chromium chromium-driver)"
    for module, package in (("jupyterlab", "jupyterlab"), ("playwright", "playwright")):
        if importlib.util.find_spec(module) is None:
            return f"{package} is not installed in {sys.prefix} (pip install jupyterlab playwright)"
    return None


@pytest.fixture(scope="module")
def prerequisites(request):
    selected = "browser" in (request.config.getoption("markexpr", "") or "")
    if not selected and os.environ.get("GRPO_BROWSER_TESTS") != "1":
        pytest.skip("browser tests run only when selected: pytest -m browser (or GRPO_BROWSER_TESTS=1)")
    reason = _missing()
    if reason and os.environ.get("GRPO_BROWSER_REQUIRED") == "1":  # CI's browser stage: a skip is a failure
        pytest.fail(f"GRPO_BROWSER_REQUIRED=1 but {reason}")
    if reason:
        pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")


class Lab:
    """A JupyterLab server in its own temporary root, config and data folders."""

    def __init__(self, base: Path):
        self.base = base
        self.root, self.run_dir, self.config = base / "root", base / "run", base / "jupyter-config"
        self.root.mkdir(parents=True)
        for name in ("07_grpo_training.ipynb", "08_save_and_evaluate.ipynb"):
            shutil.copy2(NOTEBOOKS / name, self.root / name)
        settings = self.config / "lab" / "user-settings" / "@jupyterlab"
        # every cell stays in the DOM (the test reads outputs of cells scrolled away); no autosave; no news
        _write_json(settings / "notebook-extension" / "tracker.jupyterlab-settings", {"windowingMode": "none"})
        _write_json(settings / "docmanager-extension" / "plugin.jupyterlab-settings", {"autosave": False})
        _write_json(settings / "apputils-extension" / "notification.jupyterlab-settings",
                    {"fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True})
        self.token, self.port = secrets.token_hex(16), _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, GRPO_PROFILE="ci", GRPO_RUN_DIR=str(self.run_dir),
                   JUPYTER_CONFIG_DIR=str(self.config), JUPYTER_DATA_DIR=str(base / "jupyter-data"),
                   JUPYTER_RUNTIME_DIR=str(base / "jupyter-runtime"), IPYTHONDIR=str(base / "ipython"),
                   PYTHONUNBUFFERED="1")
        env.pop("JUPYTER_TOKEN", None)
        self.log_path = base / "jupyterlab.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
             "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else [])],  # CI runs as root
            cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {self.proc.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/api/status?token={self.token}", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"JupyterLab did not answer within {timeout} s:\n{self.log_tail()}")

    def log_tail(self, chars: int = 4000) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")[-chars:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()


def sft_warmup(run_dir: Path) -> None:
    """Notebook 06 headless (papermill, via the suite's CLI) into ``run_dir``, so that 07 starts from the SFT
    adapter as in the suite's order (non-zero rewards on the dashboard) and 08 compares base, SFT and GRPO."""
    start = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "helpers.run.cli", "run", "--profile", "ci", "--out", str(run_dir),
                           "--from", "6", "--to", "6"], cwd=REPO, capture_output=True, text=True,
                          env=dict(os.environ, GRPO_PROFILE="ci"))
    assert done.returncode == 0, f"notebook 06 failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    print(f"\nnotebook 06 (SFT warm-up, papermill) took {time.monotonic() - start:.0f} s")


@pytest.fixture(scope="module")
def lab(prerequisites, tmp_path_factory):
    server = Lab(tmp_path_factory.mktemp("jupyterlab"))
    if os.environ.get("GRPO_BROWSER_SFT") == "1":
        sft_warmup(server.run_dir)
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
        print(f"\nJupyterLab log ({server.log_path}):\n{server.log_tail(2000)}")


@pytest.fixture(scope="module")
def browser(lab, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_FLAGS, viewport=VIEWPORT, device_scale_factor=1)
        try:
            yield context
        finally:
            context.close()


class Shots:
    """Screenshots into ``tmp_path``, copied to ``$GRPO_BROWSER_ARTIFACTS`` when it is set."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.extra = Path(os.environ["GRPO_BROWSER_ARTIFACTS"]) if os.environ.get("GRPO_BROWSER_ARTIFACTS") else None
        self.taken: list[Path] = []

    def take(self, target, name: str, **kw) -> Path:
        path = self.folder / name
        target.screenshot(path=str(path), **kw)
        self.taken.append(path)
        if self.extra is not None:
            self.extra.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, self.extra / name)
        return path


# ---------------------------------------------------------------------------------------------------
# Driving JupyterLab


# The open notebook's cells from JupyterLab's own model (window.jupyterapp, --LabApp.expose_app_in_browser):
# per code cell its source, execution count, whether it is running or queued, and its error if any.
CELLS_JS = """() => {
  const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!panel || !panel.content || !panel.content.model || !panel.sessionContext) return null;
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  const cells = [];
  const model = panel.content.model;
  for (let i = 0; i < model.cells.length; i++) {
    const c = model.cells.get(i);
    if (c.type !== 'code') continue;
    const outputs = c.outputs.toJSON();
    const err = outputs.find(o => o.output_type === 'error');
    cells.push({index: i, source: c.sharedModel.getSource(), count: c.executionCount,
                state: c.executionState || null,
                error: err ? (err.ename + ': ' + err.evalue) : null});
  }
  return {kernel: kernel ? kernel.status : null, kernelName: kernel ? kernel.name : null, cells: cells};
}"""

# The dashboard as the page shows it: header text, the curves <img> (decoded size, SHA-256 of its bytes).
DASHBOARD_JS = """async () => {
  const box = document.querySelector('.grpo-dashboard');
  if (!box) return null;
  const header = box.querySelector('.grpo-dashboard-header');
  const img = box.querySelector('img.grpo-dashboard-plot');
  const samples = box.querySelector('.grpo-dashboard-samples');
  const out = {header: header ? header.innerText : null, samples: samples ? samples.innerText : null,
               visible: box.getClientRects().length > 0, width: 0, height: 0, hash: null, bytes: 0};
  if (img && img.src && img.complete && img.naturalWidth > 0) {
    try {  // the widget revokes a blob URL when it shows the next image: then this poll sees nothing
      const buf = await (await fetch(img.src)).arrayBuffer();
      const digest = await crypto.subtle.digest('SHA-256', buf);
      out.hash = Array.from(new Uint8Array(digest)).map(b => b.toString(16).padStart(2, '0')).join('');
      out.bytes = buf.byteLength; out.width = img.naturalWidth; out.height = img.naturalHeight;
    } catch (e) { out.hash = null; }
  }
  return out;
}"""


def open_notebook(context, lab: Lab, name: str):
    page = context.new_page()
    page.goto(f"{lab.url}/lab/tree/{name}?token={lab.token}&reset", wait_until="domcontentloaded")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    deadline = time.monotonic() + 120
    while True:  # the kernel started and idle
        info = page.evaluate(CELLS_JS)
        if info and info["kernel"] == "idle":
            return page
        if time.monotonic() > deadline:
            raise AssertionError(f"the kernel of {name} did not start: {info}\n{lab.log_tail()}")
        time.sleep(0.5)


def show_dashboard(page) -> None:
    """Scroll the notebook so that the dashboard's header is at the top of the view."""
    page.evaluate("() => document.querySelector('.grpo-dashboard').scrollIntoView({block: 'start'})")
    page.wait_for_timeout(200)


def run_all_cells(page) -> None:
    """Run ▸ Run All Cells, from the menu bar."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()


def finished(info: dict | None) -> tuple[bool, str | None]:
    """(done, error): all code cells executed, or one failed (Run All stops there)."""
    if not info:
        return False, None
    err = next((f"cell {c['index']}: {c['error']}\n{c['source'][:300]}" for c in info["cells"] if c["error"]), None)
    running = any(c["state"] == "running" for c in info["cells"])
    if info["kernel"] != "idle" or running:
        return False, None
    return err is not None or all(c["count"] is not None for c in info["cells"]), err


def cell_of(info: dict, needle: str) -> dict:
    return next(c for c in info["cells"] if needle in c["source"])


def wait_for_notebook(page, lab: Lab, name: str, on_poll=None, every: float = 0.25) -> dict:
    deadline = time.monotonic() + NOTEBOOK_TIMEOUT_S
    started = False
    while True:
        info = page.evaluate(CELLS_JS)
        if on_poll is not None:
            on_poll(info)
        if info and any(c["count"] is not None or c["state"] == "running" for c in info["cells"]):
            started = True
        done, err = finished(info)
        if started and done:
            assert err is None, f"{name} failed in the browser: {err}"
            return info
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} did not finish within {NOTEBOOK_TIMEOUT_S:.0f} s: {info}\n{lab.log_tail()}")
        time.sleep(every)


# ---------------------------------------------------------------------------------------------------
# The tests


@pytest.mark.browser
def test_07_live_dashboard_renders_and_updates_in_jupyterlab(lab, browser, tmp_path):
    shots = Shots(tmp_path)
    page = open_notebook(browser, lab, "07_grpo_training.ipynb")
    shots.take(page, "07_opened.png")
    t0 = time.monotonic()
    run_all_cells(page)

    seen: list[dict] = []  # one entry per distinct decoded plot image, in the order the page showed them

    def poll(info):
        if not info:
            return
        train = cell_of(info, "trainer.train(")
        dash = page.evaluate(DASHBOARD_JS)
        if not dash or dash["hash"] is None:
            return
        if seen and seen[-1]["hash"] == dash["hash"]:
            seen[-1]["header"] = dash["header"]  # the header may move on with the same image
            return
        step = re.search(r"step (\d+)/(\d+)", dash["header"] or "")
        entry = dict(dash, t=round(time.monotonic() - t0, 1), training=train["state"] == "running",
                     step=int(step.group(1)) if step else None)
        seen.append(entry)
        show_dashboard(page)
        entry["shot"] = shots.take(page, f"07_dashboard_{len(seen)}_step{entry['step']}.png").name

    info = wait_for_notebook(page, lab, "07_grpo_training.ipynb", on_poll=poll)
    print(f"07 ran in {time.monotonic() - t0:.0f} s in the browser; plot images seen:")
    for e in seen:
        print(f"  t={e['t']:>6}s step={e['step']} training={e['training']} {e['width']}x{e['height']} "
              f"{e['bytes']} B {e['hash'][:12]} | {e['header']}")
    assert info["kernelName"], info

    # the widgets rendered in the page
    box = page.locator(".grpo-dashboard")
    assert box.count() == 1 and box.is_visible()
    header = page.locator(".grpo-dashboard .grpo-dashboard-header").inner_text()
    assert re.search(r"step 3/3", header), header
    img = page.locator(".grpo-dashboard img.grpo-dashboard-plot")
    width = img.evaluate("i => i.naturalWidth")
    assert width > 300, width
    samples = page.locator(".grpo-dashboard .grpo-dashboard-samples table")
    assert samples.count() == 1 and samples.locator("tbody tr").count() >= 1
    # the plot changed at least twice while training ran: 3+ distinct images seen during the training cell
    during = [e for e in seen if e["training"]]
    assert len(during) >= 3, f"the plot changed {len(during) - 1} time(s) while training ran: {during}"
    assert len({e["hash"] for e in during}) == len(during)
    steps = [e["step"] for e in during if e["step"] is not None]
    assert steps == sorted(steps) and len(set(steps)) >= 3, steps

    # what the kernel wrote agrees with what the page showed
    rows = [json.loads(line) for line in (lab.run_dir / "grpo" / "metrics.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in rows) == 3

    show_dashboard(page)
    shots.take(page, "07_dashboard_final.png")
    # header + curves, cut from the page (an element screenshot of the whole widget, taller than the
    # notebook's scrolling panel, would come out cut)
    top = page.locator(".grpo-dashboard .grpo-dashboard-header").bounding_box()
    plot = img.bounding_box()
    shots.take(page, "07_dashboard_widget.png", clip={
        "x": min(top["x"], plot["x"]), "y": top["y"], "width": max(top["width"], plot["width"]),
        "height": plot["y"] + plot["height"] - top["y"]})


@pytest.mark.browser
def test_08_evaluation_table_and_chart_render_in_jupyterlab(lab, browser, tmp_path):
    shots = Shots(tmp_path)
    page = open_notebook(browser, lab, "08_save_and_evaluate.ipynb")
    t0 = time.monotonic()
    run_all_cells(page)
    info = wait_for_notebook(page, lab, "08_save_and_evaluate.ipynb", every=1.0)
    print(f"08 ran in {time.monotonic() - t0:.0f} s in the browser")

    trained = (lab.run_dir / "grpo" / "adapter").is_dir()  # notebook 07 ran first in this run folder
    warmed_up = (lab.run_dir / "sft" / "adapter").is_dir()  # and 06 before it (GRPO_BROWSER_SFT=1)
    cells = page.locator(".jp-Cell")
    table_cell = cells.nth(cell_of(info, "evaluate_sets(")["index"])
    tables = table_cell.locator(".jp-OutputArea .jp-RenderedMarkdown table")
    assert tables.count() >= 1, table_cell.inner_text()
    for i in range(tables.count()):
        table = tables.nth(i)
        head = table.locator("thead").inner_text()
        for column in ("model", "strict accuracy", "lenient accuracy", "format compliance"):
            assert column in head, head
        names = [r.strip().split("\t")[0].split("\n")[0] for r in table.locator("tbody tr").all_inner_texts()]
        assert "base" in names and (not trained or "grpo" in names) and (not warmed_up or "sft" in names), names
    chart_cell = cells.nth(cell_of(info, "accuracy.png")["index"])
    chart = chart_cell.locator(".jp-OutputArea .jp-RenderedImage img")
    assert chart.count() == 1
    size = chart.evaluate("i => [i.complete, i.naturalWidth, i.naturalHeight]")
    assert size[0] and size[1] > 200 and size[2] > 100, size
    assert (lab.run_dir / "eval" / "accuracy.png").is_file()

    table_cell.scroll_into_view_if_needed()
    shots.take(page, "08_table_page.png")
    shots.take(table_cell, "08_results_table.png")
    chart_cell.scroll_into_view_if_needed()
    shots.take(page, "08_chart_page.png")
    shots.take(chart, "08_accuracy_chart.png")
    digest = hashlib.sha256((lab.run_dir / "eval" / "accuracy.png").read_bytes()).hexdigest()
    print(f"08 chart: {size[1]}x{size[2]} px in the page; accuracy.png sha256 {digest[:12]}")
