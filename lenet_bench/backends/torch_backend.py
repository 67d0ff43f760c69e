"""PyTorch backend.

Speed choices (measured on 2 CPU cores, see the bench command): the data sit in one
tensor on the device and batches are gathered by index, with no DataLoader and no
per-sample Python; losses and hits are summed on the device and read once per epoch;
channels-last memory; max pooling before the activation (build_module).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from typing import TYPE_CHECKING

from lenet_bench import arch, timing
from lenet_bench.init import initial_weights
from lenet_bench.spec import Spec
from lenet_bench.training import Progress, RunResult, train_epochs

if TYPE_CHECKING:
    from lenet_bench.data import PreparedData

NAME = "torch"
MLFLOW_FLAVOR = "pytorch"
WARMUP_STEPS = 5  # first steps allocate buffers and pick kernels; timed apart
EVAL_BATCH = 2048
PROGRESS_EVERY = 10  # steps between progress updates
# oneDNN's preferred layout on CPU: LeNet-5 training went from about 5,300 to 7,000 images/s
# on 2 cores (NCHW vs channels-last, same process, quiet machine). Gathered batches keep it.
MEMORY_FORMAT = torch.channels_last

_ACTIVATIONS = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}
_POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def unavailable_reason(device: str) -> str | None:
    if device == "gpu" and not torch.cuda.is_available():
        return "no CUDA device (torch.cuda.is_available() is False)"
    return None


def framework_version() -> str:
    return torch.__version__


def mlflow_save_options() -> dict:
    """How MLflow saves this backend's models (see tracking.log_model)."""
    # Pickle, not MLflow's default 'pt2' export: it loads back as the same nn.Sequential that
    # predict_logits drives, and needs no input example.
    return {"pip_requirements": [f"torch=={torch.__version__.split('+')[0]}"], "serialization_format": "pickle"}


def torch_device(device: str) -> torch.device:
    return torch.device("cuda" if device == "gpu" else "cpu")


def _sync(device: str):
    return torch.cuda.synchronize if device == "gpu" else (lambda: None)


def build_module(spec: Spec, max_pool_first: bool = True) -> nn.Sequential:
    """The spec's network as an nn.Sequential with PyTorch's default initialization.

    With `max_pool_first`, a max pool runs before its block's activation: every activation
    here is non-decreasing, so max(act(x)) == act(max(x)), and the activation and its
    gradient then touch a quarter of the values. Same outputs; on 2 cores it trained LeNet-5
    1.07x (ReLU) and 1.13x (sigmoid) as fast, the 20/50/500 LeNet 1.17x (median of 5
    interleaved rounds, scripts/ab_torch_step.py).
    Average pooling does not commute with the activation and keeps the textbook order.
    """
    model = spec.model
    layers: list[nn.Module] = []
    channels = model.in_channels
    for conv in model.conv:
        block = [nn.Conv2d(channels, conv.filters, conv.kernel, conv.stride, padding=conv.padding),
                 _ACTIVATIONS[model.activation]()]
        pool = model.pool_of(conv)
        if pool != "none":
            block.insert(1 if pool == "max" and max_pool_first else 2, _POOLS[pool](conv.pool_size))
        layers += block
        channels = conv.filters
    layers.append(nn.Flatten())
    summary = arch.describe(model, spec.input_shape)
    in_features = next((l.output_shape[0] for l in summary.layers if l.kind == "flatten"), int(np.prod(spec.input_shape)))
    for units in model.dense:
        layers += [nn.Linear(in_features, units), _ACTIVATIONS[model.activation]()]
        in_features = units
    layers.append(nn.Linear(in_features, model.num_classes))
    return nn.Sequential(*layers)


def build(spec: Spec, seed: int, device: str) -> nn.Sequential:
    torch.manual_seed(seed)  # only matters for init: framework
    module = build_module(spec)
    if spec.model.init != "framework":
        set_weights(module, initial_weights(spec.model, spec.input_shape, spec.model.init, seed))
    arch.check_params(NAME, count_params(module), spec.summary())
    return module.to(torch_device(device))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _parametrized(model: nn.Module) -> list[nn.Module]:
    return [m for m in model if isinstance(m, (nn.Conv2d, nn.Linear))]


def get_weights(model: nn.Module) -> list[np.ndarray]:
    return [t.detach().cpu().numpy().copy() for m in _parametrized(model) for t in (m.weight, m.bias)]


def set_weights(model: nn.Module, weights: list[np.ndarray]) -> None:
    params = [t for m in _parametrized(model) for t in (m.weight, m.bias)]
    if len(params) != len(weights):
        raise ValueError(f"expected {len(params)} weight arrays, received {len(weights)}")
    with torch.no_grad():
        for param, value in zip(params, weights):
            if tuple(param.shape) != value.shape:
                raise ValueError(f"weight shape mismatch: expected {tuple(param.shape)}, received {value.shape}")
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def _images(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x)).to(device).contiguous(memory_format=MEMORY_FORMAT)


def predict_logits(model: nn.Module, x: np.ndarray, device: str = "cpu") -> np.ndarray:
    return _logits(model, _images(x, torch_device(device))).cpu().numpy()


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    model.eval()
    with torch.inference_mode():
        return torch.cat([model(x[i:i + EVAL_BATCH]) for i in range(0, len(x), EVAL_BATCH)])


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    logits = _logits(model, x)
    loss = F.cross_entropy(logits, y).item()
    predictions = logits.argmax(1)
    return loss, (predictions == y).float().mean().item(), predictions


def make_optimizer(spec: Spec, params) -> torch.optim.Optimizer:
    opt = spec.train.optimizer
    if opt.name == "sgd":
        return torch.optim.SGD(params, lr=opt.learning_rate, momentum=opt.momentum, nesterov=opt.nesterov,
                               weight_decay=opt.weight_decay)
    return torch.optim.Adam(params, lr=opt.learning_rate, betas=(opt.beta1, opt.beta2), eps=opt.eps,
                            weight_decay=opt.weight_decay)


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor,
                batches: list[np.ndarray], lrs: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Run one optimizer step per batch; return (summed loss, hits) as device tensors."""
    model.train()
    loss_sum = torch.zeros((), device=x.device)
    hits = torch.zeros((), device=x.device, dtype=torch.long)
    for idx, lr in zip(batches, lrs):
        for group in optimizer.param_groups:
            group["lr"] = lr
        index = torch.from_numpy(idx).to(x.device, non_blocking=True)
        xb, yb = x.index_select(0, index), y.index_select(0, index)
        logits = model(xb)
        loss = F.cross_entropy(logits, yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(idx)
        hits += (logits.detach().argmax(1) == yb).sum()
    return loss_sum, hits


def train(model: nn.Module, spec: Spec, data: PreparedData, seed: int, device: str,
          progress: Progress, max_steps_per_epoch: int | None = None) -> RunResult:
    dev = torch_device(device)
    sync = _sync(device)
    torch.manual_seed(seed)
    clock = timing.Stopwatch(sync)

    clock.start()
    x_train, x_val, x_test = (_images(x, dev) for x in (data.x_train, data.x_val, data.x_test))
    y_train, y_val, y_test = (torch.from_numpy(y).to(dev) for y in (data.y_train, data.y_val, data.y_test))
    model.to(memory_format=MEMORY_FORMAT)
    data_seconds = clock.read()

    optimizer = make_optimizer(spec, model.parameters())
    sums = [torch.zeros((), device=dev), torch.zeros((), device=dev, dtype=torch.long)]

    def run_steps(batches: list[np.ndarray], lrs: list[float]) -> None:
        loss_sum, hits = train_steps(model, optimizer, x_train, y_train, batches, lrs)
        sums[0] += loss_sum
        sums[1] += hits

    def take_sums() -> tuple[float, int]:
        values = sums[0].item(), sums[1].item()
        sums[0].zero_()
        sums[1].zero_()
        return values

    def validate() -> tuple[float | None, float | None]:
        return _evaluate(model, x_val, y_val)[:2] if len(x_val) else (None, None)

    loop = train_epochs(spec.train, len(x_train), seed, max_steps_per_epoch, clock, progress, run_steps=run_steps,
                        take_sums=take_sums, validate=validate, warmup_steps=WARMUP_STEPS, progress_every=PROGRESS_EVERY)

    clock.start()
    test_loss, test_acc, predictions = _evaluate(model, x_test, y_test)
    eval_seconds = clock.read()
    figures = timing.inference_figures(lambda xb: _logits(model, xb), sync, x_test)
    figures["peak_host_rss_mb"] = timing.peak_host_rss_mb()
    if device == "gpu":
        figures["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return RunResult(
        backend=NAME, device=device, framework_version=torch.__version__, params=count_params(model),
        test_loss=test_loss, test_accuracy=test_acc, test_predictions=predictions.cpu().numpy(),
        data_seconds=data_seconds, eval_seconds=eval_seconds, timings=figures, model=model, **loop.timing_fields(),
    )
