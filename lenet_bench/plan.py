"""Which runs an invocation makes: specs x backends x devices x seeds, after the CLI's selection.

Light on imports (no MLflow, no framework) so that `list` answers at once.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lenet_bench import backends
from lenet_bench.spec import Spec, Variant


@dataclass(frozen=True)
class RunOptions:
    data_dir: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    results_dir: Path = Path("results")
    only: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    epochs: int | None = None
    max_steps: int | None = None
    seeds: tuple[int, ...] = ()  # replaces every spec's seeds
    force: bool = False
    log_models: bool = True  # trained models logged with MLflow's flavour, for predict and reuse
    live: bool | None = None  # None: a live bar only on a terminal


@dataclass(frozen=True)
class Job:
    variant: Variant
    backend: str
    device: str
    seed: int

    @property
    def spec(self) -> Spec:
        return self.variant.spec

    @property
    def name(self) -> str:
        return f"{self.variant.name}/{self.backend}/{self.device}/seed{self.seed}"


class SelectionError(ValueError):
    """Command-line selection that matches nothing or names an unknown backend/device."""


def apply_overrides(variant: Variant, options: RunOptions) -> Variant:
    """--epochs, --max-steps and --seed change a run; they become part of its resolved spec."""
    updates: dict[str, Any] = {}
    if options.epochs is not None:
        updates["epochs"] = options.epochs
    if options.max_steps is not None:
        updates["max_steps_per_epoch"] = options.max_steps
    if options.seeds:
        updates["seeds"] = list(options.seeds)
    if not updates:
        return variant
    spec = variant.spec.model_copy(update={"train": variant.spec.train.model_copy(update=updates)})
    return dataclasses.replace(variant, spec=spec)


def plan_jobs(variants: list[Variant], options: RunOptions) -> list[Job]:
    unknown = [b for b in options.backends if b not in backends.names()]
    if unknown:
        raise SelectionError(f"--backend: unknown backend {unknown[0]!r}; expected one of: {', '.join(backends.names())}")
    jobs = []
    for variant in variants:
        # Glob patterns: a plain name selects exactly that variant ('lenet5*' selects its family).
        if options.only and not any(fnmatch.fnmatchcase(variant.name, p) for p in options.only):
            continue
        variant = apply_overrides(variant, options)
        for backend in variant.spec.backends:
            if options.backends and backend not in options.backends:
                continue
            for device in variant.spec.devices:
                if options.devices and device not in options.devices:
                    continue
                jobs += [Job(variant, backend, device, seed) for seed in variant.spec.train.seeds]
    if not jobs:
        raise SelectionError("no run matches the selection (--only / --backend / --device); "
                             "`python -m lenet_bench list PATHS` shows what the specs hold")
    return jobs
