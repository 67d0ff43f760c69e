"""The MLflow UI shows what the harness logged: headless Chromium against a real `mlflow server`.

The store is made by the runner with the no-op backend while `mlflow server` starts on it
as a subprocess on a free port; the server is always stopped. Needs Debian's chromium
(`apt-get install -y chromium`) and `pip install playwright`; never `playwright install`
(no browser download). Without them the test fails under CI (env CI set) and skips elsewhere.

MLflow 3 opens an experiment on its GenAI overview; `workflowType=machine_learning` (in the
view's URL) and the `/runs` tab give the classic runs table. The view groups runs over seeds,
folded: a group's row holds the mean of each metric; opened, its runs show the design axes.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from conftest import session_cache
from image_checks import assert_picture

from lenet_bench import backends
from lenet_bench.cli import main

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EXPERIMENT = "lenet_bench/specs"
RUN_NAMES = ["tiny/noop/cpu/seed0", "tiny/noop/cpu/seed1"]
OVERRIDES = ["--epochs", "1", "--max-steps", "5"]  # a second setup whose names MLflow's default column would cut
OVERRIDE_RUNS = ["tiny@epochs=1,max_steps=5/noop/cpu/seed0", "tiny@epochs=1,max_steps=5/noop/cpu/seed1"]
VIEWPORT = {"width": 1400, "height": 900}  # a laptop's browser window, as the issue looked at it
AXES = ["activation", "pooling", "padding", "architecture", "backend", "device", "seed"]
UI_TIMEOUT_MS = 45_000  # the first page load compiles a large bundle on a busy 2-core machine
SPEC = """
name: tiny
description: browser test
data: {subset: 2000, test_subset: 500, validation_split: 0.1}  # as in test_runner: one cached baseline
model:
  conv: [{filters: 4}, {filters: 8}]
  dense: [16]
train: {optimizer: {name: sgd}, epochs: 2, seeds: [0, 1]}
backends: [noop]
devices: [cpu]
expect: {min_test_accuracy: 0.0}
"""


def require_browser() -> None:
    """Fail under CI, skip elsewhere, naming what is missing and how to install it."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright; never `playwright install`)")
    if missing:
        message = "browser test needs " + " and ".join(missing)
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


def write_store(root: Path, mnist_dir: Path, cache_dir: Path) -> None:
    """Two completed no-op runs of the spec and two with overrides (and their invocations and baseline) in
    root/mlflow.db."""
    (root / "specs").mkdir(exist_ok=True)
    (root / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC))
    backends.register(backends.BackendEntry("noop", "noop_backend", distributions=()))
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("LENET_BENCH_CACHE_DIR", str(cache_dir))
            patch.delenv("MLFLOW_TRACKING_URI", raising=False)
            for extra in ([], OVERRIDES):
                assert main(["run", str(root / "specs"), "--data-dir", str(mnist_dir), "--tracking-uri",
                             f"sqlite:///{root}/mlflow.db", "--results", str(root / "results"), *extra]) == 0
    finally:
        backends.unregister("noop")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(url: str, server: subprocess.Popen, log: Path, timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"mlflow server exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"mlflow server did not answer {url}/health within {timeout_s:.0f} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory, mnist_dir):
    """Base URL of `mlflow server` on a store the harness wrote; the server and its workers are stopped afterwards."""
    require_browser()  # before spending seconds on a store nobody will look at
    root = tmp_path_factory.mktemp("browser_store")
    store = root / "mlflow.db"
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{store}").search_experiments()  # create the schema once, before two processes open it
    port = free_port()
    log = root / "server.log"
    # No telemetry (no network here) and no background job runner (a dozen idle processes on 2 cores).
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true",
           "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        # A session of its own, so that stopping it also stops the uvicorn workers it starts.
        process = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{store}",
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        write_store(root, mnist_dir, session_cache(tmp_path_factory))  # while the server starts
        wait_for_health(url, process, log)
        yield url
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=5)


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=VIEWPORT)
    try:
        yield context.new_page()
    finally:
        context.close()


def api(server: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow/{path}?{urllib.parse.urlencode(query)}", timeout=30) as answer:
        return json.load(answer)


def logged_runs(server: str) -> tuple[str, dict[str, dict]]:
    """Experiment id and {run name: {'run_id', 'test_accuracy'}} of the completed child runs, via the REST API."""
    experiment_id = api(server, "experiments/get-by-name", experiment_name=EXPERIMENT)["experiment"]["experiment_id"]
    request = urllib.request.Request(
        f"{server}/api/2.0/mlflow/runs/search", method="POST", headers={"Content-Type": "application/json"},
        data=json.dumps({"experiment_ids": [experiment_id],
                         "filter": "tags.`lenet_bench.kind` = 'run' and tags.`lenet_bench.status` = 'completed'"}).encode())
    with urllib.request.urlopen(request, timeout=30) as answer:
        runs = json.load(answer)["runs"]
    found = {}
    for run in runs:
        metrics = {m["key"]: m["value"] for m in run["data"].get("metrics", [])}
        found[run["info"]["run_name"]] = {"run_id": run["info"]["run_id"], "test_accuracy": metrics["test_accuracy"]}
    return experiment_id, found


def wait_for_text(page, text: str) -> None:
    page.wait_for_function("text => document.body.innerText.includes(text)", arg=text, timeout=UI_TIMEOUT_MS)


def close_assistant(page) -> None:
    """MLflow 3.17 opens an 'MLflow Assistant' side panel that hides half the table; close it if it is there."""
    close = page.get_by_role("button", name="Close")
    if close.count() == 1 and close.is_visible():
        close.click()


def save_screenshot(page, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    page.screenshot(path=str(path))
    extra = os.environ.get("LENET_BENCH_SCREENSHOT_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(extra) / name))
    return path


def test_the_shared_view_opens_in_model_training_mode_with_the_means_over_seeds_and_the_axes_first(
        server, page, tmp_path):
    """The README's link opens the view the recorder stored: model-training mode, only the runs (no invocations
    or baselines), one folded group per setup with the mean test accuracy of its seeds, best first and visible
    in a 1400 px window; opened, a group's runs show the design axes as the first columns and whole names."""
    from lenet_bench.results.view import view_url

    experiment_id, runs = logged_runs(server)
    assert sorted(runs) == RUN_NAMES + OVERRIDE_RUNS
    page.goto(view_url(server, experiment_id))
    groups = ["tiny/noop/cpu", "tiny@epochs=1,max_steps=5/noop/cpu"]
    for group in groups:
        wait_for_text(page, f"Group: {group}")
    close_assistant(page)
    nav = page.locator("nav").first.inner_text().splitlines()  # GenAI's: Overview, Traces, Sessions, Evaluation, ...
    assert nav[1:3] == ["Runs", "Models"] and "Overview" not in nav, f"MLflow's model-training mode: {nav}"
    body = page.inner_text("body")
    assert "invocation-" not in body and "baseline/logreg" not in body, "only the runs are listed"
    assert not any(name in body for name in RUN_NAMES + OVERRIDE_RUNS), "the groups open folded"
    cells = page.locator('[role="gridcell"][col-id="metrics.`test_accuracy_pct`"]')
    cells.first.wait_for(timeout=UI_TIMEOUT_MS)
    time.sleep(1)  # the grid sets the view's widths after its first paint
    headers = [h.inner_text().strip() for h in page.locator('[role="columnheader"][col-id]').all()]
    shown = [h for h in headers if h in AXES + ["test_accuracy_pct"]]
    assert shown == AXES + ["test_accuracy_pct"], headers  # the axes first, then the accuracy
    box = cells.first.bounding_box()
    assert box is not None and box["x"] + box["width"] <= VIEWPORT["width"], "the accuracy is on screen"
    means = sorted(float(c.inner_text().split()[0]) for c in cells.all())
    expected = sorted(round(sum(100 * runs[n]["test_accuracy"] for n in names) / 2, 2)
                      for names in (RUN_NAMES, OVERRIDE_RUNS))
    assert means == pytest.approx(expected, abs=0.01) and all("(average)" in c.inner_text() for c in cells.all())
    assert_picture(save_screenshot(page, tmp_path, "mlflow_runs.png"), VIEWPORT["width"], VIEWPORT["height"])

    group_row = page.locator('[role="row"]', has_text=f"Group: {groups[1]}")
    label = group_row.get_by_text(f"Group: {groups[1]}")
    assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), "the group's label shows whole"
    where = label.bounding_box()
    assert where is not None
    page.mouse.click(where["x"] - 35, where["y"] + where["height"] / 2)  # its fold button: open the override runs
    for name in OVERRIDE_RUNS:
        wait_for_text(page, name)
    for name in OVERRIDE_RUNS:  # the whole name shows: the overrides tell the runs apart
        link = page.get_by_role("link", name=name)
        assert link.evaluate("e => e.closest('[role=gridcell]').scrollWidth <= e.closest('[role=gridcell]').clientWidth")
    # The grid draws a row in two parts (the pinned name, the rest), each a [role=row] with the row's id.
    row_id = page.locator('[role="row"]', has=page.get_by_role("link", name=OVERRIDE_RUNS[0])).first.get_attribute("row-id")
    cells = page.locator(f'[role="row"][row-id="{row_id}"] [role="gridcell"]').all()
    values = {c.get_attribute("col-id"): c.inner_text().strip() for c in cells}
    assert values["params.`activation`"] == "relu" and values["tags.`seed`"] == "0"
    accuracy = values["metrics.`test_accuracy_pct`"]  # as logged: 98.91, never 98.9099979
    assert float(accuracy) == pytest.approx(100 * runs[OVERRIDE_RUNS[0]]["test_accuracy"]) and len(accuracy) <= 7
    assert_picture(save_screenshot(page, tmp_path, "mlflow_group_open.png"), VIEWPORT["width"], VIEWPORT["height"])


def test_compare_view_of_two_runs(server, page, tmp_path):
    experiment_id, runs = logged_runs(server)
    run_ids = [runs[name]["run_id"] for name in RUN_NAMES]
    query = f"runs={urllib.parse.quote(json.dumps(run_ids))}&experiments={urllib.parse.quote(json.dumps([experiment_id]))}"
    page.goto(f"{server}/#/compare-runs?{query}")
    wait_for_text(page, "Comparing 2 Runs")
    for name in RUN_NAMES + ["test_accuracy"]:
        wait_for_text(page, name)
    close_assistant(page)
    body = page.inner_text("body")
    assert "Parameters" in body and "Metrics" in body and "lenet_bench.kind" in body
    assert_picture(save_screenshot(page, tmp_path, "mlflow_compare.png"), VIEWPORT["width"], VIEWPORT["height"])
