"""Check recorded results against the specs' current expectations (used by the regression tests), and each
setup's mean against the project's reference results.

A run misses when its test accuracy is below its spec's `expect.min_test_accuracy` as the
spec says now, or when it failed. An interrupted or skipped run is not a miss (it measured
nothing), a run whose spec the command line changed (`--epochs`, ...) is not judged, and a run of a
variant that its matrix no longer has is superseded (kept as the measurement it is, never judged).

A setup (variant, backend, device) regressed when the mean test accuracy of its n seeds falls below the
lowest mean the reference results' m seeds of it allow: a 95% one-sided prediction bound for the mean of n
new seeds drawn as the reference's were, mean_ref - t(0.95, m - 1) s_ref sqrt(1/m + 1/n). It needs two
reference seeds; a floor is no substitute for it (the 1998 rows' floors sit a point below their means).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scipy import stats

from lenet_bench.results.row import ResultRow, Status
from lenet_bench.results.table import ResultsFolder
from lenet_bench.spec import Variant


@dataclass(frozen=True)
class Verdict:
    run: str
    status: str  # pass | miss | regressed | skipped | interrupted | not judged | superseded | not in specs
    test_accuracy: float | None
    expected: float | None
    note: str = ""


REGRESSION_CONFIDENCE = 0.95


def check_results(results_dir: Path, variants: list[Variant], reference_dir: Path | None = None) -> list[Verdict]:
    """A verdict per run, then one per setup that regressed against `reference_dir`'s runs of it (none when
    there is no such folder, or it is `results_dir` itself)."""
    folder = ResultsFolder(results_dir)
    if not folder.runs_csv.is_file():
        raise FileNotFoundError(f"{folder.runs_csv}: no results file; run `python -m lenet_bench run SPECS` first")
    expectations = {v.name: v.spec.expect.min_test_accuracy for v in variants}
    matrices = {v.base_name for v in variants if v.labels}
    verdicts = []
    rows = folder.read(require=("test_accuracy",))  # a table without it cannot be judged
    for row in rows:
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
        elif row.meets(expected):
            verdicts.append(Verdict(row.run, "pass", accuracy, expected))
        else:  # completed below it, or without a test accuracy
            verdicts.append(Verdict(row.run, "miss", accuracy, expected, f"below {100 * expected:.2f}%"))
    if reference_dir is not None and (Path(reference_dir) / "runs.csv").is_file() \
            and Path(reference_dir).resolve() != folder.path.resolve():
        verdicts += regressions(rows, ResultsFolder(reference_dir).read(require=("test_accuracy",)))
    return verdicts


def _accuracies_by_setup(rows: Iterable[ResultRow]) -> dict[str, list[float]]:
    """Completed runs' test accuracies per setup/backend/device."""
    found: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        if row.status.has_numbers and row.test_accuracy is not None:
            found[row.identity.seed_group].append(row.test_accuracy)
    return found


def regression_floor(reference: list[float], n: int, confidence: float = REGRESSION_CONFIDENCE) -> float:
    """The lowest mean of `n` new seeds that the `reference` seeds allow (see the module's docstring)."""
    m = len(reference)
    spread = statistics.stdev(reference) * math.sqrt(1 / m + 1 / n)
    return statistics.fmean(reference) - float(stats.t.ppf(confidence, m - 1)) * spread


def regressions(rows: Iterable[ResultRow], reference_rows: Iterable[ResultRow]) -> list[Verdict]:
    """A 'regressed' verdict per setup of `rows` whose mean falls below its reference floor."""
    reference = _accuracies_by_setup(reference_rows)
    verdicts = []
    for setup, accuracies in sorted(_accuracies_by_setup(rows).items()):
        measured = reference.get(setup, [])
        if len(measured) < 2:
            continue
        mean, floor = statistics.fmean(accuracies), regression_floor(measured, len(accuracies))
        if mean < floor:
            verdicts.append(Verdict(setup, "regressed", mean, floor,
                                    f"mean of {len(accuracies)} seed(s) below the reference's "
                                    f"{100 * statistics.fmean(measured):.2f}% over {len(measured)} seeds by more than "
                                    f"their spread allows ({REGRESSION_CONFIDENCE:.0%} bound)"))
    return verdicts


