"""Runs claimed by the invocation that trains them, so that two invocations on one results folder do not
both train the same run.

A claim is an exclusive lock (filelock: flock) on `<results>/.claims/<fingerprint>`, held while the
invocation trains the run; the file names the holder (host, process id, since when) for the others'
message. The operating system drops the lock when its process ends, however it ends (killed with -9, a
crash), so a run whose owner is gone is free again with no process check of ours. Claims are released
when the run is recorded, and every claim of an invocation when it ends; the files stay, empty, as
filelock requires (unlinking a lock file would let two processes lock two files of one name). A claims
folder that cannot be written (a file in its place, read-only, a full disk) is a ResultsError naming it.
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

from filelock import FileLock, Timeout

from lenet_bench.disk_space import OutOfSpace, is_out_of_space, short_of_space
from lenet_bench.results.table import ResultsError

CLAIMS = ".claims"
# Every reason a claim gives begins so: the run is in another live invocation's hands, not missing here.
TRAINED_ELSEWHERE = "being trained by another invocation"


class Claims:
    def __init__(self, results_folder: Path):
        self.folder = Path(results_folder) / CLAIMS
        self._locks: dict[str, FileLock] = {}
        self.me = {"host": socket.gethostname(), "pid": os.getpid()}

    @property
    def held(self) -> set[str]:
        return set(self._locks)

    def claim(self, fingerprint: str) -> str | None:
        """None when this invocation now holds the run; else who trains it (the reason to skip it)."""
        path = self.folder / fingerprint
        lock = FileLock(path, timeout=0)
        try:
            if self.folder.exists() and not self.folder.is_dir():
                raise NotADirectoryError(f"{self.folder} is a file")
            self.folder.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except Timeout:
            return self._held_elsewhere(path)
        except OSError as err:
            raise self._unusable(err) from None
        try:
            path.write_text(json.dumps({**self.me, "since": time.time()}))  # the same file, still locked
        except OSError as err:
            self._drop(path, lock)
            raise self._unusable(err) from None
        self._locks[fingerprint] = lock
        return None

    @staticmethod
    def _held_elsewhere(path: Path) -> str:
        try:
            owner = json.loads(path.read_text())
        except (OSError, ValueError):
            return f"{TRAINED_ELSEWHERE} (its claim is being written this very moment)"
        since = time.strftime("%H:%M:%S", time.localtime(owner.get("since", 0)))
        return (f"{TRAINED_ELSEWHERE} (pid {owner.get('pid')} on {owner.get('host')}, since "
                f"{since}); it will be in the results folder when that one records it")

    def _unusable(self, err: OSError) -> Exception:
        if is_out_of_space(err) or short_of_space(self.folder):
            return OutOfSpace(self.folder)
        return ResultsError(f"cannot keep claims in {self.folder} ({err.strerror or err}); it must be a writable "
                            "folder: move what is there away, or pass --results DIR")

    @staticmethod
    def _drop(path: Path, lock: FileLock) -> None:
        try:
            path.write_text("")  # nobody's: the next holder writes its name
        except OSError:
            pass  # a folder that became unusable: the lock goes with this process anyway
        lock.release()

    def release(self, fingerprint: str) -> None:
        lock = self._locks.pop(fingerprint, None)
        if lock is not None:
            self._drop(self.folder / fingerprint, lock)

    def release_all(self) -> None:
        for fingerprint in list(self._locks):
            self.release(fingerprint)
