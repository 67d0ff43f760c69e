"""A screenshot of lenet_bench's shared MLflow view of a real store, as the README's recipe opens it.

Starts `mlflow server` on the store (a free port on 127.0.0.1), opens the view the recorder stored
on the experiment in headless Chromium (Debian's, through playwright; never `playwright install`),
waits until the runs table shows its metric columns, saves a PNG and stops the server.

    .venv/bin/python scripts/mlflow_screenshot.py sqlite:///mlflow.db lenet_bench/specs results/mlflow_view.png
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from lenet_bench.results.view import view_url

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
TIMEOUT_MS = 90_000  # the first page load compiles a large bundle on a busy 2-core machine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(server: str, process: subprocess.Popen, seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"mlflow server exited with {process.returncode}")
        try:
            urllib.request.urlopen(f"{server}/health", timeout=2)
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(1)
    sys.exit(f"mlflow server did not answer at {server} within {seconds:.0f} s")


def experiment_id(server: str, name: str) -> str:
    query = urllib.parse.urlencode({"experiment_name": name})
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow/experiments/get-by-name?{query}", timeout=30) as answer:
        return json.load(answer)["experiment"]["experiment_id"]


def screenshot(server: str, experiment: str, out: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_context(viewport={"width": 1400, "height": 900}).new_page()  # a laptop's window
            page.goto(view_url(server, experiment_id(server, experiment)))  # the link run prints, mode and all
            page.get_by_text("Run Name").first.wait_for(timeout=TIMEOUT_MS)
            close = page.get_by_role("button", name="Close")  # MLflow's assistant panel hides half the table
            if close.count() == 1 and close.is_visible():
                close.click()
            try:
                page.locator('[role="gridcell"][col-id="metrics.`test_accuracy_pct`"]').first.wait_for(timeout=TIMEOUT_MS)
            except Exception:
                page.screenshot(path=str(out.with_suffix(".timed_out.png")))  # what the page showed instead
                raise
            time.sleep(2)  # let the grid settle the view's column widths
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
        finally:
            browser.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tracking_uri")
    parser.add_argument("experiment", help="experiment name, e.g. lenet_bench/specs")
    parser.add_argument("out", type=Path)
    args = parser.parse_args()
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    mlflow = Path(sys.executable).with_name("mlflow")
    process = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", args.tracking_uri, "--host", "127.0.0.1",
                                "--port", str(port), "--workers", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until_up(server, process)
        screenshot(server, args.experiment, args.out)
        print(f"wrote {args.out}")
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


if __name__ == "__main__":
    main()
