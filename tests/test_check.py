"""The check command against recorded results (predict's tests are in test_predict.py)."""

from __future__ import annotations

import json
import textwrap

from lenet_bench.cli import main
from lenet_bench.spec import load_variants


def write_spec(folder, backend, expect, extra=""):
    folder.mkdir(exist_ok=True)
    (folder / "s.yaml").write_text(textwrap.dedent(f"""
        name: small
        data: {{subset: 20000, test_subset: 1000}}
        model: {{conv: [{{filters: 6}}, {{filters: 16}}], dense: [84]}}
        train: {{optimizer: {{name: adam}}, epochs: 1}}
        backends: [{backend}]
        expect: {{min_test_accuracy: {expect}}}
    """) + extra)


def run(tmp_path, mnist_dir, *extra):
    return main(["run", str(tmp_path / "specs"), "--data-dir", str(mnist_dir), "--tracking-uri",
                 f"sqlite:///{tmp_path}/mlflow.db", "--results", str(tmp_path / "results"), *extra])


def test_check_passes_then_fails_when_the_expectation_is_raised(tmp_path, mnist_dir, noop, capsys):
    write_spec(tmp_path / "specs", "noop", 0.05)
    assert run(tmp_path, mnist_dir) == 0
    check = ["check", str(tmp_path / "results"), "--specs", str(tmp_path / "specs")]
    assert main(check) == 0
    write_spec(tmp_path / "specs", "noop", 0.5)  # above the ~11% the majority class gets
    capsys.readouterr()
    assert main([*check, "--json"]) == 1, "the exit code is the same with --json"
    document = json.loads(capsys.readouterr().out)
    (verdict,) = document["verdicts"]
    assert (verdict["status"], verdict["expected"]) == ("miss", 0.5) and verdict["test_accuracy"] < 0.5
    assert document["counts"]["miss"] == 1 and document["counts"]["pass"] == 0
    assert main(check) == 1
    assert "miss" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "nowhere"), "--specs", str(tmp_path / "specs")]) == 2



def test_the_reference_results_are_checked_against_the_projects_own_specs_without_a_flag(monkeypatch, capsys):
    """From the repository, `check results/reference` reads specs/ and paper1998/; runs of variants a matrix no
    longer has are superseded, not 'not in specs' asking for a flag."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(repo)
    assert main(["check", "results/reference", "--json"]) == 0
    captured = capsys.readouterr()
    document = json.loads(captured.out)
    assert document["specs"] == ["specs", "paper1998"]
    verdicts = {v["run"]: v for v in document["verdicts"]}
    assert verdicts["lecun1998/torch/cpu/seed0"]["status"] == "pass"  # a paper1998 run, judged
    assert verdicts["lenet5-classic-relu-avg-28same/torch/cpu/seed0"]["status"] == "superseded"
    assert document["counts"]["miss"] == 0
    # Only runs of specs the project no longer has (not a matrix's old cells) are left unjudged, and said to be.
    variants = load_variants(["specs", "paper1998"])
    matrices = {v.base_name for v in variants if v.labels}
    unjudged = [v["run"] for v in document["verdicts"] if v["status"] == "not in specs"]
    specs = {run.split("/", 1)[0] for run in unjudged}
    assert specs.isdisjoint(v.name for v in variants)
    assert not any(spec.startswith(matrix) for spec in specs for matrix in matrices)
    err = " ".join(captured.err.split())
    said = f"{len(unjudged)} run(s) of {len(specs)} spec(s) not among specs paper1998 were not judged"
    assert (said in err) == bool(unjudged) and ("were not judged" in err) == bool(unjudged)


def _setups_table(folder, shift_points: float = 0.0):
    """The reference table's PyTorch runs of lecun1998-capped (3 seeds) and lenet5 (3 seeds) in `folder`, with
    lecun1998-capped's accuracies moved by `shift_points`."""
    from pathlib import Path

    import pandas as pd

    table = pd.read_csv(Path(__file__).resolve().parents[1] / "results" / "reference" / "runs.csv", dtype=str,
                        keep_default_na=False)
    chosen = table[table["run"].str.match(r"(lecun1998-capped|lenet5)/torch/cpu/seed[012]$")].copy()
    capped = chosen["spec"] == "lecun1998-capped"
    chosen.loc[capped, "test_accuracy"] = (chosen.loc[capped, "test_accuracy"].astype(float)
                                           + shift_points / 100).astype(str)
    folder.mkdir()
    chosen.to_csv(folder / "runs.csv", index=False)
    return chosen


def test_a_setup_whose_mean_falls_below_what_the_reference_seeds_allow_regressed(tmp_path, capsys):
    import statistics
    from pathlib import Path

    from scipy import stats

    repo = Path(__file__).resolve().parents[1]
    reference = _setups_table(tmp_path / "reference")
    specs = ["--specs", str(repo / "specs"), str(repo / "paper1998")]
    measured = reference[reference["spec"] == "lecun1998-capped"]["test_accuracy"].astype(float).tolist()
    floor = statistics.fmean(measured) - stats.t.ppf(0.95, 2) * statistics.stdev(measured) * (2 / 3) ** 0.5

    _setups_table(tmp_path / "worse", shift_points=-0.3)  # every seed 0.3 points lower: beyond the spread
    assert main(["check", str(tmp_path / "worse"), *specs, "--reference", str(tmp_path / "reference"), "--json"]) == 1
    verdicts = [v for v in json.loads(capsys.readouterr().out)["verdicts"] if v["status"] == "regressed"]
    assert [v["run"] for v in verdicts] == ["lecun1998-capped/torch/cpu"], "lenet5, unchanged, did not regress"
    assert abs(verdicts[0]["expected"] - floor) < 1e-9
    assert abs(verdicts[0]["test_accuracy"] - (statistics.fmean(measured) - 0.003)) < 1e-9

    _setups_table(tmp_path / "within", shift_points=-0.03)  # inside what three seeds vary by
    assert main(["check", str(tmp_path / "within"), *specs, "--reference", str(tmp_path / "reference"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["regressed"] == 0

    # The reference folder checked against itself: nothing to regress from.
    assert main(["check", str(tmp_path / "reference"), *specs, "--reference", str(tmp_path / "reference")]) == 0
