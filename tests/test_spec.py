"""Spec loading: good specs, matrix expansion, and every kind of bad spec."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import SPEC_FOLDERS

from lenet_bench.cli import main
from lenet_bench.spec import SpecError, load_variants

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
    variants = load_variants(SPEC_FOLDERS)
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
    ("model:\n  conv: [{filters: 6}]\n  activation: swish", "model.activation", "expected 'relu', 'sigmoid', 'tanh'"),
    ("model:\n  conv: [{filters: 6, kernel: 40}]", "model.conv.0.kernel", "larger than its 32x32 input"),
    ("model:\n  conv: [{filters: 6}, {filters: 16}, {filters: 120, kernel: 7}]", "model.conv.2.kernel", "larger than its 5x5"),
    ("model:\n  conv: [{filters: 6}]\nbackends: [torch, jax]", "backends", "unknown backend 'jax'"),
    ("model:\n  conv: [{filters: 6}]\ntrain: {optimizer: {name: rmsprop}}", "train.optimizer.name", "expected 'sgd', 'adam'"),
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
    assert main(["validate", *map(str, SPEC_FOLDERS)]) == 0


# ---------------------------------------------------------------- what YAML gives, read as the user meant it


def test_yaml_numbers_and_merge_keys(tmp_path):
    # 1e-3 is a float (YAML 1.2; PyYAML alone reads a string), an int is fine where a float belongs, and a
    # merge key's values may be overridden: that is not a repeated key.
    write(tmp_path, "a.yaml", """
    name: a
    model: {conv: [{filters: 6}]}
    train: {optimizer: {name: sgd, lr: 1e-3, weight_decay: 0}, epochs: 2}
    """)
    write(tmp_path, "b.yaml", """
    - &base {name: b, model: {conv: [{filters: 6}]}, train: {optimizer: {name: sgd, lr: 1}}}
    - {<<: *base, name: c}
    """)
    specs = {v.name: v.spec for v in load_variants([tmp_path])}
    assert specs["a"].train.optimizer.lr == 0.001 and specs["a"].train.epochs == 2
    assert specs["b"].train.optimizer.lr == 1.0 and specs["c"].train.optimizer.lr == 1.0


@pytest.mark.parametrize("text, field", [
    ("train: {epochs: true}", "train.epochs"),
    ("train: {seeds: [0, false]}", "train.seeds"),
    ("train: {optimizer: {name: adam, lr: true}}", "train.optimizer.lr"),
    ("data: {subset: on}", "data.subset"),
    ("expect: {min_test_accuracy: yes}", "expect.min_test_accuracy"),
])
def test_a_boolean_is_never_a_number(tmp_path, text, field):
    write(tmp_path, "b.yaml", "name: b\nmodel: {conv: [{filters: 6}]}\n" + text + "\n")
    [issue] = issues_of([tmp_path])
    assert issue.field == field and "expected a number, not a boolean" in issue.message


def test_every_bound_names_its_limit(tmp_path):
    from lenet_bench.spec import schema

    write(tmp_path, "e.yaml", f"name: e\nmodel: {{conv: [{{filters: 6}}]}}\ntrain: {{epochs: {schema.MAX_EPOCHS + 1}}}\n")
    [issue] = issues_of([tmp_path])
    assert issue.message == f"expected at most {schema.MAX_EPOCHS}, received {schema.MAX_EPOCHS + 1}"
    write(tmp_path, "e.yaml", f"name: e\nmodel: {{conv: [{{filters: 6}}]}}\ntrain: {{epochs: {schema.MAX_EPOCHS}}}\n")
    assert load_variants([tmp_path])[0].spec.train.epochs == schema.MAX_EPOCHS


def test_datasets_come_from_the_registry(tmp_path, monkeypatch):
    import dataclasses

    from lenet_bench.data import registry

    tiny = dataclasses.replace(registry.info("mnist"), name="tiny", n_train=100, n_test=50)
    monkeypatch.setitem(registry.DATASETS, "tiny", tiny)
    write(tmp_path, "t.yaml", "name: t\nmodel: {conv: [{filters: 6}]}\ndata: {dataset: tiny, subset: 100, test_subset: 50}\n")
    assert load_variants([tmp_path])[0].spec.data.dataset == "tiny"
    write(tmp_path, "t.yaml", "name: t\nmodel: {conv: [{filters: 6}]}\ndata: {dataset: tiny, subset: 101}\n")
    [issue] = issues_of([tmp_path])
    assert issue.field == "data.subset" and "tiny has 100 training images; expected at most 100, received 101" in issue.message
    write(tmp_path, "t.yaml", "name: t\nmodel: {conv: [{filters: 6}]}\ndata: {dataset: emnist}\n")
    [issue] = issues_of([tmp_path])
    assert issue.field == "data.dataset" and "expected one of: " + ", ".join(registry.dataset_names()) in issue.message


def test_a_matrix_is_counted_before_it_is_expanded(tmp_path, monkeypatch):
    # A million cells would take minutes and gigabytes to build: they are refused before any is.
    from lenet_bench.spec import loading

    built = []
    real_cells = loading._cells
    monkeypatch.setattr(loading, "_cells", lambda axes: built.append(axes) or real_cells(axes))
    axes = "".join(f"  axis{i}: {{{', '.join(f'v{j}: {{}}' for j in range(10))}}}\n" for i in range(6))
    write(tmp_path, "m.yaml", "name: m\nmodel: {conv: [{filters: 6}]}\nmatrix:\n" + axes)
    [issue] = issues_of([tmp_path])
    assert issue.field == "matrix" and "1,000,000 cells (10 x 10 x 10 x 10 x 10 x 10); expected at most 10,000" in issue.message
    assert built == []


# ---------------------------------------------------------------- names MLflow is given


def test_longest_allowed_names_fit_mlflow(tmp_path):
    """Everything the recorder gives MLflow that a spec decides, at the longest a spec may make it, passes
    MLflow's own validators; one character more is refused at load, naming both limits."""
    from mlflow.store.tracking.dbmodels.models import SqlRun
    from mlflow.utils import validation as mlflow_checks
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    from lenet_bench import backends
    from lenet_bench.data import registry
    from lenet_bench.engine import run_row
    from lenet_bench.engine.plan import Job
    from lenet_bench.results import compare, convert
    from lenet_bench.results.row import Status
    from lenet_bench.results.tracking import _param_text, flatten
    from lenet_bench.spec import DEVICES, loading, schema

    longest = loading.MAX_NAME_LENGTH
    name, arch_label = "n" * (longest - 2), "a" * longest  # the matrix label '-x' makes the name the longest
    seeds = [schema.MAX_SEED - i for i in range(3)]
    write(tmp_path, "long.yaml", f"""
    name: {name}
    description: {"d" * 10_000}
    model: {{arch: {arch_label}, conv: [{{filters: 6}}]}}
    train: {{seeds: {seeds}}}
    matrix: {{size: {{x: {{data.input_size: 32}}}}}}
    """)
    [variant] = load_variants([tmp_path])
    assert len(variant.name) == longest
    overrides = (("epochs", schema.MAX_EPOCHS), ("max_steps", schema.MAX_STEPS_PER_EPOCH),
                 ("subset", max(d.n_train for d in registry.DATASETS.values())))
    rows = []
    for backend in backends.names():
        for device in DEVICES:
            for seed in seeds:
                job = Job(variant, backend, device, seed, overrides)
                assert len(job.name) <= SqlRun.name.type.length  # a SQL store's run name column
                row = run_row.job_row(job).update(status=Status.COMPLETED, test_accuracy=0.9, delta_to_baseline=0.1)
                rows.append(row)
                params, metrics, tags = convert.to_mlflow(row)
                params |= flatten(job.spec.model_dump(mode="json"))
                tags |= {MLFLOW_RUN_NAME: job.name, "variant": job.variant.name, "overrides": job.overrides_label,
                         **job.spec.axes()}
                for key, value in params.items():
                    mlflow_checks._validate_param(key, _param_text(value))
                for key, value in tags.items():
                    mlflow_checks._validate_tag(key, str(value)[:5000])
                for key, value in metrics.items():
                    mlflow_checks._validate_metric(key, value, 0, 0)
    invocation_metrics = compare.aggregate_metrics(convert.rows_to_frame(rows))
    assert any(key.endswith("/delta_to_baseline_ci_high") for key in invocation_metrics)
    for key, value in invocation_metrics.items():
        mlflow_checks._validate_metric(key, value, 0, 0)

    write(tmp_path, "long.yaml", f"name: {'n' * (longest + 1)}\nmodel: {{conv: [{{filters: 6}}]}}\n")
    [issue] = issues_of([tmp_path])
    assert issue.field == "name" and f"at most {longest} characters" in issue.message
    assert f"received {longest + 1}" in issue.message and str(mlflow_checks.MAX_ENTITY_KEY_LENGTH) in issue.message


def test_every_committed_spec_reads_back_from_its_saved_form():
    """The recorder saves each run's resolved spec (model_dump, every field written); predict and serve read it
    back: it must be the same spec, for every optimizer, layer kind and default."""
    from lenet_bench.spec import Spec

    for variant in load_variants([Path(__file__).resolve().parents[1] / "specs"]):
        assert Spec.model_validate(variant.spec.model_dump(mode="json")) == variant.spec, variant.name


def test_a_backend_that_cannot_train_a_spec_is_a_spec_error_naming_it(tmp_path):
    from lenet_bench.spec import SpecError, load_variants

    path = tmp_path / "sdlm.yaml"
    path.write_text("name: sd\nmodel: {conv: [{filters: 4, pool: subsample}], dense: [10]}\n"
                    "train: {optimizer: {name: sdlm}}\nbackends: [torch, keras-jax]\n")
    with pytest.raises(SpecError) as raised:
        load_variants([path])
    text = str(raised.value)
    assert "sdlm.yaml [sd]: backends: the keras-jax backend has the adam and sgd optimizers only" in text
    path.write_text(path.read_text().replace("[torch, keras-jax]", "[torch, keras]"))
    assert load_variants([path])[0].spec.backends == ["torch", "keras"]
