"""Keras on TensorFlow, training: the data sit in one tensor and batches are gathered by index
inside a compiled step (tf.function); losses and hits are summed in-graph and read once per
epoch; evaluation runs at a large batch.

XLA (jit_compile) gave no steady-state gain on LeNet-5 (batch 128, 2 CPU cores), cost 5-9 s
of compilation, and has no deterministic MaxPool gradient, so it is off. Op determinism cost
nothing measurable.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import keras
import numpy as np
import tensorflow as tf

from lenet_bench.backends.keras.model import NAME, count_params, logits, sync, tf_device
from lenet_bench.backends.keras.sdlm import StepLoop, diagonal_hessian
from lenet_bench.backends.keras_common.device_data import RecentDeviceData
from lenet_bench.backends.keras_common.losses import Loss, loss_function
from lenet_bench.backends.keras_common.model import to_channels_last
from lenet_bench.backends.keras_common.optimizers import make_optimizer
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec
from lenet_bench.training import timing
from lenet_bench.training.augment import epoch_images
from lenet_bench.training.checkpoint import BackendState, Checkpoint, load_arrays, save_arrays
from lenet_bench.training.evaluation import finish_run
from lenet_bench.training.loop import curvature_kept, hessian_sample, train_epochs
from lenet_bench.training.result import Progress, RunResult

if TYPE_CHECKING:
    from lenet_bench.data import PreparedData


__all__ = ["framework_version", "train"]  # what the backend's package takes from here (the protocol's)

WARMUP_STEPS = 5  # first steps trace and compile the step function; timed apart
PROGRESS_EVERY = 10  # steps between progress updates
JIT_COMPILE = False  # XLA: see the module docstring


def framework_version() -> str:
    return f"{keras.__version__} (tensorflow {tf.__version__})"


def evaluate(model: keras.Model, x: tf.Tensor, y: tf.Tensor, loss_fn: Loss | None = None) -> tuple[float, float, np.ndarray]:
    out = logits(model, x)
    loss = float(loss_fn(out, y)) if loss_fn else float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, out)))
    predictions = tf.argmax(out, axis=1)
    return loss, float(tf.reduce_mean(tf.cast(predictions == y, tf.float32))), predictions.numpy()


class Trainer:
    """A compiled train step over data held as tensors, with in-graph loss and hit sums."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, x: tf.Tensor, y: tf.Tensor,
                 weight_decay: float, loss_fn: Loss | None = None):
        self.model, self.optimizer = model, optimizer
        self.loss_fn = loss_fn
        self.x, self.y = x, y
        self.weight_decay = weight_decay
        self.loss_sum = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.hits = tf.Variable(0, dtype=tf.int64, trainable=False)
        optimizer.build(model.trainable_variables)  # its slots must exist before tracing
        # The data go in as arguments, not as captures: TensorFlow keeps a traced graph's captured tensors
        # after the run ends (every finished run would keep its copy of the training set in memory).
        self.step = tf.function(self._step, jit_compile=JIT_COMPILE, reduce_retracing=True,
                                input_signature=[tf.TensorSpec((None, *x.shape[1:]), x.dtype),
                                                 tf.TensorSpec((None,), y.dtype),
                                                 tf.TensorSpec((None,), tf.int64), tf.TensorSpec((), tf.float32)])

    def _step(self, x: tf.Tensor, y: tf.Tensor, index: tf.Tensor, lr: tf.Tensor) -> None:
        xb, yb = tf.gather(x, index), tf.gather(y, index)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            out = self.model(xb, training=True)
            loss = (self.loss_fn(out, yb) if self.loss_fn
                    else tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, out)))
        grads = tape.gradient(loss, variables)
        if self.weight_decay:
            # PyTorch's (coupled) weight decay: an L2 term in the gradient, biases included.
            grads = [g + self.weight_decay * v for g, v in zip(grads, variables)]
        self.optimizer.learning_rate.assign(lr)
        self.optimizer.apply(grads, variables)
        self.loss_sum.assign_add(loss * tf.cast(tf.shape(index)[0], tf.float32))
        self.hits.assign_add(tf.reduce_sum(tf.cast(tf.argmax(out, axis=1) == yb, tf.int64)))

    def take_sums(self) -> tuple[float, int]:
        values = float(self.loss_sum.numpy()), int(self.hits.numpy())
        self.loss_sum.assign(0.0)
        self.hits.assign(0)
        return values

    def run(self, batches: list[np.ndarray], lrs: list[float]) -> None:
        for index, lr in zip(batches, lrs):
            self.step(self.x, self.y, tf.constant(index, tf.int64), tf.constant(lr, tf.float32))


def training_state(model: keras.Model, optimizer: keras.optimizers.Optimizer) -> BackendState:
    """Every variable of the model (seed generators included) and of the built optimizer (its step count too)."""
    variables = [*model.variables, *optimizer.variables]

    def save(folder: Path) -> None:
        save_arrays(folder / "keras.npz", [v.numpy() for v in variables])

    def restore(folder: Path) -> None:
        values = load_arrays(folder / "keras.npz", len(variables))
        for variable, value in zip(variables, values):
            variable.assign(value)

    return BackendState(save, restore)


DEVICE_DATA: RecentDeviceData[tuple[tf.Tensor, ...]] = RecentDeviceData()  # this process's, between runs


def train(model: keras.Model, spec: Spec, data: PreparedData, seed: int, device: Device,
          progress: Progress, max_steps_per_epoch: int | None = None,
          checkpoint: Checkpoint | None = None) -> RunResult:
    with tf.device(tf_device(device)):
        return _train(model, spec, data, seed, device, progress, max_steps_per_epoch, checkpoint)


def _train(model: keras.Model, spec: Spec, data: PreparedData, seed: int, device: Device,
           progress: Progress, max_steps_per_epoch: int | None, checkpoint: Checkpoint | None) -> RunResult:
    clock_sync = sync(device)
    keras.utils.set_random_seed(seed)
    if device == Device.GPU:
        tf.config.experimental.reset_memory_stats("GPU:0")  # this run's peak, not the process's
    clock = timing.Stopwatch(clock_sync)

    clock.start()
    x_train, y_train, x_val, y_val, x_test, y_test = DEVICE_DATA.get((data.key, device), lambda: tuple(
        tf.constant(array) for array in (to_channels_last(data.x_train), data.y_train, to_channels_last(data.x_val),
                                         data.y_val, to_channels_last(data.x_test), data.y_test)))
    data_seconds = clock.read()

    optimizer, loss_fn = make_optimizer(spec), loss_function(spec.train.loss)
    sdlm = spec.train.optimizer.name == "sdlm"
    trainer = (StepLoop(model, optimizer, x_train, y_train, loss_fn) if sdlm
               else Trainer(model, optimizer, x_train, y_train, spec.train.optimizer.weight_decay, loss_fn))

    def validate() -> tuple[float | None, float | None]:
        return evaluate(model, x_val, y_val, loss_fn)[:2] if len(data.x_val) else (None, None)

    def estimate_hessian(epoch: int) -> None:
        # sdlm (LeCun et al. 1998, section III.C): the Hessian diagonal re-estimated before each pass.
        index = hessian_sample(len(data.x_train), spec.train.optimizer.hessian_samples, seed, epoch)
        optimizer.set_curvature(diagonal_hessian(model, tf.gather(trainer.x, index), spec.train.loss),
                                keep=curvature_kept(spec.train.optimizer, epoch))

    def device_memory() -> dict[str, float]:
        if device != Device.GPU:
            return {}
        return {"peak_gpu_mb": tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20}

    def load_images(distorted: np.ndarray) -> None:
        trainer.x = tf.constant(to_channels_last(distorted))

    loop = train_epochs(spec.train, len(data.x_train), seed, max_steps_per_epoch, clock, progress,
                        run_steps=trainer.run, take_sums=trainer.take_sums, validate=validate,
                        warmup_steps=WARMUP_STEPS, progress_every=PROGRESS_EVERY,
                        before_epoch=estimate_hessian if sdlm else None,
                        checkpoint=checkpoint, state=training_state(model, optimizer),
                        distorted=epoch_images(spec.data.augment, data.x_train, seed, data.background),
                        load_images=load_images)
    return finish_run(backend=NAME, device=device, framework_version=framework_version(),
                      params=count_params(model), loop=loop,
                      evaluate_test=lambda: evaluate(model, x_test, y_test, loss_fn),
                      predict_batch=lambda xb: logits(model, xb), x_test=x_test, sync=clock_sync,
                      data_seconds=data_seconds, model=model, device_memory=device_memory)
