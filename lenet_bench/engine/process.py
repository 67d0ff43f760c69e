"""Processes of our own: a function run in a fresh spawned process, and a process pool of one that can be
ended mid-job (a local worker; a Keras engine's helper, kept by worker_context). Every such process watches
its parent and ends when the parent is gone."""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
SPAWN = multiprocessing.get_context("spawn")  # TensorFlow is not fork-safe

PARENT_POLL_S = 0.5  # how often a helper looks whether its parent is still there


def watch_parent(parent: int) -> None:
    """In a helper process: end it as soon as `parent` is gone. Its pipe never tells it so: the pool's call
    queue is a multiprocessing.Queue, whose writing end the helper holds too, so a helper whose parent was
    killed (a Dask worker stopped by its nanny's SIGKILL) would wait on it, or train on, for ever."""

    def watch() -> None:
        while os.getppid() == parent:  # a dead parent's children are handed to init (or a subreaper)
            time.sleep(PARENT_POLL_S)
        os._exit(1)  # at once: no cleanup is owed to a parent that is gone

    threading.Thread(target=watch, name="lenet_bench-watch-parent", daemon=True).start()


@contextmanager
def _children_allowed() -> Iterator[None]:
    """Let a daemonic process start our helper. A Dask worker under its nanny (the README's `dask worker`)
    is daemonic, and multiprocessing refuses children there, lest they outlive a daemon that is ended.
    Ours cannot: the helper is killed with its call or the invocation (HelperProcess.kill), and it ends
    itself within a second of its parent's death, however that came (watch_parent)."""
    this = multiprocessing.current_process()
    daemonic = this.daemon
    this.daemon = False
    try:
        yield
    finally:
        this.daemon = daemonic


class HelperProcess:
    """One spawned process that runs calls one after another and can be killed mid-call: a
    ProcessPoolExecutor of one, which knows its process (the pool has no public handle on it before
    Python 3.14's kill_workers), so that ending it never waits for a run to finish."""

    def __init__(self, initializer: Callable[..., None] = watch_parent, initargs: tuple[Any, ...] | None = None):
        self._pool = ProcessPoolExecutor(1, mp_context=SPAWN, initializer=initializer,
                                         initargs=(os.getpid(),) if initargs is None else initargs)
        self._processes: set[multiprocessing.process.BaseProcess] = set()

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        before = set(multiprocessing.active_children())
        with _children_allowed():  # the pool starts its process on the first submit, within the call
            future = self._pool.submit(fn, *args)
        self._processes |= set(multiprocessing.active_children()) - before
        return future

    def kill(self) -> None:
        """End the process now, mid-call; a call in flight fails with BrokenProcessPool."""
        for process in self._processes:
            process.kill()
        self._pool.shutdown(wait=True, cancel_futures=True)

    def shutdown(self) -> None:
        """End the process after its call in flight."""
        self._pool.shutdown(wait=True)


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a new spawned process, ended with the call, even on Ctrl-C."""
    helper = HelperProcess()
    try:
        return helper.submit(fn, *args).result()
    finally:
        helper.kill()
