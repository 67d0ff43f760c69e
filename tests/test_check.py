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
