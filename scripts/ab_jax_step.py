"""Keras on JAX against a pure-JAX step: is keras-jax's CPU speed the harness's or JAX's own?

The JAX counterpart of ab_torch_step.py: each round times every variant in turn, and each is
reported as the median of its per-round ratio to the first one.

    python scripts/ab_jax_step.py lenet5-time99 harness pure_jax --batch 256

Variants:
- harness: the keras-jax backend's own jitted stateless step (keras_jax.train.Trainer), Adam;
- pure_jax: the same LeNet (the spec's convolutions, pools and dense layers, NHWC) written with
  jax.example_libraries.stax, Adam from jax.example_libraries.optimizers, one `jax.jit` step
  with donated state and the batch gathered by index inside it, as the harness does; no Keras.
Random images of the spec's shape; the same batches for both.
"""

from __future__ import annotations

import importlib

import numpy as np
from ab_rounds import compare_in_rounds, parse_arguments, random_nhwc, spec_named, warmed_up

from lenet_bench import backends

backends.activate("keras-jax")  # Keras' engine and JAX's threads as the harness sets them
import jax  # noqa: E402 - after the backend's set-up
from jax import numpy as jnp  # noqa: E402
from jax.example_libraries import optimizers, stax  # noqa: E402

keras_jax_model = importlib.import_module("lenet_bench.backends.keras_jax.model")
keras_jax_train = importlib.import_module("lenet_bench.backends.keras_jax.train")
from lenet_bench.backends.keras_common.losses import loss_function  # noqa: E402
from lenet_bench.backends.keras_common.optimizers import make_optimizer  # noqa: E402

POOL_SIZE = 8192  # images the batches are drawn from
ACTIVATIONS = {"relu": stax.Relu, "tanh": stax.Tanh, "sigmoid": stax.Sigmoid}
POOLS = {"max": stax.MaxPool, "avg": stax.AvgPool}


def stax_lenet(spec):
    """The spec's layers in stax (activation after the pool, which for max pooling is the same function)."""
    model, activation = spec.model, ACTIVATIONS[spec.model.activation]
    layers = []
    for conv in model.conv:
        layers += [stax.Conv(conv.filters, (conv.kernel, conv.kernel), (conv.stride, conv.stride),
                             padding=conv.padding.upper()), activation]
        pool = model.pool_of(conv)
        if pool != "none":
            layers.append(POOLS[pool]((conv.pool_size, conv.pool_size), (conv.pool_size, conv.pool_size)))
    layers.append(stax.Flatten)
    for units in model.dense:
        layers += [stax.Dense(units), activation]
    layers.append(stax.Dense(model.num_classes))
    return stax.serial(*layers)


def pure_jax(spec, x: jax.Array, y: jax.Array, batch: int):
    init, apply = stax_lenet(spec)
    channels, height, width = spec.input_shape
    _, params = init(jax.random.key(0), (-1, height, width, channels))
    count = sum(leaf.size for leaf in jax.tree.leaves(params))
    assert count == spec.summary().params, f"the stax model has {count:,} parameters, the spec {spec.summary().params:,}"
    opt_init, opt_update, get_params = optimizers.adam(1e-3)

    def loss(params, xb, yb):
        logits = apply(params, xb)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits), yb[:, None], axis=1))

    def step(i, state, index):
        grads = jax.grad(loss)(get_params(state), x[index], y[index])
        return opt_update(i, grads, state)

    jitted = jax.jit(step, donate_argnums=1)
    state = [opt_init(params)]

    def run(batches: list[np.ndarray]) -> None:
        for i, index in enumerate(batches):
            state[0] = jitted(i, state[0], index)
        jax.block_until_ready(state[0])

    return run


def harness(spec, x: jax.Array, y: jax.Array, batch: int):
    model = keras_jax_model.build(spec, 0, "cpu")
    sync = keras_jax_model.DeviceSync()
    trainer = keras_jax_train.Trainer(model, make_optimizer(spec), loss_function(spec.train.loss), x, y, 0.0, sync,
                                      keras_jax_model.jax_device("cpu"))

    def run(batches: list[np.ndarray]) -> None:
        trainer.run(batches, [1e-3] * len(batches))
        sync()

    return run


VARIANTS = {"harness": harness, "pure_jax": pure_jax}


def make_variant(spec, name: str, x, y, batch: int):
    if name not in VARIANTS:
        raise SystemExit(f"unknown variant {name!r}; choose from {sorted(VARIANTS)}")
    return warmed_up(name, VARIANTS[name](spec, x, y, batch), batch, POOL_SIZE, "tracing and compiling", np.int32)


def main() -> None:
    args = parse_arguments(__doc__)
    spec = spec_named(args.variant_name)
    images, labels = random_nhwc(spec, POOL_SIZE)
    x, y = jnp.asarray(images), jnp.asarray(labels.astype(np.int32))
    print(f"{spec.summary().params:,} parameters, batch {args.batch}, {args.steps} steps per timing, {args.rounds} rounds; "
          f"jax {jax.__version__} on {jax.devices()[0].device_kind}")
    compare_in_rounds({name: make_variant(spec, name, x, y, args.batch) for name in args.variants}, args.steps,
                      args.rounds)


if __name__ == "__main__":
    main()
