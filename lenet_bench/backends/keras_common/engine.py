"""The process's Keras as both Keras backends see it: the engine it was imported with, and its state between runs."""

from __future__ import annotations

import keras


def engine_mismatch(engine: str) -> str | None:
    """Why a backend that needs Keras on `engine` cannot run in this process (Keras reads its engine once per
    process); None when it can."""
    if keras.backend.backend() != engine:
        return f"Keras runs on {keras.backend.backend()!r} in this process; this backend needs {engine}"
    return None


def release() -> None:
    """Reset Keras' global state and collect the finished run's model, optimizer and compiled step,
    as Keras recommends between models built in a loop (keras.backend.clear_session)."""
    keras.backend.clear_session(free_memory=True)
