"""The committed reference results against the committed specs: what `check` says of the numbers in the README."""

from __future__ import annotations

import shutil
from pathlib import Path

from conftest import SPEC_FOLDERS

from lenet_bench.cli import main
from lenet_bench.results.table import ResultsFolder

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO / "results" / "reference"


def test_committed_results_meet_every_spec_expectation(capsys):
    assert main(["check", str(REFERENCE), "--specs", *map(str, SPEC_FOLDERS)]) == 0, capsys.readouterr().out


def test_raising_an_expectation_above_the_committed_numbers_fails_the_check(tmp_path, capsys):
    specs = shutil.copytree(REPO / "specs", tmp_path / "specs")
    lenet5 = specs / "lenet5.yaml"
    text = lenet5.read_text()
    assert "min_test_accuracy: 0.985" in text
    lenet5.write_text(text.replace("min_test_accuracy: 0.985", "min_test_accuracy: 0.999"))
    assert main(["check", str(REFERENCE), "--specs", str(specs)]) == 1
    out = capsys.readouterr().out
    assert "miss" in out and "lenet5/torch/cpu/seed0" in " ".join(out.split())


def test_the_reference_table_reads_as_typed_rows():
    rows = ResultsFolder(REFERENCE).read()
    assert rows and all(r.status.value in ("completed", "skipped", "failed", "killed") for r in rows)
    completed = [r for r in rows if r.status.value == "completed"]
    assert all(r.test_accuracy is not None and r.fingerprint and r.hardware for r in completed)


def test_check_says_how_many_rows_it_could_not_judge_and_how_to(capsys):
    assert main(["check", str(REFERENCE), "--specs", str(SPEC_FOLDERS[0])]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "not in specs" in err and "lecun1998" in err and "--specs specs paper1998" in err
