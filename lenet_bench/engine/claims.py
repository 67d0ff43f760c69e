"""Runs claimed by the invocation that trains them, so that two invocations on one results folder do not
both train the same run.

A claim is a file `<results>/.claims/<fingerprint>`, created exclusively (O_EXCL), holding the owner's
host and process id. Another invocation that finds a live owner skips the run and says who trains it; a
claim whose owner is gone (killed with -9, a crash) is taken over. Claims are released when the run is
recorded, and every claim of an invocation when it ends. A claims folder that cannot be written (a file
in its place, read-only, a full disk) is a ResultsError naming it, and a claim that could not be written
whole is removed: no claim outlives the invocation that tried to take it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import psutil

from lenet_bench.disk_space import OutOfSpace, is_out_of_space, short_of_space
from lenet_bench.results.table import ResultsError

CLAIMS = ".claims"
# Every reason a claim gives begins so: the run is in another live invocation's hands, not missing here.
TRAINED_ELSEWHERE = "being trained by another invocation"
FRESH_S = 5.0  # an unreadable claim younger than this is being written, not abandoned


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class Claims:
    def __init__(self, results_folder: Path):
        self.folder = Path(results_folder) / CLAIMS
        self.held: set[str] = set()
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}

    def claim(self, fingerprint: str) -> str | None:
        """None when this invocation now holds the run; else who trains it (the reason to skip it)."""
        path = self.folder / fingerprint
        for _ in range(2):  # a second try after taking over a dead owner's claim
            try:
                self.folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self.folder.is_dir():
                    raise self._unusable(NotADirectoryError(f"{self.folder} is a file")) from None
                owner = self._owner(path)
                if owner is None and time.time() - _modified(path) < FRESH_S:
                    return f"{TRAINED_ELSEWHERE} (its claim is being written this very moment)"
                gone = owner is not None and owner.get("host") == self.me["host"] \
                    and not psutil.pid_exists(int(owner.get("pid", 0)))
                if owner is None or gone:
                    path.unlink(missing_ok=True)  # its owner is gone: the run is free again
                    continue
                since = time.strftime("%H:%M:%S", time.localtime(owner.get("since", 0)))
                return (f"{TRAINED_ELSEWHERE} (pid {owner.get('pid')} on {owner.get('host')}, since "
                        f"{since}); it will be in the results folder when that one records it")
            except OSError as err:
                raise self._unusable(err) from None
            try:
                with os.fdopen(fd, "w") as file:
                    json.dump({**self.me, "since": time.time()}, file)
            except OSError as err:
                path.unlink(missing_ok=True)  # half a claim would hold the run for nobody
                raise self._unusable(err) from None
            self.held.add(fingerprint)
            return None
        return f"{TRAINED_ELSEWHERE} (its claim changed hands while this one took it over)"

    def _unusable(self, err: OSError) -> Exception:
        if is_out_of_space(err) or short_of_space(self.folder):
            return OutOfSpace(self.folder)
        return ResultsError(f"cannot keep claims in {self.folder} ({err.strerror or err}); it must be a writable "
                            "folder: move what is there away, or pass --results DIR")

    @staticmethod
    def _owner(path: Path) -> dict | None:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None  # half written by a process that died: nobody holds it

    def release(self, fingerprint: str) -> None:
        if fingerprint in self.held:
            try:
                (self.folder / fingerprint).unlink(missing_ok=True)
            except OSError:
                pass  # a folder that became unusable: the claim names this process, which is ending
            self.held.discard(fingerprint)

    def release_all(self) -> None:
        for fingerprint in list(self.held):
            self.release(fingerprint)
        try:
            self.folder.rmdir()  # only when empty: another invocation's claims stay
        except OSError:
            pass
