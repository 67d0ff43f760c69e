"""A process that runs many jobs (inline, a worker) keeps nothing of a finished Keras run: no model and no
copy of the training set (TensorFlow keeps a traced function's captured tensors; the data must not be one)
beyond the copies the backend keeps on purpose for the next runs (`DEVICE_DATA`, bounded)."""

from __future__ import annotations

import gc
import importlib

import pytest
from conftest import SPEC_FOLDERS, require_backend

from lenet_bench.engine import execute
from lenet_bench.engine.plan import RunOptions, plan_jobs
from lenet_bench.engine.worker_context import WorkerContext
from lenet_bench.spec import load_variants

TRAINING_SET_ELEMENTS = 1_000_000  # fewer than the runs' prepared training sets (the first 5,000 images, 32 x 32)


def _alive(kind: type, test=lambda obj: True) -> int:
    gc.collect()
    return sum(1 for obj in gc.get_objects() if issubclass(type(obj), kind) and test(obj))  # type(): no proxy lookups


@pytest.mark.slow
def test_a_finished_keras_run_leaves_no_model_and_no_training_set(mnist_dir):
    require_backend("keras")
    import keras
    import tensorflow as tf

    keras_train = importlib.import_module("lenet_bench.backends.keras.train")  # the package's `train` is the function

    def is_training_set(tensor) -> bool:
        return bool(tensor.shape.num_elements() and tensor.shape.num_elements() >= TRAINING_SET_ELEMENTS)

    options = RunOptions(data_dir=str(mnist_dir), only=("lenet5", "lecun1998"), backends=("keras",), devices=("cpu",),
                         epochs=1, max_steps=3, seeds=(0,), subset=5000, log_models=False)  # small baselines
    jobs = plan_jobs(load_variants(SPEC_FOLDERS), options)
    assert {job.spec.train.optimizer.name for job in jobs} == {"adam", "sdlm"}  # both Keras step loops
    keras_train.DEVICE_DATA.clear()
    models, tensors = _alive(keras.Model), _alive(tf.Tensor, is_training_set)
    context = WorkerContext()  # as a local worker's: its own datasets
    for job in jobs:
        assert execute.execute_job(context, job).status.value == "completed"
        assert _alive(keras.Model) == models, f"{job.name} left its model behind"
        assert 1 <= len(keras_train.DEVICE_DATA) <= keras_train.DEVICE_DATA.keep
        kept = sum(is_training_set(tensor) for arrays in keras_train.DEVICE_DATA.kept() for tensor in arrays)
        assert _alive(tf.Tensor, is_training_set) == tensors + kept, f"{job.name} left its training set behind"
