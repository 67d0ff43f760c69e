"""Keras optimizers with PyTorch's update formulas, so a spec means the same optimizer on every backend.

Written with `keras.ops`, so they run on every Keras engine.
"""

from __future__ import annotations

import keras
from keras import ops

from lenet_bench.spec.schema import Spec


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
    if opt.name == "sdlm":
        return SDLM(learning_rate=opt.learning_rate, mu=opt.mu)
    if opt.name == "sgd":
        return SGDTorchFormula(learning_rate=opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov)
    return AdamTorchFormula(learning_rate=opt.learning_rate, beta_1=opt.beta1, beta_2=opt.beta2, epsilon=opt.eps)


def fit_optimizer(spec: Spec) -> keras.optimizers.Optimizer:
    """Keras' own optimizers, as a user of `fit` writes them (the bench's plain loop)."""
    opt = spec.train.optimizer
    decay = opt.weight_decay or None
    if opt.name == "sgd":
        return keras.optimizers.SGD(opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov, weight_decay=decay)
    return keras.optimizers.Adam(opt.learning_rate, beta_1=opt.beta1, beta_2=opt.beta2, epsilon=opt.eps,
                                 weight_decay=decay)


class SDLM(keras.optimizers.Optimizer):
    """Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C), as the PyTorch
    backend applies it: variable <- variable - lr * gradient / (mu + h), h the Hessian diagonal
    given by `set_curvature` (zero until then: steps of lr / mu)."""

    def __init__(self, learning_rate: float, mu: float, name: str = "sdlm", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.mu = mu

    def build(self, variables) -> None:
        if self.built:
            return
        super().build(variables)
        self._scales = [self.add_variable_from_reference(v, "scale", initializer=keras.initializers.Constant(1 / self.mu))
                        for v in variables]

    def set_curvature(self, curvatures, keep: float = 0.0) -> None:
        """The Hessian diagonal of every variable, in the order the optimizer was built with; `keep`: the share of
        the current estimate kept (a running average; the current one is read back from the scale)."""
        if len(curvatures) != len(self._scales):
            raise ValueError(f"expected {len(self._scales)} curvature arrays, received {len(curvatures)}")
        for scale, h in zip(self._scales, curvatures):
            h = ops.convert_to_tensor(h, scale.dtype)
            if keep:
                h = keep * (1.0 / scale - self.mu) + (1.0 - keep) * h
            scale.assign(1.0 / (self.mu + h))

    def update_step(self, gradient, variable, learning_rate):
        scale = self._scales[self._get_variable_index(variable)]
        lr = ops.cast(learning_rate, variable.dtype)
        self.assign_sub(variable, ops.multiply(ops.multiply(ops.cast(gradient, variable.dtype), scale), lr))

    def get_config(self) -> dict:
        return {**super().get_config(), "mu": self.mu}
