"""model.layers: a network as a list of typed layers, its checks at validate, its table, matrices over its
fields, and its stochastic layers in inference mode on every backend."""

from __future__ import annotations

from pathlib import Path

import layers_bodies as bodies
import numpy as np
import pytest
import yaml
from backend_cases import body_result, case_runner  # noqa: F401 (fixtures)

from lenet_bench import backends
from lenet_bench.cli import main
from lenet_bench.spec import Spec, SpecError, load_variants

BODIES = {"test_inference_mode_is_deterministic_and_per_image": bodies.inference_after_training}

CONV = {"type": "conv", "filters": 6, "kernel": 5}


def _write(folder: Path, model: dict, name: str = "s", **extra) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump({"name": name, "data": {"input_size": 28}, "model": model, **extra}, sort_keys=False))
    return path


def _issues(path: Path) -> list:
    with pytest.raises(SpecError) as caught:
        load_variants([path])
    return caught.value.issues


def test_the_issue_example_validates_and_describes_every_layer():
    summary = Spec.model_validate(bodies.LAYERED).summary()
    assert [(layer.name, layer.output_shape) for layer in summary.layers] == [
        ("conv1", (6, 28, 28)), ("batch_norm1", (6, 28, 28)), ("gelu1", (6, 28, 28)), ("maxpool1", (6, 14, 14)),
        ("conv2", (16, 5, 5)), ("flatten", (400,)), ("dense1", (120,)), ("drop1", (120,)), ("output", (10,))]
    # conv2 and dense1 carry the relu that follows them; batch norm has a scale and a shift per channel.
    assert summary.layers[4].activation == "relu" and summary.layers[6].activation == "relu"
    assert summary.layers[1].params == 12 and summary.params == 156 + 12 + 2416 + 48120 + 1210


def test_a_template_and_its_list_are_one_network():
    template = Spec.model_validate({"name": "t", "model": {"conv": [{"filters": 6}, {"filters": 16}], "dense": [84],
                                                           "activation": "tanh", "pool": "avg"}})
    written = Spec.model_validate({"name": "l", "model": {"layers": [
        CONV, {"type": "activation", "fn": "tanh"}, {"type": "pool", "kind": "avg"},
        {"type": "conv", "filters": 16, "kernel": 5}, {"type": "activation", "fn": "tanh"}, {"type": "pool", "kind": "avg"},
        {"type": "flatten"}, {"type": "dense", "units": 84}, {"type": "activation", "fn": "tanh"},
        {"type": "dense", "units": 10}]}})
    assert template.summary() == written.summary()
    assert template.axes() == written.axes()


@pytest.mark.parametrize(("layers", "index", "words"), [
    ([CONV, {"type": "dense", "units": 10}], 1, ["expected a flatten layer before it", "6x24x24"]),
    ([CONV, {"type": "pool", "size": 30}, {"type": "flatten"}, {"type": "dense", "units": 10}], 1,
     ["pooling of 30x30 does not fit its 24x24 input"]),
    ([{"type": "conv", "filters": 6, "kernel": 31}, {"type": "flatten"}, {"type": "dense", "units": 10}], 0,
     ["kernel 31x31 is larger than its 28x28 input"]),
    ([CONV, {"type": "conv", "filters": 2, "kernel": 3, "connections": [[0, 6], [1]]}, {"type": "flatten"},
      {"type": "dense", "units": 10}], 1, ["connections name an input map beyond the 6 maps"]),
    ([{"type": "flatten"}, {"type": "conv", "filters": 6, "kernel": 5}, {"type": "dense", "units": 10}], 1,
     ["needs a feature map", "put it before the flatten"]),
    ([{"type": "flatten", "name": "f1"}, {"type": "flatten", "name": "f2"}, {"type": "dense", "units": 10}], 1,
     ["'f2'", "needs a feature map"]),
    ([{"type": "flatten"}, {"type": "dense", "units": 84}, {"type": "rbf"}, {"type": "dense", "units": 10}], 2,
     ["the rbf output must be the last layer"]),
    ([{"type": "flatten"}, {"type": "dense", "units": 12}], 1, ["expected a dense layer of 10 units"]),
    ([{"type": "flatten"}, {"type": "dense", "units": 10}, {"type": "activation", "fn": "relu"}], 2,
     ["gives logits: expected no activation after it, or a squashing one", "received relu"]),
])
def test_a_list_that_does_not_fit_names_the_layer_and_the_shapes(tmp_path, layers, index, words):
    [issue] = _issues(_write(tmp_path, {"layers": layers}))
    assert issue.field.startswith(f"model.layers.{index}")
    for word in words:
        assert word in issue.message


@pytest.mark.parametrize(("model", "field", "words"), [
    ({"layers": [{"type": "dense", "units": 10}], "activation": "tanh"}, "model", "either as layers or in the template"),
    ({"layers": [{"type": "flatten", "name": "a"}, {"type": "dense", "units": 10, "name": "a"}]}, "model",
     "'a' more than once"),
    ({"layers": [{"type": "flatten"}, {"type": "activation", "fn": "leaky_relu"}, {"type": "dense", "units": 10}]},
     "model.layers.1.activation", "needs its negative slope"),
    ({"layers": [{"type": "flatten"}, {"type": "maxout"}]}, "model.layers.1", "expected a layer with a type"),
    ({"layers": [{"type": "flatten"}, {"type": "dropout", "rate": 1.5}, {"type": "dense", "units": 10}]},
     "model.layers.1.dropout.rate", "less than 1"),
    ({"layers": [{"type": "flatten"}, {"type": "dense", "units": 10, "enabled": False}]}, "model.layers",
     "expected a dense layer of 10 units"),
])
def test_a_bad_layer_field_is_named(tmp_path, model, field, words):
    issues = _issues(_write(tmp_path, model))
    assert any(issue.field.startswith(field) and words in issue.message for issue in issues), issues


def test_validate_exits_2_naming_file_and_layer(tmp_path, capsys):
    path = _write(tmp_path, {"layers": [CONV, {"type": "dense", "units": 10, "name": "head"}]}, name="bad")
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and "model.layers.1" in err and "'head'" in err and "flatten" in err


def test_sdlm_refuses_a_layer_it_cannot_take_second_derivatives_through(tmp_path):
    model = {"layers": [CONV, {"type": "activation", "fn": "tanh"}, {"type": "dropout", "name": "d", "rate": 0.1},
                        {"type": "flatten"}, {"type": "dense", "units": 10}]}
    [issue] = _issues(_write(tmp_path, model, train={"optimizer": {"name": "sdlm"}, "batch_size": 1}))
    assert issue.field == "train" and "'d' (dropout)" in issue.message


def test_matrices_address_layers_by_name_and_index_and_switch_them_on_and_off(tmp_path):
    model = {"layers": [CONV, {"type": "batch_norm", "name": "bn1", "enabled": False},
                        {"type": "activation", "fn": "relu"}, {"type": "flatten"},
                        {"type": "dropout", "name": "drop1", "rate": 0.0}, {"type": "dense", "units": 10}]}
    matrix = {"layers.drop1.rate": [0, 0.5], "batch_norm": {"off": {"layers.bn1.enabled": False},
                                                             "on": {"model.layers.1.enabled": True}}}
    variants = load_variants([_write(tmp_path, model, matrix=matrix)])
    assert [v.name for v in variants] == ["s-0-off", "s-0-on", "s-0.5-off", "s-0.5-on"]
    by_name = {v.name: v.spec.summary() for v in variants}
    assert [layer.rate for layer in by_name["s-0.5-on"].layers if layer.kind == "dropout"] == [0.5]
    assert by_name["s-0-on"].params == by_name["s-0-off"].params + 12
    assert "batch_norm" not in [layer.kind for layer in by_name["s-0-off"].layers]


def test_a_matrix_naming_a_missing_layer_says_so(tmp_path):
    matrix = {"layers.drop9.rate": [0, 0.5]}
    issues = _issues(_write(tmp_path, {"layers": [{"type": "flatten"}, {"type": "dense", "units": 10}]},
                            matrix=matrix))
    assert any("drop9" in issue.message and "nor a name in it" in issue.message for issue in issues)


def test_list_layers_prints_types_shapes_and_counts(tmp_path, capsys):
    path = tmp_path / "l.yaml"
    path.write_text(yaml.safe_dump(bodies.LAYERED))
    assert main(["list", str(path), "--layers"]) == 0
    out = capsys.readouterr().out
    for row in ("batch_norm1", "activation gelu", "conv+relu", "dropout 0.5", "16x5x5"):
        assert row in out
    assert f"{Spec.model_validate(bodies.LAYERED).summary().params:,}" in out


@pytest.mark.parametrize("backend", backends.names())
def test_inference_mode_is_deterministic_and_per_image(backend, body_result):
    """After training steps, evaluation and predict run in inference mode on every backend: no dropout (the same
    logits twice) and batch norm's running statistics (an image's logits do not depend on the batch around it);
    every layer's output (serve) comes out with the described shape; each backend builds the described count."""
    result = body_result(backend)
    summary = Spec.model_validate(bodies.LAYERED).summary()
    assert result["params"] == result["initial_params"] == summary.params
    np.testing.assert_array_equal(result["twice"][0], result["twice"][1])
    np.testing.assert_allclose(result["alone"], result["twice"][0][:1], rtol=1e-5, atol=1e-5)
    assert result["layer_shapes"] == [[2, *layer.output_shape] for layer in summary.layers]
    assert np.isfinite(result["train_loss"])


def test_a_saved_layers_spec_reads_back_as_itself():
    """Runs are saved with every field of their spec (model_dump); a layers-form spec must read back from that."""
    spec = Spec.model_validate(bodies.LAYERED)
    assert Spec.model_validate(spec.model_dump(mode="json")) == spec
    for variant in load_variants([Path(__file__).resolve().parents[1] / "specs" / "regularization.yaml"]):
        assert Spec.model_validate(variant.spec.model_dump(mode="json")) == variant.spec
