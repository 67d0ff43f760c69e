"""What test_keras_jax.py checks, gathered in one fresh process (this test process runs Keras on TensorFlow).

`report` starts from the environment it is given, sets up keras-jax with `backends.activate` and
returns plain data only; the test compares.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

from lenet_bench import backends
from lenet_bench.data import load_dataset, prepare
from lenet_bench.spec import Spec
from lenet_bench.training.result import SilentProgress

XLA_POOL_THREAD = "tf_XLAEigen"  # the name XLA gives the threads of its CPU intra-op pool
SCHEDULED = {  # 2 epochs of 8 steps (the last one short) at 16 different learning rates
    "name": "scheduled",
    "data": {"input_size": 28, "subset": 512, "test_subset": 256, "validation_split": 0.1},
    "model": {"conv": [{"filters": 4}, {"filters": 8}], "dense": [32]},
    "train": {"optimizer": {"name": "adam", "lr": 0.003}, "batch_size": 64, "epochs": 2,
              "schedule": "cosine", "warmup_epochs": 0.5},
}


def _thread_names() -> list[str]:
    return [(task / "comm").read_text().strip() for task in Path("/proc/self/task").iterdir()]


class _CompileCounter(logging.Handler):
    """Counts JAX's "Compiling jit(<name>)" log records (with jax_log_compiles on)."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Compiling jit("):
            self.names.append(message[len("Compiling jit("):].split(")")[0])


def report(mnist_dir: Path) -> dict[str, Any]:
    found: dict[str, Any] = {"keras_backend_before": os.environ.get("KERAS_BACKEND")}
    try:
        backend = backends.activate("keras-jax")
    except backends.BackendUnavailable as err:
        return {"unavailable": str(err)}
    import jax
    import keras

    from lenet_bench.backends.keras_jax.train import Trainer

    found["engine"] = keras.backend.backend()
    found["pjrt_nproc_after_activate"] = os.environ.get("PJRT_NPROC")
    found["usable_cores"] = backends.usable_cores()
    # Still before JAX's first operation: a pool size no default gives, to see that XLA takes it.
    found["configured_cores"] = backends.usable_cores() + 1
    backend.configure(found["configured_cores"])
    jax.numpy.ones(8).sum().block_until_ready()
    found["xla_pool_threads"] = _thread_names().count(XLA_POOL_THREAD) if Path("/proc/self/task").is_dir() else None

    found["host_conflict"] = {name: backends.host_conflict(name) for name in backends.names()}
    try:
        backends.activate("keras")
        found["activate_keras"] = None
    except RuntimeError as err:
        found["activate_keras"] = str(err)

    spec = Spec.model_validate(SCHEDULED)
    d = spec.data
    data = prepare(load_dataset("mnist", mnist_dir, download=False), input_size=d.input_size,
                   normalization=d.normalization, validation_split=d.validation_split, subset=d.subset,
                   test_subset=d.test_subset)
    model = backend.build(spec, 0, "cpu")
    found["initial_weights"] = backend.get_weights(model)
    counter = _CompileCounter()
    logging.getLogger("jax").addHandler(counter)
    jax.config.update("jax_log_compiles", True)
    try:
        result = backend.train(model, spec, data, 0, "cpu", SilentProgress())
    finally:
        jax.config.update("jax_log_compiles", False)
        logging.getLogger("jax").removeHandler(counter)
    found["step_name"] = Trainer._step.__name__
    found["compiled"] = counter.names
    found["history"] = result.history
    found["returned_model_is_the_built_one"] = result.model is model
    found["trained_weights"] = backend.get_weights(result.model)
    found["val_logits"] = backend.predict_logits(result.model, data.x_val, "cpu")
    found["y_val"] = data.y_val
    found["val_layer_outputs_last"] = backend.layer_outputs(result.model, data.x_val)[-1]

    sdlm = Spec.model_validate({**SCHEDULED, "model": {**SCHEDULED["model"], "pool": "none"},  # as sdlm requires
                                "train": {"optimizer": {"name": "sdlm"}, "batch_size": 64}})
    try:
        backend.train(backend.build(sdlm, 0, "cpu"), sdlm, data, 0, "cpu", SilentProgress(), 1)
        found["sdlm_refusal"] = None
    except NotImplementedError as err:
        found["sdlm_refusal"] = str(err)

    plain = Spec.model_validate({**SCHEDULED, "train": {"optimizer": {"name": "sgd", "lr": 0.05}, "batch_size": 64}})
    found["reference"] = backend.reference_loop(plain, data, 0, "cpu", repeats=1)
    found["matmul_flops"] = backend.matmul_flops("cpu", 64, 2)
    found["tensorflow_imported"] = "tensorflow" in sys.modules
    return found
