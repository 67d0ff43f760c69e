"""Honest clocks without a clock: the order of syncs, clock readings and device work.

A fake `perf_counter` and a fake `sync` record what happens in which order, so these
tests check that no clock reading is taken while work issued to the device may still be
running, without timing anything and without a GPU.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from conftest import require_backend

from lenet_bench.backends.torch import model as torch_model
from lenet_bench.data import PreparedData
from lenet_bench.device import allowed_cores
from lenet_bench.engine import hardware
from lenet_bench.spec import Spec
from lenet_bench.training import timing
from lenet_bench.training.loop import time_to_target
from lenet_bench.training.result import EpochRecord, SilentProgress

# The module, not the package's `train` function of the same name.
torch_train = importlib.import_module("lenet_bench.backends.torch.train")
TICK = 0.001  # seconds the fake clock advances per reading


class Trace:
    """Syncs, clock readings and device work in the order they happen."""

    def __init__(self):
        self.events: list[str] = []
        self.now = 0.0

    def sync(self) -> None:
        self.events.append("sync")

    def perf_counter(self) -> float:
        self.events.append("clock")
        self.now += TICK
        return self.now

    def work(self, *_) -> None:
        self.events.append("work")

    def readings_with_work_pending(self) -> int:
        """Clock readings taken after device work that no sync has waited for."""
        pending, count = False, 0
        for event in self.events:
            if event == "work":
                pending = True
            elif event == "sync":
                pending = False
            elif pending:
                count += 1
        return count


@pytest.fixture
def trace(monkeypatch) -> Trace:
    recorder = Trace()
    monkeypatch.setattr(timing, "time", SimpleNamespace(perf_counter=recorder.perf_counter))
    return recorder


# ------------------------------------------------------------------ timing.py


def test_stopwatch_syncs_before_each_reading(trace):
    clock = timing.Stopwatch(trace.sync)
    clock.start()
    trace.work()
    assert clock.read() == pytest.approx(TICK)
    assert trace.events == ["sync", "clock", "work", "sync", "clock"]


def test_stopwatch_read_before_start_is_an_error(trace):
    with pytest.raises(AssertionError, match="before start"):
        timing.Stopwatch(trace.sync).read()


def test_time_calls_leaves_warmup_untimed_and_syncs_after_each_timed_call(trace):
    samples = timing.time_calls(trace.work, trace.sync, warmup=3, repeats=4)
    assert trace.events.count("work") == 3 + 4
    assert trace.events[:5] == ["work", "work", "work", "sync", "clock"], "warm-up calls come before the first reading"
    assert trace.readings_with_work_pending() == 0
    assert samples.tolist() == pytest.approx([TICK] * 4)


def test_inference_timings_time_both_batch_sizes_after_their_warmup(trace):
    batch_sizes: list[int] = []

    def predict(batch: np.ndarray) -> None:
        batch_sizes.append(len(batch))
        trace.work()

    figures = timing.inference_timings(predict, trace.sync, np.zeros((2048, 1), np.float32), batch=1024, repeats=5,
                                       latency_calls=100)
    assert batch_sizes.count(1024) == 2 + 5 and batch_sizes.count(1) == 10 + 100
    assert trace.readings_with_work_pending() == 0
    assert figures["inference_images_per_sec"] == pytest.approx(1024 / TICK)
    assert figures["latency_p50_ms"] == figures["latency_p95_ms"] == pytest.approx(TICK * 1e3)
    assert figures["inference_batch"] == 1024


def test_a_runs_peak_memory_is_its_own_not_the_process_high_water_mark():
    hoard = np.ones(50_000_000 // 8)  # 50 MB the process held before the run
    del hoard
    start = hardware.reset_peak_rss()
    assert 10 < start < 1e6
    assert hardware.peak_rss_mb() < start + 20, "the earlier 50 MB are not this run's peak"
    used = np.ones(80_000_000 // 8)  # 80 MB the run itself uses
    assert hardware.peak_rss_mb() > start + 60
    del used


def test_other_load_counts_only_other_processes_work():
    load = hardware.CoreLoad(allowed_cores()).start()
    assert load.other_cores() is None, "too short a span to tell"
    end = __import__("time").monotonic() + 1.2
    while __import__("time").monotonic() < end:
        pass  # this process's own work is not load
    other = load.other_cores()
    assert other is not None and 0 <= other <= len(allowed_cores())


# ------------------------------------------------------------------ the backends' GPU paths


def test_torch_waits_for_cuda_on_gpu_and_not_on_cpu(monkeypatch):
    waits: list[str] = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: waits.append("cuda"))
    torch_train.sync("gpu")()
    assert waits == ["cuda"], "on the GPU the clock is read once the queued kernels have run"
    torch_train.sync("cpu")()  # callable without CUDA: a CPU op has finished when it returns
    assert waits == ["cuda"]


def test_keras_waits_for_the_devices_on_gpu_and_not_on_cpu(monkeypatch):
    # Through the registry, so TensorFlow is imported with the backend's log and oneDNN settings.
    require_backend("keras")
    import tensorflow as tf

    from lenet_bench.backends.keras import model as keras_model

    waits: list[str] = []
    monkeypatch.setattr(tf.test.experimental, "sync_devices", lambda: waits.append("devices"))
    keras_model.sync("gpu")()
    assert waits == ["devices"], "eager GPU ops return once queued: the clock waits for them"
    keras_model.sync("cpu")()
    assert waits == ["devices"]


TINY = Spec.model_validate({
    "name": "tiny", "data": {"input_size": 28},
    "model": {"conv": [{"filters": 2}], "dense": [8]},
    "train": {"optimizer": {"name": "sgd"}, "batch_size": 8, "epochs": 2},
})


def _random_data(train: int, test: int) -> PreparedData:
    rng = np.random.default_rng(0)
    images = rng.random((train + test, 1, 28, 28), dtype=np.float32)
    labels = rng.integers(0, 10, train + test)
    return PreparedData(x_train=images[:train], y_train=labels[:train], x_val=images[:0], y_val=labels[:0],
                        x_test=images[train:], y_test=labels[train:], key="random")


def test_torch_training_on_the_gpu_path_reads_no_clock_with_work_pending(trace, monkeypatch):
    # The "gpu" code path with CPU tensors: torch.cuda.synchronize is the recorder's sync.
    monkeypatch.setattr(torch.cuda, "synchronize", trace.sync)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda: 0)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda: None)
    monkeypatch.setattr(torch_train, "torch_device", lambda device: torch.device("cpu"))
    model = torch_model.build(TINY, seed=0, device="cpu")
    model.register_forward_pre_hook(trace.work)  # every forward pass marks device work

    result = torch_train.train(model, TINY, _random_data(64, 32), 0, "gpu", SilentProgress(), max_steps_per_epoch=4)
    assert len(result.history) == 2 and result.timings["peak_gpu_mb"] == 0
    assert trace.events.count("work") > 2 * 4, "training and inference both ran"
    assert trace.readings_with_work_pending() == 0


# ------------------------------------------------------------------ time to target


def _history(val_accuracies: list[float | None]) -> list[EpochRecord]:
    return [EpochRecord(epoch, 0.5, 0.9, None if acc is None else 0.3, acc, 10.0, 1000, 10.0 * epoch)
            for epoch, acc in enumerate(val_accuracies, start=1)]


def test_time_to_target_is_the_first_epoch_reaching_it():
    history = _history([0.90, 0.97, 0.99, 0.995])
    assert time_to_target(history, 0.98) == (30.0, 3)
    assert time_to_target(history, 0.97) == (20.0, 2), "reaching the target exactly counts"


def test_time_to_target_counts_every_evaluation_until_the_target_as_mlperf_does():
    history = [replace(record, eval_seconds=0.5) for record in _history([0.90, 0.97, 0.99, 0.995])]
    assert time_to_target(history, 0.98) == (30.0 + 3 * 0.5, 3)  # three epochs and their three evaluations


def test_time_to_target_never_reached_is_none():
    assert time_to_target(_history([0.90, 0.97]), 0.99) is None


def test_time_to_target_without_validation_split_is_none():
    assert time_to_target(_history([None, None]), 0.5) is None


@pytest.mark.gpu
def test_torch_trains_and_evaluates_on_a_real_cuda_device():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device: torch.cuda.is_available() is False")
    torch_backend = require_backend("torch", "gpu")
    model = torch_backend.build(TINY, seed=0, device="gpu")
    result = torch_backend.train(model, TINY, _random_data(64, 32), 0, "gpu", SilentProgress(), max_steps_per_epoch=4)
    assert len(result.history) == 2 and result.timings["peak_gpu_mb"] > 0
    assert torch_backend.device_info("gpu")["gpu_name"]
