"""A stop asked for by Ctrl-C, SIGINT or SIGTERM: a flag, acted on where stopping is safe.

Raising KeyboardInterrupt from a signal handler lands wherever Python happens to be: in a weakref
callback (where it is ignored, and the invocation trains on), in an SQLAlchemy commit, or in the
cleanup of the first stop. So the handler only sets a flag and says "stopping..."; the training
loop checks it between steps and the driver between runs, and raise `Stopped` there. Further
signals while stopping change nothing: the cleanup (marking runs KILLED, ending MLflow runs)
finishes.

The flag is a plain bool, not a threading.Event: a second signal can run its handler inside the
first one's, and Event.set takes a non-reentrant lock, so a Ctrl-C landing inside another's set()
waited on that lock for ever (a CI run hung so).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

_requested = False  # set by the signal handlers and request(); a bool, so any thread reads it without a lock
_announcing = False  # a handler is writing its message: one nested inside it stays quiet


class Stopped(KeyboardInterrupt):
    """Raised at a safe point once a stop was asked for (a KeyboardInterrupt, so code that lets Ctrl-C
    through lets it through too)."""


def request() -> None:
    global _requested
    _requested = True


def requested() -> bool:
    return _requested


def check() -> None:
    """Raise Stopped if a stop was asked for: call it where stopping leaves nothing half done."""
    if _requested:
        raise Stopped


def _on_signal(signum: int, frame: object) -> None:
    """Takes no lock: it may run inside itself (a signal arriving while the last one is handled)."""
    global _requested, _announcing
    again, _requested = _requested, True
    if _announcing:
        return
    _announcing = True
    try:
        _announce(signum, again)
    finally:
        _announcing = False


def _announce(signum: int, again: bool) -> None:
    name = signal.Signals(signum).name
    message = ("stopping... (already stopping: the runs in flight are being marked KILLED)" if again else
               f"stopping... ({name}: finished runs are kept, the runs in flight will be marked KILLED)")
    # The handler may run in the middle of another write to stderr: a reentrant write raises RuntimeError.
    try:
        sys.stderr.write(f"\n{message}\n")
        sys.stderr.flush()
    except (OSError, RuntimeError):
        pass


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _stop_signals_handled_by(handler: Callable[[int, Any], Any]) -> Iterator[None]:
    """SIGINT and SIGTERM go to `handler` while the block runs (a background job's inherited SIG_IGN too);
    signals reach only the main thread, so elsewhere the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in STOP_SIGNALS}
    for sig in STOP_SIGNALS:
        signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, earlier in previous.items():
            # After a stop the command is ending: a late Ctrl-C must not kill its exit (exit 130, not -2).
            signal.signal(sig, signal.SIG_IGN if _requested else earlier)


@contextlib.contextmanager
def stops_as_flag() -> Iterator[None]:
    """SIGINT and SIGTERM set the flag while the block runs."""
    global _requested
    _requested = False
    try:
        with _stop_signals_handled_by(_on_signal):
            yield
    finally:
        _requested = False


def stops_as_interrupts() -> contextlib.AbstractContextManager[None]:
    """SIGTERM (kill, a scheduler, a session's end) and SIGINT are handled like Ctrl-C: a KeyboardInterrupt
    where Python is (for a server, which has no loop to check a flag). A job started in the background by a
    non-interactive shell inherits SIGINT ignored, and SIGTERM would end it without cleanup."""
    return _stop_signals_handled_by(signal.default_int_handler)
