"""Keras 3 backend on TensorFlow.

Mirrors torch_backend: same batch order and learning-rate schedule (training.py), same
canonical initial weights (init.py), logits out and loss from logits, so the two
backends agree to float32 rounding. Keras is NHWC: inputs are moved to channels-last
once, and the first dense layer's input rows are permuted between the canonical (C, H, W)
flatten order and Keras' (H, W, C) one.

Speed choices (LeNet-5, batch 128, measured on 2 CPU cores): data sit in one tensor and
batches are gathered by index inside a compiled step (tf.function); losses and hits are
summed in-graph and read once per epoch; evaluation runs at a large batch. XLA
(jit_compile) gave no steady-state gain, cost 5-9 s of compilation, and has no
deterministic MaxPool gradient, so it is off. Op determinism cost nothing measurable.
oneDNN kernels are switched on (see below): the largest gain by far.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sys
import weakref

import numpy as np

from lenet_bench import arch, timing
from lenet_bench.data import PreparedData, to_channels_last
from lenet_bench.init import initial_weights
from lenet_bench.spec import Spec
from lenet_bench.training import Progress, RunResult, train_epochs

# Environment that TensorFlow reads once, at import; a value the user set wins.
_VERBOSE = os.environ.get("LENET_BENCH_TF_VERBOSE") == "1"
if not _VERBOSE:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # C++ info and warnings
# oneDNN kernels: 2.1x the training speed of LeNet-5 on 2 AVX2 cores (3,150 -> 6,570 images/s).
# TensorFlow enables them by default only on CPUs with AVX-512 and newer; PyTorch uses them by default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


@contextlib.contextmanager
def _quiet_stderr(quiet: bool):
    """Silence file descriptor 2: TensorFlow logs some start-up lines before any log level applies."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


with _quiet_stderr(not _VERBOSE):  # errors still raise; LENET_BENCH_TF_VERBOSE=1 shows the lines
    import keras
    import tensorflow as tf
from keras import ops

if not _VERBOSE:
    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    tf.get_logger().setLevel("ERROR")

NAME = "keras"
MLFLOW_FLAVOR = "keras"
WARMUP_STEPS = 5  # first steps trace and compile the step function; timed apart
EVAL_BATCH = 2048
PROGRESS_EVERY = 10  # steps between progress updates
JIT_COMPILE = False  # XLA: see the module docstring
INTER_OP_THREADS = 1  # every core goes to each op in turn; 2 measured no faster

_POOLS = {"max": keras.layers.MaxPooling2D, "avg": keras.layers.AveragePooling2D}


def _usable_cores() -> int:
    # The cores this process may run on (taskset, cgroups), not every core of the host.
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _configure_runtime() -> None:
    """Settings TensorFlow takes only before its first op runs; later calls change nothing."""
    try:
        tf.config.threading.set_intra_op_parallelism_threads(_usable_cores())
        tf.config.threading.set_inter_op_parallelism_threads(INTER_OP_THREADS)
        for gpu in tf.config.list_physical_devices("GPU"):
            # Allocate as needed rather than the whole GPU, which PyTorch may share in this process.
            tf.config.experimental.set_memory_growth(gpu, True)
    except RuntimeError:
        pass  # the runtime is already initialized (another module ran a TF op first)


_configure_runtime()
# Same seed -> same weights, bit for bit, on CPU; no measurable cost for these models.
tf.config.experimental.enable_op_determinism()


def unavailable_reason(device: str) -> str | None:
    if keras.backend.backend() != "tensorflow":
        return f"Keras is set to the {keras.backend.backend()!r} backend; this backend needs KERAS_BACKEND=tensorflow"
    if device == "gpu" and not tf.config.list_physical_devices("GPU"):
        return "no GPU visible to TensorFlow (tf.config.list_physical_devices('GPU') is empty)"
    return None


def framework_version() -> str:
    return f"{keras.__version__} (tensorflow {tf.__version__})"


def mlflow_save_options() -> dict:
    """How MLflow saves this backend's models (see tracking.log_model): the native .keras format."""
    return {"pip_requirements": [f"keras=={keras.__version__}", f"{_tensorflow_distribution()}=={tf.__version__}"]}


def _tensorflow_distribution() -> str:
    # The same `tensorflow` module ships as tensorflow, tensorflow-cpu, tensorflow-macos, ...
    names = importlib.metadata.packages_distributions().get("tensorflow") or ["tensorflow"]
    return names[0].replace("_", "-")


def tf_device(device: str) -> str:
    return "/GPU:0" if device == "gpu" else "/CPU:0"


def _sync(device: str):
    # Eager GPU ops return once queued; CPU ops have finished when they return.
    return tf.test.experimental.sync_devices if device == "gpu" else (lambda: None)


def build_model(spec: Spec) -> keras.Sequential:
    """The spec's network, NHWC input, logits out, with Keras' default initialization."""
    model = spec.model
    channels, height, width = spec.input_shape
    layers: list[keras.layers.Layer] = [keras.Input((height, width, channels))]
    for conv in model.conv:
        layers.append(keras.layers.Conv2D(conv.filters, conv.kernel, conv.stride, padding=conv.padding,
                                          activation=model.activation))
        pool = model.pool_of(conv)
        if pool != "none":
            layers.append(_POOLS[pool](conv.pool_size))
    layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(units, activation=model.activation) for units in model.dense]
    layers.append(keras.layers.Dense(model.num_classes))
    return keras.Sequential(layers, name=spec.model.arch_label)


def build(spec: Spec, seed: int, device: str) -> keras.Sequential:
    keras.utils.set_random_seed(seed)  # only matters for init: framework
    with tf.device(tf_device(device)):
        model = build_model(spec)
    if spec.model.init != "framework":
        set_weights(model, initial_weights(spec.model, spec.input_shape, spec.model.init, seed))
    arch.check_params(NAME, count_params(model), spec.summary())
    return model


def count_params(model: keras.Model) -> int:
    return model.count_params()


def _parametrized(model: keras.Model) -> list[keras.layers.Layer]:
    return [layer for layer in model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))]


def _flattened_map(model: keras.Model) -> tuple[int, int, int]:
    """(C, H, W) of the feature map that Flatten reads (the input itself for a dense-only net)."""
    flatten = next(layer for layer in model.layers if isinstance(layer, keras.layers.Flatten))
    height, width, channels = flatten.input.shape[1:]
    return channels, height, width


def _to_keras(weight: np.ndarray, flattened: tuple[int, int, int] | None) -> np.ndarray:
    if weight.ndim == 4:
        return weight.transpose(2, 3, 1, 0)  # (out, in, kh, kw) -> (kh, kw, in, out)
    if flattened is None:
        return weight.T  # (out, in) -> (in, out)
    # First dense: its input index runs over (C, H, W) canonically, over (H, W, C) in Keras.
    units = weight.shape[0]
    return weight.reshape(units, *flattened).transpose(2, 3, 1, 0).reshape(-1, units)


def _to_canonical(kernel: np.ndarray, flattened: tuple[int, int, int] | None) -> np.ndarray:
    if kernel.ndim == 4:
        return kernel.transpose(3, 2, 0, 1)
    if flattened is None:
        return kernel.T
    channels, height, width = flattened
    units = kernel.shape[1]
    return kernel.reshape(height, width, channels, units).transpose(3, 2, 0, 1).reshape(units, -1)


def _first_dense_index(layers: list[keras.layers.Layer]) -> int:
    return next(i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dense))


def get_weights(model: keras.Model) -> list[np.ndarray]:
    layers = _parametrized(model)
    first_dense, flattened = _first_dense_index(layers), _flattened_map(model)
    weights = []
    for i, layer in enumerate(layers):
        kernel = np.asarray(layer.kernel.numpy())
        weights += [_to_canonical(kernel, flattened if i == first_dense else None), np.array(layer.bias.numpy())]
    return weights


def set_weights(model: keras.Model, weights: list[np.ndarray]) -> None:
    layers = _parametrized(model)
    if 2 * len(layers) != len(weights):
        raise ValueError(f"expected {2 * len(layers)} weight arrays, received {len(weights)}")
    first_dense, flattened = _first_dense_index(layers), _flattened_map(model)
    for i, layer in enumerate(layers):
        kernel = _to_keras(np.asarray(weights[2 * i], np.float32), flattened if i == first_dense else None)
        bias = np.asarray(weights[2 * i + 1], np.float32)
        for variable, value in ((layer.kernel, kernel), (layer.bias, bias)):
            if tuple(variable.shape) != value.shape:
                raise ValueError(f"weight shape mismatch in {layer.name}: expected {tuple(variable.shape)} "
                                 f"(Keras layout), received {value.shape} after conversion")
            variable.assign(value)


# One compiled inference function per model; weak keys so a dropped model frees it.
_PREDICT_FNS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _predict_fn(model: keras.Model):
    if model not in _PREDICT_FNS:
        signature = [tf.TensorSpec((None, *model.input_shape[1:]), tf.float32)]
        _PREDICT_FNS[model] = tf.function(lambda x: model(x, training=False), input_signature=signature,
                                          reduce_retracing=True)
    return _PREDICT_FNS[model]


def _logits(model: keras.Model, x: tf.Tensor) -> tf.Tensor:
    predict = _predict_fn(model)
    if len(x) <= EVAL_BATCH:
        return predict(x)  # no slicing or concatenation: they dominate batch-1 latency
    return tf.concat([predict(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)], axis=0)


def predict_logits(model: keras.Model, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    with tf.device(tf_device(device)):
        return _logits(model, tf.constant(to_channels_last(np.asarray(x, np.float32)))).numpy()


def _evaluate(model: keras.Model, x: tf.Tensor, y: tf.Tensor) -> tuple[float, float, np.ndarray]:
    logits = _logits(model, x)
    loss = float(tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits)))
    predictions = tf.argmax(logits, axis=1)
    return loss, float(tf.reduce_mean(tf.cast(predictions == y, tf.float32))), predictions.numpy()


class AdamTorchFormula(keras.optimizers.Adam):
    """Keras' Adam with the update of Kingma & Ba's Algorithm 1, as PyTorch computes it.

    Keras adds epsilon to sqrt(v) before bias correction ("epsilon hat"), PyTorch after;
    early on Keras' epsilon acts ~30x larger, which moved weights with small gradients by
    up to 7e-4 after a single step at lr 1e-3 (LeNet-5, measured). One formula for both
    backends gives the spec's `eps` one meaning.
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, gradient = ops.cast(learning_rate, dtype), ops.cast(gradient, dtype)
        step = ops.cast(self.iterations + 1, dtype)
        m = self._momentums[self._get_variable_index(variable)]
        v = self._velocities[self._get_variable_index(variable)]
        self.assign_add(m, ops.multiply(ops.subtract(gradient, m), 1 - self.beta_1))
        self.assign_add(v, ops.multiply(ops.subtract(ops.square(gradient), v), 1 - self.beta_2))
        bias_correction1 = 1 - ops.power(ops.cast(self.beta_1, dtype), step)
        bias_correction2 = 1 - ops.power(ops.cast(self.beta_2, dtype), step)
        denominator = ops.add(ops.divide(ops.sqrt(v), ops.sqrt(bias_correction2)), self.epsilon)
        self.assign_sub(variable, ops.divide(ops.multiply(m, lr / bias_correction1), denominator))


class SGDTorchFormula(keras.optimizers.SGD):
    """Keras' SGD with PyTorch's momentum update.

    Keras folds the learning rate into the momentum buffer, PyTorch applies the current
    rate to the whole buffer; the two agree at a constant rate, not under a schedule.
    """

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        lr, gradient = ops.cast(learning_rate, dtype), ops.cast(gradient, dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(gradient, lr))
            return
        momentum = ops.cast(self.momentum, dtype)
        buffer = self.momentums[self._get_variable_index(variable)]
        # PyTorch starts the buffer at the first gradient; momentum * 0 + g is the same.
        self.assign(buffer, ops.add(ops.multiply(buffer, momentum), gradient))
        direction = ops.add(gradient, ops.multiply(buffer, momentum)) if self.nesterov else buffer
        self.assign_sub(variable, ops.multiply(direction, lr))


def make_optimizer(spec: Spec) -> keras.optimizers.Optimizer:
    """Weight decay is not given to Keras (its is decoupled); the train step adds it to the gradient."""
    opt = spec.train.optimizer
    if opt.name == "sgd":
        return SGDTorchFormula(learning_rate=opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov)
    return AdamTorchFormula(learning_rate=opt.learning_rate, beta_1=opt.beta1, beta_2=opt.beta2, epsilon=opt.eps)


class _Trainer:
    """A compiled train step over data held as tensors, with in-graph loss and hit sums."""

    def __init__(self, model: keras.Model, optimizer: keras.optimizers.Optimizer, x: tf.Tensor, y: tf.Tensor,
                 weight_decay: float):
        self.model, self.optimizer = model, optimizer
        self.x, self.y = x, y
        self.weight_decay = weight_decay
        self.loss_sum = tf.Variable(0.0, dtype=tf.float32, trainable=False)
        self.hits = tf.Variable(0, dtype=tf.int64, trainable=False)
        optimizer.build(model.trainable_variables)  # its slots must exist before tracing
        self.step = tf.function(self._step, jit_compile=JIT_COMPILE, reduce_retracing=True,
                                input_signature=[tf.TensorSpec((None,), tf.int64), tf.TensorSpec((), tf.float32)])

    def _step(self, index: tf.Tensor, lr: tf.Tensor) -> None:
        xb, yb = tf.gather(self.x, index), tf.gather(self.y, index)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(xb, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
        grads = tape.gradient(loss, variables)
        if self.weight_decay:
            # PyTorch's (coupled) weight decay: an L2 term in the gradient, biases included.
            grads = [g + self.weight_decay * v for g, v in zip(grads, variables)]
        self.optimizer.learning_rate.assign(lr)
        self.optimizer.apply(grads, variables)
        self.loss_sum.assign_add(loss * tf.cast(tf.shape(index)[0], tf.float32))
        self.hits.assign_add(tf.reduce_sum(tf.cast(tf.argmax(logits, axis=1) == yb, tf.int64)))

    def reset_sums(self) -> None:
        self.loss_sum.assign(0.0)
        self.hits.assign(0)

    def run(self, batches: list[np.ndarray], lrs: list[float]) -> None:
        for index, lr in zip(batches, lrs):
            self.step(tf.constant(index, tf.int64), tf.constant(lr, tf.float32))


def train(model: keras.Model, spec: Spec, data: PreparedData, seed: int, device: str,
          progress: Progress, max_steps_per_epoch: int | None = None) -> RunResult:
    with tf.device(tf_device(device)):
        return _train(model, spec, data, seed, device, progress, max_steps_per_epoch)


def _train(model: keras.Model, spec: Spec, data: PreparedData, seed: int, device: str,
           progress: Progress, max_steps_per_epoch: int | None) -> RunResult:
    sync = _sync(device)
    keras.utils.set_random_seed(seed)
    clock = timing.Stopwatch(sync)

    clock.start()
    x_train, y_train = tf.constant(to_channels_last(data.x_train)), tf.constant(data.y_train)
    x_val, y_val = tf.constant(to_channels_last(data.x_val)), tf.constant(data.y_val)
    x_test, y_test = tf.constant(to_channels_last(data.x_test)), tf.constant(data.y_test)
    data_seconds = clock.read()

    trainer = _Trainer(model, make_optimizer(spec), x_train, y_train, spec.train.optimizer.weight_decay)

    def take_sums() -> tuple[float, int]:
        values = float(trainer.loss_sum.numpy()), int(trainer.hits.numpy())
        trainer.reset_sums()
        return values

    def validate() -> tuple[float | None, float | None]:
        return _evaluate(model, x_val, y_val)[:2] if len(data.x_val) else (None, None)

    loop = train_epochs(spec.train, len(data.x_train), seed, max_steps_per_epoch, clock, progress,
                        run_steps=trainer.run, take_sums=take_sums, validate=validate,
                        warmup_steps=WARMUP_STEPS, progress_every=PROGRESS_EVERY)

    clock.start()
    test_loss, test_acc, predictions = _evaluate(model, x_test, y_test)
    eval_seconds = clock.read()
    figures = timing.inference_figures(lambda xb: _logits(model, xb), sync, x_test)
    figures["peak_host_rss_mb"] = timing.peak_host_rss_mb()
    if device == "gpu":
        figures["peak_gpu_mb"] = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2**20
    return RunResult(
        backend=NAME, device=device, framework_version=framework_version(), params=count_params(model),
        test_loss=test_loss, test_accuracy=test_acc, test_predictions=predictions,
        data_seconds=data_seconds, eval_seconds=eval_seconds, timings=figures, model=model, **loop.timing_fields(),
    )
