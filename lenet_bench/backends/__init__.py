"""Backend registry: name -> entry, the backend module imported only when a run asks for it.

Every backend module offers the same protocol (`protocol.Backend`), so nothing outside
`backends/` names a framework. `activate(name)` is the one explicit set-up call: it sets
the environment the framework reads at import (Keras' engine, TensorFlow's kernels and log
level), imports the module quietly and sizes its thread pools to the cores this process
may use. `list`, `validate` and PyTorch-only runs never import TensorFlow.

Some frameworks are process-wide: Keras reads its engine (TensorFlow, JAX) once, at import.
A process hosts one engine per such family; `host_conflict` says whether this one can host a
backend, and the engine runs an incompatible backend in a process of its own.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import importlib.metadata
import os
import sys
from collections.abc import Iterator
from typing import cast

from lenet_bench.backend_registry import BackendEntry, Engine, entry, names, register, unregister
from lenet_bench.backends.protocol import Backend, BenchBackend
from lenet_bench.device import Device, allowed_cores

__all__ = ["Backend", "BackendEntry", "BenchBackend", "BackendUnavailable", "Engine", "activate", "entry", "framework_versions",
           "host_conflict", "installed_reason", "names", "quiet_stderr", "register", "unavailable_reason",
           "unregister", "usable_cores"]


_ACTIVE_ENGINES: dict[str, str] = {}  # family -> engine this process has imported


class BackendUnavailable(RuntimeError):
    """The backend's framework is not installed; the message says what to install."""


def usable_cores() -> int:
    """How many cores this process may run on (device.allowed_cores)."""
    return len(allowed_cores())


def host_conflict(name: str) -> str | None:
    """None when this process can run `name`, else why not (another engine of its family is already loaded)."""
    engine = entry(name).engine
    if engine is None:
        return None
    loaded = _ACTIVE_ENGINES.get(engine.family) or _engine_loaded_elsewhere(engine.family)
    if loaded and loaded != engine.name:
        return f"this process already runs {engine.family} on {loaded}; {name} needs {engine.name}"
    return None


def _engine_loaded_elsewhere(family: str) -> str | None:
    # Keras imported by other code (e.g. MLflow loading a model) fixed its engine without us.
    if family == "keras" and "keras" in sys.modules:
        return cast(str, sys.modules["keras"].backend.backend())
    return None


def activate(name: str) -> Backend:
    """Set up and return the backend module: environment, quiet import, thread pools."""
    found = entry(name)
    conflict = host_conflict(name)
    if conflict:
        raise RuntimeError(conflict)
    for key, value in found.environment.items():
        os.environ.setdefault(key, value)
    if found.engine:
        os.environ[found.engine.variable] = found.engine.name  # the engine is the backend: never the user's default
    first_import = found.module not in sys.modules
    try:
        with _quiet_stderr(os.environ.get("LENET_BENCH_TF_VERBOSE") != "1"):
            module = importlib.import_module(found.module)
    except ImportError as err:
        raise BackendUnavailable(f"{name} backend not installed ({err.name or err}); "
                                 f"install it with: pip install 'lenet-bench[{found.extra or name}]'") from err
    backend = cast(Backend, module)
    backend.configure(usable_cores())
    if first_import:
        _exempt_from_collection()
    if found.engine:
        _ACTIVE_ENGINES[found.engine.family] = found.engine.name
    return backend


def _exempt_from_collection() -> None:
    """Keep what exists now (the framework just imported: some 600,000 objects with TensorFlow and PyTorch)
    out of every later garbage collection. They live as long as the process; without this the collection
    after each run (`release`) walks all of them again: 0.26 s a run with both loaded, 0.4% of a suite."""
    gc.freeze()


def unavailable_reason(name: str, device: Device) -> str | None:
    """None when `name` can run on `device` here, else why not (recorded as the skip reason)."""
    try:
        backend = activate(name)
    except BackendUnavailable as err:
        return str(err)
    return backend.unavailable_reason(device)


def installed_reason(name: str) -> str | None:
    """Without importing anything: None when the backend's distributions are installed, else what is missing."""
    missing = [d for d in entry(name).distributions if _version(d) is None]
    if missing:
        return (f"{name} backend not installed ({', '.join(missing)} missing); "
                f"install it with: pip install 'lenet-bench[{entry(name).extra or name}]'")
    return None


def framework_versions(name: str) -> str:
    """'torch 2.13.0' or 'keras 3.15.1, tensorflow-cpu 2.21.0': read from the installed packages, no import."""
    return ", ".join(f"{d} {_version(d)}" for d in entry(name).distributions if _version(d))


def _version(distribution: str) -> str | None:
    # Alternatives are written a|b: the same module ships as tensorflow or tensorflow-cpu.
    for candidate in distribution.split("|"):
        try:
            return importlib.metadata.version(candidate)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@contextlib.contextmanager
def _quiet_stderr(quiet: bool) -> Iterator[None]:
    """Silence file descriptor 2: TensorFlow logs start-up lines before any log level applies."""
    if not quiet:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


quiet_stderr = _quiet_stderr  # for backends whose framework logs from C++ during a call (Keras' fit)
