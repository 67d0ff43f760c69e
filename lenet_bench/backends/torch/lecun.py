"""PyTorch modules for the layers of LeCun et al. (1998) that PyTorch has no module for: the scaled
tanh, trainable subsampling, the partially connected convolution (C3) and the RBF output.

Each takes its shapes from the layer description (`spec.arch`); the trainable arrays are the
description's, in its canonical order and layout (`weight`, then `bias`).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from lenet_bench.spec import arch
from lenet_bench.spec.bitmaps import digit_bitmaps

# LeCun et al. (1998), Appendix A: f(a) = A tanh(S a), A = 1.7159, S = 2/3, so that f(1) = 1 and
# f(-1) = -1, and the second derivative is largest at +-1.
TANH_AMPLITUDE = 1.7159
TANH_SLOPE = 2.0 / 3.0


class ScaledTanh(nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return TANH_AMPLITUDE * torch.tanh(TANH_SLOPE * a)


class Subsample(nn.Module):
    """Each size x size block summed, times a per-map coefficient (`weight`), plus a per-map bias.
    The activation follows in the layer's nn.Sequential."""

    def __init__(self, layer: arch.Subsample):
        super().__init__()
        channels = layer.input_shape[0]
        self.size = layer.size
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sums = F.avg_pool2d(x, self.size) * (self.size * self.size)
        return sums * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


class PartialConv(nn.Module):
    """A convolution of which only the (output, input) map pairs of `layer.pairs` are trainable;
    the others are fixed at zero. `weight` holds one kernel per pair, in `pairs` order."""

    def __init__(self, layer: arch.PartialConv):
        super().__init__()
        self.filters, self.in_maps = layer.filters, layer.input_shape[0]
        self.kernel, self.stride, self.padding = layer.kernel, layer.stride, layer.padding
        self.weight = nn.Parameter(torch.zeros(len(layer.pairs), layer.kernel, layer.kernel))
        self.bias = nn.Parameter(torch.zeros(layer.filters))
        # Row (out * in_maps + in) of the full kernel that each pair fills.
        self.register_buffer("rows", torch.tensor([out * self.in_maps + inp for out, inp in layer.pairs]))

    def full_kernel(self, weight: torch.Tensor) -> torch.Tensor:
        full = weight.new_zeros(self.filters * self.in_maps, self.kernel, self.kernel).index_copy(0, self.rows, weight)
        return full.view(self.filters, self.in_maps, self.kernel, self.kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.full_kernel(self.weight), self.bias, self.stride, self.padding)


class RBF(nn.Module):
    """Minus each class's penalty, the squared Euclidean distance of the input to the class's fixed
    +-1 bitmap (eq. 8 of the paper); a buffer, not a parameter: nothing here is trained."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("centers", torch.from_numpy(digit_bitmaps()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -(x.unsqueeze(1) - self.centers).square().sum(-1)
