"""PyTorch training: the data sit in one tensor on the device and batches are gathered by
index, with no DataLoader and no per-sample Python; losses and hits are summed on the device
and read once per epoch; channels-last memory (model.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from lenet_bench.backends.torch.losses import Loss, loss_function
from lenet_bench.backends.torch.model import (
    NAME,
    canonical_parameters,
    count_params,
    images,
    logits,
    memory_format,
    torch_device,
)
from lenet_bench.backends.torch.sdlm import SDLM, diagonal_hessian
from lenet_bench.device import Device
from lenet_bench.spec.schema import Spec
from lenet_bench.training import timing
from lenet_bench.training.augment import epoch_images
from lenet_bench.training.checkpoint import BackendState, Checkpoint
from lenet_bench.training.evaluation import finish_run
from lenet_bench.training.loop import curvature_kept, hessian_sample, train_epochs
from lenet_bench.training.result import Progress, RunResult

if TYPE_CHECKING:
    from lenet_bench.data import PreparedData


__all__ = ["train"]  # what the backend's package takes from here (the protocol's)

WARMUP_STEPS = 5  # first steps allocate buffers and pick kernels; timed apart
# Up to this batch size, training steps run on one thread, with PyTorch's native CPU convolutions
# instead of oneDNN's: a one-image step is too small to share between threads, and oneDNN's per-call
# set-up dominates a one-image convolution (C1 and C5 forward and backward at batch 1 ran about 2x
# faster without it in interleaved rounds on the development machine; to re-check on a quiet one).
SMALL_BATCH = 4
PROGRESS_EVERY = 10  # steps between progress updates


def sync(device: Device) -> Callable[[], None]:
    return torch.cuda.synchronize if device == Device.GPU else (lambda: None)


def make_optimizer(spec: Spec, params) -> torch.optim.Optimizer:
    opt = spec.train.optimizer
    if opt.name == "sdlm":
        return SDLM(params, lr=opt.learning_rate, mu=opt.mu)
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov,
                               weight_decay=opt.weight_decay)
    return torch.optim.Adam(params, lr=opt.learning_rate, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                            weight_decay=opt.weight_decay)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             loss_fn: Loss = F.cross_entropy) -> tuple[float, float, torch.Tensor]:
    out = logits(model, x)
    loss = loss_fn(out, y).item()
    predictions = out.argmax(1)
    return loss, (predictions == y).float().mean().item(), predictions


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batches: list[np.ndarray], lrs: list[float],
                loss_fn: Loss = F.cross_entropy) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one optimizer step per batch; return (summed loss, hits) as device tensors."""
    model.train()
    loss_sum = torch.zeros((), device=x.device)
    hits = torch.zeros((), device=x.device, dtype=torch.long)
    for idx, lr in zip(batches, lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.from_numpy(idx).to(x.device, non_blocking=True)
        xb, yb = x.index_select(0, index), y.index_select(0, index)
        out = model(xb)
        loss = loss_fn(out, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(idx)
        hits += (out.detach().argmax(1) == yb).sum()
    return loss_sum, hits


def training_state(model: nn.Module, optimizer: torch.optim.Optimizer, device: Device) -> BackendState:
    """Model, optimizer and PyTorch's generators (CPU, and CUDA on the GPU), in one file of a checkpoint."""

    def save(folder: Path) -> None:
        generators = {"cpu": torch.get_rng_state()}
        if device == Device.GPU:
            generators["cuda"] = torch.cuda.get_rng_state_all()
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "rng": generators},
                   folder / "torch.pt")

    def restore(folder: Path) -> None:
        saved = torch.load(folder / "torch.pt", map_location=next(model.parameters()).device, weights_only=True)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        torch.set_rng_state(saved["rng"]["cpu"].cpu())
        if "cuda" in saved["rng"]:
            torch.cuda.set_rng_state_all([state.cpu() for state in saved["rng"]["cuda"]])

    return BackendState(save, restore)


@contextmanager
def _cpu_kernels_for(batch_size: int, device: Device) -> Iterator[None]:
    """One thread and no oneDNN for the training of very small batches on the CPU (see SMALL_BATCH)."""
    if device == Device.GPU or batch_size > SMALL_BATCH:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="TF32 acceleration on top of oneDNN")  # an Intel-GPU note
            with torch.backends.mkldnn.flags(enabled=False):
                yield
    finally:
        torch.set_num_threads(threads)


def train(model: nn.Module, spec: Spec, data: PreparedData, seed: int, device: Device,
          progress: Progress, max_steps_per_epoch: int | None = None,
          checkpoint: Checkpoint | None = None) -> RunResult:
    dev = torch_device(device)
    clock_sync = sync(device)
    torch.manual_seed(seed)
    if device == Device.GPU:
        torch.cuda.reset_peak_memory_stats()  # this run's peak, not the process's
    clock = timing.Stopwatch(clock_sync)

    clock.start()
    x_train, x_val, x_test = (images(x, dev) for x in (data.x_train, data.x_val, data.x_test))
    y_train, y_val, y_test = (torch.from_numpy(y).to(dev) for y in (data.y_train, data.y_val, data.y_test))
    model.to(memory_format=memory_format(model))
    data_seconds = clock.read()

    # Canonical order: sdlm's curvature arrays come in it (the same set as model.parameters()).
    optimizer = make_optimizer(spec, canonical_parameters(model))
    loss_fn = loss_function(spec.train.loss)
    sums = [torch.zeros((), device=dev), torch.zeros((), device=dev, dtype=torch.long)]

    def load_images(distorted: np.ndarray) -> None:
        nonlocal x_train  # a new tensor: the one made from data.x_train shares the prepared (cached) images
        x_train = images(distorted, dev)

    def run_steps(batches: list[np.ndarray], lrs: list[float]) -> None:
        loss_sum, hits = train_steps(model, optimizer, x_train, y_train, batches, lrs, loss_fn)
        sums[0] += loss_sum
        sums[1] += hits

    def take_sums() -> tuple[float, int]:
        values = sums[0].item(), int(sums[1].item())
        sums[0].zero_()
        sums[1].zero_()
        return values

    def validate() -> tuple[float | None, float | None]:
        return evaluate(model, x_val, y_val, loss_fn)[:2] if len(x_val) else (None, None)

    def evaluate_test() -> tuple[float, float, np.ndarray]:
        loss, accuracy, predictions = evaluate(model, x_test, y_test, loss_fn)
        return loss, accuracy, predictions.cpu().numpy()

    def device_memory() -> dict[str, float]:
        return {"peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20} if device == Device.GPU else {}

    def estimate_hessian(epoch: int) -> None:
        # sdlm (LeCun et al. 1998, section III.C): the Hessian diagonal re-estimated before each pass.
        index = hessian_sample(len(x_train), spec.train.optimizer.hessian_samples, seed, epoch)
        model.train()
        assert isinstance(optimizer, SDLM)
        optimizer.set_curvature(diagonal_hessian(model, x_train[torch.from_numpy(index).to(dev)], spec.train.loss),
                                keep=curvature_kept(spec.train.optimizer, epoch))

    with _cpu_kernels_for(spec.train.batch_size, device):
        loop = train_epochs(spec.train, len(x_train), seed, max_steps_per_epoch, clock, progress,
                            run_steps=run_steps, take_sums=take_sums, validate=validate, warmup_steps=WARMUP_STEPS,
                            progress_every=PROGRESS_EVERY,
                            before_epoch=estimate_hessian if spec.train.optimizer.name == "sdlm" else None,
                            checkpoint=checkpoint, state=training_state(model, optimizer, device),
                            distorted=epoch_images(spec.data.augment, data.x_train, seed, data.background),
                            load_images=load_images)
    return finish_run(backend=NAME, device=device, framework_version=torch.__version__, params=count_params(model),
                      loop=loop, evaluate_test=evaluate_test, predict_batch=lambda xb: logits(model, xb),
                      x_test=x_test, sync=clock_sync, data_seconds=data_seconds, model=model,
                      device_memory=device_memory)
