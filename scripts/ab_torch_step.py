"""A/B of PyTorch training-step variants, interleaved in one process.

The bench compares the harness with a plain loop; this script is how each of the
harness's PyTorch choices was measured against its alternative. On a VM whose speed
drifts, variants timed one after the other mislead, so each round times every variant in
turn, and each variant's speed is reported as the median of its per-round ratio to the
first variant (with the min-max).

    python scripts/ab_torch_step.py lenet5 textbook pool_first pool_first+foreach nchw+pool_first pool_first+compile

A variant is a '+'-joined set of: textbook (activation before max pool) or pool_first,
nchw (default: channels-last), inplace (in-place ReLU), foreach (foreach Adam),
compile (torch.compile of the module). Random images of the spec's shape, Adam lr 1e-3.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch
from ab_rounds import compare_in_rounds, parse_arguments, spec_named, warmed_up
from torch import nn

from lenet_bench import backends

backends.activate("torch")  # thread pools sized as the harness sizes them
torch_model = importlib.import_module("lenet_bench.backends.torch.model")
torch_train = importlib.import_module("lenet_bench.backends.torch.train")

OPTIONS = {"textbook", "pool_first", "nchw", "inplace", "foreach", "compile"}
POOL_SIZE = 8192  # images the batches are drawn from


def make_variant(spec, name: str, x: torch.Tensor, y: torch.Tensor, batch: int):
    options = set(name.split("+"))
    if options - OPTIONS:
        raise SystemExit(f"unknown option(s) {sorted(options - OPTIONS)} in {name!r}; choose from {sorted(OPTIONS)}")
    memory_format = torch.contiguous_format if "nchw" in options else torch.channels_last
    module = torch_model.build_module(spec, max_pool_first="textbook" not in options).to(memory_format=memory_format)
    for layer in module.modules():
        if isinstance(layer, nn.ReLU) and "inplace" in options:
            layer.inplace = True
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3, **({"foreach": True} if "foreach" in options else {}))
    step_module = torch.compile(module) if "compile" in options else module
    x = x.contiguous(memory_format=memory_format)

    def run(batches: list[np.ndarray]) -> None:
        torch_train.train_steps(step_module, optimizer, x, y, batches, [1e-3] * len(batches))  # CPU: done on return

    return warmed_up(name, run, batch, len(x), "kernel selection, compilation")


def main() -> None:
    args = parse_arguments(__doc__)
    spec = spec_named(args.variant_name)
    x, y = torch.randn(POOL_SIZE, *spec.input_shape), torch.randint(0, 10, (POOL_SIZE,))
    compare_in_rounds({name: make_variant(spec, name, x, y, args.batch) for name in args.variants}, args.steps, args.rounds)


if __name__ == "__main__":
    main()
