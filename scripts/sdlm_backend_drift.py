"""Do the Keras and PyTorch 1998 runs differ, or does one-image sdlm amplify rounding? A measurement.

Both backends implement the same network and sdlm and agree to 1e-8 in the weights after a few
one-image steps (tests/test_lecun1998.py), yet their 20-pass runs end at different test errors. This
script sets that difference beside the one rounding alone makes: PyTorch again, from the same initial
weights perturbed by 1e-7 of each array's largest value.

    python scripts/sdlm_backend_drift.py --steps 10 100 1000 5000 60000
    python scripts/sdlm_backend_drift.py --perturbations 4

--steps: after N one-image steps of the first pass, the largest weight difference PyTorch-perturbed
and PyTorch-Keras (and how far the steps moved the weights), with each run's mean training loss and
test accuracy. --perturbations K: one whole first pass on each backend from K perturbed starts (seeds
1..K): the spread of the first pass's training loss that rounding-sized differences give on each.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from lenet_bench import backends
from lenet_bench.data import load_dataset, prepare
from lenet_bench.spec.loading import load_variants
from lenet_bench.training.result import SilentProgress

PERTURBATION = 1e-7  # of each array's largest magnitude: the size of float32 rounding on these weights


def perturbed(weights: list[np.ndarray], seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [w + PERTURBATION * np.abs(w).max() * rng.standard_normal(w.shape).astype(w.dtype) for w in weights]


def largest_gap(a: list[np.ndarray], b: list[np.ndarray]) -> float:
    return max(float(np.abs(x - y).max()) for x, y in zip(a, b, strict=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="paper1998/lecun1998.yaml")
    parser.add_argument("--name", default="lecun1998-capped")
    parser.add_argument("--seed", type=int, default=0, help="the initial weights' seed")
    parser.add_argument("--steps", type=int, nargs="*", default=[], help="one-image steps to compare after")
    parser.add_argument("--perturbations", type=int, default=0, help="perturbed first passes per backend")
    args = parser.parse_args()
    if not args.steps and not args.perturbations:
        parser.error("give --steps N ... or --perturbations K")

    spec = next(v.spec for v in load_variants([args.spec]) if v.name == args.name)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"epochs": 1})})
    d = spec.data
    data = prepare(load_dataset(d.dataset), input_size=d.input_size, normalization=d.normalization)
    torch_backend, keras_backend = backends.activate("torch"), backends.activate("keras")
    start = torch_backend.get_weights(torch_backend.build(spec, args.seed, "cpu"))

    def first_pass(backend: Any, weights: list[np.ndarray], steps: int | None = None) -> tuple[list[np.ndarray], Any]:
        model = backend.build(spec, args.seed, "cpu")
        backend.set_weights(model, weights)
        run = backend.train(model, spec, data, args.seed, "cpu", SilentProgress(), steps)
        trained = backend.get_weights(run.model)
        backend.release()
        return trained, run

    for steps in args.steps:
        (t, rt), (p, rp), (k, rk) = (first_pass(torch_backend, start, steps),
                                     first_pass(torch_backend, perturbed(start, 1), steps),
                                     first_pass(keras_backend, start, steps))
        print(f"{steps:6d} steps: weights moved {largest_gap(t, start):.2e}; largest difference torch-perturbed "
              f"{largest_gap(t, p):.2e}, torch-keras {largest_gap(t, k):.2e}; mean training loss torch "
              f"{rt.history[0].train_loss:.4f}, perturbed {rp.history[0].train_loss:.4f}, keras "
              f"{rk.history[0].train_loss:.4f}; test accuracy {rt.test_accuracy:.4f} / {rp.test_accuracy:.4f} / "
              f"{rk.test_accuracy:.4f}", flush=True)
    losses: dict[str, list[float]] = {"torch": [], "keras": []}
    for seed in range(1, args.perturbations + 1):
        for backend in (torch_backend, keras_backend):
            _, run = first_pass(backend, perturbed(start, seed))
            losses[backend.NAME].append(run.history[0].train_loss)
            print(f"perturbation {seed}, {backend.NAME}: first-pass training loss {run.history[0].train_loss:.4f}, "
                  f"test accuracy {run.test_accuracy:.4f}", flush=True)
    for name, values in losses.items():
        if values:
            print(f"{name}: first-pass training loss {np.mean(values):.3f} +- {np.std(values, ddof=1):.3f} "
                  f"(mean +- sd over {len(values)} perturbed starts)")


if __name__ == "__main__":
    main()
