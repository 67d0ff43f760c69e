"""Keras 3 on TensorFlow: models (model.py, built by keras_common), training (train.py), the bench's
plain `fit` loop (reference.py). The registry sets KERAS_BACKEND=tensorflow and TensorFlow's
environment before this package is imported, and calls `configure`.
"""

from __future__ import annotations

import functools
import importlib.metadata
from typing import Any

import keras
import tensorflow as tf

from lenet_bench.backends.keras.model import *  # noqa: F403 (model.py's __all__)
from lenet_bench.backends.keras.reference import *  # noqa: F403
from lenet_bench.backends.keras.train import *  # noqa: F403
from lenet_bench.backends.keras_common.engine import engine_mismatch
from lenet_bench.backends.keras_common.engine import release as release  # the protocol's, shared
from lenet_bench.device import Device

MLFLOW_FLAVOR = "keras"
INTER_OP_THREADS = 1  # every core goes to each op in turn; 2 measured no faster


def configure(cores: int) -> None:
    """Thread pools, log level and determinism; TensorFlow takes the pool sizes only before its first op."""
    import os

    if os.environ.get("LENET_BENCH_TF_VERBOSE") != "1":
        import absl.logging

        absl.logging.set_verbosity(absl.logging.ERROR)
        tf.get_logger().setLevel("ERROR")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(cores)
        tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
        for gpu in tf.config.list_physical_devices("GPU"):
            # Allocate as needed rather than the whole GPU, which PyTorch may share in this process.
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # the runtime is already initialized (an op ran before): the first configuration stands
    # Same seed -> same weights, bit for bit, on CPU; no measurable cost for these models.
    tf.config.experimental.enable_op_determinism()


def unavailable_reason(device: Device) -> str | None:
    if (mismatch := engine_mismatch("tensorflow")) is not None:
        return mismatch
    if device == Device.GPU and not tf.config.list_physical_devices("GPU"):
        return "no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty)"
    return None


def device_info(device: Device) -> dict[str, str]:
    if device != Device.GPU:
        return {}
    details = tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0])
    return {"gpu_name": str(details.get("device_name", "")), "cuda_version": tf.sysconfig.get_build_info().get("cuda_version", "")}


def mlflow_save_options() -> dict[str, Any]:
    """How MLflow saves this backend's models: the native .keras format."""
    return {"pip_requirements": [f"keras=={keras.__version__}", f"{_tensorflow_distribution()}=={tf.__version__}"]}


@functools.cache  # scans every installed distribution's files: 0.3-0.7 s, once per process
def _tensorflow_distribution() -> str:
    # The same `tensorflow` module ships as tensorflow, tensorflow-cpu, tensorflow-macos, ...
    names = importlib.metadata.packages_distributions().get("tensorflow") or ["tensorflow"]
    return names[0].replace("_", "-")
