"""Seed statistics: mean, sample standard deviation and a Student-t confidence interval.

Pure numbers and pandas, no MLflow, so that figures, `compare` and the runner share one
definition of "mean ± 95% CI over seeds". With a handful of seeds the normal
approximation (±1.96 s/√n) is far too narrow; the t distribution is the honest choice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from lenet_bench.results.row import runs_with_numbers

CONFIDENCE = 0.95
SUFFIXES = ("mean", "std", "ci_low", "ci_high", "n")


@dataclass(frozen=True)
class Summary:
    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN when n < 2
    ci_low: float  # NaN when n < 2: one seed says nothing about the spread
    ci_high: float

    @property
    def half_width(self) -> float:
        return (self.ci_high - self.ci_low) / 2


def summarize(values: Iterable[float], confidence: float = CONFIDENCE) -> Summary:
    """Summary of the finite values (NaN and None are dropped, as a failed seed has no number)."""
    array = np.asarray([v for v in values if v is not None], dtype=float)
    array = array[np.isfinite(array)]
    n = int(array.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan)
    mean = float(array.mean())
    if n == 1:
        return Summary(1, mean, math.nan, math.nan, math.nan)
    from scipy import stats as scipy_stats  # imported on first use: a second of start-up for every CLI command

    std = float(array.std(ddof=1))
    half = float(scipy_stats.t.ppf(0.5 + confidence / 2, df=n - 1)) * std / math.sqrt(n)
    return Summary(n, mean, std, mean - half, mean + half)


def aggregate(df: pd.DataFrame, by: Sequence[str], metrics: Sequence[str],
              confidence: float = CONFIDENCE) -> pd.DataFrame:
    """One row per group of `by`, with `<metric>_mean, _std, _ci_low, _ci_high, _n` per metric.

    A metric missing from `df` gives n=0 and NaN rather than an error: a backend that
    does not measure something should not break a comparison of the others.
    """
    by = list(by)
    columns = by + [f"{m}_{s}" for m in metrics for s in SUFFIXES]
    if df.empty:
        return pd.DataFrame(columns=columns)
    rows = []
    for keys, group in df.groupby(by, sort=True, dropna=False):
        row = dict(zip(by, keys if isinstance(keys, tuple) else (keys,), strict=True))
        for metric in metrics:
            values: Iterable[float] = pd.to_numeric(group[metric], errors="coerce") if metric in group else []
            summary = summarize(values, confidence)
            row.update({f"{metric}_mean": summary.mean, f"{metric}_std": summary.std,
                        f"{metric}_ci_low": summary.ci_low, f"{metric}_ci_high": summary.ci_high,
                        f"{metric}_n": summary.n})
        rows.append(row)
    return pd.DataFrame(rows, columns=columns)


def usable_runs(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of runs.csv that have a test accuracy, each with a `series` label: the backend, with the
    device when the devices differ, and the timing conditions when they differ (never one mean of both)."""
    if df.empty or "test_accuracy" not in df:
        return pd.DataFrame(columns=["spec", "setup", "series", "test_accuracy"])
    runs = runs_with_numbers(df)
    runs = runs[pd.to_numeric(runs["test_accuracy"], errors="coerce").notna()].copy()
    several_devices = "device" in runs and runs["device"].nunique() > 1
    runs["series"] = runs["backend"].astype(str) + ("/" + runs["device"].astype(str) if several_devices else "")
    if "conditions" in runs and runs["conditions"].nunique() > 1:
        runs["series"] += " (" + runs["conditions"].astype(str) + ")"
    if "setup" not in runs:
        runs["setup"] = runs["spec"]
    return runs


def format_mean_ci(mean: float, low: float, high: float, digits: int = 4) -> str:
    """'0.9891 ± 0.0012' (the half-width of the interval), or just the mean without an interval.

    Thousands are grouped ('12,345 ± 210' for images per second at digits=0).
    """
    if mean is None or not math.isfinite(mean):
        return ""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return f"{mean:,.{digits}f}"
    return f"{mean:,.{digits}f} ± {(high - low) / 2:,.{digits}f}"
