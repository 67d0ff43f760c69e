"""Keras 3 on JAX: models (model.py, built by keras_common), training with Keras' stateless step under
`jax.jit` (train.py), the bench's plain `fit` loop (reference.py). The registry sets KERAS_BACKEND=jax
before this package is imported, and calls `configure`.

Keras reads its engine once per process: this backend and `keras` (Keras on TensorFlow) never share
one (`backends.host_conflict`).
"""

from __future__ import annotations

import os
import re
from typing import Any

import jax
import jaxlib
import keras

from lenet_bench.backends.keras_common.engine import engine_mismatch
from lenet_bench.backends.keras_common.engine import release as release  # the protocol's, shared
from lenet_bench.backends.keras_jax.model import *  # noqa: F403 (model.py's __all__)
from lenet_bench.backends.keras_jax.reference import *  # noqa: F403
from lenet_bench.backends.keras_jax.train import *  # noqa: F403
from lenet_bench.device import Device

MLFLOW_FLAVOR = "keras"


def configure(cores: int) -> None:
    """Size XLA's CPU thread pools (Eigen intra-op and the client's own) to `cores`.

    XLA reads PJRT_NPROC once, when JAX creates its CPU client at the first JAX operation
    (without it: every core of this process's affinity mask); JAX has no setting for it and
    nothing resizes the pools afterwards. The registry calls this right after import, and
    importing Keras on JAX runs no operation; a later call, after the first operation, changes
    nothing for this process.
    """
    os.environ["PJRT_NPROC"] = str(cores)


def unavailable_reason(device: Device) -> str | None:
    if (mismatch := engine_mismatch("jax")) is not None:
        return mismatch
    if device == Device.GPU and not _gpus():
        return "no GPU visible to JAX (jax.devices('gpu') found none; a GPU needs jax[cuda12], not the CPU build)"
    return None


def _gpus() -> list[jax.Device]:
    try:
        return jax.devices("gpu")
    except RuntimeError:  # no GPU platform in this jaxlib, or it failed to initialize
        return []


def device_info(device: Device) -> dict[str, str]:
    if device != Device.GPU:
        return {}
    gpu = _gpus()[0]
    return {"gpu_name": gpu.device_kind, "cuda_version": _cuda_version(gpu.client)}


def _cuda_version(client: Any) -> str:
    """'12.8' from the CUDA runtime version the GPU plugin reports (major * 1000 + minor * 10); '' if none."""
    number = getattr(client, "cuda_version", None)  # newer plugins report it as an attribute
    if number is None:
        found = re.search(r"cuda (\d+)", client.platform_version)  # older ones in their platform version
        number = int(found[1]) if found else None
    return f"{number // 1000}.{number % 1000 // 10}" if number else ""


def mlflow_save_options() -> dict[str, Any]:
    """How MLflow saves this backend's models: the native .keras format (MLflow records the JAX engine)."""
    return {"pip_requirements": [f"keras=={keras.__version__}", f"jax=={jax.__version__}",
                                 f"jaxlib=={jaxlib.__version__}"]}
