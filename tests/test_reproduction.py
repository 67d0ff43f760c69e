"""Published vs measured: the table of results/reproduction.md."""

from __future__ import annotations

import pandas as pd
import pytest

from lenet_bench.results.reproduction import reproduction_markdown, reproduction_table


def _run(spec, backend, seed, accuracy, reference=0.9906, status="completed"):
    return {"run": f"{spec}/{backend}/cpu/seed{seed}", "spec": spec, "backend": backend, "device": "cpu", "seed": seed,
            "status": status, "test_accuracy": accuracy, "reference_accuracy": reference, "params": 222106,
            "epochs": 20, "train_seconds": 60.0 + seed, "baseline_accuracy": 0.926}


def test_gap_to_the_published_number_is_in_points_and_flagged_beyond_0_3():
    runs = pd.DataFrame([
        _run("dense400", "torch", 0, 0.9900), _run("dense400", "torch", 1, 0.9910), _run("dense400", "torch", 2, 0.9920),
        _run("dense400", "keras", 0, 0.9850), _run("dense400", "keras", 1, 0.9860),
        _run("dense400", "keras", 2, None, status="failed"),  # no number: not counted
        _run("no-reference", "torch", 0, 0.99, reference=None),
    ])
    table = reproduction_table(runs).set_index("backend")
    assert list(table["spec"]) == ["dense400", "dense400"]
    assert table.loc["torch", "test_accuracy_n"] == 3
    assert table.loc["torch", "gap_pp"] == pytest.approx(0.04)
    assert not table.loc["torch", "notable"]
    assert table.loc["keras", "test_accuracy_n"] == 2
    assert table.loc["keras", "gap_pp"] == pytest.approx(-0.51)
    assert table.loc["keras", "notable"]
    rows = _markdown_rows(reproduction_markdown(reproduction_table(runs)))
    assert rows["keras/cpu"][:3] == ["dense400", "keras/cpu", "2"] and rows["keras/cpu"][7] == "-0.51 (!)"
    assert rows["torch/cpu"][6:8] == ["99.10 ± 0.25", "+0.04"]  # t(0.975, 2) x 0.1 points / sqrt(3)


def _markdown_rows(text: str) -> dict[str, list[str]]:
    """Table rows of the Markdown, keyed by the backend column, cells stripped."""
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in text.splitlines() if line.startswith("|")]
    return {row[1]: row for row in cells[2:]}


def test_no_reference_gives_a_table_that_says_so():
    runs = pd.DataFrame([_run("x", "torch", 0, 0.99, reference=None)])
    assert reproduction_table(runs).empty
    assert "no completed run of a spec with a reference" in reproduction_markdown(reproduction_table(runs))


def test_matrix_cells_that_only_inherit_the_matrix_reference_are_not_compared_with_it():
    cells = [dict(_run(f"m-{level}", "torch", 0, 0.985, reference=0.9905), base_spec="m") for level in ("a", "b")]
    own = [dict(_run(f"p-{level}", "torch", 0, 0.985, reference=ref), base_spec="p")
           for level, ref in (("a", 0.99), ("b", 0.98))]  # a matrix whose levels set their own published numbers
    single = dict(_run("lenet5", "torch", 0, 0.989, reference=0.9905), base_spec="lenet5")
    table = reproduction_table(pd.DataFrame([*cells, *own, single]))
    assert sorted(table["spec"]) == ["lenet5", "p-a", "p-b"]
    assert "effects.md" in reproduction_markdown(table)
