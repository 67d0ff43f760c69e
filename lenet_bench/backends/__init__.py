"""Backend registry: name -> module, imported only when a run asks for it.

Every backend module offers the same small protocol (see `protocol.py`), so the runner
never branches on a framework's name. Importing TensorFlow costs seconds; `list`,
`validate` and PyTorch-only runs never pay it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_REGISTRY: dict[str, str] = {
    "torch": "lenet_bench.backends.torch_backend",
    "keras": "lenet_bench.backends.keras_backend",
}


class BackendUnavailable(RuntimeError):
    """The backend's framework is not installed; the message says what to install."""


def register(name: str, module_path: str) -> None:
    _REGISTRY[name] = module_path


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get(name: str) -> ModuleType:
    if name not in _REGISTRY:
        raise ValueError(f"unknown backend; expected one of {', '.join(_REGISTRY)}, received {name!r}")
    try:
        return importlib.import_module(_REGISTRY[name])
    except ImportError as err:
        raise BackendUnavailable(f"{name} backend not installed ({err.name or err}); "
                                 f"install it with: pip install 'lenet-bench[{name}]'") from err


def unavailable_reason(name: str, device: str) -> str | None:
    """None when `name` can run on `device`, else why not (recorded as the skip reason)."""
    try:
        backend = get(name)
    except BackendUnavailable as err:
        return str(err)
    return backend.unavailable_reason(device)
