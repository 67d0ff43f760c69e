"""A/B of Keras/TensorFlow training-step variants, interleaved in one process.

The Keras counterpart of ab_torch_step.py: each round times every variant in turn, and
each variant is reported as the median of its per-round ratio to the first one.

    python scripts/ab_keras_step.py lenet5 harness pool_first multi_step fused_adam no_apply captured

Variants:
- harness: the backend's own compiled step (keras_train.Trainer);
- pool_first: max pool before the activation, as the PyTorch backend does;
- multi_step: all of an epoch's steps inside one tf.function call (a while loop over
  the batch indices), Keras' steps_per_execution idea;
- fused_adam: TensorFlow's fused ResourceApplyAdam, given epsilon * sqrt(1 - beta2^t) so it
  computes PyTorch's formula;
- no_apply: gradients computed, never applied: what the optimizer costs;
- captured: the harness's step with the data captured by the traced function, not passed in.
"""

from __future__ import annotations

import importlib

import numpy as np
from ab_rounds import compare_in_rounds, parse_arguments, random_nhwc, spec_named, warmed_up

from lenet_bench import backends

backends.activate("keras")  # TensorFlow's environment, thread pools and determinism as the harness sets them
import keras  # noqa: E402 - after the backend's set-up
import tensorflow as tf  # noqa: E402

keras_model = importlib.import_module("lenet_bench.backends.keras.model")
keras_train = importlib.import_module("lenet_bench.backends.keras.train")
from lenet_bench.backends.keras_common.model import _POOLS  # noqa: E402
from lenet_bench.backends.keras_common.optimizers import make_optimizer  # noqa: E402

POOL_SIZE = 8192


def pool_first_model(spec) -> keras.Sequential:
    model = spec.model
    channels, height, width = spec.input_shape
    layers = [keras.Input((height, width, channels))]
    for conv in model.conv:
        pool = model.pool_of(conv)
        if pool == "max":
            layers += [keras.layers.Conv2D(conv.filters, conv.kernel, conv.stride, padding=conv.padding),
                       keras.layers.MaxPooling2D(conv.pool_size), keras.layers.Activation(model.activation)]
            continue
        layers.append(keras.layers.Conv2D(conv.filters, conv.kernel, conv.stride, padding=conv.padding,
                                          activation=model.activation))
        if pool != "none":
            layers.append(_POOLS[pool](conv.pool_size))
    layers.append(keras.layers.Flatten())
    layers += [keras.layers.Dense(units, activation=model.activation) for units in model.dense]
    layers.append(keras.layers.Dense(model.num_classes))
    return keras.Sequential(layers)


class MultiStepTrainer(keras_train.Trainer):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.steps = tf.function(self._steps, input_signature=[tf.TensorSpec((None, None), tf.int64),
                                                               tf.TensorSpec((None,), tf.float32)])

    def _steps(self, indices, lrs):
        for i in tf.range(tf.shape(indices)[0]):
            self._step(self.x, self.y, indices[i], lrs[i])

    def run(self, batches, lrs):
        self.steps(tf.constant(np.stack(batches)), tf.constant(lrs, tf.float32))


class FusedAdamTrainer(keras_train.Trainer):
    BETA1, BETA2, EPS = 0.9, 0.999, 1e-8

    def __init__(self, model, optimizer, x, y, weight_decay):
        variables = model.trainable_variables
        self.moments = [tf.Variable(tf.zeros(v.shape)) for v in variables]
        self.velocities = [tf.Variable(tf.zeros(v.shape)) for v in variables]
        self.t = tf.Variable(0.0)
        super().__init__(model, optimizer, x, y, weight_decay)

    def _step(self, x, y, index, lr):
        xb, yb = tf.gather(x, index), tf.gather(y, index)
        variables = self.model.trainable_variables
        with tf.GradientTape() as tape:
            logits = self.model(xb, training=True)
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, logits))
        grads = tape.gradient(loss, variables)
        t = self.t.assign_add(1.0)
        beta1_power, beta2_power = tf.pow(self.BETA1, t), tf.pow(self.BETA2, t)
        epsilon = self.EPS * tf.sqrt(1 - beta2_power)  # PyTorch's eps, after the bias correction
        for variable, m, v, g in zip(variables, self.moments, self.velocities, grads):
            tf.raw_ops.ResourceApplyAdam(var=variable.value.handle, m=m.handle, v=v.handle, beta1_power=beta1_power,
                                         beta2_power=beta2_power, lr=lr, beta1=self.BETA1, beta2=self.BETA2,
                                         epsilon=epsilon, grad=g)
        self.loss_sum.assign_add(loss)


class NoApplyTrainer(keras_train.Trainer):
    def _step(self, x, y, index, lr):
        xb, yb = tf.gather(x, index), tf.gather(y, index)
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(yb, self.model(xb, training=True)))
        grads = tape.gradient(loss, self.model.trainable_variables)
        self.loss_sum.assign_add(loss + tf.add_n([tf.reduce_sum(g) for g in grads]))  # keeps the gradients alive


class CapturedDataTrainer(keras_train.Trainer):
    """The step with the data captured by the traced function instead of passed in (the harness's way
    until the captures were found to outlive the run)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.captured = tf.function(lambda index, lr: self._step(self.x, self.y, index, lr), input_signature=[
            tf.TensorSpec((None,), tf.int64), tf.TensorSpec((), tf.float32)])

    def run(self, batches, lrs):
        for index, lr in zip(batches, lrs):
            self.captured(tf.constant(index, tf.int64), tf.constant(lr, tf.float32))


TRAINERS = {"harness": keras_train.Trainer, "captured": CapturedDataTrainer, "pool_first": keras_train.Trainer, "multi_step": MultiStepTrainer,
            "fused_adam": FusedAdamTrainer, "no_apply": NoApplyTrainer}


def make_variant(spec, name: str, x, y, batch: int):
    if name not in TRAINERS:
        raise SystemExit(f"unknown variant {name!r}; choose from {sorted(TRAINERS)}")
    model = pool_first_model(spec) if name == "pool_first" else keras_model.build(spec, 0, "cpu")
    trainer = TRAINERS[name](model, make_optimizer(spec), x, y, 0.0)

    def run(batches: list[np.ndarray]) -> None:
        trainer.run(batches, [1e-3] * len(batches))
        trainer.loss_sum.numpy()  # waits for the last step

    return warmed_up(name, run, batch, POOL_SIZE, "tracing")


def main() -> None:
    args = parse_arguments(__doc__)
    spec = spec_named(args.variant_name)
    images, labels = random_nhwc(spec, POOL_SIZE)
    x, y = tf.constant(images), tf.constant(labels.astype(np.int64))
    compare_in_rounds({name: make_variant(spec, name, x, y, args.batch) for name in args.variants}, args.steps, args.rounds)


if __name__ == "__main__":
    main()
