"""What ab_torch_step.py and ab_keras_step.py share: arguments, interleaved rounds, the ratio table."""

from __future__ import annotations

import argparse
import time
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


def random_nhwc(spec: Spec, pool: int) -> tuple[np.ndarray, np.ndarray]:
    """`pool` random float32 images of the spec's shape, channels last, and random labels."""
    channels, height, width = spec.input_shape
    return (np.random.randn(pool, height, width, channels).astype(np.float32),
            np.random.randint(0, spec.model.num_classes, pool))


def warmed_up(name: str, run: Callable[[list[np.ndarray]], None], batch: int, pool: int, what: str,
              index_dtype: type = np.int64) -> Callable[[int], float]:
    """Images/s of `run` (which returns once its device is done) on `steps` random batches of indices into the
    first `pool` images, after one untimed call of 10 steps (the warm-up: `what`), whose time is printed."""

    def images_per_second(steps: int) -> float:
        batches = [np.random.randint(0, pool, batch).astype(index_dtype) for _ in range(steps)]
        start = time.perf_counter()
        run(batches)
        return steps * batch / (time.perf_counter() - start)

    start = time.perf_counter()
    images_per_second(10)
    print(f"{name}: warm-up {time.perf_counter() - start:.1f} s ({what})", flush=True)
    return images_per_second


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
