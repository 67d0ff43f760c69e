"""The spec's training loss (`train.loss`) in PyTorch, and its curvature at the outputs for sdlm."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch.nn import functional as F

from lenet_bench.spec.schema import LossSpec

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def loss_function(loss: LossSpec) -> Loss:
    """(outputs, labels) -> the batch's mean loss."""
    if loss.name == "map":
        # LeCun et al. (1998), eq. (9): penalty of the correct class + log(e^-j + sum_i e^-penalty_i).
        # The outputs are minus the penalties, so this is cross-entropy over them and one more output, -j.
        j = float(loss.j or 0.0)
        return lambda out, y: F.cross_entropy(torch.cat([out, out.new_full((len(out), 1), -j)], 1), y)
    if loss.name == "mse":
        off, on = loss.target_values
        return lambda out, y: 0.5 * (out - (off + (on - off) * F.one_hot(y, out.shape[1]).to(out.dtype))).square().sum(1).mean()
    return F.cross_entropy


def output_curvature(loss: LossSpec, out: torch.Tensor) -> torch.Tensor:
    """Gauss-Newton second derivative of one image's loss with respect to each output (sdlm's starting point
    when the network ends in a dense layer, squashed or not): p(1 - p) for softmax cross-entropy, 1 for mse."""
    if loss.name == "mse":
        return torch.ones_like(out)
    p = torch.softmax(out, 1)
    return p * (1 - p)
