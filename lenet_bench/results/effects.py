"""What each design choice does: effects on accuracy and speed, with 95% CIs, p-values and power.

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
timings taken under different conditions are never pooled. p-values are adjusted with Holm's
method across every effect of one metric; the intervals are the unadjusted 95% intervals. For an
effect not distinguishable from zero, the seeds needed to resolve an effect of the observed size
(80% power at alpha 0.05/m, the strictest level Holm's method applies to a family of m effects,
from the measured spread of the per-seed differences) come from statsmodels' power solver.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

ALPHA = 0.05
POWER = 0.8
CORRECTION = "holm"
SEEDS_NEEDED_CAP = 1000  # beyond this the effect is, for any practical purpose, zero
# Row columns that describe a design choice; used to find the factors of a matrix when no spec is at hand.
DESIGN_COLUMNS = ("activation", "pooling", "padding", "input_size", "optimizer", "architecture", "dataset",
                  "params", "epochs")
RUN_FACTORS = ("backend", "device")
_REFERENCE_LEVELS = {"backend": "torch", "device": "cpu"}


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
COLUMNS = ("group", "factor", "level", "reference", "metric", "unit", "conditions", "method", "n", "effect",
           "ci_low", "ci_high", "p", "p_adjusted", "distinguishable", "seeds_needed")
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


@dataclass(frozen=True)
class Estimate:
    method: str
    n: int
    effect: float
    ci_low: float
    ci_high: float
    p: float
    effect_size: float  # |effect| / spread of the differences (Cohen's d), for the seeds an effect this size needs


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
    from lenet_bench.results.compare import with_groups

    runs = with_groups(frame)
    runs = runs[runs["status"].astype(str) == "completed"] if "status" in runs else runs
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
    matrices = {v.base_name for v in variants if v.labels}
    superseded = runs["base_spec"].isin(matrices) & ~runs["spec"].isin(labels)
    notes = []
    if superseded.any():
        names = sorted(runs.loc[superseded, "spec"].astype(str).unique())
        notes.append(f"{int(superseded.sum())} run(s) of {len(names)} variant(s) no longer in the specs are left out: "
                     + ", ".join(names[:6]) + (", ..." if len(names) > 6 else ""))
    runs = runs[~superseded].copy()
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


def one_sample(differences: Sequence[float] | np.ndarray) -> Estimate | None:
    """Per-seed paired differences against zero: t-test, 95% CI and the seeds an effect this size needs."""
    from scipy import stats

    values = np.asarray(differences, dtype=float)
    n = len(values)
    if n == 0:
        return None
    mean = float(values.mean())
    if n == 1:
        return Estimate("paired", 1, mean, math.nan, math.nan, math.nan, math.nan)
    sd = float(values.std(ddof=1))
    if sd == 0:  # the same difference in every seed (e.g. two backends that compute the same numbers)
        return Estimate("paired", n, mean, mean, mean, 1.0 if mean == 0 else math.nan, math.nan)
    result = stats.ttest_1samp(values, 0.0)
    interval = result.confidence_interval(1 - ALPHA)
    return Estimate("paired", n, mean, float(interval.low), float(interval.high), float(result.pvalue), abs(mean) / sd)


def two_sample(level: Sequence[float] | np.ndarray, reference: Sequence[float] | np.ndarray) -> Estimate | None:
    """Unpaired: Welch's t-test of the level's per-seed means against the reference's."""
    from scipy import stats

    a, b = np.asarray(level, dtype=float), np.asarray(reference, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return None
    mean = float(a.mean() - b.mean())
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if pooled == 0:
        return Estimate("Welch", min(len(a), len(b)), mean, mean, mean, 1.0 if mean == 0 else math.nan, math.nan)
    result = stats.ttest_ind(a, b, equal_var=False)
    interval = result.confidence_interval(1 - ALPHA)
    return Estimate("Welch", min(len(a), len(b)), mean, float(interval.low), float(interval.high),
                    float(result.pvalue), abs(mean) / pooled)


def seeds_needed(method: str, effect_size: float, alpha: float) -> float:
    """Seeds (per level, for Welch) that resolve an effect of this standardized size with 80% power; inf when
    more than SEEDS_NEEDED_CAP would be needed or the effect is zero."""
    import warnings

    from statsmodels.stats.power import TTestIndPower, TTestPower
    from statsmodels.tools.sm_exceptions import ConvergenceWarning

    if not (math.isfinite(effect_size) and effect_size > 0):
        return math.inf
    solver = TTestPower() if method == "paired" else TTestIndPower()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a vanishing effect: the root finder gives up
        try:
            n = float(solver.solve_power(effect_size=effect_size, alpha=alpha, power=POWER, alternative="two-sided"))
        except (ValueError, RuntimeError):
            return math.inf
    return float(math.ceil(n)) if math.isfinite(n) and n < SEEDS_NEEDED_CAP else math.inf


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


def _estimate(differences: pd.Series, level_means: pd.Series, reference_means: pd.Series) -> Estimate | None:
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
                    found.append(_row(factor, level, reference, metric, conditions, estimate))
    return found


def interactions(rows: pd.DataFrame, factors: dict[str, list[str]], metric: Metric) -> list[dict]:
    """Two-factor interactions of the matrix's own axes: how much a level's effect changes with another's."""
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
                per_seed = contrast.dropna().groupby(level="seed").mean()
                estimate = one_sample(per_seed.to_numpy())
                if estimate is not None:
                    found.append(_row(f"{first} × {second}", f"{a} × {b}", f"{ref_a} × {ref_b}", metric,
                                      conditions, estimate))
    return found


def _row(factor: str, level: str, reference: str, metric: Metric, conditions: str, e: Estimate) -> dict:
    return {"factor": factor, "level": level, "reference": reference, "metric": metric.label, "unit": metric.unit,
            "conditions": conditions, "method": e.method, "n": e.n, "effect": _back(e.effect, metric),
            "ci_low": _back(e.ci_low, metric), "ci_high": _back(e.ci_high, metric), "p": e.p,
            "effect_size": e.effect_size}


# ------------------------------------------------------------------ the table


def effects_table(frame: pd.DataFrame, variants: Sequence | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Every effect of every group's factors on every metric, Holm-adjusted per metric; and notes."""
    from statsmodels.stats.multitest import multipletests

    design = design_of(frame, variants)
    found: list[dict] = []
    for group, factors in design.factors.items():
        if not factors:
            continue
        rows = design.runs[design.runs["group"] == group]
        for metric in METRICS:
            for row in main_effects(rows, factors, metric) + interactions(rows, factors, metric):
                found.append({"group": group, **row})
    computed = [c for c in COLUMNS if c not in ("p_adjusted", "distinguishable", "seeds_needed")]
    table = pd.DataFrame(found, columns=[*computed, "effect_size"])
    table["p_adjusted"] = np.nan
    table["seeds_needed"] = np.nan
    for _, part in table.groupby("metric", sort=False):
        testable = part[part["p"].notna()]
        if len(testable):
            table.loc[testable.index, "p_adjusted"] = multipletests(testable["p"], alpha=ALPHA, method=CORRECTION)[1]
            # Planned at alpha/m, the strictest threshold Holm's method can apply to a family of m effects.
            table.loc[list(testable.index), "seeds_needed"] = [
                seeds_needed(str(method), float(size), ALPHA / len(testable))
                for method, size in zip(testable["method"], testable["effect_size"], strict=True)]
    constant = table["p"].isna() & table["ci_low"].notna() & (table["effect"] != 0)
    table["distinguishable"] = (table["p_adjusted"] < ALPHA) | constant
    table.loc[table["distinguishable"] | (table["n"] < 2), "seeds_needed"] = np.nan
    return table[list(COLUMNS)].reset_index(drop=True), design.notes


# ------------------------------------------------------------------ words


def format_effect(row: pd.Series) -> str:
    """'-0.62 pp [-0.75, -0.49]' or '-4.1% [-6.0, -2.2]'; the effect alone with one seed."""
    unit = " pp" if row["unit"] == "points" else "%"
    text = f"{row['effect']:+.2f}{unit}"
    if math.isfinite(row["ci_low"]) and math.isfinite(row["ci_high"]):
        text += f" [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]"
    return text


def _resolution(row: pd.Series) -> str:
    """one seed | distinguishable | identical | unresolved: what `verdict` and `short_verdict` put in words."""
    if row["n"] < 2:
        return "one seed"
    if row["distinguishable"]:
        return "distinguishable"
    if row["effect"] == 0 and row["ci_low"] == row["ci_high"]:
        return "identical"
    return "unresolved"


def verdict(row: pd.Series) -> str:
    state, needed = _resolution(row), row["seeds_needed"]
    if state != "unresolved":
        return {"one seed": "one seed: no interval", "distinguishable": "distinguishable from zero",
                "identical": "identical in every pair"}[state]
    if not math.isfinite(needed):
        return f"not distinguishable at {row['n']} seeds; an effect this small needs over {SEEDS_NEEDED_CAP} seeds"
    return f"not distinguishable at {row['n']} seeds; about {int(needed)} seeds would tell"


def short_verdict(row: pd.Series) -> str:
    """The verdict in a table cell: 'yes', 'no: ~26 seeds', 'identical', 'one seed'."""
    state, needed = _resolution(row), row["seeds_needed"]
    if state != "unresolved":
        return {"one seed": "one seed", "distinguishable": "yes", "identical": "identical"}[state]
    return f"no: ~{int(needed)} seeds" if math.isfinite(needed) else f"no: >{SEEDS_NEEDED_CAP} seeds"


def p_text(value: float) -> str:
    if not math.isfinite(value):
        return ""
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def effects_markdown(table: pd.DataFrame, notes: Sequence[str] = ()) -> str:
    head = ("# What each design choice does\n\n"
            "Effect of each level against the reference level (first in the spec), per matrix. Runs that differ "
            "only by the factor are paired by seed; a seed's pairs are averaged over the other factors and "
            "backends (main effects) and the per-seed differences tested against zero (one-sample t-test; Welch's "
            "t-test between levels where no seeds pair). Test accuracy in percentage points; training img/s and "
            "time to target in percent, within one timing condition (never pooled across hardware, cores, load or "
            "executor). `95% CI`: unadjusted interval; `p (Holm)`: p-value adjusted with Holm's method across all "
            "effects on the same metric. Where an effect is not distinguishable from zero, the seeds needed to "
            f"resolve one of the observed size after the correction ({POWER:.0%} power at alpha {ALPHA}/m for m "
            "effects on the metric) are estimated from the measured seed spread (statsmodels).\n\n")
    head += "".join(f"- {note}\n" for note in notes) + ("\n" if notes else "")
    if table.empty:
        return head + "(no factor varies among the completed runs: nothing to compare)\n"
    body = []
    for group, part in table.groupby("group", sort=False):
        rows = [{"factor": r["factor"], "level vs reference": f"{r['level']} vs {r['reference']}",
                 "metric": r["metric"], "conditions": r["conditions"], "n": int(r["n"]), "method": r["method"],
                 "effect [95% CI]": format_effect(r), "p": p_text(r["p"]), "p (Holm)": p_text(r["p_adjusted"]),
                 "verdict": verdict(r)} for _, r in part.iterrows()]
        body.append(f"## {group}\n\n" + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n")
    return head + "\n".join(body)


def _interval(row: pd.Series) -> str:
    unit = " points" if row["unit"] == "points" else "%"
    return f"95% CI [{row['ci_low']:+.2f}, {row['ci_high']:+.2f}]{unit}"


def _what_it_does(row: pd.Series) -> str:
    """The effect as a sentence's predicate: 'costs 0.74 points of test accuracy', 'trains 25.8% slower'."""
    size = abs(row["effect"])
    if row["unit"] == "points":
        return f"{'costs' if row['effect'] < 0 else 'gains'} {size:.2f} points of test accuracy"
    if row["metric"] == METRICS[1].label:
        return f"trains {size:.1f}% {'slower' if row['effect'] < 0 else 'faster'} (img/s)"
    return f"reaches the target {size:.1f}% {'sooner' if row['effect'] < 0 else 'later'}"


def plain_words(row: pd.Series) -> str:
    """One effect in a sentence: what it does and how sure it is."""
    interaction = "×" in str(row["factor"])
    if interaction:
        a, b = str(row["level"]).split(" × ")
        subject = f"{a} together with {b} (an interaction, beyond what each does alone)"
    else:
        subject = f"{row['level']} instead of {row['reference']}"
    where = "" if row["conditions"] == ALL_CONDITIONS else f" [{row['conditions']}]"
    if row["distinguishable"]:
        return (f"{subject} {_what_it_does(row)}, {_interval(row)}{where} ({int(row['n'])} seeds, "
                f"Holm p {p_text(row['p_adjusted'])}).")
    return (f"{subject}: {row['metric']} not distinguishable from zero at {int(row['n'])} seeds after Holm's "
            f"correction ({format_effect(row)}{where}); " + verdict(row).split("; ", 1)[-1] + ".")


README_BEGIN = ("<!-- effects:begin: generated by `python -m lenet_bench effects results/reference --readme-section {group}` -->")
README_END = "<!-- effects:end -->"


def _main_condition(rows: pd.DataFrame) -> str | None:
    """The timing condition with the most paired seeds, quiet ones first: the one a README speaks of."""
    if rows.empty:
        return None
    ranked = rows.assign(quiet=~rows["conditions"].str.contains("loaded")).groupby("conditions")[["quiet", "n"]]
    scores = ranked.agg({"quiet": "first", "n": "sum"}).sort_values(["quiet", "n"], ascending=False)
    return str(scores.index[0])


def readme_section(table: pd.DataFrame, group: str) -> str:
    """A matrix's effects in plain words, between markers, for a README: effects with an interval only;
    timings in the condition with the most seeds (the table in effects.md has every condition)."""
    lines = [README_BEGIN.format(group=group)]
    rows = table[(table["group"] == group) & (table["n"] >= 2)]
    for metric in METRICS:
        part = rows[rows["metric"] == metric.label]
        if metric.timing:
            condition = _main_condition(part)
            part = part[(part["conditions"] == condition) & ~part["factor"].str.contains("×")]
        if part.empty:
            continue
        tested = int(table.loc[table["metric"] == metric.label, "p"].notna().sum())
        lines.append(f"\n**{metric.label.capitalize()}** (Holm's correction across the {tested} effects on it in "
                     "the results folder):\n")
        lines += [f"- {plain_words(row)}" for _, row in part.iterrows()]
    lines.append(README_END)
    return "\n".join(lines)
