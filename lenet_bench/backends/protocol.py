"""The protocol every backend module implements, checked by the type checker.

A backend is a module (a folder under `backends/` with the same module names as the others)
whose package exposes these names. It returns plain data (`RunResult`, NumPy arrays); it
never logs to MLflow or writes results: that is the recorder's job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

from lenet_bench.device import Device

if TYPE_CHECKING:
    import numpy as np

    from lenet_bench.data import PreparedData
    from lenet_bench.spec.schema import Spec
    from lenet_bench.training.checkpoint import Checkpoint
    from lenet_bench.training.result import Progress, RunResult


class ReferenceResult(NamedTuple):
    """What the bench's plain loop (written the usual way for the framework) measured."""

    rates: list[float]  # training images/s per timed epoch
    test_accuracy: float  # after the last epoch


class Backend(Protocol):
    @property
    def NAME(self) -> str: ...

    @property
    def MLFLOW_FLAVOR(self) -> str | None:
        """The mlflow module that saves its models ("pytorch", "keras"); None: not saved."""

    def configure(self, cores: int) -> None:
        """Size the framework's thread pools to `cores` (before its first op where it matters)."""

    def unavailable_reason(self, device: Device) -> str | None:
        """None when `device` can be used from this process, else why not."""

    def framework_version(self) -> str: ...

    def release(self) -> None:
        """Free what finished runs left in the framework (models, compiled functions, cached memory)."""

    def device_info(self, device: Device) -> dict[str, str]:
        """What the run's accelerator is (name, driver, CUDA version); empty for the CPU."""

    def mlflow_save_options(self) -> dict[str, Any]:
        """Keyword arguments for mlflow.<MLFLOW_FLAVOR>.save_model (pip requirements at least)."""

    def build(self, spec: Spec, seed: int, device: Device) -> Any:
        """The spec's model, with canonical initial weights for `seed` unless init is 'framework'."""

    def count_params(self, model: Any) -> int: ...

    def get_weights(self, model: Any) -> list[np.ndarray]:
        """Canonical layout (see training/weights.py)."""

    def set_weights(self, model: Any, weights: list[np.ndarray]) -> None: ...

    def predict_logits(self, model: Any, x: np.ndarray, device: Device) -> np.ndarray:
        """x: float32 NCHW; returns (N, classes) logits."""

    def layer_outputs(self, model: Any, x: np.ndarray) -> list[np.ndarray]:
        """On the CPU, the output of every layer of the description (spec.arch), in order, NCHW or (N, units)."""

    def train(self, model: Any, spec: Spec, data: PreparedData, seed: int, device: Device,
              progress: Progress, max_steps_per_epoch: int | None = None,
              checkpoint: Checkpoint | None = None) -> RunResult:
        """With a `checkpoint`: save every complete epoch there, and go on from the one it holds."""


@runtime_checkable
class BenchBackend(Backend, Protocol):
    """What `bench` asks of a backend besides: its framework's usual loop, and the device's ceiling."""

    def reference_loop(self, spec: Spec, data: PreparedData, seed: int, device: Device, repeats: int) -> ReferenceResult:
        """The bench's plain loop: the framework's usual way to train, one warm-up epoch then `repeats` timed ones."""

    def matmul_flops(self, device: Device, size: int, repeats: int) -> float:
        """FLOP/s of a float32 size x size matrix product: about the most the device delivers."""


if TYPE_CHECKING:
    # The type checker holds every built-in backend module to the protocol (a module can implement one).
    from lenet_bench.backends import keras as _keras
    from lenet_bench.backends import keras_jax as _keras_jax
    from lenet_bench.backends import torch as _torch

    _BUILT_IN: list[BenchBackend] = [_torch, _keras, _keras_jax]
