"""What a run is, apart from how it went: its variant, the command line's overrides, backend, device and seed.

A planned job and a recorded row both answer to one `RunIdentity`; the run's name in MLflow and
runs.csv, its setup (the variant as trained) and its seed group in the MLflow view are spelled
here and nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RunIdentity:
    variant: str  # the variant's name, a matrix cell's included
    base_spec: str  # the spec entry it came from (the matrix's name; the variant's own otherwise)
    overrides: str  # the command line's changes, e.g. "epochs=1,max_steps=50"; empty for the spec as written
    backend: str
    device: str  # "cpu" | "gpu"
    seed: int

    @property
    def setup(self) -> str:
        """The variant as trained: its name, with the command line's overrides when there are any."""
        return setup_name(self.variant, self.overrides)

    @property
    def name(self) -> str:
        """The run's name in MLflow and the key of its row in runs.csv."""
        return f"{self.setup}/{self.backend}/{self.device}/seed{self.seed}"

    @property
    def seed_group(self) -> str:
        """Where the MLflow view puts the run: with the other seeds of its setup on its backend and device."""
        return seed_group(self.setup, self.backend, self.device)


def setup_name(variant: str, overrides: str) -> str:
    """A variant's name with the command line's overrides (`variant@epochs=1`), for identities and for columns of a
    table alike."""
    return f"{variant}@{overrides}" if overrides else variant


def seed_group(setup: str, backend: str, device: str) -> str:
    """The group of runs in the MLflow view: one setup on one backend and device (its seeds)."""
    return f"{setup}/{backend}/{device}"
