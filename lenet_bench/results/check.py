"""Check recorded results against the specs' current expectations (used by the regression tests).

A run misses when its test accuracy is below its spec's `expect.min_test_accuracy` as the
spec says now, or when it failed. An interrupted or skipped run is not a miss (it measured
nothing), a run whose spec the command line changed (`--epochs`, ...) is not judged, and a run of a
variant that its matrix no longer has is superseded (kept as the measurement it is, never judged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lenet_bench.results.row import Status
from lenet_bench.results.table import ResultsFolder
from lenet_bench.spec import Variant


@dataclass(frozen=True)
class Verdict:
    run: str
    status: str  # pass | miss | skipped | interrupted | not judged | superseded | not in specs
    test_accuracy: float | None
    expected: float | None
    note: str = ""


def check_results(results_dir: Path, variants: list[Variant]) -> list[Verdict]:
    folder = ResultsFolder(results_dir)
    if not folder.runs_csv.is_file():
        raise FileNotFoundError(f"{folder.runs_csv}: no results file; run `python -m lenet_bench run SPECS` first")
    expectations = {v.name: v.spec.expect.min_test_accuracy for v in variants}
    matrices = {v.base_name for v in variants if v.labels}
    verdicts = []
    for row in folder.read(require=("test_accuracy",)):  # a table without it cannot be judged
        expected = expectations.get(row.spec)
        accuracy = row.test_accuracy
        if expected is None and row.base_spec in matrices:
            verdicts.append(Verdict(row.run, "superseded", accuracy, None,
                                    f"a variant that matrix {row.base_spec} no longer has (kept as measured)"))
        elif expected is None:
            verdicts.append(Verdict(row.run, "not in specs", accuracy, None, "its spec is not among the checked specs"))
        elif row.overrides:
            verdicts.append(Verdict(row.run, "not judged", accuracy, None, f"overrides: {row.overrides}"))
        elif row.status is Status.SKIPPED:
            verdicts.append(Verdict(row.run, "skipped", accuracy, expected, row.reason))
        elif row.status is Status.KILLED:
            verdicts.append(Verdict(row.run, "interrupted", accuracy, expected, row.reason or "killed"))
        elif row.status is Status.FAILED:
            verdicts.append(Verdict(row.run, "miss", accuracy, expected, f"failed: {row.reason}"))
        elif accuracy is None or accuracy < expected:
            verdicts.append(Verdict(row.run, "miss", accuracy, expected, f"below {100 * expected:.2f}%"))
        else:
            verdicts.append(Verdict(row.run, "pass", accuracy, expected))
    return verdicts


