"""Keras on JAX (keras-jax): what the conformance and parity tests do not cover.

Set-up from an environment that names no Keras engine, XLA's thread pool sized by `configure`,
one engine per process, one compilation of the training step whatever the learning rate, the
trained variables written back into the model, and the bench's plain `fit` loop. Everything is
computed in one fresh process (keras_jax_probe.py): the test process keeps Keras on TensorFlow.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest
from backend_cases import skip_or_fail_unavailable
from keras_jax_probe import report

from lenet_bench.engine.process import in_fresh_process

pytestmark = pytest.mark.slow  # its fresh process imports JAX, trains and compiles several steps: well over 10 s


@pytest.fixture(scope="module")
def found(mnist_dir):
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("KERAS_BACKEND", raising=False)  # the fresh process inherits this environment
        result = in_fresh_process(report, mnist_dir)
    if "unavailable" in result:
        skip_or_fail_unavailable("keras-jax", result["unavailable"])
    return result


def test_activates_from_an_environment_without_keras_backend(found):
    assert found["keras_backend_before"] is None
    assert found["engine"] == "jax"
    # Built, trained, evaluated and ran `fit` without loading TensorFlow, though it is installed here.
    assert not found["tensorflow_imported"]


def test_activation_sizes_the_xla_pool_before_the_first_operation(found):
    assert found["pjrt_nproc_after_activate"] == str(found["usable_cores"])


@pytest.mark.skipif(sys.platform != "linux", reason="reads thread names from /proc/self/task")
def test_configure_sizes_xla_cpu_thread_pool(found):
    assert found["xla_pool_threads"] == found["configured_cores"]


def test_one_keras_engine_per_process(found):
    assert found["host_conflict"]["keras-jax"] is None
    assert found["host_conflict"]["torch"] is None
    assert "tensorflow" in found["host_conflict"]["keras"]
    assert found["activate_keras"] == found["host_conflict"]["keras"]


def test_learning_rate_is_an_input_of_the_step_not_a_retrace(found):
    # 16 steps at 16 learning rates: one compilation for the full batches, one for the short last one.
    assert found["compiled"].count(found["step_name"]) == 2, found["compiled"]


def test_trained_variables_are_written_back_into_the_model(found):
    assert found["returned_model_is_the_built_one"]
    pairs = zip(found["trained_weights"], found["initial_weights"], strict=True)
    assert all(not np.array_equal(w, w0) for w, w0 in pairs)
    last = found["history"][-1]
    # The last validation ran on the training loop's own variables, before they were written back.
    hits = np.argmax(found["val_logits"], axis=1) == found["y_val"]
    assert last.val_accuracy == pytest.approx(hits.mean(), abs=1e-6)
    np.testing.assert_allclose(found["val_layer_outputs_last"], found["val_logits"], rtol=1e-5, atol=1e-5)
    assert last.train_loss < math.log(10)  # 16 Adam steps learned something


def test_unsupported_optimizer_is_refused_by_name(found):
    assert found["sdlm_refusal"] and "sdlm" in found["sdlm_refusal"] and "keras-jax" in found["sdlm_refusal"]


def test_bench_reference_loop_and_ceiling_run(found):
    rates, accuracy = found["reference"]
    assert len(rates) == 1 and rates[0] > 0
    assert 0 <= accuracy <= 1
    assert found["matmul_flops"] > 0
