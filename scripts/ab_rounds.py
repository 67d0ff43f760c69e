"""What ab_torch_step.py and ab_keras_step.py share: arguments, interleaved rounds, the ratio table."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from lenet_bench.spec import Spec, load_variants


def parse_arguments(doc: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("variant_name", help="a variant in specs/, e.g. lenet5")
    parser.add_argument("variants", nargs="+", help="step variants; the first is the one others are compared to")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=5)
    return parser.parse_args()


def spec_named(name: str) -> Spec:
    return next(v.spec for v in load_variants(["specs"]) if v.name == name)


def compare_in_rounds(runs: dict[str, Callable[[int], float]], steps: int, rounds: int) -> None:
    """Time every variant once per round, in turn; print each one's median rate and ratio to the first."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(rounds):
        for name, images_per_second in runs.items():
            rates[name].append(images_per_second(steps))
    first = np.array(next(iter(rates.values())))
    for name, samples in rates.items():
        ratio = np.array(samples) / first
        print(f"{name:32s} {np.median(samples):8,.0f} img/s   x{np.median(ratio):.2f} ({ratio.min():.2f}-{ratio.max():.2f})")
