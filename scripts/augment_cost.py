"""What data.augment costs a LeNet-5 epoch on PyTorch: the same run with and without distortions, one core,
interleaved, each epoch's seconds and the part of them spent waiting for its distorted images
(EpochRecord.augment_seconds). Run it on a quiet machine:

    LENET_BENCH_DATA_DIR=../shared/data/mnist taskset -c 0 .venv/bin/python scripts/augment_cost.py --rounds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
from pathlib import Path

import torch

from lenet_bench import backends
from lenet_bench.data import load_dataset, prepare
from lenet_bench.spec import load_variants
from lenet_bench.training.result import SilentProgress

SPEC = Path(__file__).resolve().parents[1] / "specs" / "regularization.yaml"


def one_run(spec, data, backend) -> list:
    run = backend.train(backend.build(spec, 0, "cpu"), spec, data, 0, "cpu", SilentProgress())
    return run.history[1:]  # the first epoch holds the warm-up


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    variants = {v.name: v.spec for v in load_variants([SPEC])}
    specs = {label: variants[f"lenet5-regularization-none-off-{label}"] for label in ("off", "on")}
    specs = {label: spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": args.epochs})})
             for label, spec in specs.items()}
    raw = load_dataset("mnist", Path(os.environ["LENET_BENCH_DATA_DIR"]), download=False)
    d = specs["off"].data
    data = prepare(raw, input_size=d.input_size, normalization=d.normalization, validation_split=d.validation_split)
    backend = backends.activate("torch")
    seconds: dict[str, list[float]] = {"off": [], "on": []}
    waited: list[float] = []
    for _ in range(args.rounds):
        for label, spec in specs.items():
            for record in one_run(spec, data, backend):
                seconds[label].append(record.seconds)
                if label == "on":
                    waited.append(record.augment_seconds)
    off, on, wait = statistics.median(seconds["off"]), statistics.median(seconds["on"]), statistics.median(waited)
    print(f"epoch seconds, median of {len(seconds['off'])} (epochs 2-{args.epochs} of {args.rounds} runs each), torch, "
          f"1 thread, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print(f"  augment off: {off:.2f} s   augment on: {on:.2f} s   (+{100 * (on / off - 1):.1f}%)")
    print(f"  of which waiting for the distorted images and loading them: {wait:.3f} s ({100 * wait / on:.1f}% of the epoch)")


if __name__ == "__main__":
    main()
