"""The bench's plain PyTorch loop: the loop of PyTorch's tutorials, to time the harness against.

DataLoader with shuffling, zero_grad / backward / step, loss.item() per step, and the
textbook layer order (conv, activation, pool).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from lenet_bench.backends.protocol import ReferenceResult
from lenet_bench.backends.torch.model import build_module, torch_device
from lenet_bench.backends.torch.train import make_optimizer, sync
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec
from lenet_bench.training.timing import time_calls, timed_epochs

if TYPE_CHECKING:
    from lenet_bench.data import PreparedData


__all__ = ["matmul_flops", "reference_loop"]  # what the backend's package takes from here (the protocol's)


def reference_loop(spec: Spec, data: PreparedData, seed: int, device: Device, repeats: int) -> ReferenceResult:
    torch.manual_seed(seed)
    dev = torch_device(device)
    model = build_module(spec, max_pool_first=False).to(dev)  # conv, activation, pool: as tutorials write it
    optimizer = make_optimizer(spec, model.parameters())
    loss_fn = torch.nn.CrossEntropyLoss()
    loader = DataLoader(TensorDataset(torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)),
                        batch_size=spec.train.batch_size, shuffle=True)

    def epoch() -> float:
        model.train()
        running_loss = 0.0
        for xb, yb in loader:
            xb, yb = xb.to(dev), yb.to(dev)
            optimizer.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            optimizer.step()
            running_loss += loss.item()  # as the tutorials do: on a GPU, a sync every step
        return running_loss

    rates = timed_epochs(epoch, sync(device), len(data.x_train), repeats)
    model.eval()
    with torch.no_grad():
        predictions = torch.cat([model(xb.to(dev)).argmax(1).cpu() for xb in torch.from_numpy(data.x_test).split(1024)])
    return ReferenceResult(rates, float((predictions.numpy() == data.y_test).mean()))


def matmul_flops(device: Device, size: int, repeats: int) -> float:
    """FLOP/s of a large float32 matrix product: about the most the device's cores deliver."""
    dev = torch_device(device)
    a, b = (torch.randn(size, size, device=dev) for _ in range(2))
    seconds = time_calls(lambda: a @ b, sync(device), warmup=1, repeats=repeats)
    return 2 * size**3 / float(np.median(seconds))
