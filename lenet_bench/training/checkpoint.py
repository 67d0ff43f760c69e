"""A run's checkpoint: its training state at the end of its last complete epoch, to resume from.

Layout: `<results folder>/.checkpoints/<run fingerprint>/` holds `LATEST` (which epoch) and one
folder `epoch-NNNN/` with `loop.json` (the epoch, the history so far, the loop's timing
accumulators, Python's and NumPy's global generators) and the backend's own state files.
An epoch is written to a temporary folder and renamed into place, then `LATEST` is replaced
(os.replace): a stop or kill at any moment leaves the previous complete epoch readable. The
fingerprint names the spec, backend, seed, code and data, so a checkpoint is only ever resumed
by the same run; the data order is a function of (seed, epoch) and the learning rate of the
global step, so the epoch number restores both. Never inside the reference results.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_bench.atomic_file import write_text_atomically
from lenet_bench.reference_folder import inside_reference
from lenet_bench.training.result import EpochRecord

CHECKPOINTS = ".checkpoints"  # in a results folder
LATEST = "LATEST"
LOOP_STATE = "loop.json"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be resumed from (unreadable, or not this run's)."""


def folder_for(results_dir: Path, fingerprint: str) -> Path:
    return Path(results_dir) / CHECKPOINTS / fingerprint


@dataclass
class LoopState:
    """What the shared epoch loop needs to go on after `epoch`."""

    epoch: int
    steps_per_epoch: int
    history: list[EpochRecord]
    warmup_seconds: float
    warmup_images: int


@dataclass
class BackendState:
    """How a backend writes its training state (model, optimizer, generators) into a folder and reads it back."""

    save: Callable[[Path], None]
    restore: Callable[[Path], None]


class Checkpoint:
    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if inside_reference(self.folder):
            raise ValueError(f"{self.folder} is inside the reference results: no checkpoint is written there")

    def saved_epoch(self) -> int | None:
        """The last complete epoch saved, or None (no checkpoint, or an unreadable one)."""
        try:
            return int(json.loads((self.folder / LATEST).read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, state: LoopState, backend: BackendState) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = f"epoch-{state.epoch:04d}"
        partial = self.folder / f".{name}.partial-{os.getpid()}"
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        backend.save(partial)
        (partial / LOOP_STATE).write_text(json.dumps(_loop_json(state)))
        final = self.folder / name
        shutil.rmtree(final, ignore_errors=True)  # left by a run stopped before it replaced LATEST
        os.replace(partial, final)
        write_text_atomically(self.folder / LATEST, json.dumps({"epoch": state.epoch}))
        for old in self.folder.iterdir():
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    def load(self, backend: BackendState, steps_per_epoch: int) -> LoopState | None:
        """Restore the backend's state and return the loop's, or None when there is no checkpoint.
        An unreadable checkpoint is removed (the next attempt starts afresh) and raises CheckpointError."""
        epoch = self.saved_epoch()
        if epoch is None:
            return None
        folder = self.folder / f"epoch-{epoch:04d}"
        try:
            data = json.loads((folder / LOOP_STATE).read_text())
            state = _loop_state(data)
            if state.epoch != epoch or state.steps_per_epoch != steps_per_epoch:
                raise ValueError(f"it holds epoch {state.epoch} of {state.steps_per_epoch} steps; expected epoch "
                                 f"{epoch} of {steps_per_epoch}")
            backend.restore(folder)
            _restore_generators(data)
        except Exception as err:
            self.remove()
            raise CheckpointError(f"cannot resume from the checkpoint in {self.folder} ({type(err).__name__}: "
                                  f"{err}); it was removed, the next attempt trains from scratch") from err
        return state

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def save_arrays(path: Path, arrays: list[np.ndarray]) -> None:
    """Arrays in order, as an .npz file (read back without pickle)."""
    np.savez(path, *[np.asarray(a) for a in arrays])


def load_arrays(path: Path, expected: int) -> list[np.ndarray]:
    """The arrays save_arrays wrote; a ValueError when they are not the `expected` number of variables."""
    with np.load(path, allow_pickle=False) as stored:
        values = [stored[f"arr_{i}"] for i in range(len(stored.files))]  # np.savez's names for positional arrays
    if len(values) != expected:
        raise ValueError(f"{len(values)} saved variables for {expected}")
    return values


def _loop_json(state: LoopState) -> dict:
    numpy_state = np.random.get_state(legacy=False)
    numpy_state["state"] = {**numpy_state["state"], "key": numpy_state["state"]["key"].tolist()}
    return {"format": FORMAT, **dataclasses.asdict(state), "python_random": random.getstate(),
            "numpy_random": numpy_state}


def _loop_state(data: dict) -> LoopState:
    if data.get("format") != FORMAT:
        raise ValueError(f"checkpoint format {data.get('format')!r}, expected {FORMAT}")
    return LoopState(data["epoch"], data["steps_per_epoch"], [EpochRecord(**r) for r in data["history"]],
                     data["warmup_seconds"], data["warmup_images"])


def _restore_generators(data: dict) -> None:
    """Python's and NumPy's global generators as they were after the epoch (nothing in training draws from
    them now, but a backend's seeding may)."""
    version, internal, gauss = data["python_random"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = data["numpy_random"]
    numpy_state["state"]["key"] = np.array(numpy_state["state"]["key"], np.uint32)
    np.random.set_state(numpy_state)



