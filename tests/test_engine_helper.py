"""The engine helper (engine/process.py: the process a worker starts for a Keras engine it cannot host) ends
within seconds when its parent is gone: a parent killed with SIGKILL or SIGTERM, busy or idle, and the
README's Dask worker stopped under its nanny. Real processes; the helper's pid is read from a file it writes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
from test_executors import free_port

TESTS = Path(__file__).parent
GONE_WITHIN_S = 5.0


def write_pid_and_wait(pid_file: str, seconds: float) -> int:
    """In the helper: say who it is, then work (sleep) for `seconds`."""
    Path(pid_file).write_text(str(os.getpid()))
    time.sleep(seconds)
    return os.getpid()


def helper_in_a_dask_task(pid_file: str) -> int:
    """A Dask task that runs its work in the engine helper, as a keras-jax run on a worker that ran keras does."""
    from lenet_bench.engine.worker_context import WorkerContext

    return WorkerContext().in_engine_process("probe", write_pid_and_wait, pid_file, 600)


def wait_for_pid(pid_file: Path, owner: subprocess.Popen | None = None, timeout: float = 120) -> int:
    deadline = time.monotonic() + timeout
    while not (pid_file.exists() and pid_file.read_text()):
        assert owner is None or owner.poll() is None, owner.communicate()[0]
        assert time.monotonic() < deadline, "the helper never started"
        time.sleep(0.1)
    return int(pid_file.read_text())


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def assert_gone_soon(pid: int, since: float) -> None:
    while alive(pid) and time.monotonic() - since < GONE_WITHIN_S + 30:
        time.sleep(0.1)
    waited = time.monotonic() - since
    if alive(pid):
        psutil.Process(pid).kill()
    assert waited < GONE_WITHIN_S, f"the helper outlived its parent by {waited:.1f} s"


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
@pytest.mark.parametrize("busy", [True, False], ids=["busy", "idle"])
def test_the_engine_helper_ends_when_its_parent_is_killed(tmp_path, sig, busy):
    pid_file = tmp_path / "helper.pid"
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {str(TESTS)!r})
        from lenet_bench.engine.worker_context import WorkerContext
        from test_engine_helper import write_pid_and_wait
        context = WorkerContext()
        context.in_engine_process("probe", write_pid_and_wait, {str(pid_file)!r}, {600 if busy else 0})
        print("idle", flush=True)
        time.sleep(600)
    """)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        helper = wait_for_pid(pid_file, parent)
        if not busy:
            assert parent.stdout.readline().strip() == "idle"
        assert alive(helper) and psutil.Process(helper).ppid() == parent.pid
        parent.send_signal(sig)
        parent.wait(timeout=30)
        assert_gone_soon(helper, time.monotonic())
    finally:
        parent.kill()
        parent.wait()


@pytest.mark.slow
def test_stopping_a_dask_worker_under_its_nanny_leaves_no_helper_behind(tmp_path):
    """The README's `dask worker` (a nanny and its worker process), stopped by the nanny's pid with SIGTERM
    while its task runs in the helper: the nanny kills the busy worker after its timeout, and the helper ends
    with it."""
    from distributed import Client

    pid_file = tmp_path / "helper.pid"
    dask = str(Path(sys.executable).parent / "dask")
    address = f"tcp://127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    scheduler = subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                  "--no-dashboard"], **quiet)
    nanny = subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--host", "127.0.0.1", "--no-dashboard"],
                             **quiet)
    try:
        with Client(address, timeout=30) as client:
            client.wait_for_workers(1, timeout=60)
            client.submit(helper_in_a_dask_task, str(pid_file), pure=False)
            helper = wait_for_pid(pid_file, nanny)
            worker = psutil.Process(helper).ppid()
            assert worker != nanny.pid and psutil.Process(worker).ppid() == nanny.pid  # nanny > worker > helper
            nanny.send_signal(signal.SIGTERM)
            nanny.wait(timeout=60)
            deadline = time.monotonic() + 30
            while alive(worker) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert not alive(worker), "the nanny did not end its worker"
            assert_gone_soon(helper, time.monotonic())
    finally:
        for process in (nanny, scheduler):
            process.kill()
            process.wait()


def test_a_worker_context_keeps_one_helper_per_engine_and_its_datasets_until_it_is_closed(tmp_path):
    """What module state used to keep (a worker's datasets, its engine helpers) lives in the context its
    executor made: the same helper for a second call of the engine, a new one for another engine, all
    ended by close()."""
    from lenet_bench.engine.worker_context import WorkerContext

    context = WorkerContext()
    assert context.data(str(tmp_path)) is context.data(str(tmp_path))
    assert context.data(str(tmp_path)) is not context.data(None)
    first = context.in_engine_process("probe", os.getpid)
    assert context.in_engine_process("probe", os.getpid) == first != os.getpid()
    other = context.in_engine_process("other", os.getpid)
    assert other != first and alive(first) and alive(other)
    context.close()
    closed = time.monotonic()
    assert_gone_soon(first, closed)
    assert_gone_soon(other, closed)
    again = WorkerContext()
    try:
        assert again.in_engine_process("probe", os.getpid) not in (first, other)
    finally:
        again.close()


def _start_a_helper(context) -> int:
    return context.in_engine_process("probe", os.getpid)


@pytest.mark.slow
def test_a_pool_process_that_started_an_engine_helper_ends_when_its_pool_shuts_down():
    """A local worker that ran a Keras engine it cannot host in a helper (keras then keras-jax under --workers)
    ends with its pool: its context closes the helper as the process ends, before the process joins its
    children (else the worker waits on an idle helper, and the invocation on the worker, for ever)."""
    script = textwrap.dedent(f"""
        import multiprocessing, os, sys
        from concurrent.futures import ProcessPoolExecutor
        sys.path.insert(0, {str(TESTS)!r})
        from lenet_bench.engine.worker_context import in_this_process, start_process
        from test_engine_helper import _start_a_helper
        if __name__ == "__main__":
            pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"), initializer=start_process,
                                       initargs=(os.getpid(),))
            print(pool.submit(in_this_process, _start_a_helper).result(), flush=True)
            pool.shutdown(wait=True)
            print("ended", flush=True)
    """)
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output = owner.communicate(timeout=60)[0]
    except subprocess.TimeoutExpired:
        for child in psutil.Process(owner.pid).children(recursive=True):
            child.kill()
        owner.kill()
        pytest.fail(f"the pool did not end within 60 s: {owner.communicate()[0]}")
    helper = int(output.split()[0])
    assert output.split()[1] == "ended" and not alive(helper), output
