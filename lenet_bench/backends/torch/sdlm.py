"""Stochastic diagonal Levenberg-Marquardt (LeCun et al. 1998, Appendix C) in PyTorch.

Each parameter k steps by lr / (mu + h_kk) times its gradient. h_kk is the Gauss-Newton
approximation of the Hessian's diagonal, back-propagated layer by layer with squared weights and
squared derivatives (second derivatives, not squared gradients), and averaged over a sample of
training images before each epoch:

    d2E/da_i^2  = f'(a_i)^2 * d2E/dx_i^2                  (the f'' term is dropped: Gauss-Newton)
    d2E/dx_j^2  = sum_i w_ij^2 * d2E/da_i^2
    h_kk        = sum over the connections (i, j) that share weight k of x_j^2 * d2E/da_i^2

Every weighted layer computes a pre-activation that is linear in its input and in its weights, so
both sums are vector-Jacobian products of that same layer: of the layer with squared weights (for
the input) and of the layer applied to the squared input (for the weights). That holds for
convolutions, the partial C3, trainable subsampling and dense layers alike.

Where the second derivatives start: with an RBF output, at its input (F6's states), with 2, the
curvature of the correct class's penalty sum_j (x_j - w_Dj)^2 (eq. 9's other term is left out:
while that penalty exceeds j its curvature there is about 2 as well); with a dense output, at
the outputs, with the loss's own Gauss-Newton curvature (losses.output_curvature).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.func import functional_call

from lenet_bench.backends.torch import lecun
from lenet_bench.backends.torch.losses import output_curvature
from lenet_bench.backends.torch.model import canonical_parameters
from lenet_bench.spec.schema import LossSpec

RBF_PENALTY_CURVATURE = 2.0  # d2/dx_j^2 of sum_j (x_j - w_j)^2


class SDLM(torch.optim.Optimizer):
    """p <- p - lr * grad / (mu + h), h from `set_curvature` (zero until then: steps of lr / mu)."""

    def __init__(self, params: Iterable[torch.Tensor], lr: float, mu: float):
        super().__init__(params, {"lr": lr, "mu": mu})
        for group in self.param_groups:
            for p in group["params"]:
                self.state[p]["scale"] = torch.full_like(p, 1.0 / group["mu"])

    @torch.no_grad()
    def set_curvature(self, curvatures: list[torch.Tensor], keep: float = 0.0) -> None:
        """The Hessian diagonal of every parameter, in the order the parameters were given; `keep`: the share of
        the current estimate kept (a running average; the current one is read back from the scale)."""
        pairs = [(p, group["mu"]) for group in self.param_groups for p in group["params"]]
        if len(pairs) != len(curvatures):
            raise ValueError(f"expected {len(pairs)} curvature arrays, received {len(curvatures)}")
        for (p, mu), h in zip(pairs, curvatures):
            if keep:
                h = keep * (1.0 / self.state[p]["scale"] - mu) + (1.0 - keep) * h
            self.state[p]["scale"] = 1.0 / (mu + h)

    @torch.no_grad()
    def step(self, closure=None) -> None:
        for group in self.param_groups:
            params = [p for p in group["params"] if p.grad is not None]
            if params:
                torch._foreach_addcmul_(params, [p.grad for p in params], [self.state[p]["scale"] for p in params],
                                        value=-group["lr"])


def _weighted(child: nn.Module) -> nn.Module | None:
    """The linear part of a described layer's nn.Sequential (conv, partial conv, subsample, dense)."""
    if isinstance(child, nn.Sequential) and len(child) and isinstance(child[0], (nn.Conv2d, nn.Linear,
                                                                              lecun.Subsample, lecun.PartialConv)):
        return child[0]
    return None


def _activation_slope(child: nn.Sequential, a: torch.Tensor) -> torch.Tensor:
    """f'(a), element by element, of the activation that follows the linear part (1 where none)."""
    if len(child) == 1:
        return torch.ones_like(a)
    a = a.detach().requires_grad_()
    out = child[1:](a)
    (slope,) = torch.autograd.grad(out.sum(), a)
    return slope


def diagonal_hessian(model: nn.Sequential, x: torch.Tensor, loss: LossSpec) -> list[torch.Tensor]:
    """The mean over the images of `x` of the Gauss-Newton Hessian diagonal, one array per parameter,
    in the model's canonical order (each weighted layer's weight, then its bias)."""
    inputs = []
    with torch.no_grad():
        h = x
        for child in model:
            inputs.append(h)
            h = child(h)
    children = list(model)
    if isinstance(children[-1], lecun.RBF):
        d2 = torch.full_like(inputs[-1], RBF_PENALTY_CURVATURE)
        last = len(children) - 2
    else:
        d2 = None  # set from the output layer's outputs below
        last = len(children) - 1
    curvature: dict[nn.Parameter, torch.Tensor] = {}
    with torch.enable_grad():
        for index in range(last, -1, -1):
            child, x_in = children[index], inputs[index]
            if isinstance(child, nn.Flatten):
                d2 = d2.reshape(x_in.shape)
                continue
            linear = _weighted(child)
            if linear is None:
                raise NotImplementedError(f"sdlm cannot run second derivatives through {type(child).__name__}")
            with torch.no_grad():
                a = linear(x_in)
            # The output layer starts from the loss's curvature at the outputs (after a squashing activation, if any).
            d2_out = output_curvature(loss, child[1:](a) if len(child) > 1 else a) if d2 is None else d2
            d2a = d2_out * _activation_slope(child, a).square()
            params = dict(linear.named_parameters())
            # h = sum of x^2 * d2a over each weight's connections: the layer's weight-VJP at the squared input.
            grads = torch.autograd.grad((functional_call(linear, params, (x_in.square(),)) * d2a).sum(),
                                        list(params.values()))
            for param, grad in zip(params.values(), grads):
                curvature[param] = grad / len(x)
            if index > 0:
                # d2E/dx^2 = sum of w^2 * d2a: the layer's input-VJP with squared weights.
                x_req = x_in.detach().requires_grad_()
                squared = {name: p.detach().square() for name, p in params.items()}
                (d2,) = torch.autograd.grad((functional_call(linear, squared, (x_req,)) * d2a).sum(), x_req)
    return [curvature[p].detach() for p in canonical_parameters(model)]
