"""A test's body for one backend, run in this process or, for a backend it cannot host, in a fresh one.

Keras reads its engine once per process. This test process keeps Keras' first registered engine
(TensorFlow, which the rest of the suite uses), so Keras on JAX runs in a fresh process. A test
module sets BODIES (test name -> a module-level function of a helper module, plain arguments in,
plain data out) and parametrizes its tests over `backend`; a test asks `body_result(name)` for its
body's result for backend `name`. For a backend that runs elsewhere, the first such request
computes the bodies of every selected test of the module for that backend in one fresh process;
each test then compares what came back, here.

A body is called with the backend's name and, by keyword, those of `mnist_dir` and the test's
other parameters that its signature names.
"""

from __future__ import annotations

import inspect
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import require_backend

from lenet_bench import backends
from lenet_bench.engine.process import in_fresh_process

BACKEND_PARAMETER = "backend"  # the test parameter that names the backend a body runs for


@dataclass
class Outcome:
    value: Any = None
    error: str = ""  # the body's traceback, when it raised


@dataclass(frozen=True)
class Call:
    key: str  # the test's node id
    body: Callable[..., Any]
    kwargs: dict[str, Any]


def runs_here(name: str) -> bool:
    """Whether this process runs `name`'s bodies: it can host it, and hosting it takes no process-wide
    engine from the first registered backend of its family (the one the rest of the suite runs here)."""
    if backends.host_conflict(name):
        return False
    engine = backends.entry(name).engine
    if engine is None:
        return True
    family = [n for n in backends.names() if (e := backends.entry(n).engine) is not None and e.family == engine.family]
    return family[0] == name


def run_calls(name: str, calls: list[Call]) -> dict[str, Outcome] | str:
    """In the fresh process: every call's outcome by key, or why the backend cannot run on the CPU here."""
    reason = backends.unavailable_reason(name, "cpu")
    if reason:
        return reason
    outcomes = {}
    for call in calls:
        try:
            outcomes[call.key] = Outcome(call.body(name, **call.kwargs))
        except Exception:  # one broken body must not hide the others' results
            outcomes[call.key] = Outcome(error=traceback.format_exc())
    return outcomes


class CaseRunner:
    """The bodies of one test module: run here, test by test, or per backend all at once in a fresh process."""

    def __init__(self, module: Any, session: pytest.Session, mnist_dir: Path):
        self.module, self.session = module, session
        self.bodies: dict[str, Callable[..., Any]] = module.BODIES
        self.context = {"mnist_dir": mnist_dir}
        self._elsewhere: dict[str, dict[str, Outcome] | str] = {}  # backend -> outcomes from its fresh process

    def _call(self, item: Any) -> Call:
        body = self.bodies[item.originalname]
        available = {**self.context, **item.callspec.params}
        wanted = list(inspect.signature(body).parameters)[1:]  # the first is the backend's name
        return Call(item.nodeid, body, {k: available[k] for k in wanted if k in available})

    def _selected(self, name: str) -> list[Call]:
        """The calls of every selected test of this module that runs for backend `name`."""
        return [self._call(item) for item in self.session.items
                if getattr(item, "module", None) is self.module and item.originalname in self.bodies
                and hasattr(item, "callspec") and item.callspec.params.get(BACKEND_PARAMETER) == name]

    def result(self, item: Any, name: str) -> Any:
        call = self._call(item)
        if runs_here(name):
            require_backend(name)
            return call.body(name, **call.kwargs)
        if name not in self._elsewhere:
            calls = self._selected(name)
            missing = [call] if call.key not in {c.key for c in calls} else []
            self._elsewhere[name] = _in_fresh_process(name, calls + missing)
        outcomes = self._elsewhere[name]
        if isinstance(outcomes, dict) and call.key not in outcomes:
            # A test asking for a backend other than its parameter's, after the others ran: on its own.
            extra = _in_fresh_process(name, [call])
            outcomes = self._elsewhere[name] = extra if isinstance(extra, str) else {**outcomes, **extra}
        if isinstance(outcomes, str):
            skip_or_fail_unavailable(name, outcomes)
        outcome = outcomes[call.key]
        if outcome.error:
            pytest.fail(f"{call.body.__name__} for {name}, in a fresh process, raised:\n{outcome.error}", pytrace=False)
        return outcome.value


def _in_fresh_process(name: str, calls: list[Call]) -> dict[str, Outcome] | str:
    try:
        return in_fresh_process(run_calls, name, calls)
    except Exception:  # the process died: every test that needed it says so
        return {c.key: Outcome(error=traceback.format_exc()) for c in calls}


def skip_or_fail_unavailable(name: str, reason: str) -> None:
    # As conftest.require_backend: under CI a backend that cannot run on the CPU fails the test.
    if os.environ.get("CI"):
        pytest.fail(f"{name} backend unavailable under CI: {reason}")
    pytest.skip(f"{name} backend unavailable on cpu: {reason}")


@pytest.fixture(scope="module")
def case_runner(request: pytest.FixtureRequest, mnist_dir: Path) -> CaseRunner:
    return CaseRunner(request.module, request.session, mnist_dir)


@pytest.fixture
def body_result(request: pytest.FixtureRequest, case_runner: CaseRunner) -> Callable[[str], Any]:
    """body_result(name): this test's body, run for backend `name` here or in a fresh process."""
    return lambda name: case_runner.result(request.node, name)
