"""Spec loading: good specs, matrix expansion, and every kind of bad spec."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from lenet_bench.cli import main
from lenet_bench.spec import SpecError, load_variants

REPO = Path(__file__).resolve().parents[1]

LENET5 = """
name: {name}
description: test spec
data: {{input_size: 32}}
model:
  conv:
    - {{filters: 6}}
    - {{filters: 16}}
    - {{filters: 120, pool: none}}
  dense: [84]
train: {{optimizer: {{name: adam}}, epochs: 1}}
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def issues_of(paths) -> list:
    with pytest.raises(SpecError) as caught:
        load_variants(paths)
    return caught.value.issues


def test_repository_specs_are_valid():
    variants = load_variants([REPO / "specs"])
    assert variants, "specs/ should hold at least one spec"
    assert len({v.name for v in variants}) == len(variants)


def test_minimal_spec_gets_defaults(tmp_path):
    write(tmp_path, "a.yaml", LENET5.format(name="lenet5"))
    [variant] = load_variants([tmp_path])
    spec = variant.spec
    assert spec.backends == ["torch"] and spec.devices == ["cpu"] and spec.train.seeds == [0]
    assert spec.train.optimizer.learning_rate == 0.001
    assert spec.expect.min_test_accuracy == 0.95
    assert spec.summary().params == 61_706


def test_matrix_expands_to_named_cross_product(tmp_path):
    text = LENET5.format(name="m") + textwrap.dedent("""
    matrix:
      model.activation: [relu, sigmoid, tanh]
      input:
        "28": {data.input_size: 28, model.conv.0.padding: same}
        "32": {data.input_size: 32}
    """)
    write(tmp_path, "m.yaml", text)
    variants = load_variants([tmp_path])
    names = sorted(v.name for v in variants)
    assert names == sorted(f"m-{a}-{i}" for a in ("relu", "sigmoid", "tanh") for i in ("28", "32"))
    by_name = {v.name: v.spec for v in variants}
    assert by_name["m-tanh-28"].model.activation == "tanh"
    assert by_name["m-tanh-28"].model.conv[0].padding == "same"
    assert by_name["m-tanh-28"].data.input_size == 28
    # 'same' on 28 gives the same 28x28 map as 'valid' on 32, so the counts agree.
    assert by_name["m-relu-28"].summary().params == by_name["m-relu-32"].summary().params == 61_706
    assert by_name["m-relu-28"].axes()["padding"] == "same+valid"


def test_file_may_hold_several_specs(tmp_path):
    as_item = lambda text: "- " + text.strip().replace("\n", "\n  ") + "\n"  # noqa: E731
    write(tmp_path, "two.yaml", as_item(LENET5.format(name="a")) + as_item(LENET5.format(name="b")))
    write(tmp_path, "docs.yaml", LENET5.format(name="c") + "---\n" + LENET5.format(name="d"))
    assert sorted(v.name for v in load_variants([tmp_path])) == ["a", "b", "c", "d"]


@pytest.mark.parametrize("change, field, words", [
    ("model:\n  conv: [{filters: 6, kernal: 5}]", "model.conv.0.kernal", "did you mean 'kernel'"),
    ("model:\n  conv: [{filters: six}]", "model.conv.0.filters", "received 'six'"),
    ("model:\n  conv: [{filters: 6}]\n  activation: swish", "model.activation", "'relu', 'sigmoid' or 'tanh'"),
    ("model:\n  conv: [{filters: 6, kernel: 40}]", "model.conv.0.kernel", "larger than its 32x32 input"),
    ("model:\n  conv: [{filters: 6}, {filters: 16}, {filters: 120, kernel: 7}]", "model.conv.2.kernel", "larger than its 5x5"),
    ("model:\n  conv: [{filters: 6}]\nbackends: [torch, jax]", "backends", "unknown backend 'jax'"),
    ("model:\n  conv: [{filters: 6}]\ntrain: {optimizer: {name: rmsprop}}", "train.optimizer.name", "'sgd' or 'adam'"),
    ("model:\n  conv: [{filters: 6}]\ndevices: [tpu]", "devices.0", "'cpu' or 'gpu'"),
    ("model:\n  conv: [{filters: 6}]\ntrain: {batch_size: 0}", "train.batch_size", "greater than 0"),
    ("model:\n  conv: [{filters: 6}]\ndata: {input_size: 30}", "data.input_size", "28 or 32"),
    ("model:\n  conv: [{filters: 6, padding: same, stride: 2}]", "model.conv.0", "needs stride 1"),
    ("model:\n  conv: [{filters: 6}]\nreference: {test_accuracy: 0.99, source: x, params: 5}", "reference.params", "does not match"),
    ("description: no model", "model", "required field is missing"),
    ("model:\n  conv: [{filters: 6}]\nmatrix: {model.activation: []}", "matrix.model.activation", "non-empty list"),
])
def test_bad_spec_names_file_field_and_what_was_received(tmp_path, change, field, words):
    path = write(tmp_path, "bad.yaml", "name: bad\n" + change + "\n")
    [issue] = issues_of([tmp_path])
    assert issue.file == str(path)
    assert issue.field == field
    assert words in issue.message


def test_yaml_syntax_error_gives_line(tmp_path):
    write(tmp_path, "broken.yaml", "name: x\nmodel: [unclosed\n")
    [issue] = issues_of([tmp_path])
    assert "YAML syntax error" in issue.message and issue.field.startswith("line ")


def test_empty_folder_and_missing_path(tmp_path):
    [issue] = issues_of([tmp_path])
    assert "no spec files found" in issue.message
    [issue] = issues_of([tmp_path / "nope.yaml"])
    assert "no such file" in issue.message


def test_duplicate_names_across_files(tmp_path):
    write(tmp_path, "a.yaml", LENET5.format(name="same"))
    second = write(tmp_path, "b.yaml", LENET5.format(name="same"))
    [issue] = issues_of([tmp_path])
    assert issue.file == str(second) and "duplicate spec name 'same'" in issue.message and "a.yaml" in issue.message


def test_all_errors_of_a_folder_are_reported_together(tmp_path):
    write(tmp_path, "a.yaml", "name: a\nmodel: {conv: [{filters: 6}], activaton: relu}\n")
    write(tmp_path, "b.yaml", "name: b\nmodel: {conv: [{filters: 6}]}\ntrain: {epochs: -1}\n")
    write(tmp_path, "c.yaml", "name: [\n")
    write(tmp_path, "ok.yaml", LENET5.format(name="fine"))
    issues = issues_of([tmp_path])
    assert sorted(Path(i.file).name for i in issues) == ["a.yaml", "b.yaml", "c.yaml"]


def test_matrix_repeats_a_base_error_once(tmp_path):
    write(tmp_path, "m.yaml", "name: m\nmodel: {conv: [{filters: 6}], bogus: 1}\nmatrix: {model.activation: [relu, tanh]}\n")
    issues = issues_of([tmp_path])
    assert len(issues) == 1 and issues[0].field == "model.bogus"


def test_cli_exit_code_2_without_traceback(tmp_path):
    write(tmp_path, "bad.yaml", "name: bad\nmodel: {conv: [{filters: 6}], activation: swish}\n")
    for command in ("validate", "list", "run"):
        proc = subprocess.run([sys.executable, "-m", "lenet_bench", command, str(tmp_path)],
                              capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert "bad.yaml" in proc.stderr and "model.activation" in proc.stderr
    # Nothing trained, nothing logged.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()


def test_validate_ok_exit_0(capsys):
    assert main(["validate", str(REPO / "specs")]) == 0
