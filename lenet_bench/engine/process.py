"""Processes of our own: a function run in a fresh spawned process, a process per Keras engine kept for
the invocation, and ending a process pool mid-job. Every such process watches its parent and ends when
the parent is gone."""

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
_ENGINE_POOLS: dict[str, ProcessPoolExecutor] = {}


PARENT_POLL_S = 0.5  # how often a helper looks whether its parent is still there


def _spawned_pool() -> ProcessPoolExecutor:
    return ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"),  # TensorFlow is not fork-safe
                               initializer=watch_parent, initargs=(os.getpid(),))


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
    Ours cannot: the helper is killed with its call or the invocation (kill_pool), and it ends itself
    within a second of its parent's death, however that came (watch_parent)."""
    config = multiprocessing.current_process()._config  # type: ignore[attr-defined]
    daemonic = config.get("daemon", False)
    config["daemon"] = False
    try:
        yield
    finally:
        config["daemon"] = daemonic


def _submit(pool: ProcessPoolExecutor, fn: Callable[..., T], *args: Any) -> Future[T]:
    with _children_allowed():  # the pool starts its process on the first submit
        return pool.submit(fn, *args)


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """End a pool's processes now, mid-job (Python 3.11 has no public call for it; 3.14 adds kill_workers)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a new spawned process, ended with the call, even on Ctrl-C."""
    pool = _spawned_pool()
    try:
        return _submit(pool, fn, *args).result()
    finally:
        kill_pool(pool)


def in_engine_process(engine: str, fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in this process's helper process for `engine`, spawned on first use and kept, so that a
    run of another Keras engine pays for its imports once per invocation, not once per run. If the call
    is interrupted or its process dies, the process is ended and the next call starts a new one."""
    pool = _ENGINE_POOLS.get(engine)
    if pool is None:
        pool = _ENGINE_POOLS[engine] = _spawned_pool()
    try:
        return _submit(pool, fn, *args).result()
    except BaseException:
        _ENGINE_POOLS.pop(engine, None)
        kill_pool(pool)
        raise


def end_engine_processes() -> None:
    while _ENGINE_POOLS:
        _, pool = _ENGINE_POOLS.popitem()
        kill_pool(pool)
