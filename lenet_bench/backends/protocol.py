"""The protocol every backend module implements (documentation and type checking only).

A backend returns plain data (`RunResult`, NumPy arrays); it never logs to MLflow or
writes results: that is the runner's job.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lenet_bench.data import PreparedData
from lenet_bench.spec import Spec
from lenet_bench.training import Progress, RunResult


class Backend(Protocol):
    NAME: str
    MLFLOW_FLAVOR: str  # the mlflow module that logs its models ("pytorch", "keras")

    def unavailable_reason(self, device: str) -> str | None: ...

    def framework_version(self) -> str: ...

    def mlflow_save_options(self) -> dict:
        """Keyword arguments for mlflow.<MLFLOW_FLAVOR>.save_model (pip requirements at least)."""

    def build(self, spec: Spec, seed: int, device: str) -> Any:
        """The spec's model, with canonical initial weights for `seed` unless init is 'framework'."""

    def count_params(self, model: Any) -> int: ...

    def get_weights(self, model: Any) -> list[np.ndarray]:
        """Canonical layout (see init.py)."""

    def set_weights(self, model: Any, weights: list[np.ndarray]) -> None: ...

    def predict_logits(self, model: Any, x: np.ndarray, device: str) -> np.ndarray:
        """x: float32 NCHW; returns (N, classes) logits."""

    def train(self, model: Any, spec: Spec, data: PreparedData, seed: int, device: str,
              progress: Progress, max_steps_per_epoch: int | None = None) -> RunResult: ...
