"""PyTorch backend: models (model.py), training (train.py), the bench's plain loop (reference.py)."""

from __future__ import annotations

import gc
from typing import Any

import torch

from lenet_bench.backends.torch.model import *  # noqa: F403 (model.py's __all__)
from lenet_bench.backends.torch.reference import *  # noqa: F403
from lenet_bench.backends.torch.train import *  # noqa: F403
from lenet_bench.device import Device

MLFLOW_FLAVOR = "pytorch"


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
