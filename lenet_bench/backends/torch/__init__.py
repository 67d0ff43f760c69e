"""PyTorch backend: models (model.py), training (train.py), the bench's plain loop (reference.py)."""

from __future__ import annotations

import gc
from typing import Any

import torch

from lenet_bench.backends.torch.model import (
    NAME,
    build,
    count_params,
    get_weights,
    layer_outputs,
    predict_logits,
    set_weights,
)
from lenet_bench.backends.torch.reference import matmul_flops, reference_loop
from lenet_bench.backends.torch.train import train
from lenet_bench.device import Device

MLFLOW_FLAVOR = "pytorch"

__all__ = ["MLFLOW_FLAVOR", "NAME", "build", "configure", "count_params", "device_info", "framework_version",
           "get_weights", "layer_outputs", "matmul_flops", "mlflow_save_options", "predict_logits",
           "reference_loop", "release", "set_weights", "train", "unavailable_reason"]


def configure(cores: int) -> None:
    torch.set_num_threads(cores)


def unavailable_reason(device: Device) -> str | None:
    if device == Device.GPU and not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def framework_version() -> str:
    return torch.__version__


def release() -> None:
    """Collect the finished run's model and optimizer (held in reference cycles) and hand back the
    GPU memory PyTorch's allocator keeps cached."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def device_info(device: Device) -> dict[str, str]:
    if device != Device.GPU:
        return {}
    return {"gpu_name": torch.cuda.get_device_name(), "cuda_version": str(torch.version.cuda)}


def mlflow_save_options() -> dict[str, Any]:
    """How MLflow saves this backend's models: pickled, so they load back as the nn.Sequential
    that predict_logits drives (MLflow's default 'pt2' export needs an input example)."""
    return {"pip_requirements": [f"torch=={torch.__version__.split('+')[0]}"], "serialization_format": "pickle"}
