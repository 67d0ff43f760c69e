"""Keras on JAX, training: Keras' stateless training step under `jax.jit`, as in the Keras guide
"Writing a training loop from scratch in JAX": `model.stateless_call` inside the loss,
`jax.value_and_grad`, `optimizer.stateless_apply`. The data sit on the device as JAX arrays and
batches are gathered by index inside the step; the learning rate is an input of the step (a new
rate is a new value, not a retrace); losses and hits are summed on the device and read once per
epoch; the variables are written back into the model when training ends. The loss is the spec's,
from keras_common (the formulas the other backends use).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jax
import keras
import numpy as np
from jax import numpy as jnp

from lenet_bench.backends.keras_common.device_data import RecentDeviceData
from lenet_bench.backends.keras_common.losses import Loss, loss_function
from lenet_bench.backends.keras_common.model import to_channels_last
from lenet_bench.backends.keras_common.optimizers import make_optimizer
from lenet_bench.backends.keras_jax.model import (
    NAME,
    DeviceSync,
    ModelState,
    count_params,
    jax_device,
    logits,
    model_state,
)
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec
from lenet_bench.training import timing
from lenet_bench.training.augment import epoch_images
from lenet_bench.training.checkpoint import BackendState, Checkpoint, load_arrays, save_arrays
from lenet_bench.training.evaluation import finish_run
from lenet_bench.training.loop import train_epochs
from lenet_bench.training.result import Progress, RunResult

if TYPE_CHECKING:
    from lenet_bench.data import PreparedData


__all__ = ["framework_version", "train"]  # what the backend's package takes from here (the protocol's)

WARMUP_STEPS = 5  # the first steps trace and compile the step (and the short last batch compiles once more)
PROGRESS_EVERY = 10  # steps between progress updates

Arrays = list[jax.Array]
TrainState = tuple[Arrays, Arrays, Arrays]  # trainable, non-trainable and optimizer variable values
Sums = tuple[jax.Array, jax.Array]  # summed loss, hits


def framework_version() -> str:
    return f"{keras.__version__} (jax {jax.__version__})"


def check_supported(spec: Spec) -> None:
    """sdlm needs a Hessian estimate before each epoch that this backend does not have: say so by name."""
    if spec.train.optimizer.name not in ("sgd", "adam"):
        raise NotImplementedError(f"the {NAME} backend has the sgd and adam optimizers only; "
                                  f"received {spec.train.optimizer.name!r}")


@partial(jax.jit, static_argnums=0)
def _scores(loss_fn: Loss, outputs: jax.Array, labels: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    predictions = jnp.argmax(outputs, axis=1)
    return loss_fn(outputs, labels), jnp.mean(predictions == labels), predictions


def evaluate(model: keras.Model, x: jax.Array, y: jax.Array, loss_fn: Loss,
             state: ModelState | None = None) -> tuple[float, float, np.ndarray]:
    """(loss, accuracy, predictions) of the model, or of `state` when given, on NHWC `x`."""
    loss, accuracy, predictions = _scores(loss_fn, logits(model, x, state), y)
    return float(loss), float(accuracy), np.asarray(predictions)


class Trainer:
    """The jitted stateless step over data held as JAX arrays, with on-device loss and hit sums."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, loss_fn: Loss, x: jax.Array,
                 y: jax.Array, weight_decay: float, sync: DeviceSync, device: jax.Device):
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.x, self.y = x, y
        self.weight_decay = weight_decay
        self.sync, self.device = sync, device
        optimizer.build(model.trainable_variables)  # its slots must exist before the first step
        # The learning rate is one of the optimizer's variables: each step sets it from its input.
        self.lr_slot = next(i for i, v in enumerate(optimizer.variables) if v is optimizer.learning_rate)
        trainable, non_trainable = model_state(model)
        # Copies, since the step donates its input buffers and the model's own must outlive training;
        # committed to the device like the step's outputs, or the second step would compile again.
        values = (trainable, non_trainable, [v.value for v in optimizer.variables])
        self.state: TrainState = jax.device_put(jax.tree.map(jnp.copy, values), device)
        self.sums: Sums = self._zero_sums()
        self.step = jax.jit(self._step, donate_argnums=(0, 1))

    def _zero_sums(self) -> Sums:
        return jax.device_put((np.float32(0), np.int32(0)), self.device)

    def _loss_and_updates(self, trainable: Arrays, non_trainable: Arrays, xb: jax.Array,
                          yb: jax.Array) -> tuple[jax.Array, tuple[jax.Array, Arrays]]:
        outputs, non_trainable = self.model.stateless_call(trainable, non_trainable, xb, training=True)
        return self.loss_fn(outputs, yb), (outputs, non_trainable)

    def _step(self, state: TrainState, sums: Sums, x: jax.Array, y: jax.Array, index: jax.Array,
              lr: jax.Array) -> tuple[TrainState, Sums]:
        trainable, non_trainable, optimizer_variables = state
        xb, yb = x[index], y[index]
        grad_fn = jax.value_and_grad(self._loss_and_updates, has_aux=True)
        (loss, (outputs, non_trainable)), grads = grad_fn(trainable, non_trainable, xb, yb)
        if self.weight_decay:
            # PyTorch's (coupled) weight decay: an L2 term in the gradient, biases included.
            grads = [g + self.weight_decay * v for g, v in zip(grads, trainable)]
        optimizer_variables = list(optimizer_variables)
        optimizer_variables[self.lr_slot] = lr
        trainable, optimizer_variables = self.optimizer.stateless_apply(optimizer_variables, grads, trainable)
        loss_sum, hits = sums
        sums = (loss_sum + loss * index.shape[0],
                hits + jnp.sum(jnp.argmax(outputs, axis=1) == yb, dtype=jnp.int32))
        return (trainable, non_trainable, optimizer_variables), sums

    def run(self, batches: list[np.ndarray], lrs: list[float]) -> None:
        for index, lr in zip(batches, lrs):
            self.state, self.sums = self.step(self.state, self.sums, self.x, self.y,
                                              np.asarray(index, np.int32), np.float32(lr))
        self.sync.track((self.state, self.sums))  # the clock reads once the last step is done

    def take_sums(self) -> tuple[float, int]:
        loss_sum, hits = float(self.sums[0]), int(self.sums[1])
        self.sums = self._zero_sums()
        return loss_sum, hits

    def training_state(self) -> BackendState:
        """The step's state (model and optimizer variables, seed generators among the non-trainable ones)."""

        def save(folder: Path) -> None:
            save_arrays(folder / "keras_jax.npz", [np.asarray(v) for v in jax.tree.leaves(self.state)])

        def restore(folder: Path) -> None:
            structure = jax.tree.structure(self.state)
            values = load_arrays(folder / "keras_jax.npz", structure.num_leaves)
            self.state = jax.device_put(jax.tree.unflatten(structure, values), self.device)

        return BackendState(save, restore)

    def model_state(self) -> ModelState:
        return self.state[0], self.state[1]

    def write_back(self) -> None:
        """Into the model's variables, so that saving, count_params and get_weights see the trained model."""
        trainable, non_trainable, _ = self.state
        for variable, value in zip(self.model.trainable_variables, trainable):
            variable.assign(value)
        for variable, value in zip(self.model.non_trainable_variables, non_trainable):
            variable.assign(value)


DEVICE_DATA: RecentDeviceData[tuple[tuple[jax.Array, jax.Array], ...]] = RecentDeviceData()  # this process's


def train(model: keras.Model, spec: Spec, data: PreparedData, seed: int, device: Device,
          progress: Progress, max_steps_per_epoch: int | None = None,
          checkpoint: Checkpoint | None = None) -> RunResult:
    check_supported(spec)
    with jax.default_device(jax_device(device)):
        return _train(model, spec, data, seed, device, progress, max_steps_per_epoch, checkpoint)


def _train(model: keras.Model, spec: Spec, data: PreparedData, seed: int, device: Device,
           progress: Progress, max_steps_per_epoch: int | None, checkpoint: Checkpoint | None) -> RunResult:
    sync = DeviceSync()
    dev = jax_device(device)
    clock = timing.Stopwatch(sync)

    clock.start()

    def on_device(x: np.ndarray, labels: np.ndarray) -> tuple[jax.Array, jax.Array]:
        return sync.track(jax.device_put((to_channels_last(x), labels.astype(np.int32)), dev))

    (x_train, y_train), (x_val, y_val), (x_test, y_test) = DEVICE_DATA.get((data.key, device), lambda: (
        on_device(data.x_train, data.y_train), on_device(data.x_val, data.y_val), on_device(data.x_test, data.y_test)))
    data_seconds = clock.read()

    loss_fn = loss_function(spec.train.loss)
    trainer = Trainer(model, make_optimizer(spec), loss_fn, x_train, y_train, spec.train.optimizer.weight_decay,
                      sync, dev)

    def validate() -> tuple[float | None, float | None]:
        return evaluate(model, x_val, y_val, loss_fn, trainer.model_state())[:2] if len(data.x_val) else (None, None)

    def load_images(distorted: np.ndarray) -> None:
        trainer.x = jax.device_put(to_channels_last(distorted), dev)

    loop = train_epochs(spec.train, len(data.x_train), seed, max_steps_per_epoch, clock, progress,
                        run_steps=trainer.run, take_sums=trainer.take_sums, validate=validate,
                        warmup_steps=WARMUP_STEPS, progress_every=PROGRESS_EVERY,
                        checkpoint=checkpoint, state=trainer.training_state(),
                        distorted=epoch_images(spec.data.augment, data.x_train, seed, data.background),
                        load_images=load_images)
    trainer.write_back()

    def predict_batch(xb: jax.Array) -> Any:
        return sync.track(logits(model, xb))

    return finish_run(backend=NAME, device=device, framework_version=framework_version(), params=count_params(model),
                      loop=loop, evaluate_test=lambda: evaluate(model, x_test, y_test, loss_fn),
                      predict_batch=predict_batch, x_test=x_test, sync=sync, data_seconds=data_seconds,
                      model=model, device_memory=_device_memory(dev))


def _device_memory(dev: jax.Device) -> Callable[[], dict[str, float]]:
    def peak() -> dict[str, float]:
        # JAX keeps no resettable peak: this is the process's peak so far (a run's own in a fresh process).
        stats = dev.memory_stats() if dev.platform == "gpu" else None
        return {"peak_gpu_mb": stats["peak_bytes_in_use"] / 2**20} if stats else {}
    return peak
