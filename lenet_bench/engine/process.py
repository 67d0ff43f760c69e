"""Running a function in a fresh spawned process, and ending a process pool mid-job."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def kill_pool(pool: ProcessPoolExecutor) -> None:
    """End a pool's processes now, mid-job (Python 3.11 has no public call for it; 3.14 adds kill_workers)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        process.kill()
    pool.shutdown(wait=True, cancel_futures=True)


def in_fresh_process(fn: Callable[..., T], *args: Any) -> T:
    """fn(*args) in a new spawned process (TensorFlow is not fork-safe), ended with the call, even on Ctrl-C."""
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
    try:
        return pool.submit(fn, *args).result()
    finally:
        kill_pool(pool)
