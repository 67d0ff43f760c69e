"""A backend that trains nothing, for testing the engine without a framework.

It predicts the most frequent training label, so its accuracy is real (about 11% on
MNIST) and the bookkeeping can be checked quickly. Tests make it fail, be interrupted,
die or wait at a chosen seed; in a worker process the same sets come from the environment
(LENET_BENCH_NOOP_<KIND>=0,2), since a spawned process starts from a fresh import.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from lenet_bench.backends.protocol import ReferenceResult
from lenet_bench.training.result import EpochRecord, RunResult

NAME = "noop"
MLFLOW_FLAVOR = None


def _seeds(kind: str) -> set[int]:
    return {int(s) for s in os.environ.get(f"LENET_BENCH_NOOP_{kind}", "").split(",") if s}


FAIL_SEEDS: set[int] = _seeds("FAIL")
INTERRUPT_SEEDS: set[int] = _seeds("INTERRUPT")
KILL_SEEDS: set[int] = _seeds("KILL")  # the process dies on the spot, as under SIGKILL: no finally, no atexit
SLOW_SEEDS: set[int] = _seeds("SLOW")  # train() waits, so that a test can signal the process meanwhile
NAN_SEEDS: set[int] = _seeds("NAN")  # the loss diverges
FILL_SEEDS: set[int] = _seeds("FILL")  # the disk of LENET_BENCH_NOOP_FILL_PATH fills up while it trains
TRAINED: list[tuple[str, int]] = []  # (variant, seed) of every train() call in this process
RELEASED: list[int] = []  # len(TRAINED) at each release() call
SLOW_SECONDS = float(os.environ.get("LENET_BENCH_NOOP_SLOW_SECONDS", "60"))
# A slow seed ends early once this file exists: a test that needs it running only while it acts releases it.
SLOW_UNTIL_FILE = os.environ.get("LENET_BENCH_NOOP_SLOW_UNTIL_FILE", "")


def fill_disk(path: Path) -> None:
    """Another program takes the disk of `path`: a file written until the disk is full."""
    with open(path, "wb", buffering=0) as file:  # unbuffered: the write that fails is this one, not close()
        try:
            while True:
                file.write(b"\0" * 65536)
        except OSError:
            pass


def configure(cores):
    pass


def unavailable_reason(device):
    # A process started with LENET_BENCH_NOOP_GPU=1 plays a GPU worker (the Dask test's GPU-resource worker).
    if device != "cpu" and os.environ.get("LENET_BENCH_NOOP_GPU") != "1":
        return "noop runs on the CPU only"
    return None


def framework_version():
    return "0"


def release():
    RELEASED.append(len(TRAINED))


def device_info(device):
    return {}


def mlflow_save_options():
    return {}


def build(spec, seed, device):
    return {"spec": spec, "weights": [np.zeros(spec.summary().params, np.float32)]}


def count_params(model):
    return sum(w.size for w in model["weights"])


def get_weights(model):
    return [w.copy() for w in model["weights"]]


def set_weights(model, weights):
    model["weights"] = [w.copy() for w in weights]


def predict_logits(model, x, device="cpu"):
    logits = np.zeros((len(x), model["spec"].model.num_classes), np.float32)
    logits[:, model.get("label", 0)] = 1.0
    return logits


def layer_outputs(model, x):
    return [predict_logits(model, x)]


def reference_loop(spec, data, seed, device, repeats):
    return ReferenceResult([1000.0] * repeats, 0.1)


def matmul_flops(device, size, repeats):
    return 1e9


def train(model, spec, data, seed, device, progress, max_steps_per_epoch=None, checkpoint=None):
    from lenet_bench.training.loop import Diverged

    if seed in INTERRUPT_SEEDS:
        raise KeyboardInterrupt
    if seed in KILL_SEEDS:
        os._exit(137)
    if seed in SLOW_SEEDS:
        print("noop: training slowly", flush=True)
        from lenet_bench import stopping

        deadline = time.monotonic() + SLOW_SECONDS
        released = Path(SLOW_UNTIL_FILE) if SLOW_UNTIL_FILE else None
        while time.monotonic() < deadline and not (released and released.exists()):
            # "steps", with a stop looked for between them as the real loop does
            stopping.check()
            time.sleep(0.05)
    if seed in FAIL_SEEDS:
        raise RuntimeError("planned failure")
    if seed in NAN_SEEDS:
        raise Diverged(1, float("nan"))
    if seed in FILL_SEEDS:
        fill_disk(Path(os.environ["LENET_BENCH_NOOP_FILL_PATH"]))
    TRAINED.append((spec.name, seed))
    model["label"] = int(np.bincount(data.y_train).argmax())
    predictions = predict_logits(model, data.x_test).argmax(1)
    history = []
    progress.start(spec.train.epochs)
    for epoch in range(1, spec.train.epochs + 1):
        accuracy = float((data.y_train == model["label"]).mean())
        history.append(EpochRecord(epoch, 2.3, accuracy, 2.3, accuracy, 0.01, len(data.y_train), 0.01 * epoch))
        progress.advance(1)
        progress.epoch_done(history[-1])
    return RunResult(
        backend=NAME, device=device, framework_version="0", params=count_params(model), history=history,
        test_loss=2.3, test_accuracy=float((predictions == data.y_test).mean()), test_predictions=predictions,
        warmup_seconds=0.001, warmup_images=1, steady_seconds=0.01, steady_images=len(data.y_train),
        data_seconds=0.0, eval_seconds=0.0, timings={"latency_p50_ms": 0.1}, model=model,
    )
