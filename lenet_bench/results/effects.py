"""What each design choice does: effects on accuracy and speed, with intervals, p-values and power.

The unit of replication is the seed. For a factor (a matrix axis such as activation or padding,
or the backend or device) and one of its levels, every pair of runs that differ only by that
factor (same other levels, backend, device and seed) gives one difference; the differences of
one seed are averaged, which averages the effect over the other factors (a main effect), and the
per-seed differences are tested against zero with a one-sample t-test (scipy). Runs of one seed
on two backends are not independent draws (the backends start from the same weights and data
order), so averaging within a seed, not pooling them as replicates, is the honest choice. When
no two seeds are paired, the levels' per-seed means are compared with Welch's t-test instead.

Accuracy effects are differences in percentage points. Speed (training img/s) and time to the
spec's target are effects in percent (the ratio of geometric means: logs are compared), and
pairs are only formed within one timing condition (hardware and cores, load, executor), so
timings taken under different conditions are never pooled; timings taken under load, and any
effect of one seed, are listed but not tested. p-values are adjusted with Holm's method across
every tested effect of one metric, and each effect's interval is taken at the level Holm's
step-down tested it at, so that it excludes zero exactly when the effect is called
distinguishable. For an effect the correction leaves unresolved, the seeds that would resolve an
effect of the observed size (80% power at that same level, from the measured spread of the
per-seed differences) come from statsmodels' power functions.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import pandas as pd

from lenet_bench.results.compare import superseded, with_groups
from lenet_bench.results.row import runs_with_numbers
from lenet_bench.results.stats import summarize

ALPHA = 0.05
POWER = 0.8
CORRECTION = "holm"
SEEDS_NEEDED_CAP = 1000  # beyond this the effect is, for any practical purpose, zero
SAME_VALUE_TOLERANCE = 1e-9  # relative: differences below this are float rounding, not spread
# Row columns that describe a design choice; used to find the factors of a matrix when no spec is at hand.
DESIGN_COLUMNS = ("activation", "pooling", "padding", "input_size", "optimizer", "architecture", "dataset",
                  "params", "epochs")
RUN_FACTORS = ("backend", "device")
_REFERENCE_LEVELS = {"backend": "torch", "device": "cpu"}
MAIN, INTERACTION = "main", "interaction"
TESTED, ONE_SEED, LOADED, NO_SPREAD = "tested", "one seed", "loaded", "no spread"


@dataclass(frozen=True)
class Metric:
    column: str
    label: str
    unit: str
    relative: bool  # an effect in percent (compared as logs) instead of a difference
    timing: bool  # taken under conditions that pairs must share


METRICS = (
    Metric("test_accuracy", "test accuracy", "points", relative=False, timing=False),
    Metric("train_images_per_sec", "training img/s", "%", relative=True, timing=True),
    Metric("time_to_target_s", "time to target", "%", relative=True, timing=True),
)
# effect, ci_low/ci_high: the unadjusted 95% interval; low/high: the interval at `alpha`, the level Holm's method
# tested the effect at (NaN where it was not tested); cells: for an interaction, the two cells' own difference.
COLUMNS = ("group", "factor", "kind", "level", "reference", "metric", "unit", "conditions", "status", "method", "n",
           "effect", "ci_low", "ci_high", "p", "p_adjusted", "alpha", "low", "high", "family", "distinguishable",
           "seeds_needed", "cells")
ALL_CONDITIONS = "any"  # accuracy does not depend on where a run ran


@dataclass
class Design:
    """The factors of every group of runs (a matrix, with any command-line overrides) and their levels.

    `factors[group]` maps each factor to its levels, the reference level first; `levels` holds each
    run's level of every factor as columns `factor:<name>`.
    """

    runs: pd.DataFrame
    factors: dict[str, dict[str, list[str]]]
    notes: list[str] = field(default_factory=list)


# ------------------------------------------------------------------ the design


def design_of(frame: pd.DataFrame, variants: Sequence | None = None) -> Design:
    """Each usable run with its group and factor levels.

    With the specs' variants, the factors are the matrix axes as the spec writes them (levels in
    its order, the first the reference), and runs of a matrix's variants no longer in the spec are
    left out with a note. For a matrix no spec describes, the factors are the row columns that vary in it.
    """
    runs = _usable(frame)
    notes: list[str] = []
    axes: dict[str, dict[str, list[str]]] = {}
    if variants is not None:
        runs, notes = _levels_from_variants(runs, variants)
        axes = _axes_from_variants(variants)
    runs, inferred = _levels_from_columns(runs, known=set(axes))  # matrices that no spec at hand describes
    axes.update(inferred)
    factors: dict[str, dict[str, list[str]]] = {}
    for group, rows in runs.groupby("group", sort=True):
        found = {name: levels for name, levels in axes.get(str(rows["base_spec"].iloc[0]), {}).items()
                 if rows[f"factor:{name}"].nunique() > 1}
        for name in RUN_FACTORS:
            present = sorted(rows[name].astype(str).unique())
            if len(present) > 1:
                reference = _REFERENCE_LEVELS[name]
                found[name] = sorted(present, key=lambda level: (level != reference, level))
        factors[str(group)] = {name: [lv for lv in levels if lv in set(rows[f"factor:{name}"].astype(str))]
                               for name, levels in found.items()}
    return Design(runs=runs, factors=factors, notes=notes)


def _usable(frame: pd.DataFrame) -> pd.DataFrame:
    if frame.empty or "test_accuracy" not in frame:
        return pd.DataFrame(columns=["group", "base_spec", "spec", "seed", "backend", "device", "conditions"])
    runs = with_groups(frame)
    runs = runs_with_numbers(runs)
    runs = runs[pd.to_numeric(runs["test_accuracy"], errors="coerce").notna()].copy()
    base = _text(runs, "base_spec")
    runs["base_spec"] = base.where(base != "", runs["spec"].astype(str))
    runs["group"] = runs["base_spec"] + _text(runs, "overrides").map(lambda o: f"@{o}" if o else "")
    for name in RUN_FACTORS:
        runs[f"factor:{name}"] = runs[name].astype(str)
    for metric in METRICS:
        runs[metric.column] = pd.to_numeric(runs[metric.column], errors="coerce") if metric.column in runs else np.nan
    return runs


def _text(runs: pd.DataFrame, column: str) -> pd.Series:
    """A column as text ('' where missing), or a column of '' where the table has none."""
    if column not in runs:
        return pd.Series("", index=runs.index, dtype=str)
    return runs[column].fillna("").astype(str)


def _axis_name(axis: str) -> str:
    return axis.rsplit(".", 1)[-1]


def _axes_from_variants(variants: Sequence) -> dict[str, dict[str, list[str]]]:
    axes: dict[str, dict[str, list[str]]] = {}
    for variant in variants:
        for axis, label in variant.labels:
            levels = axes.setdefault(variant.base_name, {}).setdefault(_axis_name(axis), [])
            if label not in levels:
                levels.append(label)
    return axes


def _levels_from_variants(runs: pd.DataFrame, variants: Sequence) -> tuple[pd.DataFrame, list[str]]:
    labels = {v.name: {_axis_name(axis): label for axis, label in v.labels} for v in variants}
    gone = superseded(runs, variants)
    notes = []
    if gone.any():
        names = sorted(runs.loc[gone, "spec"].astype(str).unique())
        notes.append(f"{int(gone.sum())} run(s) of {len(names)} variant(s) no longer in the specs are left out: "
                     + ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))
    runs = runs[~gone].copy()
    for name in sorted({axis for found in labels.values() for axis in found}):
        runs[f"factor:{name}"] = runs["spec"].map(lambda spec, axis=name: labels.get(spec, {}).get(axis))
    return runs, notes


def _levels_from_columns(runs: pd.DataFrame, known: set[str]) -> tuple[pd.DataFrame, dict[str, dict[str, list[str]]]]:
    """Factors where no spec says them: the design columns that vary among a matrix's variants, columns
    that always vary together (input size and parameter count) counted as one factor."""
    axes: dict[str, dict[str, list[str]]] = {}
    for base, rows in runs.groupby("base_spec", sort=True):
        if base in known:
            continue
        cells = rows[rows["spec"] != base]
        partitions: dict[tuple, str] = {}
        for column in (c for c in DESIGN_COLUMNS if c in cells):
            values = cells[column].astype(str)
            if values.nunique() < 2:
                continue
            partition = tuple(sorted(cells.groupby(values)["spec"].agg(frozenset).map(sorted).map(tuple)))
            if partition in partitions:
                continue  # the same split as a column already taken: one factor, not two
            partitions[partition] = column
            axes.setdefault(str(base), {})[column] = sorted(values.unique())
            runs.loc[rows.index, f"factor:{column}"] = rows[column].astype(str)
    return runs, axes


# ------------------------------------------------------------------ the statistics


def _transform(values: pd.Series, metric: Metric) -> pd.Series:
    values = pd.to_numeric(values, errors="coerce")
    if metric.relative:
        return np.log(values.where(values > 0))
    return 100 * values  # accuracy in percentage points


def _back(value: float, metric: Metric) -> float:
    return 100 * math.expm1(value) if metric.relative else value


def _no_spread(values: np.ndarray) -> bool:
    """Every value the same, up to float rounding (two backends that compute the same numbers): a t-test on
    them is 0/0, and scipy warns of catastrophic cancellation well before the values are exactly equal."""
    return bool(np.ptp(values) <= SAME_VALUE_TOLERANCE * max(1.0, float(np.max(np.abs(values)))))


@dataclass(frozen=True)
class EffectEstimate:
    """One effect on the transformed scale (points, or the log of a ratio) and the test behind it."""

    method: str
    n: int
    effect: float
    p: float  # NaN where there is nothing to test: one seed, or no spread at all
    effect_size: float  # |effect| / spread of the differences (Cohen's d), for the seeds an effect this size needs
    test: Any = None  # scipy's TtestResult, whose confidence_interval gives the interval at any level

    def interval(self, alpha: float) -> tuple[float, float]:
        """The two-sided (1 - alpha) interval; the effect itself where there is no spread, NaN with one seed."""
        if self.test is not None:
            found = self.test.confidence_interval(1 - alpha)
            return float(found.low), float(found.high)
        if self.n >= 2:  # no spread: every seed gave this very difference
            return self.effect, self.effect
        return math.nan, math.nan


def one_sample(differences: Sequence[float] | np.ndarray) -> EffectEstimate | None:
    """Per-seed paired differences against zero: scipy's one-sample t-test."""
    from scipy import stats

    values = np.asarray(differences, dtype=float)
    n = len(values)
    if n == 0:
        return None
    mean = float(values.mean())
    if n == 1 or _no_spread(values):
        return EffectEstimate("paired", n, mean, math.nan, math.nan)
    result = stats.ttest_1samp(values, 0.0)
    return EffectEstimate("paired", n, mean, float(result.pvalue), abs(mean) / float(values.std(ddof=1)), result)


def two_sample(level: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray) -> EffectEstimate | None:
    """Unpaired: Welch's t-test of the level's per-seed means against the reference's."""
    from scipy import stats

    a, b = np.asarray(level, dtype=float), np.asarray(reference, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    mean = float(a.mean() - b.mean())
    if _no_spread(a) and _no_spread(b):
        return EffectEstimate("Welch", min(len(a), len(b)), mean, math.nan, math.nan)
    result = stats.ttest_ind(a, b, equal_var=False)
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    return EffectEstimate("Welch", min(len(a), len(b)), mean, float(result.pvalue), abs(mean) / pooled, result)


def holm_levels(p_values: Sequence[float] | np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """The alpha Holm's step-down method tests each p-value at: alpha/m for the smallest, alpha/(m-1) for the
    next, ..., and for every p-value from the first it keeps on, the alpha at which it stopped. An interval at
    1 - that alpha excludes zero exactly when Holm's method calls the effect distinguishable."""
    p = np.asarray(p_values, dtype=float)
    levels = np.empty(len(p))
    stopped: float | None = None
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        level = alpha / (len(p) - rank) if stopped is None else stopped
        if stopped is None and p[index] > level:  # statsmodels' rule: p <= alpha/(m-rank) rejects
            stopped = level
        levels[index] = level
    return levels


def seeds_needed(method: str, effect_size: float, alpha: float, have: int) -> float:
    """The fewest seeds (per level, for Welch) above `have` that would resolve an effect of this standardized
    size at `alpha` with 80% power; inf when more than SEEDS_NEEDED_CAP would be needed or the effect is zero.

    Power to find the effect with its sign: one tail at alpha/2. (statsmodels' two-sided power adds the far
    tail, which is below alpha/2 and gives NaN in scipy's noncentral t for the large effects of few seeds.)
    """
    from statsmodels.stats.power import TTestIndPower, TTestPower

    if not (math.isfinite(effect_size) and effect_size > 0):
        return math.inf
    solver = TTestPower() if method == "paired" else TTestIndPower()

    def power(n: int) -> float:
        found = float(solver.power(effect_size, n, alpha / 2, alternative="larger"))
        # scipy's noncentral t gives NaN far out in its tail (a noncentrality in the tens), where the power is 1.
        return 1.0 if math.isnan(found) else found

    low = max(have + 1, 2)
    high = low
    while power(high) < POWER:  # power grows with the seeds: double until it is reached, then halve the gap
        if high >= SEEDS_NEEDED_CAP:
            return math.inf
        low, high = high + 1, min(2 * high, SEEDS_NEEDED_CAP)
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if power(middle) >= POWER else (middle + 1, high)
    return float(low)


# ------------------------------------------------------------------ effects of a group


def _keyed(rows: pd.DataFrame, metric: Metric, key: list[str], columns: list[str]) -> pd.DataFrame:
    values = rows.assign(value=_transform(rows[metric.column], metric)).dropna(subset=["value"])
    if values.empty:
        return pd.DataFrame()
    return values.pivot_table(index=key, columns=[f"factor:{c}" for c in columns], values="value", aggfunc="mean")


def _pair_key(design: list[str], excluded: Iterable[str], metric: Metric) -> list[str]:
    key = [f"factor:{f}" for f in design if f not in set(excluded)] + ["seed"]
    # Device effects compare hardware by definition; every other timing pair shares its conditions.
    return key + (["conditions"] if metric.timing and "device" not in set(excluded) else [])


def _estimate(differences: pd.Series, level_means: pd.Series, reference_means: pd.Series) -> EffectEstimate | None:
    per_seed = differences.dropna().groupby(level="seed").mean()
    if len(per_seed) >= 2:
        return one_sample(per_seed.to_numpy())
    unpaired = two_sample(level_means.dropna().to_numpy(), reference_means.dropna().to_numpy())
    return unpaired or one_sample(per_seed.to_numpy())


def _by_conditions(table: pd.DataFrame, metric: Metric) -> Iterable[tuple[str, pd.DataFrame]]:
    if metric.timing and "conditions" in table.index.names:
        for conditions, part in table.groupby(level="conditions", sort=True):
            yield str(conditions), part
    else:
        yield ALL_CONDITIONS, table


def main_effects(rows: pd.DataFrame, factors: dict[str, list[str]], metric: Metric) -> list[dict]:
    found = []
    design = list(factors)
    for factor, levels in factors.items():
        key = _pair_key(design, [factor], metric)
        wide = _keyed(rows, metric, key, [factor])
        if wide.empty:
            continue
        for conditions, part in _by_conditions(wide, metric):
            reference = levels[0]
            for level in levels[1:]:
                if level not in part or reference not in part:
                    continue
                seed_means = part.groupby(level="seed").mean()
                estimate = _estimate(part[level] - part[reference], seed_means[level], seed_means[reference])
                if estimate is not None:
                    found.append(_row(factor, MAIN, level, reference, metric, conditions, estimate))
    return found


def interactions(rows: pd.DataFrame, factors: dict[str, list[str]], metric: Metric) -> list[dict]:
    """Two-factor interactions of the matrix's own axes: how much a level's effect changes with another's level,
    with the two cells' own difference beside it (what a person comparing the cells would see)."""
    found = []
    design = list(factors)
    axes = [f for f in design if f not in RUN_FACTORS]
    for first, second in itertools.combinations(axes, 2):
        key = _pair_key(design, [first, second], metric)
        wide = _keyed(rows, metric, key, [first, second])
        if wide.empty:
            continue
        ref_a, ref_b = factors[first][0], factors[second][0]
        for conditions, part in _by_conditions(wide, metric):
            for a, b in itertools.product(factors[first][1:], factors[second][1:]):
                cells = [(a, b), (a, ref_b), (ref_a, b), (ref_a, ref_b)]
                if any(cell not in part.columns for cell in cells):
                    continue
                contrast = (part[(a, b)] - part[(a, ref_b)]) - (part[(ref_a, b)] - part[(ref_a, ref_b)])
                paired = contrast.notna()
                estimate = one_sample(contrast[paired].groupby(level="seed").mean().to_numpy())
                if estimate is None:
                    continue
                cell_gap = (part[(a, b)] - part[(ref_a, ref_b)])[paired].groupby(level="seed").mean().mean()
                found.append({**_row(f"{first} × {second}", INTERACTION, f"{a} × {b}", f"{ref_a} × {ref_b}", metric,
                                     conditions, estimate), "cells": _back(float(cell_gap), metric)})
    return found


def _row(factor: str, kind: str, level: str, reference: str, metric: Metric, conditions: str, e: EffectEstimate) -> dict:
    low, high = e.interval(ALPHA)
    return {"factor": factor, "kind": kind, "level": level, "reference": reference, "metric": metric.label,
            "unit": metric.unit, "conditions": conditions, "method": e.method, "n": e.n,
            "effect": _back(e.effect, metric), "ci_low": _back(low, metric), "ci_high": _back(high, metric),
            "p": e.p, "effect_size": e.effect_size, "cells": math.nan, "estimate": e, "metric_def": metric}


# ------------------------------------------------------------------ the table


@dataclass
class Analysis:
    """Every effect (one row per level against its reference, per metric and timing condition), each level's
    own numbers, and notes on runs left out."""

    effects: pd.DataFrame
    levels: pd.DataFrame
    notes: list[str]
    design: Design | None = None


def analyse(frame: pd.DataFrame, variants: Sequence | None = None) -> Analysis:
    design = design_of(frame, variants)
    found: list[dict] = []
    for group, factors in design.factors.items():
        rows = design.runs[design.runs["group"] == group]
        for metric in METRICS:
            found += [{"group": group, **row} for row in main_effects(rows, factors, metric)
                      + interactions(rows, factors, metric)]
    table = pd.DataFrame(found, columns=["group", "factor", "kind", "level", "reference", "metric", "unit",
                                         "conditions", "method", "n", "effect", "ci_low", "ci_high", "p",
                                         "effect_size", "cells", "estimate", "metric_def"])
    table["status"] = [_status(row, _loaded_conditions(design.runs)) for _, row in table.iterrows()]
    _correct(table)
    return Analysis(table[list(COLUMNS)].reset_index(drop=True), level_table(design), design.notes, design)


def effects_table(frame: pd.DataFrame, variants: Sequence | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every effect of every group's factors on every metric, Holm-adjusted per metric; and notes."""
    analysis = analyse(frame, variants)
    return analysis.effects, analysis.notes


def _loaded_conditions(runs: pd.DataFrame) -> set[str]:
    if "timing" not in runs:
        return set()
    return set(runs.loc[runs["timing"].astype(str) == "loaded", "conditions"].astype(str))


def _status(row: pd.Series, loaded: set[str]) -> str:
    """tested | one seed | loaded | no spread: whether Holm's family takes the effect, and if not, why."""
    if row["n"] < 2:
        return ONE_SEED
    if row["metric_def"].timing and row["conditions"] in loaded:
        return LOADED  # timings taken beside other work say more about the load than about the choice
    if not math.isfinite(row["p"]):
        return NO_SPREAD
    return TESTED


def _correct(table: pd.DataFrame) -> None:
    """Holm's method across the tested effects of each metric: adjusted p, the verdict, the interval at the
    level Holm tested each effect at, and for an effect it leaves unresolved, the seeds that would resolve it."""
    from statsmodels.stats.multitest import multipletests

    for column in ("p_adjusted", "alpha", "low", "high", "seeds_needed", "family"):
        table[column] = np.nan
    table["distinguishable"] = False
    same = table["status"] == NO_SPREAD
    table.loc[same, ["low", "high"]] = np.column_stack([table.loc[same, "effect"]] * 2)
    table.loc[same, "distinguishable"] = table.loc[same, "effect"] != 0  # the same non-zero difference every seed
    for _, part in table[table["status"] == TESTED].groupby("metric", sort=False):
        reject, adjusted, _, _ = multipletests(part["p"], alpha=ALPHA, method=CORRECTION)
        levels = holm_levels(part["p"].to_numpy())
        table.loc[part.index, "p_adjusted"] = adjusted
        table.loc[part.index, "distinguishable"] = reject
        table.loc[part.index, "alpha"] = levels
        table.loc[part.index, "family"] = len(part)
        for index, level, resolved in zip(part.index, levels, reject, strict=True):
            estimate, metric = cast(EffectEstimate, table.at[index, "estimate"]), cast(Metric, table.at[index, "metric_def"])
            low, high = estimate.interval(level)
            table.at[index, "low"], table.at[index, "high"] = _back(low, metric), _back(high, metric)
            if not resolved:
                table.at[index, "seeds_needed"] = seeds_needed(estimate.method, estimate.effect_size, level, estimate.n)


# ------------------------------------------------------------------ each level's own numbers


def level_table(design: Design) -> pd.DataFrame:
    """Mean and 95% interval over seeds of every level of every factor, per metric: a seed's value is the mean
    of its runs at that level (over the other factors and backends), as the effects average them. Timings only
    of runs timed quiet, per condition; speeds and times as geometric means (their effects are ratios)."""
    found = []
    loaded = _loaded_conditions(design.runs)
    for group, factors in design.factors.items():
        rows = design.runs[design.runs["group"] == group]
        for metric in METRICS:
            values = rows.assign(value=_transform(rows[metric.column], metric)).dropna(subset=["value"])
            parts = (values[~values["conditions"].isin(loaded)].groupby("conditions", sort=True) if metric.timing
                     else [(ALL_CONDITIONS, values)])
            for conditions, part in parts:
                for factor, levels in factors.items():
                    for level in levels:
                        per_seed = part.loc[part[f"factor:{factor}"].astype(str) == level].groupby("seed")["value"]
                        summary = summarize(per_seed.mean())
                        if summary.n == 0:
                            continue
                        found.append({"group": group, "factor": factor, "level": level, "metric": metric.label,
                                      "conditions": str(conditions), "n": summary.n,
                                      **{name: _absolute(getattr(summary, name), metric)
                                         for name in ("mean", "ci_low", "ci_high")}})
    return pd.DataFrame(found, columns=["group", "factor", "level", "metric", "conditions", "n", "mean", "ci_low",
                                       "ci_high"])


def _absolute(value: float, metric: Metric) -> float:
    """A level's own number: accuracy in %, a speed or time as the geometric mean of its seeds."""
    return math.exp(value) if metric.relative else value


def main_condition(conditions: pd.Series, n: pd.Series) -> str | None:
    """The timing condition with the most seeds behind it: the one a summary speaks of."""
    if conditions.empty:
        return None
    return str(n.groupby(conditions.to_numpy()).sum().sort_index().idxmax())


def cell_table(design: Design, group: str, first: str, second: str, metric: Metric = METRICS[0]) -> pd.DataFrame:
    """Mean and 95% interval over seeds of every cell of two factors (the other factors and backends averaged
    within a seed), for an interaction plot; accuracy only (a cell's timings would mix conditions)."""
    rows = design.runs[design.runs["group"] == group]
    values = rows.assign(value=_transform(rows[metric.column], metric)).dropna(subset=["value"])
    found = []
    for a in design.factors[group][first]:
        for b in design.factors[group][second]:
            cell = values[(values[f"factor:{first}"].astype(str) == a) & (values[f"factor:{second}"].astype(str) == b)]
            summary = summarize(cell.groupby("seed")["value"].mean())
            found.append({first: a, second: b, "n": summary.n, "mean": summary.mean, "ci_low": summary.ci_low,
                          "ci_high": summary.ci_high})
    return pd.DataFrame(found)
