"""A results folder: `runs.csv` (one row per run) and `summary.md`, written safely.

`runs.csv` is the record of what has run and what it gave: reuse, `compare`, `effects`, `check` and
`report` read it, and nothing else. MLflow gets each run's row as it is recorded, with what a table cannot
hold (curves, models, figures); `export` copies a table into a store, never the other way.

- Writes are a locked read-merge-write through a unique temporary file, renamed into place:
  two processes writing the same folder never lose each other's rows, and an interrupted
  write never leaves half a table.
- A row is replaced only by a row of the same run with the same or a better status: a
  failed, interrupted or skipped run never erases a completed one.
- A folder marked as the project's reference results (a `REFERENCE` file) is written only
  when asked for explicitly.
- Problems (a file where the folder should be, no permission, a full disk, a broken `runs.csv`,
  one that lacks a column every reader needs) are `ResultsError`s (`OutOfSpace` for a full
  disk) that name the path and say how to fix it; `check_writable` finds them before anything
  trains.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

import pandas as pd
from filelock import FileLock, Timeout

from lenet_bench.atomic_file import write_text_atomically
from lenet_bench.disk_space import check_room
from lenet_bench.reference_folder import REFERENCE_MARKER, inside_reference
from lenet_bench.results.convert import rows_from_frame, rows_to_frame
from lenet_bench.results.row import ResultRow, Status

RUNS_CSV = "runs.csv"
SUMMARY_MD = "summary.md"
LOCK_TIMEOUT_S = 60
_CONFLICT_MARKERS = ("<<<<<<<", "=======", ">>>>>>>")
# What makes a row a run: without one of these no reader can tell runs apart or pair them by seed.
IDENTITY_COLUMNS = ("run", "spec", "backend", "device", "seed", "status")
SUMMARY_COLUMNS = {
    "spec": "spec", "overrides": "overrides", "backend": "backend", "device": "device", "seed": "seed",
    "status": "status", "params": "params", "test_accuracy": "test acc %", "baseline_accuracy": "baseline acc %",
    "delta_to_baseline": "Δ baseline pp", "train_seconds": "train s", "train_images_per_sec": "img/s", "timing": "timing",
    "reason": "note",
}


class ResultsError(Exception):
    """A results folder that cannot be read or written; the message names it and says what to do."""


class ResultsFolder:
    def __init__(self, path: Path, *, update_reference: bool = False):
        self.path = Path(path)
        self.update_reference = update_reference

    @property
    def runs_csv(self) -> Path:
        return self.path / RUNS_CSV

    @property
    def is_reference(self) -> bool:
        """The project's reference results, or a folder anywhere inside them."""
        return inside_reference(self.path)

    # ------------------------------------------------------------ checks

    def check_writable(self, subfolders: Iterable[str] = ()) -> None:
        """Before any training: the folder can be created and written, its disk takes a run's records
        (disk_space.OutOfSpace if not), its `subfolders` (where they exist) are writable folders, and its
        runs.csv (if any) can be read."""
        if self.is_reference and not self.update_reference:
            raise ResultsError(
                f"{self.path} holds the project's reference results ({REFERENCE_MARKER} file); runs write "
                "to your own folder (the default, results/) and never change the reference. To record new "
                "reference results on purpose, pass --update-reference")
        if self.path.exists() and not self.path.is_dir():
            raise ResultsError(f"{self.path} is a file, not a folder; move it away or pass --results DIR")
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            check_room(self.path, "; free some space there, or pass --results DIR on another disk")
        except OSError as err:
            raise ResultsError(f"cannot write results to {self.path} ({err.strerror or err}); "
                               "fix its permissions or pass --results DIR") from err
        for name in subfolders:
            folder = self.path / name
            if folder.exists() and not folder.is_dir():
                raise ResultsError(f"{folder} is not a folder (lenet_bench keeps its {name.strip('.')} there); "
                                   "move it away or pass --results DIR")
            try:
                if folder.exists():
                    with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
                        pass
            except OSError as err:
                raise ResultsError(f"cannot write into {folder} ({err.strerror or err}); fix its permissions, "
                                   "move it away or pass --results DIR") from err
        self.read()

    # ------------------------------------------------------------ reading

    def read(self, require: Iterable[str] = ()) -> list[ResultRow]:
        """Every row of runs.csv ([] when there is none); a broken file, or one without the identity columns
        or the columns a reader `require`s, is a ResultsError naming the file and the columns."""
        path = self.runs_csv
        if not path.exists():
            return []
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise ResultsError(f"cannot read {path} ({err}); fix its permissions or move it away") from err
        conflict = next((n for n, line in enumerate(text.splitlines(), 1) if line.startswith(_CONFLICT_MARKERS)), None)
        if conflict:
            raise ResultsError(f"{path} has an unresolved merge conflict (line {conflict}); resolve it, or move the "
                               "file away (its runs are then trained again)")
        if not text.strip():
            raise ResultsError(f"{path} is empty; delete it (its runs are then trained again)")
        try:
            frame = pd.read_csv(path, keep_default_na=False, na_values=[""], dtype=str)
        except (pd.errors.ParserError, ValueError) as err:
            raise ResultsError(f"{path} is not a readable CSV table ({err}); move it away (its runs are then "
                               "trained again)") from err
        if "run" not in frame or "status" not in frame:
            raise ResultsError(f"{path} has no 'run' and 'status' columns: not a lenet_bench runs table; "
                               "move it away or pass --results DIR")
        missing = [c for c in dict.fromkeys([*IDENTITY_COLUMNS, *require]) if c not in frame]
        if missing:
            raise ResultsError(f"{path} lacks the column(s) {', '.join(map(repr, missing))}, which this command "
                               "needs; move it away (its runs are then trained again), "
                               "or pass the folder of a complete table")
        try:
            return rows_from_frame(frame)
        except ValueError as err:  # a status or number that is not one
            raise ResultsError(f"{path}: {err}; fix the row or move the file away") from err

    def require_table(self) -> None:
        """For the commands that read a table someone wrote: none there is a ResultsError, not an empty table."""
        if not self.runs_csv.is_file():
            raise ResultsError(f"{self.runs_csv} not found: no runs recorded in {self.path} (run `python -m "
                               "lenet_bench run` first, or pass the results folder that holds runs.csv)")

    def read_table(self, require: Iterable[str] = (), *, with_numbers: bool = True) -> list[ResultRow]:
        """Every row of a table someone wrote, for the commands that read one (compare, effects, report, export):
        no table, or (`with_numbers`) one without a run that has numbers, is a ResultsError."""
        self.require_table()
        rows = self.read(require)
        if with_numbers:
            _with_numbers(rows, self.runs_csv)
        return rows

    def completed_by_fingerprint(self) -> dict[str, ResultRow]:
        """Completed rows that carry a fingerprint: what decides that a run is done and is reused."""
        return {row.fingerprint: row for row in self.read() if row.status is Status.COMPLETED and row.fingerprint}

    # ------------------------------------------------------------ writing

    def merge(self, rows: Iterable[ResultRow]) -> list[ResultRow]:
        """Merge `rows` into runs.csv (each replaces its run's row unless that one has a better status),
        rewrite summary.md, and return every row of the table."""
        rows = list(rows)
        with self._locked():
            merged = {row.run: row for row in self.read()}
            for row in rows:
                old = merged.get(row.run)
                if old is None or row.status.rank >= old.status.rank:
                    merged[row.run] = row
            table = sorted(merged.values(), key=lambda r: (r.spec, r.overrides, r.backend, r.device, r.seed))
            frame = rows_to_frame(table)
            write_text_atomically(self.runs_csv, frame.to_csv(index=False), _file_mode())
            write_text_atomically(self.path / SUMMARY_MD, summary_markdown(frame), _file_mode())
        return table

    def rewrite_summary(self, require: Iterable[str] = ()) -> list[ResultRow]:
        """summary.md drawn again from runs.csv, read once under its lock (a run merging meanwhile waits), and the
        table's rows; a table without a run that has numbers is refused before anything is written."""
        with self._locked():
            rows = self.read_table(require)
            write_text_atomically(self.path / SUMMARY_MD, summary_markdown(rows_to_frame(rows)), _file_mode())
        return rows

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if self.is_reference and not self.update_reference:
            raise ResultsError(f"{self.path} holds the project's reference results; pass --update-reference to "
                               "write them")
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(self.path / f".{RUNS_CSV}.lock"))
        try:
            with lock.acquire(timeout=LOCK_TIMEOUT_S):
                yield
        except Timeout as err:
            raise ResultsError(f"{self.path}: another process has held the lock on {RUNS_CSV} for "
                               f"{LOCK_TIMEOUT_S} s ({lock.lock_file}); is another run writing there?") from err


def _with_numbers(rows: list[ResultRow], path: Path) -> None:
    if not any(row.status.has_numbers for row in rows):
        raise ResultsError(f"{path} has no completed runs (skipped, failed and interrupted runs have no numbers to "
                           "compare)")


def _file_mode() -> int:
    """0666 less the umask: the mode `open()` gives every other file the results folder holds."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def summary_markdown(runs: pd.DataFrame) -> str:
    table = runs[[c for c in SUMMARY_COLUMNS if c in runs.columns]].rename(columns=SUMMARY_COLUMNS).copy()
    for column in ("test acc %", "baseline acc %"):  # accuracy as a percentage, as `run` and `compare` show it
        if column in table:
            table[column] = table[column].map(lambda v: f"{100 * v:.2f}" if pd.notna(v) else "")
    if "Δ baseline pp" in table:
        table["Δ baseline pp"] = table["Δ baseline pp"].map(lambda v: f"{100 * v:+.2f}" if pd.notna(v) else "")
    for column in ("train s", "img/s"):
        if column in table:
            table[column] = table[column].map(lambda v: f"{v:,.1f}" if pd.notna(v) else "")
    if "params" in table:
        table["params"] = table["params"].map(lambda v: f"{int(v):,}" if pd.notna(v) else "")
    table = table.astype(object).fillna("")
    return ("# lenet_bench results\n\nOne row per run (variant/backend/device/seed). `overrides`: the run changed "
            "the spec from the command line (not judged against its expectation); `timing`: loaded when other "
            "work ran on the run's cores.\n\n" + table.to_markdown(index=False, disable_numparse=True) + "\n")
