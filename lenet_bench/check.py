"""Check recorded results against the specs' current expectations (used by the regression tests).

A run misses when its test accuracy is below its spec's `expect.min_test_accuracy` as the
spec says now, so raising an expectation above what was measured makes the check fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from lenet_bench.report import RUNS_CSV
from lenet_bench.spec import Variant

MEASURED = ("completed", "cached")


@dataclass(frozen=True)
class Verdict:
    run: str
    status: str  # pass | miss | skipped | not in specs
    test_accuracy: float | None
    expected: float | None
    note: str = ""


def check_results(results_dir: Path, variants: list[Variant]) -> list[Verdict]:
    path = results_dir / RUNS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file; run `python -m lenet_bench run SPECS` first")
    runs = pd.read_csv(path)
    expectations = {v.name: v.spec.expect.min_test_accuracy for v in variants}
    verdicts = []
    for row in runs.itertuples(index=False):
        expected = expectations.get(row.spec)
        accuracy = float(row.test_accuracy) if pd.notna(getattr(row, "test_accuracy", None)) else None
        if expected is None:
            verdicts.append(Verdict(row.run, "not in specs", accuracy, None, "its spec is not among the checked specs"))
        elif row.status not in MEASURED:
            note = row.reason if isinstance(getattr(row, "reason", None), str) else ""
            verdicts.append(Verdict(row.run, "skipped" if row.status == "skipped" else "miss", accuracy, expected,
                                    f"{row.status}: {note}".strip(": ")))
        elif accuracy is None or accuracy < expected:
            verdicts.append(Verdict(row.run, "miss", accuracy, expected, f"below {expected:.4f}"))
        else:
            verdicts.append(Verdict(row.run, "pass", accuracy, expected))
    return verdicts
