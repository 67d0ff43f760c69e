"""PyTorch models built from the layer description, and their weights in the canonical layout.

The model is an `nn.Sequential` with one child per layer of the description (`spec.arch`),
so every layer's output can be read back (`layer_outputs`). Max pooling runs before its
convolution's activation: every activation here is non-decreasing, so max(act(x)) ==
act(max(x)), and the activation and its gradient touch a quarter of the values. Same outputs;
on 2 cores it trained LeNet-5 1.07x (ReLU) and 1.13x (sigmoid) as fast, the 20/50/500 LeNet
1.17x (median of 5 interleaved rounds, scripts/ab_torch_step.py). Average pooling does not
commute with the activation and keeps the textbook order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from lenet_bench.backends.torch import lecun
from lenet_bench.device import Device
from lenet_bench.spec import arch
from lenet_bench.spec.schema import Spec
from lenet_bench.training.weights import initial_weights

__all__ = ["NAME", "build", "count_params", "get_weights", "layer_outputs", "predict_logits", "set_weights"]  # the protocol's part here

NAME = "torch"
# Images per forward pass when evaluating: on one CPU core, 512 gives the 20/50/500 LeNet 5,700 img/s
# against 3,700 at 2048 (its activations then outgrow the caches); LeNet-5 runs alike at both.
EVAL_BATCH = 512
# oneDNN's preferred layout on CPU: LeNet-5 training went from about 5,300 to 7,000 images/s
# on 2 cores (NCHW vs channels-last, same process, quiet machine). Gathered batches keep it.
MEMORY_FORMAT = torch.channels_last

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
                                                   "scaled_tanh": lecun.ScaledTanh, "gelu": nn.GELU, "elu": nn.ELU,
                                                   "silu": nn.SiLU}
# Modules holding trainable arrays, each a `weight` then a `bias`: the canonical weight list's order.
_WEIGHTED = (nn.Conv2d, nn.Linear, lecun.Subsample, lecun.PartialConv, nn.BatchNorm1d, nn.BatchNorm2d)
_POOLS: dict[str, Callable[..., nn.Module]] = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def torch_device(device: Device) -> torch.device:
    return torch.device("cuda" if device == Device.GPU else "cpu")


def _activation(name: str | None, slope: float | None = None) -> list[nn.Module]:
    if name == "leaky_relu":
        return [nn.LeakyReLU(slope)]
    return [ACTIVATIONS[name]()] if name else []


# One builder per layer type of the description: each gives the layer's child of the nn.Sequential.
_BUILDERS: dict[type[arch.Layer], Callable[[Any], nn.Module]] = {
    arch.Conv: lambda layer: nn.Sequential(
        nn.Conv2d(layer.input_shape[0], layer.filters, layer.kernel, layer.stride, padding=layer.padding),
        *_activation(layer.activation)),
    arch.PartialConv: lambda layer: nn.Sequential(lecun.PartialConv(layer), *_activation(layer.activation)),
    arch.Subsample: lambda layer: nn.Sequential(lecun.Subsample(layer), *_activation(layer.activation)),
    arch.Pool: lambda layer: nn.Sequential(_POOLS[layer.mode](layer.size, layer.step)),
    arch.Activation: lambda layer: nn.Sequential(*_activation(layer.fn, layer.slope)),
    arch.Dropout: lambda layer: nn.Dropout(layer.rate),
    # PyTorch's momentum is the spec's; both frameworks normalize with the batch's biased variance in training.
    arch.BatchNorm: lambda layer: (nn.BatchNorm2d if len(layer.input_shape) == 3 else nn.BatchNorm1d)(
        layer.input_shape[0], eps=layer.epsilon, momentum=layer.momentum),
    arch.Flatten: lambda layer: nn.Flatten(),
    arch.Dense: lambda layer: nn.Sequential(nn.Linear(layer.input_shape[0], layer.units),
                                            *_activation(layer.activation)),
    arch.RBF: lambda layer: lecun.RBF(),
}


def build_module(spec: Spec, max_pool_first: bool = True) -> nn.Sequential:
    """The spec's network, one child per described layer, with PyTorch's default initialization."""
    return module_of(spec.summary().layers, max_pool_first)


def module_of(layers: tuple[arch.Layer, ...], max_pool_first: bool = True) -> nn.Sequential:
    """One child per described layer."""
    children = []
    for layer in layers:
        builder = _BUILDERS.get(type(layer))
        if builder is None:
            raise NotImplementedError(f"the torch backend cannot build a {layer.kind!r} layer ({layer.name})")
        children.append(builder(layer))
    return nn.Sequential(*(_activation_after_max_pool(children) if max_pool_first else children))


def _activation_after_max_pool(children: list[nn.Module]) -> list[nn.Module]:
    """A speed rewrite of the built network, the same function: where a layer ends in its activation and a max
    pool follows, the activation moves behind the pool. Every activation here is non-decreasing, so
    max(act(x)) == act(max(x)), and the activation and its gradient touch a quarter of the values (module
    docstring). The weights keep their place, so state dicts are those of the plain order."""
    rewritten = list(children)
    for index in range(len(rewritten) - 1):
        layer, following = rewritten[index], rewritten[index + 1]
        if (isinstance(layer, nn.Sequential) and len(layer) == 2 and isinstance(layer[0], (nn.Conv2d,))
                and isinstance(following, nn.Sequential) and len(following) == 1
                and isinstance(following[0], nn.MaxPool2d)):
            rewritten[index] = nn.Sequential(layer[0])
            rewritten[index + 1] = nn.Sequential(following[0], layer[1])
    return rewritten


def build(spec: Spec, seed: int, device: Device) -> nn.Sequential:
    torch.manual_seed(seed)  # only matters for init: framework
    module = build_module(spec)
    if spec.model.init != "framework":
        set_weights(module, initial_weights(spec.summary(), spec.model.init, seed))
    arch.check_params(NAME, count_params(module), spec.summary())
    return module.to(torch_device(device))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def canonical_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Trainable arrays in the canonical order: each layer's weight, then its bias."""
    return [t for m in model.modules() if isinstance(m, _WEIGHTED) for t in (m.weight, m.bias)]


def get_weights(model: nn.Module) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for t in canonical_parameters(model)]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    params = canonical_parameters(model)
    if len(params) != len(weights):
        raise ValueError(f"expected {len(params)} weight arrays, received {len(weights)}")
    with torch.no_grad():
        for param, value in zip(params, weights):
            if tuple(param.shape) != value.shape:
                raise ValueError(f"weight shape mismatch: expected {tuple(param.shape)}, received {value.shape}")
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def memory_format(model: nn.Module) -> torch.memory_format:
    """Channels-last, oneDNN's fast layout, unless the network has batch norm: PyTorch's channels-last batch norm
    on the CPU is off by about 1e-3 from float64 after a convolution of MNIST digits (its contiguous kernel and
    Keras: 1e-6), enough that a few SGD steps drift apart (tests/test_parity.py)."""
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        return torch.contiguous_format
    return MEMORY_FORMAT


def images(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device).contiguous(memory_format=MEMORY_FORMAT)


def logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def predict_logits(model: nn.Module, x: np.ndarray, device: Device = Device.CPU) -> np.ndarray:
    return logits(model, images(x, torch_device(device))).cpu().numpy()


def layer_outputs(model: nn.Sequential, x: np.ndarray) -> list[np.ndarray]:
    """Every child's output on the CPU; a convolution whose activation runs after its pool gets it applied here."""
    model = model.cpu().eval()
    outputs = []
    with torch.inference_mode():
        h = torch.from_numpy(np.ascontiguousarray(x, np.float32))
        for index, child in enumerate(model):
            h = child(h)
            shown = h
            following = model[index + 1] if index + 1 < len(model) else None
            if (isinstance(child, nn.Sequential) and len(child) == 1 and isinstance(child[0], nn.Conv2d)
                    and isinstance(following, nn.Sequential) and len(following) == 2
                    and isinstance(following[0], nn.MaxPool2d)):  # inline: mypy narrows `following` here
                shown = following[1](h)  # the activation the pool carries
            outputs.append(shown.numpy().copy())
    return outputs
