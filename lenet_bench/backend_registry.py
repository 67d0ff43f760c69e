"""The backends that exist and what each can do: plain data, importing no framework and nothing of lenet_bench.

Specs check their backends (names, capabilities) against it; `lenet_bench.backends` sets up and imports
a backend's module on demand. Keeping the registry a leaf lets both depend on it without depending on
each other.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Engine:
    """A process-wide choice a framework reads once, at import: one engine per family in a process."""

    family: str  # e.g. "keras"
    name: str  # e.g. "jax"
    variable: str  # the environment variable that selects it, e.g. KERAS_BACKEND


@dataclass(frozen=True)
class BackendEntry:
    name: str
    module: str  # import path of the backend module
    distributions: tuple[str, ...]  # pip distributions whose versions identify the framework
    extra: str = ""  # the pip extra that installs it
    # Set before the framework is imported (it reads them once, at import); a value the user set wins.
    environment: dict[str, str] = field(default_factory=dict)
    engine: Engine | None = None
    shared_code: tuple[str, ...] = ()  # modules outside its own folder that decide what it computes
    optimizers: frozenset[str] | None = None  # the spec optimizers it can train with; None: every one

    def unsupported(self, optimizer: str) -> str | None:
        """Why a spec with this optimizer cannot run on this backend, or None."""
        if self.optimizers is not None and optimizer not in self.optimizers:
            return (f"the {self.name} backend has the {' and '.join(sorted(self.optimizers))} optimizers only; "
                    f"received {optimizer!r}")
        return None


_REGISTRY: dict[str, BackendEntry] = {}


def register(entry: BackendEntry) -> None:
    """Add a backend; a name that is taken is an error (unregister it first to replace it)."""
    if entry.name in _REGISTRY:
        raise ValueError(f"a backend named {entry.name!r} is already registered ({_REGISTRY[entry.name].module}); "
                         f"received another one from {entry.module}")
    _REGISTRY[entry.name] = entry


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def entry(name: str) -> BackendEntry:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend; expected one of {', '.join(_REGISTRY)}, received {name!r}")
    return _REGISTRY[name]


_TF_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"} if os.environ.get("LENET_BENCH_TF_VERBOSE") != "1" else {}

register(BackendEntry("torch", "lenet_bench.backends.torch", ("torch",), extra="torch"))
register(BackendEntry(
    "keras", "lenet_bench.backends.keras", ("keras", "tensorflow|tensorflow-cpu"), extra="keras",
    # oneDNN kernels: 2.1x the training speed of LeNet-5 on 2 AVX2 cores (3,150 -> 6,570 images/s);
    # TensorFlow enables them by default only on CPUs with AVX-512.
    environment={"TF_ENABLE_ONEDNN_OPTS": "1", **_TF_QUIET},
    engine=Engine("keras", "tensorflow", "KERAS_BACKEND"), shared_code=("lenet_bench.backends.keras_common",)))
register(BackendEntry(
    # Keras on JAX; XLA's CPU thread pools are sized by configure(), before JAX's first operation.
    "keras-jax", "lenet_bench.backends.keras_jax", ("keras", "jax", "jaxlib"), extra="jax",
    engine=Engine("keras", "jax", "KERAS_BACKEND"), shared_code=("lenet_bench.backends.keras_common",),
    # sdlm needs a Hessian estimate before each epoch, which only the torch and keras backends have.
    optimizers=frozenset({"sgd", "adam"})))
