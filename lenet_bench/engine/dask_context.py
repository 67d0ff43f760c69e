"""A Dask worker's WorkerContext (engine/worker_context.py), as a worker plugin: made in the worker's set-up,
closed in its teardown, read by the function the Dask executor submits. A module of its own so that only
the Dask executor imports `distributed` (a second and more of start-up for every other process)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from distributed import WorkerPlugin, get_worker

from lenet_bench.engine.worker_context import WorkerContext

T = TypeVar("T")


class DaskWorkerContext(WorkerPlugin):
    """A Dask worker's context for every job it runs, from its set-up to its teardown. Registered by each
    invocation under one name and idempotent: a worker keeps its datasets across invocations."""

    name = "lenet_bench.worker_context"
    idempotent = True

    def __init__(self) -> None:
        self.context: WorkerContext | None = None

    def setup(self, worker: Any) -> None:
        self.context = WorkerContext()

    def teardown(self, worker: Any) -> None:
        if self.context is not None:
            self.context.close()


def on_dask_worker(fn: Callable[..., T], *args: Any) -> T:
    """fn(this Dask worker's context, *args): what the Dask executor submits."""
    plugin = get_worker().plugins[DaskWorkerContext.name]
    assert isinstance(plugin, DaskWorkerContext) and plugin.context is not None
    return fn(plugin.context, *args)
