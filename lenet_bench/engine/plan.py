"""Which runs an invocation makes: specs x backends x devices x seeds, after the command line's selection.

A `Job` is plain, picklable data: it executes anywhere (this process, a local worker, a
Dask worker). Light on imports (no MLflow, no framework) so that `list` answers at once.

Command-line overrides (`--epochs`, `--max-steps`, `--subset`) change what a run trains, so
they are part of its identity: such a run is named `variant@epochs=1,max_steps=50/...`, never
replaces the row of the spec as written, and is not judged against the spec's expectation.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lenet_bench import backends
from lenet_bench.device import Device, as_device
from lenet_bench.results.identity import RunIdentity
from lenet_bench.spec import Spec, Variant, revalidated

EXECUTORS = ("inline", "workers", "dask")


@dataclass(frozen=True)
class RunOptions:
    data_dir: str | None = None
    tracking_uri: str | None = None
    experiment: str | None = None
    results_dir: Path = Path("results")
    update_reference: bool = False  # allowed to write a folder of reference results
    only: tuple[str, ...] = ()
    backends: tuple[str, ...] = ()
    devices: tuple[str, ...] = ()
    epochs: int | None = None
    max_steps: int | None = None
    subset: int | None = None
    seeds: tuple[int, ...] = ()  # replaces every spec's seeds
    force: bool = False
    log_models: bool = True  # trained models logged with MLflow's flavour, for predict and serve
    live: bool | None = None  # None: a live bar only on a terminal
    workers: int | None = None  # local worker processes, each pinned to its own cores
    cluster: str | None = None  # a Dask scheduler address

    @property
    def executor(self) -> str:
        return "dask" if self.cluster else "workers" if self.workers else "inline"

    def overrides(self) -> dict[str, int]:
        """What the command line changes in every spec it runs, in a fixed order."""
        found = {"epochs": self.epochs, "max_steps": self.max_steps, "subset": self.subset}
        return {name: value for name, value in found.items() if value is not None}


@dataclass(frozen=True)
class Job:
    variant: Variant
    backend: str
    device: Device  # a plain "cpu"/"gpu" given here becomes the Device it names
    seed: int
    overrides: tuple[tuple[str, int], ...] = ()
    data_dir: str | None = None
    log_model: bool = True
    # The registry entry travels with the job: a worker process starts with only the built-in backends.
    backend_entry: backends.BackendEntry | None = None
    # Set by the driver once it has decided to train the run (none of it is part of what the run is):
    fingerprint: str = field(default="", compare=False)  # its identity in MLflow and results/ (fingerprint.py)
    work: float = field(default=0.0, compare=False)  # training FLOPs left, for the estimate and the ETA
    resume_epoch: int = field(default=0, compare=False)  # the last complete epoch of its checkpoint; 0: none
    checkpoint_dir: str | None = field(default=None, compare=False)  # where it saves each epoch and resumes from

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", as_device(self.device))

    @property
    def spec(self) -> Spec:
        return self.variant.spec

    @property
    def overrides_label(self) -> str:
        return ",".join(f"{name}={value}" for name, value in self.overrides)

    @property
    def identity(self) -> RunIdentity:
        return RunIdentity(self.variant.name, self.variant.base_name, self.overrides_label, self.backend,
                           self.device.value, self.seed)

    @property
    def setup(self) -> str:
        return self.identity.setup

    @property
    def name(self) -> str:
        return self.identity.name


class SelectionError(ValueError):
    """Command-line selection that matches nothing or names an unknown backend/device."""


def apply_overrides(variant: Variant, options: RunOptions) -> Variant:
    """--epochs, --max-steps, --subset and --seed change a run; they become part of its resolved spec,
    which is checked as a spec file is (an override the spec cannot take is a SpecError naming it)."""
    changes: dict[str, Any] = {}
    flags = []
    if options.epochs is not None:
        changes["train.epochs"] = options.epochs
        flags.append(f"--epochs {options.epochs}")
    if options.max_steps is not None:
        changes["train.max_steps_per_epoch"] = options.max_steps
        flags.append(f"--max-steps {options.max_steps}")
    if options.subset is not None:
        changes["data.subset"] = options.subset
        flags.append(f"--subset {options.subset}")
    if options.seeds:
        changes["train.seeds"] = list(options.seeds)
        flags.append(" ".join(f"--seed {seed}" for seed in options.seeds))
    if not changes:
        return variant
    return revalidated(variant, changes, f"command line ({' '.join(flags)})")


def plan_jobs(variants: list[Variant], options: RunOptions) -> list[Job]:
    unknown = [b for b in options.backends if b not in backends.names()]
    if unknown:
        raise SelectionError(f"--backend: unknown backend {unknown[0]!r}; expected one of: {', '.join(backends.names())}")
    overrides = tuple(options.overrides().items())
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
                jobs += [Job(variant, backend, device, seed, overrides, options.data_dir, options.log_models,
                             backends.entry(backend)) for seed in variant.spec.train.seeds]
    if not jobs:
        hint = ""
        plain = [p for p in options.only if not any(c in p for c in "*?[")]
        if plain:
            near = sorted(v.name for v in variants if any(v.name.startswith(p) for p in plain))
            hint = (f"; --only matches whole names (a glob): '{plain[0]}*' selects "
                    + (f"{len(near)} variant(s) starting with it, e.g. {near[0]}" if near else "its family"))
        raise SelectionError("no run matches the selection (--only / --backend / --device)" + hint
                             + "; `python -m lenet_bench list PATHS` shows what the specs hold")
    return jobs
