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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lenet_bench.atomic_file import write_text_atomically
from lenet_bench.disk_space import free_text, is_out_of_space, short_of_space
from lenet_bench.reference_folder import inside_reference
from lenet_bench.training.result import EpochRecord

CHECKPOINTS = ".checkpoints"  # in a results folder
LATEST = "LATEST"
LOOP_STATE = "loop.json"
FORMAT = 1


class CheckpointError(RuntimeError):
    """A checkpoint whose backend state could not be restored: the model may hold part of it, so the run
    starts again from a freshly built model (the epoch that failed is removed)."""


def folder_for(results_dir: Path, fingerprint: str) -> Path:
    return Path(results_dir) / CHECKPOINTS / fingerprint


@dataclass
class LoopState:
    """Where the shared epoch loop stands after `epoch`: what it needs to go on from a checkpoint, and at the end of
    the run what it hands the backend (the history, the warm-up kept apart)."""

    epoch: int
    steps_per_epoch: int
    history: list[EpochRecord]
    warmup_seconds: float
    warmup_images: int
    resumed_from_epoch: int = 0  # the checkpoint's epoch this run went on from; 0: trained from the start

    def timing_fields(self) -> dict:
        """RunResult's timing fields: warm-up apart, the rest steady state."""
        elapsed = self.history[-1].elapsed if self.history else 0.0
        images = sum(r.images for r in self.history)
        return {"history": self.history, "warmup_seconds": self.warmup_seconds, "warmup_images": self.warmup_images,
                "steady_seconds": elapsed - self.warmup_seconds, "steady_images": images - self.warmup_images}


@dataclass
class BackendState:
    """How a backend writes its training state (model, optimizer, generators) into a folder and reads it back."""

    save: Callable[[Path], None]
    restore: Callable[[Path], None]


class Checkpoint:
    """A run's checkpoint folder. What went wrong with it is kept in `notes` (said once, with the run's
    result): an unreadable epoch is passed over for an older readable one, or the run trains from
    scratch; an epoch that cannot be written stops the checkpointing, never the run."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        if inside_reference(self.folder):
            raise ValueError(f"{self.folder} is inside the reference results: no checkpoint is written there")
        self.notes: list[str] = []
        self.unwritable = False  # an epoch could not be written: no more are tried
        self.out_of_space = False  # ... because the disk is full

    def saved_epoch(self) -> int | None:
        """The newest complete epoch whose loop state reads back, or None."""
        return next((epoch for epoch, _ in self._readable()), None)

    def save(self, state: LoopState, backend: BackendState) -> None:
        if self.unwritable:
            return
        name = _epoch_name(state.epoch)
        partial = self.folder / f".{name}.partial-{os.getpid()}"
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(partial, ignore_errors=True)
            partial.mkdir()
            backend.save(partial)
            (partial / LOOP_STATE).write_text(json.dumps(_loop_json(state)))
            final = self.folder / name
            shutil.rmtree(final, ignore_errors=True)  # left by a run stopped before it replaced LATEST
            os.replace(partial, final)
            write_text_atomically(self.folder / LATEST, json.dumps({"epoch": state.epoch}))
        except Exception as err:  # a full disk, a read-only or misplaced folder: the run trains on without
            shutil.rmtree(partial, ignore_errors=True)
            self.unwritable = True
            self.out_of_space = is_out_of_space(err) or short_of_space(self.folder)
            why = f"no space left on device, {free_text(self.folder)} free" if self.out_of_space else _problem(err)
            self.notes.append(f"epoch {state.epoch} and later were not checkpointed ({why} in {self.folder}): "
                              "a stop now would train it again from the last epoch saved")
            return
        for old in self.folder.iterdir():
            if old != final and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)

    def load(self, backend: BackendState, steps_per_epoch: int) -> LoopState | None:
        """Restore the newest readable epoch's backend state and return its loop's, or None: no checkpoint, or
        none readable (the run trains from scratch; `notes` say why). Epochs that cannot be read, or are of
        another shape, are removed. CheckpointError when the backend's state fails to restore."""
        for epoch, data in self._readable(steps_per_epoch):
            folder = self.folder / _epoch_name(epoch)
            try:
                state = _loop_state(data)
                backend.restore(folder)
                _restore_generators(data)
            except Exception as err:
                _discard(folder)
                _discard(self.folder / LATEST)  # it names the epoch just removed: nothing more to say about it
                self.notes.append(f"its checkpoint of epoch {epoch} in {self.folder} could not be restored "
                                  f"({_problem(err)})")
                raise CheckpointError(self.notes[-1]) from err
            return state
        if self.notes:
            self.remove()
            self.notes.append("trained from scratch")
        return None

    def _readable(self, steps_per_epoch: int | None = None) -> Iterator[tuple[int, dict]]:
        """(epoch, loop state) of each complete epoch folder whose loop.json reads back, newest first; the
        others noted and, when loading (`steps_per_epoch` given), removed. An epoch folder is renamed into
        place only once complete, so the newest one is right whatever LATEST says."""
        try:
            found = sorted((int(p.name.removeprefix("epoch-")), p) for p in self.folder.glob("epoch-[0-9]*")
                           if p.name.removeprefix("epoch-").isdigit())
        except OSError:
            found = []
        loading = steps_per_epoch is not None
        if loading and self.folder.exists() and not self.folder.is_dir():
            self.notes.append(f"its checkpoint {self.folder} is not a folder")
            _discard(self.folder)  # inside lenet_bench's own .checkpoints: the run's epochs go there now
        latest = self._latest()
        if loading and (self.folder / LATEST).is_file():  # none: a stop before the first epoch's, or after its folder
            if latest is None:
                self.notes.append(f"its checkpoint's {LATEST} in {self.folder} is unreadable")
            elif latest not in dict(found):
                self.notes.append(f"its checkpoint's {LATEST} names epoch {latest}, whose folder in {self.folder} "
                                  "is gone")
        for epoch, folder in reversed(found):
            try:
                data = json.loads((folder / LOOP_STATE).read_text())
                _loop_state(data)
                if data["epoch"] != epoch or (loading and data["steps_per_epoch"] != steps_per_epoch):
                    raise ValueError(f"it holds epoch {data['epoch']} of {data['steps_per_epoch']} steps; expected "
                                     f"epoch {epoch}" + (f" of {steps_per_epoch}" if loading else ""))
            except Exception as err:
                if loading:
                    self.notes.append(f"its checkpoint of epoch {epoch} in {self.folder} is unreadable "
                                      f"({_problem(err)})")
                    _discard(folder)
                continue
            yield epoch, data

    def _latest(self) -> int | None:
        try:
            return int(json.loads((self.folder / LATEST).read_text())["epoch"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self) -> None:
        if self.folder.is_dir():
            shutil.rmtree(self.folder, ignore_errors=True)


def _discard(path: Path) -> None:
    """A damaged part of a checkpoint gone, whatever it is (a folder, or a file in a folder's place)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _epoch_name(epoch: int) -> str:
    return f"epoch-{epoch:04d}"


def _problem(err: BaseException) -> str:
    """An error in a few words: its type and its message's first line."""
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


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



