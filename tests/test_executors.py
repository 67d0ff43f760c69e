"""Executors: inline, pinned local workers (--workers) and a real Dask cluster on loopback (--cluster) give the
same rows; a worker killed mid-run fails that run only; an interrupted driver marks the runs in flight KILLED."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from lenet_bench.cli import main
from lenet_bench.engine import driver
from lenet_bench.engine.executors import InlineExecutor, split_cores

TESTS = Path(__file__).parent
SPEC = """
name: tiny
data: {subset: 2000, test_subset: 500, validation_split: 0.1}
model: {conv: [{filters: 4}, {filters: 8}], dense: [16]}
train: {optimizer: {name: sgd}, epochs: 2, seeds: [0, 1, 2]}
backends: [noop]
devices: [cpu, gpu]
expect: {min_test_accuracy: 0.05}
"""
# Columns that differ between executors by design (where and how it ran) or by time.
PROVENANCE = ["executor", "concurrent_workers", "cores", "hardware", "mlflow_run_id", "finished_at", "timing",
              "other_load_cores", "peak_rss_mb", "rss_at_start_mb", "data_prepare_seconds", "host", "reason"]


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC))
    return tmp_path


def run(workspace, mnist_dir, name: str, *extra: str) -> int:
    return main(["run", str(workspace / "specs"), "--data-dir", str(mnist_dir), "--tracking-uri",
                 f"sqlite:///{workspace}/{name}.db", "--results", str(workspace / name), *extra])


def rows(workspace, name: str) -> pd.DataFrame:
    table = pd.read_csv(workspace / name / "runs.csv", keep_default_na=False, na_values=[""]).set_index("run")
    return table.drop(columns=PROVENANCE).sort_index()


def test_cores_are_split_between_workers():
    assert split_cores([0, 1], 2) == [[0], [1]]
    assert split_cores([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert split_cores([0, 1], 3) == [[0], [1], [0]]  # more workers than cores: they share


@pytest.mark.slow
def test_workers_give_the_same_rows_as_inline(workspace, mnist_dir, noop):
    assert run(workspace, mnist_dir, "inline") == 0
    assert run(workspace, mnist_dir, "workers", "--workers", "2") == 0
    pd.testing.assert_frame_equal(rows(workspace, "workers"), rows(workspace, "inline"))
    workers = pd.read_csv(workspace / "workers" / "runs.csv")
    completed = workers[workers["status"] == "completed"]
    assert set(completed["executor"]) == {"workers"} and set(completed["concurrent_workers"]) == {2}
    assert set(completed["cores"]) == {max(1, len(os.sched_getaffinity(0)) // 2)}, "each worker has its own cores"


@pytest.mark.slow
def test_a_worker_killed_mid_run_fails_that_run_and_the_others_go_on(workspace, mnist_dir, noop, monkeypatch):
    monkeypatch.setenv("LENET_BENCH_NOOP_KILL", "1")  # read by noop_backend in the worker process
    assert run(workspace, mnist_dir, "workers", "--workers", "2", "--device", "cpu") == 1
    table = pd.read_csv(workspace / "workers" / "runs.csv").set_index("run")
    assert table.loc["tiny/noop/cpu/seed1", "status"] == "failed"
    assert "died" in table.loc["tiny/noop/cpu/seed1", "reason"]
    assert table.loc[["tiny/noop/cpu/seed0", "tiny/noop/cpu/seed2"], "status"].tolist() == ["completed", "completed"]


@pytest.mark.slow
def test_interrupting_the_driver_marks_every_run_in_flight_killed(workspace, mnist_dir):
    env = {**os.environ, "LENET_BENCH_NOOP_SLOW": "0,1,2", "LENET_BENCH_NOOP_SLOW_SECONDS": "60"}
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(TESTS)!r})
        from lenet_bench import backends
        from lenet_bench.cli import main
        backends.register(backends.BackendEntry("noop", "noop_backend", distributions=()))
        sys.exit(main(["run", "specs", "--data-dir", {str(mnist_dir)!r}, "--tracking-uri", "sqlite:///mlflow.db",
                       "--results", "results", "--workers", "2", "--device", "cpu"]))
    """)
    driver = subprocess.Popen([sys.executable, "-c", script], cwd=workspace, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    slow = 0
    for line in driver.stdout:
        slow += "noop: training slowly" in line
        if slow == 2:  # both workers are in the middle of a run
            break
    driver.send_signal(signal.SIGTERM)
    assert driver.wait(timeout=60) == 130
    table = pd.read_csv(workspace / "results" / "runs.csv").set_index("run")
    assert sorted(table["status"]) == ["killed", "killed"]
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{workspace}/mlflow.db")
    runs = mlflow.search_runs(experiment_names=["lenet_bench/specs"])
    assert set(runs["status"]) == {"KILLED"}, "the runs in flight and the invocation"


# ------------------------------------------------------------------ Dask

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dask_cluster(tmp_path: Path, workers: dict[str, dict[str, str]]):
    """A Dask scheduler and workers on loopback, started as the README starts them (`dask worker ADDRESS
    --nthreads 1`, so under Dask's nanny), one per entry of `workers`: name -> extra environment (and the
    GPU resource for a name starting with gpu); all stopped afterwards. Yields the scheduler's address."""
    dask = str(Path(sys.executable).parent / "dask")
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
    logs = tmp_path / "dask-logs"
    logs.mkdir(exist_ok=True)
    common = ["--no-dashboard"]
    processes = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), *common],
                                  env=env, stdout=open(logs / "scheduler.log", "w"), stderr=subprocess.STDOUT)]
    try:
        worker = [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--host", "127.0.0.1", *common]
        for name, extra_env in workers.items():
            resources = ["--resources", "GPU=1"] if name.startswith("gpu") else []
            processes.append(subprocess.Popen([*worker, "--name", name, *resources], env={**env, **extra_env},
                                              stdout=open(logs / f"{name}.log", "w"), stderr=subprocess.STDOUT))
        from distributed import Client

        deadline = time.monotonic() + 60
        while True:
            try:
                with Client(address, timeout=5) as client:
                    client.wait_for_workers(len(workers), timeout=60)
                break
            except (OSError, TimeoutError):
                if time.monotonic() > deadline:
                    raise AssertionError("Dask cluster did not start:\n" + "\n".join(
                        p.read_text()[-2000:] for p in logs.iterdir())) from None
                time.sleep(1)
        yield address
    finally:
        for process in reversed(processes):
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


@pytest.fixture
def cluster(tmp_path):
    """Two workers, one offering a GPU resource (it plays a GPU for the no-op backend)."""
    with dask_cluster(tmp_path, {"cpu-worker": {}, "gpu-worker": {"LENET_BENCH_NOOP_GPU": "1"}}) as address:
        yield address


@pytest.mark.slow
def test_a_dask_cluster_gives_the_same_rows_and_sends_gpu_runs_to_gpu_workers(workspace, mnist_dir, noop, cluster):
    assert run(workspace, mnist_dir, "inline", "--device", "cpu") == 0
    assert run(workspace, mnist_dir, "dask", "--cluster", cluster) == 0
    dask_rows = rows(workspace, "dask")
    cpu = dask_rows[dask_rows["device"] == "cpu"]
    pd.testing.assert_frame_equal(cpu, rows(workspace, "inline"))
    gpu = pd.read_csv(workspace / "dask" / "runs.csv").set_index("run").loc[lambda t: t["device"] == "gpu"]
    # Only the worker started with --resources GPU=1 plays a GPU: a GPU run sent anywhere else would be skipped.
    assert set(gpu["status"]) == {"completed"} and len(gpu) == 3
    assert set(gpu["executor"]) == {"dask"}


@pytest.mark.slow
def test_an_unreachable_cluster_is_exit_2_naming_it(workspace, mnist_dir, noop, capsys):
    start = time.monotonic()
    assert run(workspace, mnist_dir, "dask", "--cluster", f"tcp://127.0.0.1:{free_port()}") == 2
    assert time.monotonic() - start < 60
    assert "Dask scheduler" in capsys.readouterr().err


def test_with_several_runs_at_once_the_longest_start_first(workspace, mnist_dir, noop, monkeypatch):
    # 'a-small' comes first in the specs; 'b-wide' trains 16x the convolution filters, so more FLOPs.
    (workspace / "specs" / "tiny.yaml").unlink()
    for name, filters in (("a-small", 4), ("b-wide", 64)):
        (workspace / "specs" / f"{name}.yaml").write_text(textwrap.dedent(SPEC).replace("name: tiny", f"name: {name}")
                                                          .replace("{filters: 4}", f"{{filters: {filters}}}"))
    submitted: list[str] = []

    class Recording(InlineExecutor):  # runs here, but offers two slots as a pool of two workers would
        capacity = 2

        def submit(self, job):
            submitted.append(job.name)
            return super().submit(job)

    monkeypatch.setattr(driver, "make_executor", lambda options, data: Recording())
    assert run(workspace, mnist_dir, "two", "--device", "cpu", "--seed", "0") == 0
    assert submitted == ["b-wide/noop/cpu/seed0", "a-small/noop/cpu/seed0"]

    submitted.clear()
    monkeypatch.setattr(Recording, "capacity", 1)  # one at a time: the order of the specs, as written
    assert run(workspace, mnist_dir, "one", "--device", "cpu", "--seed", "0") == 0
    assert submitted == ["a-small/noop/cpu/seed0", "b-wide/noop/cpu/seed0"]


def test_measured_seconds_order_the_runs_before_flops_and_flops_when_any_is_unknown():
    """A Keras-on-JAX run of few FLOPs can outlast a PyTorch run of more: the expected seconds decide."""
    import dataclasses

    from lenet_bench.engine.plan import Job
    from lenet_bench.spec import load_variants

    [variant] = [v for v in load_variants([Path(__file__).resolve().parents[1] / "specs"]) if v.name == "lenet5"]
    few = Job(variant, "keras-jax", "cpu", 0, work=1e12)
    many = Job(variant, "torch", "cpu", 1, work=3e12)
    middle = dataclasses.replace(many, seed=2, work=2e12)
    runs = [many, few, middle]
    assert driver.longest_first(runs, driver.run_weights(runs, [10.0, 40.0, 20.0])) == [few, middle, many]
    assert driver.longest_first(runs, driver.run_weights(runs, [10.0, float("nan"), 20.0])) == [many, middle, few]
    assert driver.longest_first(runs) == [many, middle, few]
    # The ETA weighs the runs the same way
    assert driver.run_weights([many, few], [10.0, 40.0]) == {many.name: 10.0, few.name: 40.0}
    assert driver.run_weights([many, few], [10.0, float("nan")]) == {many.name: 3e12, few.name: 1e12}


def test_the_eta_is_the_work_left_over_the_work_done_per_second(monkeypatch):
    from lenet_bench import console

    clock = [100.0]
    monkeypatch.setattr(console.time, "monotonic", lambda: clock[0])
    progress = console.InvocationProgress(total=3, done=0, work=60.0, expected_seconds=45.0)
    clock[0] = 105.0
    assert progress.eta() == 40.0  # before any run ends: the estimate less the time elapsed
    clock[0] = 110.0
    progress.finished("  -> a: completed", True, 20.0)
    assert progress.eta() == 20.0  # 40 left at the 2 per second done so far
    progress.finished("  -> b: failed: x", False, 10.0)
    assert progress.eta() == 15.0  # a failed run leaves the work but does not count as done


def _helper_from_a_daemon(results) -> None:
    from lenet_bench.engine.worker_context import WorkerContext

    context = WorkerContext()
    try:
        results.put(context.in_engine_process("other-engine", os.getpid))
    except BaseException as err:  # the daemon's failure is the test's message
        results.put(f"{type(err).__name__}: {err}")
    finally:
        context.close()


def test_a_daemonic_process_such_as_a_dask_worker_under_its_nanny_can_start_an_engine_helper():
    """`dask worker` (with its default nanny) runs tasks in a daemonic process; a keras-jax run after Keras on
    TensorFlow there needs a helper process of its own (daemonic processes are not allowed children)."""
    import multiprocessing

    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    daemon = context.Process(target=_helper_from_a_daemon, args=(results,), daemon=True)
    daemon.start()
    answer = results.get(timeout=120)
    daemon.join(timeout=30)
    assert isinstance(answer, int) and answer not in (os.getpid(), daemon.pid), answer


@pytest.mark.slow
def test_one_nanny_worker_runs_keras_and_keras_jax_one_after_the_other(workspace, mnist_dir, tmp_path):
    """The README's worker (`dask worker ADDRESS --nthreads 1`, under its nanny, so daemonic) runs Keras on
    TensorFlow and Keras on JAX in one invocation: the engine its process cannot host runs in a helper."""
    from lenet_bench import backends

    missing = [reason for name in ("keras", "keras-jax") if (reason := backends.installed_reason(name))]
    if missing:  # never imported here: this process must not fix Keras' engine for the others
        (pytest.fail if os.environ.get("CI") else pytest.skip)("; ".join(missing))
    (workspace / "specs" / "tiny.yaml").write_text(textwrap.dedent(SPEC).replace("[noop]", "[keras, keras-jax]")
                                                  .replace("epochs: 2, seeds: [0, 1, 2]", "epochs: 1, seeds: [0]")
                                                  .replace("name: sgd}", "name: sgd}, max_steps_per_epoch: 3"))
    with dask_cluster(tmp_path, {"cpu-worker": {}}) as address:
        assert run(workspace, mnist_dir, "dask", "--cluster", address, "--device", "cpu") == 0
    table = pd.read_csv(workspace / "dask" / "runs.csv").set_index("run")
    assert set(table["status"]) == {"completed"} and set(table["backend"]) == {"keras", "keras-jax"}, table["reason"]
