"""What a process that executes jobs keeps from one job to the next, as one object its executor makes and closes.

A `WorkerContext` holds the process's datasets (one cache per data folder: loading and preparing MNIST costs
seconds that every later run of the invocation, or of a Dask worker's life, saves) and the helper processes of
the Keras engines the process cannot host (started on first use, kept for the next run of that engine).

Who makes it:
- the inline executor and `bench`: one for the invocation, passed to each call, closed when they end;
- a local worker or an engine helper process: one per process, made by the pool's initializer (`start_process`)
  and read by the function the pool runs (`in_this_process`) — a pool's calls reach their process only through
  module-level functions, so this is the one place such a process keeps it;
- a Dask worker: engine/dask_context.py's worker plugin, which the Dask executor registers, made in the
  worker's set-up and closed in its teardown.
"""

from __future__ import annotations

import multiprocessing.util
from collections.abc import Callable
from typing import Any, TypeVar

from lenet_bench.data.cache import DataCache
from lenet_bench.engine.process import HelperProcess, watch_parent

T = TypeVar("T")


class WorkerContext:
    def __init__(self, data: DataCache | None = None):
        self._given = data  # the invocation's own cache (inline: what the driver loaded to decide)
        self._data: dict[str | None, DataCache] = {}
        self._helpers: dict[str, HelperProcess] = {}

    def data(self, data_dir: str | None) -> DataCache:
        """The datasets of `data_dir`, loaded once for every job this context runs."""
        if self._given is not None:
            return self._given
        if data_dir not in self._data:
            self._data[data_dir] = DataCache(data_dir)
        return self._data[data_dir]

    def in_engine_process(self, engine: str, fn: Callable[..., T], *args: Any) -> T:
        """fn(*args) in this context's helper process for `engine` (one that starts with `start_process`), spawned
        on first use and kept, so that the runs of another Keras engine pay for its imports once, not once per
        run. If the call is interrupted or its process dies, the process is ended and the next call starts anew."""
        helper = self._helpers.get(engine)
        if helper is None:
            helper = self._helpers[engine] = HelperProcess(start_process)
        try:
            return helper.submit(fn, *args).result()
        except BaseException:
            self._helpers.pop(engine, None)
            helper.kill()
            raise

    def close(self) -> None:
        """End the helper processes and drop the datasets."""
        while self._helpers:
            _, helper = self._helpers.popitem()
            helper.kill()
        self._data.clear()


_THIS_PROCESS: WorkerContext | None = None  # a pool process's context (see the module's docstring)


def start_process(parent: int) -> None:
    """A pool process's initializer: it ends when `parent` is gone, and has its context for every call, closed
    when the process ends."""
    global _THIS_PROCESS
    watch_parent(parent)
    _THIS_PROCESS = WorkerContext()
    # A pool process ends by joining its children, then os._exit (atexit never runs): a helper it started
    # waits for calls and would be joined for ever. Finalizers of priority >= 0 run before that join.
    multiprocessing.util.Finalize(_THIS_PROCESS, _THIS_PROCESS.close, exitpriority=10)


def in_this_process(fn: Callable[..., T], *args: Any) -> T:
    """fn(this pool process's context, *args): what a pool sends to a process started with `start_process`."""
    if _THIS_PROCESS is None:
        raise RuntimeError("in_this_process runs in a pool process started with start_process as its initializer")
    return fn(_THIS_PROCESS, *args)
