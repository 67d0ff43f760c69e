"""serve: the draw-a-digit page over a trained run's model.

`python -m lenet_bench serve` runs as a subprocess on a free port against a store with a LeNet-5
trained in the test (trained_run.py); its API is checked over HTTP, and the page in headless
Chromium: a digit drawn with the mouse is read, and every layer's panel is drawn. The server is
always stopped. The browser test needs Debian's chromium and the playwright package (never
`playwright install`): without them it fails under CI and skips elsewhere (test_browser's rule).
With LENET_BENCH_SCREENSHOTS=1 it also writes results/reference/serve_page.png.
"""

from __future__ import annotations

import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, require_backend
from image_checks import assert_picture
from PIL import Image
from test_browser import CHROMIUM, CHROMIUM_ARGS, free_port, require_browser, stop
from trained_run import noop_run, quick_torch_run

from lenet_bench.cli import main
from lenet_bench.predict import TrainedModel, normalize_digit
from lenet_bench.serve.reading import grey_panel
from lenet_bench.spec import Spec

SCREENSHOT = REPO / "results" / "reference" / "serve_page.png"
START_TIMEOUT_S = 180  # imports and loading the model on a busy 2-core machine
PAGE_TIMEOUT_MS = 60_000
VIEWPORT = {"width": 1400, "height": 1000}


# ------------------------------------------------------------------ no server needed

def test_grey_panel_scales_each_layer_over_its_own_range():
    panel = grey_panel(np.array([[-2.0, 0.0], [1.0, 2.0]], np.float32))
    assert panel["shape"] == [2, 2] and (panel["min"], panel["max"]) == (-2.0, 2.0)
    assert panel["pixels"] == [0, 128, 191, 255]
    assert grey_panel(np.zeros((3, 1, 1)))["pixels"] == [0, 0, 0]  # a dead layer is black, not NaN


def test_a_port_in_use_is_a_clear_error(tmp_path, capsys):
    """The port is claimed before anything else: no store or model is needed to report it."""
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "any-run", "--port", str(port), "--tracking-uri", f"sqlite:///{tmp_path}/x.db"]) == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "pass --port" in err


def test_a_missing_store_is_a_clear_error(tmp_path, capsys):
    assert main(["serve", "any-run", "--port", str(free_port()), "--tracking-uri",
                 f"sqlite:///{tmp_path}/none.db"]) == 2
    assert "no MLflow store" in capsys.readouterr().err


@pytest.mark.slow
def test_runs_it_cannot_serve_are_clear_errors(tmp_path_factory, mnist_dir, noop, capsys):
    store = noop_run(tmp_path_factory, mnist_dir)
    port = str(free_port())
    assert main(["serve", "no-such-run", "--port", port, "--tracking-uri", store.tracking_uri]) == 2
    assert "no completed run with id or name 'no-such-run'" in capsys.readouterr().err
    assert main(["serve", store.run_name, "--port", port, "--tracking-uri", store.tracking_uri]) == 2
    assert f"run {store.run_name!r}" in (err := capsys.readouterr().err) and "has no saved model" in err


# ------------------------------------------------------------------ what the page draws, for every backend

ARCHITECTURES = {  # every way a layer's output is shown: pools that move the activation, or not; dense only
    "relu-max-32": (32, {"conv": [{"filters": 6}, {"filters": 16}, {"filters": 120, "pool": "none"}],
                         "dense": [84]}),
    "tanh-avg-same-28": (28, {"conv": [{"filters": 4, "padding": "same"}, {"filters": 8}], "dense": [16],
                              "pool": "avg", "activation": "tanh"}),
    "sigmoid-unpooled-28": (28, {"conv": [{"filters": 4, "pool": "none"}], "dense": [8], "activation": "sigmoid"}),
    "dense-only-28": (28, {"dense": [32]}),
}


@pytest.mark.parametrize("architecture", list(ARCHITECTURES))
def test_layer_outputs_are_the_textbook_networks_on_every_backend(architecture, mnist_raw):
    """Every backend shows one output per described layer, each as the textbook network computes it
    (PyTorch without the max-pool-first reordering), from the same canonical weights."""
    import torch

    from lenet_bench.backends.torch.model import build_module, set_weights
    from lenet_bench.data import preprocess_images
    from lenet_bench.training.weights import initial_weights

    size, model = ARCHITECTURES[architecture]
    spec = Spec.model_validate({"name": architecture, "data": {"input_size": size}, "model": model})
    layers = spec.summary().layers
    weights = initial_weights(spec.summary(), "glorot_uniform", 0)
    x = preprocess_images(mnist_raw.x_test[:8], size, [0.0], [255.0])
    textbook = build_module(spec, max_pool_first=False).eval()
    set_weights(textbook, weights)
    expected, h = [], torch.from_numpy(x)
    with torch.inference_mode():
        for child in textbook:
            h = child(h)
            expected.append(h.numpy().copy())
    for name in ("torch", "keras"):
        backend = require_backend(name)
        built = backend.build(spec, 0, "cpu")
        backend.set_weights(built, weights)
        outputs = backend.layer_outputs(built, x)
        assert len(outputs) == len(layers), name
        for layer, output, reference in zip(layers, outputs, expected):
            assert output.shape == (8, *layer.output_shape), (name, layer.name)
            np.testing.assert_allclose(output, reference, rtol=1e-4, atol=1e-5, err_msg=f"{name} {layer.name}")


# ------------------------------------------------------------------ the server

def wait_until_serving(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"serve exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/api/model", timeout=2) as answer:
                if answer.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.5)
    pytest.fail(f"serve did not answer {url}/api/model within {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, mnist_dir):
    return quick_torch_run(tmp_path_factory, mnist_dir)


@pytest.fixture(scope="module")
def server(trained_store):
    """Base URL of `python -m lenet_bench serve` on the trained run; stopped afterwards."""
    port = free_port()
    log = trained_store.root / f"serve-{port}.log"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "lenet_bench", "serve", trained_store.run_name, "--tracking-uri",
             trained_store.tracking_uri, "--port", str(port)],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=trained_store.root, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(url, process, log)
        yield url
    finally:
        stop(process)


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as answer:
        return json.load(answer)


def post_image(url: str, data: bytes) -> tuple[int, dict]:
    request = urllib.request.Request(f"{url}/api/read", data=data, method="POST",
                                     headers={"Content-Type": "image/png"})
    try:
        with urllib.request.urlopen(request, timeout=60) as answer:
            return answer.status, json.load(answer)
    except urllib.error.HTTPError as err:
        return err.code, json.load(err)


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.mark.slow
def test_the_api_describes_the_run_and_every_layer(server, trained_store):
    model = get(f"{server}/api/model")
    spec_layers = TrainedModel.load(trained_store.run_name, trained_store.tracking_uri).summary.layers
    assert model["run"] == trained_store.run_name and model["backend"] == "torch"
    assert model["params"] == sum(layer.params for layer in spec_layers) == 61706  # LeNet-5
    assert [(layer["name"], layer["kind"], tuple(layer["shape"])) for layer in model["layers"]] == [
        (layer.name, layer.kind, layer.output_shape) for layer in spec_layers]


@pytest.mark.slow
def test_the_api_reads_a_drawing_as_predict_does(server, trained_store, mnist_raw):
    """Ten MNIST test digits drawn as the page sends them (dark on white, 10x): the guesses are the
    in-process model's on the same preprocessing, mostly right, with every layer's activations."""
    trained = TrainedModel.load(trained_store.run_name, trained_store.tracking_uri)
    shapes = [layer.output_shape for layer in trained.summary.layers]
    right = 0
    for digit, label in zip(mnist_raw.x_test[:10], mnist_raw.y_test[:10]):
        drawing = 255 - np.asarray(Image.fromarray(digit).resize((280, 280), Image.Resampling.BICUBIC))
        status, reading = post_image(server, png(drawing))
        assert status == 200 and reading["digit_found"]
        x = trained.inputs(normalize_digit(drawing)[None])
        expected = trained.probabilities(x)[0]
        assert reading["top"][0]["label"] == int(expected.argmax())
        np.testing.assert_allclose(reading["probabilities"], expected, atol=1e-5)
        assert reading["input"]["shape"] == [1, 32, 32]
        assert [tuple(layer["shape"]) for layer in reading["layers"]] == shapes
        assert all(len(layer["pixels"]) == np.prod(layer["shape"]) for layer in reading["layers"])
        right += reading["top"][0]["label"] == label
    assert right >= 8


@pytest.mark.slow
def test_the_api_answers_a_blank_drawing_and_garbage(server):
    status, reading = post_image(server, png(np.full((280, 280), 255, np.uint8)))
    assert status == 200 and reading["digit_found"] is False and "no digit found" in reading["message"]
    status, reading = post_image(server, b"this is no image")
    assert status == 422 and "not an image" in reading["detail"]


# ------------------------------------------------------------------ the page, in Chromium

@pytest.fixture(scope="module")
def page():
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium.new_page(viewport=VIEWPORT)
        finally:
            chromium.close()


def draw(page, strokes: list[list[tuple[float, float]]]) -> None:
    """Mouse strokes through points given in pad pixels (0-280), with steps between points, as a hand moves."""
    box = page.locator("#pad").bounding_box()
    for points in strokes:
        page.mouse.move(box["x"] + points[0][0], box["y"] + points[0][1])
        page.mouse.down()
        for (x0, y0), (x1, y1) in zip(points, points[1:]):
            for step in range(1, 13):
                page.mouse.move(box["x"] + x0 + (x1 - x0) * step / 12, box["y"] + y0 + (y1 - y0) * step / 12)
        page.mouse.up()


def wait_for_reading(page, after: int) -> None:
    """Until a reading newer than the `after`-th is shown and none is pending (the stroke's end was read)."""
    page.wait_for_function(
        "after => Number(document.body.dataset.readings) > after && document.body.dataset.pending === 'false'",
        arg=after, timeout=PAGE_TIMEOUT_MS)


def rendered_panels(page) -> list[dict]:
    """Per layer panel: its name, whether a reading drew it, and how many of its pixels are lit (> 0) and white."""
    return page.evaluate("""() => [...document.querySelectorAll('#layers .layer')].map(panel => {
        const canvas = panel.querySelector('canvas');
        const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
        let lit = 0, white = 0;
        for (let i = 0; i < data.length; i += 4) {
            if (data[i + 3] === 255 && data[i] > 0 && data[i] !== 0xe9) lit++;
            if (data[i + 3] === 255 && data[i] >= 250) white++;
        }
        return {name: panel.dataset.layer, rendered: panel.dataset.rendered === 'true', lit, white};
    })""")


ONE = [[(140, 40), (140, 240)]]
SEVEN = [[(70, 60), (210, 60), (130, 240)]]


@pytest.mark.slow
@pytest.mark.browser
def test_drawing_a_digit_shows_the_guess_and_every_layer(page, server, tmp_path):  # page first: no browser, no training
    model = get(f"{server}/api/model")
    page.goto(server)
    page.wait_for_function("document.body.dataset.ready === 'true'", timeout=PAGE_TIMEOUT_MS)
    panels = rendered_panels(page)
    assert [p["name"] for p in panels] == [layer["name"] for layer in model["layers"]]
    assert not any(p["rendered"] or p["white"] for p in panels)  # placeholders until something is drawn

    for strokes, digit in ((ONE, "1"), (SEVEN, "7")):
        page.click("#clear")
        readings = int(page.evaluate("document.body.dataset.readings"))
        draw(page, strokes)
        wait_for_reading(page, readings)
        assert page.inner_text("#top-guess") == digit
        assert page.inner_text("#top-probability").startswith("p = ")
        assert page.inner_text("#second-guess").startswith("then ")
        for panel in rendered_panels(page):
            assert panel["rendered"] and panel["lit"] > 0 and panel["white"] > 0, panel
        assert page.locator("#probabilities .bar").count() == model["classes"]

    shot = SCREENSHOT if os.environ.get("LENET_BENCH_SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    page.screenshot(path=str(shot), full_page=True)
    assert_picture(shot, VIEWPORT["width"], min_height=VIEWPORT["height"])  # the whole page, at least the window

    page.click("#clear")  # clearing empties every panel again
    assert not any(p["rendered"] or p["white"] for p in rendered_panels(page))


@pytest.mark.slow
def test_a_client_that_disconnects_mid_upload_is_one_line_and_the_server_stays_up(server, trained_store):
    import socket

    host, port = server.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port))) as client:
        client.sendall(b"POST /api/read HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                       b"Content-Length: 50000\r\n\r\n" + b"\x89PNG" + b"0" * 96)
    time.sleep(1.0)
    assert get(f"{server}/api/model")["run"]  # still serving
    log = next(trained_store.root.glob(f"serve-{port}.log")).read_text()
    assert "Traceback" not in log, log[-3000:]
    assert log.count("disconnected during its upload") == 1
