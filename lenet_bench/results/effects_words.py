"""The effects table (results.effects) in words: table cells, effects.md and a README's plain sentences.

Every sentence is computed from the row it describes: the interval shown is the one the verdict
was reached with (the level Holm's method tested the effect at), an interaction is named as one
with its two cells' own difference beside it, and timings taken under load or of one seed are
listed apart, never called distinguishable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import pandas as pd

from lenet_bench.results.effects import (
    ALL_CONDITIONS,
    ALPHA,
    INTERACTION,
    LOADED,
    METRICS,
    NO_SPREAD,
    ONE_SEED,
    POWER,
    SEEDS_NEEDED_CAP,
    TESTED,
    Analysis,
    main_condition,
)

LEVEL_DIGITS = {"test accuracy": 2, "training img/s": 0, "time to target": 1}
LEVEL_HEADERS = {"test accuracy": "test accuracy %", "training img/s": "training img/s",
                 "time to target": "time to target s"}


def _unit(row: pd.Series) -> str:
    return " pp" if row["unit"] == "points" else "%"


def number(value: float) -> str:
    """A signed effect: two decimals, or three significant digits where two seeds' t gives +2.6e+06%."""
    return f"{value:+.3g}" if abs(value) >= 1e4 else f"{value:+.2f}"


def confidence(alpha: float) -> str:
    """1 - alpha as a percentage with the digits that tell it from 95%: '99.74%'."""
    return f"{100 * (1 - alpha):.{2 if alpha < ALPHA else 0}f}%"


def shown_interval(row: pd.Series) -> tuple[float, float, str] | None:
    """The interval a row shows and what it is: Holm's level for a tested effect, 95% for one that was not."""
    if row["status"] == TESTED:
        return row["low"], row["high"], f"{confidence(row['alpha'])} (Holm)"
    if row["status"] == NO_SPREAD:
        return row["effect"], row["effect"], "every seed"
    if row["status"] == LOADED and math.isfinite(row["ci_low"]):
        return row["ci_low"], row["ci_high"], "95%, untested"
    return None


def format_effect(row: pd.Series) -> str:
    """'-0.77 pp [-1.02, -0.52]' or '-4.1% [-6.0, -2.2]'; the effect alone with one seed."""
    text = f"{number(row['effect'])}{_unit(row)}"
    interval = shown_interval(row)
    if interval is not None and row["status"] != NO_SPREAD:
        text += f" [{number(interval[0])}, {number(interval[1])}]"
    return text


def choice(row: pd.Series) -> str:
    """'activation: sigmoid vs relu', or 'activation × pool interaction: sigmoid × avg'."""
    if row["kind"] == INTERACTION:
        return f"{row['factor']} interaction: {row['level']}"
    return f"{row['factor']}: {row['level']} vs {row['reference']}"


def cells_text(row: pd.Series) -> str:
    """For an interaction, what comparing its two cells shows: 'sigmoid × avg vs relu × max: -1.19 pp'."""
    if row["kind"] != INTERACTION or not math.isfinite(row["cells"]):
        return ""
    return f"{row['level']} vs {row['reference']}: {number(row['cells'])}{_unit(row)}"


def _seeds(row: pd.Series) -> str:
    needed = row["seeds_needed"]
    if math.isfinite(needed):
        return f"about {int(needed)} seeds would resolve an effect this size"
    return f"an effect this size would need over {SEEDS_NEEDED_CAP} seeds"


def verdict(row: pd.Series) -> str:
    status = row["status"]
    if status == ONE_SEED:
        return "one seed: no interval"
    if status == LOADED:
        return "not tested: timed under load"
    if status == NO_SPREAD:
        return "identical in every pair" if row["effect"] == 0 else "the same difference in every seed"
    if row["distinguishable"]:
        return "distinguishable from zero"
    return f"not distinguishable (Holm, {int(row['family'])} effects); " + _seeds(row)


def short_verdict(row: pd.Series) -> str:
    """The verdict in a table cell: 'yes', 'no: ~26 seeds', 'identical', 'one seed', 'loaded'."""
    status = row["status"]
    if status != TESTED:
        return {ONE_SEED: "one seed", LOADED: "loaded: untested",
                NO_SPREAD: "identical" if row["effect"] == 0 else "same every seed"}[status]
    if row["distinguishable"]:
        return "yes"
    needed = row["seeds_needed"]
    return f"no: ~{int(needed)} seeds" if math.isfinite(needed) else f"no: >{SEEDS_NEEDED_CAP} seeds"


def p_text(value: float) -> str:
    if not math.isfinite(value):
        return ""
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


# ------------------------------------------------------------------ each level's own numbers


def level_rows(levels: pd.DataFrame, group: str) -> tuple[list[dict], str | None]:
    """One row per factor level: seeds, and mean [95% CI] of each metric; timings in the group's main quiet
    condition (returned with the rows)."""
    part = levels[levels["group"] == group]
    timing = part[part["metric"] != METRICS[0].label]
    condition = main_condition(timing["conditions"], timing["n"])
    shown = part[(part["conditions"] == ALL_CONDITIONS) | (part["conditions"] == condition)]
    rows = []
    for (factor, level), cells in shown.groupby(["factor", "level"], sort=False):
        seeds = int(cells["n"].max())
        row = {"factor": factor, "level": level, "seeds": str(seeds)}
        for metric in METRICS:
            found = cells[cells["metric"] == metric.label]
            row[LEVEL_HEADERS[metric.label]] = _mean_ci(found.iloc[0], LEVEL_DIGITS[metric.label], seeds) if len(found) else ""
        rows.append(row)
    return rows, condition


def _mean_ci(row: pd.Series, digits: int, seeds: int) -> str:
    """'98.76 [98.67, 98.85]', with its own count of seeds where it has fewer than the level."""
    text = f"{row['mean']:,.{digits}f}"
    if math.isfinite(row["ci_low"]):
        text += f" [{row['ci_low']:,.{digits}f}, {row['ci_high']:,.{digits}f}]"
    return text + (f" ({int(row['n'])} seed{'s' if row['n'] > 1 else ''})" if row["n"] < seeds else "")


# ------------------------------------------------------------------ effects.md


HEAD = ("# What each design choice does\n\n"
        "Per matrix: each level's own numbers, then its effect against the reference level (the spec's first). "
        "Runs that differ only by the factor are paired by seed; a seed's pairs are averaged over the other factors "
        "and backends (main effects) and the per-seed differences tested against zero (one-sample t-test; Welch's "
        "t-test between levels where no seeds pair). An interaction (a × b) is how much a's effect changes when b "
        "replaces its reference level; the two cells' own difference is beside it. Test accuracy in percentage "
        "points; training img/s and time to target in percent, within one timing condition (never pooled across "
        "hardware, cores, load or executor). Holm's method corrects the p-values across the tested effects of one "
        "metric, and each interval is taken at the level Holm's method tested its effect at (shown beside it), so "
        "it excludes zero exactly when the verdict says distinguishable. Where the correction leaves an effect "
        f"unresolved, the seeds that would resolve one of the observed size ({POWER:.0%} power at that level) come "
        "from the measured seed spread (statsmodels). Timings taken under load, and effects of one seed, are listed "
        "apart, untested.\n\n")


def effects_markdown(analysis: Analysis) -> str:
    text = HEAD + "".join(f"- {note}\n" for note in analysis.notes) + ("\n" if analysis.notes else "")
    table = analysis.effects
    if table.empty:
        return text + "(no factor varies among the completed runs: nothing to compare)\n"
    return text + "\n".join(group_markdown(analysis, str(group)) for group in dict.fromkeys(table["group"]))


def group_markdown(analysis: Analysis, group: str) -> str:
    part = analysis.effects[analysis.effects["group"] == group]
    levels, condition = level_rows(analysis.levels, group)
    text = f"## {group}\n\n"
    if levels:
        timed = f"timings of quiet runs, {condition}" if condition else "no quiet timings"
        text += (f"Each level's own numbers (mean over seeds [95% CI]; {timed}):\n\n"
                 + _markdown(pd.DataFrame(levels)) + "\n")
    tested = part[part["status"].isin([TESTED, NO_SPREAD])]
    if len(tested):
        rows = [{"choice": choice(r), "metric": r["metric"], "conditions": r["conditions"], "seeds": str(int(r["n"])),
                 "effect [interval]": format_effect(r), "interval": shown_interval(r)[2],  # type: ignore[index]
                 "p (Holm)": p_text(r["p_adjusted"]), "verdict": verdict(r), "the cells": cells_text(r)}
                for _, r in tested.iterrows()]
        text += "Effects:\n\n" + _markdown(pd.DataFrame(rows)) + "\n"
    untested = part[~part["status"].isin([TESTED, NO_SPREAD])]
    if len(untested):
        rows = [{"choice": choice(r), "metric": r["metric"], "conditions": r["conditions"], "seeds": str(int(r["n"])),
                 "effect [95% CI]": format_effect(r), "why untested": verdict(r)} for _, r in untested.iterrows()]
        text += "Not tested (timed under load, or one seed):\n\n" + _markdown(pd.DataFrame(rows)) + "\n"
    return text


def _markdown(frame: pd.DataFrame) -> str:
    empty = [c for c in frame.columns if (frame[c].astype(str) == "").all()]
    return frame.drop(columns=empty).to_markdown(index=False, disable_numparse=True) + "\n"


# ------------------------------------------------------------------ a README's sentences


def _what_it_does(row: pd.Series) -> str:
    """The effect as a sentence's predicate: 'costs 0.74 points of test accuracy', 'trains 25.8% slower'."""
    size = abs(row["effect"])
    if row["unit"] == "points":
        return f"{'costs' if row['effect'] < 0 else 'gains'} {size:.2f} points of test accuracy"
    if row["metric"] == METRICS[1].label:
        return f"trains {size:.1f}% {'slower' if row['effect'] < 0 else 'faster'} (img/s)"
    return f"reaches the target {size:.1f}% {'sooner' if row['effect'] < 0 else 'later'}"


def factor_label(factor: str) -> str:
    """A factor as a sentence names it: its spec path without the section (model.activation -> activation,
    layers.drop1.rate -> drop1.rate); levels alone can be ambiguous (batch norm and augmentation are both on/off)."""
    for section in ("model.layers.", "layers.", "model.", "data.", "train."):
        if factor.startswith(section):
            return factor[len(section):]
    return factor


def plain_words(row: pd.Series) -> str:
    """One effect in a sentence: what it does and how sure it is, with the interval the verdict rests on."""
    if row["kind"] == INTERACTION:
        (a, b), reference_b = str(row["level"]).split(" × "), str(row["reference"]).split(" × ")[1]
        subject = f"The {row['factor']} interaction {row['level']} ({a}'s effect with {b} minus with {reference_b})"
        cells = f"; the cells themselves: {cells_text(row)}"
    else:
        subject, cells = f"{factor_label(row['factor'])} {row['level']} instead of {row['reference']}", ""
    low, high, label = shown_interval(row)  # type: ignore[misc]
    unit = " points" if row["unit"] == "points" else "%"
    interval = f"{label.replace(' (Holm)', '')} interval [{number(low)}, {number(high)}]{unit}"
    where = "" if row["conditions"] == ALL_CONDITIONS else f", {row['conditions']}"
    if row["status"] == NO_SPREAD:
        return f"{subject} {_what_it_does(row)} in every one of {int(row['n'])} seeds{where}{cells}."
    if row["distinguishable"]:
        return (f"{subject} {_what_it_does(row)}, {interval} ({int(row['n'])} seeds{where}, Holm p "
                f"{p_text(row['p_adjusted'])}){cells}.")
    return (f"{subject}: {row['metric']} not distinguishable from zero at {int(row['n'])} seeds{where} "
            f"({number(row['effect'])}{unit}, {interval}); "
            f"{_seeds(row)}{cells}.")


README_BEGIN = ("<!-- effects:begin: generated by `python -m lenet_bench effects results/reference --readme-section {group}` -->")
README_END = "<!-- effects:end -->"


def readme_section(analysis: Analysis, group: str) -> str:
    """A matrix's effects in plain words, between markers, for a README: each level's own numbers, the tested
    effects (timings in the quiet condition with the most seeds), and a summary of what the numbers resolve."""
    table = analysis.effects
    rows = table[(table["group"] == group) & table["status"].isin([TESTED, NO_SPREAD])]
    levels, condition = level_rows(analysis.levels, group)
    lines = [README_BEGIN.format(group=group), "", summary(rows, condition)]
    if levels:
        lines += ["", f"Each level's own numbers (mean over seeds [95% CI]; timings: {condition or 'none quiet'}):",
                  "", _markdown(pd.DataFrame(levels)).rstrip()]
    for metric in METRICS:
        part = rows[rows["metric"] == metric.label]
        if metric.timing:
            part = part[part["conditions"] == condition]
        if part.empty:
            continue
        family = int(part["family"].max()) if part["family"].notna().any() else 0
        lines.append(f"\n**{metric.label.capitalize()}** (Holm's correction across the {family} tested effects on it "
                     "in the results folder):\n")
        lines += [f"- {plain_words(row)}" for _, row in part.iterrows()]
    untested = table[(table["group"] == group) & ~table["status"].isin([TESTED, NO_SPREAD])]
    if len(untested):
        lines.append(f"\n{len(untested)} more effects are in effects.md, untested: "
                     + counted(untested["status"]) + ".")
    lines.append(README_END)
    return "\n".join(lines)


def summary(rows: pd.DataFrame, condition: str | None) -> str:
    """What the tested effects resolve, in two sentences computed from them."""
    shown = rows[(rows["conditions"] == ALL_CONDITIONS) | (rows["conditions"] == condition)]
    resolved = shown[shown["distinguishable"]]
    unresolved = shown[~shown["distinguishable"] & (shown["status"] == TESTED)]

    def name(r: pd.Series) -> str:
        what = (f"the {r['level']} interaction" if r["kind"] == INTERACTION
                else f"{factor_label(r['factor'])} {r['level']} instead of {r['reference']}")
        return f"{what} ({r['metric']} {number(r['effect'])}{_unit(r)})"

    text = ("Resolved at these seeds: " + "; ".join(name(r) for _, r in resolved.iterrows()) + "." if len(resolved)
            else "No effect is resolved at these seeds.")
    main = unresolved[unresolved["kind"] != INTERACTION]
    if len(unresolved):
        text += (f" Not resolved: {len(unresolved)} effects, " + (f"{len(unresolved) - len(main)} of them interactions"
                 + (", and " if len(main) else "") if len(main) < len(unresolved) else "")
                 + "; ".join(name(r) for _, r in main.iterrows()) + ".")
    return text


def counted(statuses: pd.Series) -> str:
    words = {LOADED: "timed under load", ONE_SEED: "of one seed"}
    return ", ".join(f"{count} {words.get(str(status), status)}" for status, count in statuses.value_counts().items())


def section_groups(analysis: Analysis) -> Sequence[str]:
    return list(dict.fromkeys(analysis.effects["group"]))
