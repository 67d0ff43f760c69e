"""Published vs measured: one row per setup that is a published one, per backend and device.

Reads the columns of results/runs.csv. A matrix's cells all carry their spec's `reference`, but
none of them is the published setup (a matrix varies it): they are compared with each other
(effects.md), not with the published number. A matrix whose levels set their own published
numbers (a reference that differs between cells) keeps them. A measured mean that misses the published number by
more than `NOTABLE_GAP_PP` percentage points is flagged, so the reader knows to look for the
explanation next to it (for the project's own runs, results/reference/README.md).
"""

from __future__ import annotations

import math

import pandas as pd

from lenet_bench.results.stats import aggregate, format_mean_ci, usable_runs

NOTABLE_GAP_PP = 0.3  # percentage points; the threshold for "explain the difference"
REPRODUCTION_MD = "reproduction.md"
# The setups of paper1998/lecun1998*.yaml: LeNet-5 as published in 1998 and the paper's comparison rows,
# shown again in a section of their own, as test errors (the paper's unit) with their deviations.
LECUN_1998_PREFIX = "lecun1998"
_METRICS = ("test_accuracy", "baseline_accuracy")


def reproduction_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (spec, backend, device) with a published accuracy: n, mean ± CI, gap in pp, baseline, params, time."""
    usable = usable_runs(runs)
    if usable.empty or "reference_accuracy" not in usable:
        return pd.DataFrame()
    usable = usable[pd.to_numeric(usable["reference_accuracy"], errors="coerce").notna()]
    if "overrides" in usable:  # a run the command line changed reproduces nothing published
        usable = usable[usable["overrides"].fillna("").astype(str) == ""]
    usable = usable[~_inherited_reference(usable)]
    if usable.empty:
        return pd.DataFrame()
    by = ["spec", "backend", "device"]
    table = aggregate(usable, by=by, metrics=[m for m in _METRICS if m in usable])
    kept = [c for c in ("reference_accuracy", "params", "epochs", "reference_notes") if c in usable]
    constants = usable.groupby(by)[kept].first().reset_index()
    table = table.merge(constants, on=by)
    table["gap_pp"] = 100 * (table["test_accuracy_mean"] - table["reference_accuracy"])
    table["notable"] = table["gap_pp"].abs() > NOTABLE_GAP_PP
    return table.sort_values(by, kind="stable").reset_index(drop=True)


def _inherited_reference(runs: pd.DataFrame) -> pd.Series:
    """Rows of matrix cells whose published number is the whole matrix's, not the cell's own."""
    if "base_spec" not in runs:
        return pd.Series(False, index=runs.index)
    base = runs["base_spec"].fillna("").astype(str)
    in_matrix = (base != "") & (base != runs["spec"].astype(str))
    references = pd.to_numeric(runs["reference_accuracy"], errors="coerce")
    distinct = references.groupby(base).transform("nunique")
    return in_matrix & (distinct == 1)


def reproduction_markdown(table: pd.DataFrame) -> str:
    if table.empty:
        return "# Published vs measured\n\n(no completed run of a spec with a reference accuracy)\n"
    rows = []
    for _, r in table.iterrows():
        gap = f"{r['gap_pp']:+.2f}" + (" (!)" if r["notable"] else "")
        rows.append({
            "setup": r["spec"], "backend": f"{r['backend']}/{r['device']}", "n": int(r["test_accuracy_n"]),
            "params": f"{int(r['params']):,}" if pd.notna(r["params"]) else "",
            "epochs": int(r["epochs"]) if pd.notna(r["epochs"]) else "",
            "published %": f"{100 * r['reference_accuracy']:.2f}",
            "measured %": format_mean_ci(100 * r["test_accuracy_mean"], 100 * r["test_accuracy_ci_low"],
                                         100 * r["test_accuracy_ci_high"], digits=2),
            "gap pp": gap,
            "baseline %": format_mean_ci(100 * r.get("baseline_accuracy_mean", math.nan), math.nan, math.nan, digits=2),
        })
    return ("# Published vs measured\n\nTest accuracy in percent, mean ± half-width of the 95% Student-t CI over n seeds "
            "(the mean alone when n = 1). `gap pp`: measured mean minus published, in percentage points; "
            f"(!) marks a gap larger than {NOTABLE_GAP_PP} pp: a difference to explain (the project's own are in "
            "results/reference/README.md). Matrix cells are not published setups: their comparison is effects.md. "
            "`baseline`: the logistic-regression baseline on the same split.\n\n"
            + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n"
            + lecun_1998_markdown(table))


def lecun_1998_markdown(table: pd.DataFrame) -> str:
    """The LeCun et al. (1998) section: test error published vs measured, and each setup's deviations."""
    rows = table[table["spec"].astype(str).str.startswith(LECUN_1998_PREFIX)] if not table.empty else table
    if rows.empty:
        return ""
    lines: list[dict[str, object]] = []
    notes: dict[str, str] = {}
    for _, r in rows.iterrows():
        published = 100 * (1 - r["reference_accuracy"])
        measured = 100 * (1 - r["test_accuracy_mean"])
        low, high = r["test_accuracy_ci_low"], r["test_accuracy_ci_high"]
        lines.append({
            "setup": r["spec"], "backend": f"{r['backend']}/{r['device']}", "n": int(r["test_accuracy_n"]),
            "params": f"{int(r['params']):,}" if pd.notna(r["params"]) else "",
            "published error %": f"{published:.2f}",
            # The accuracy's interval, mirrored: error = 100 (1 - accuracy).
            "measured error %": format_mean_ci(measured, 100 * (1 - high), 100 * (1 - low), digits=2),
            "gap pp": f"{measured - published:+.2f}",
        })
        note = r.get("reference_notes")
        if isinstance(note, str) and note:
            notes.setdefault(r["spec"], note)
    text = ("\n## LeCun et al. 1998\n\nLeNet-5 as published in 1998 (LeCun, Bottou, Bengio and Haffner, "
            "Gradient-based learning applied to document recognition) and the paper's comparison rows, as test "
            "errors. `gap pp`: measured error minus published error, in percentage points (positive: worse "
            "than published).\n\n" + pd.DataFrame(lines).to_markdown(index=False, disable_numparse=True) + "\n")
    if notes:
        text += "\nHow each setup differs from the paper:\n\n" + "".join(f"- `{spec}`: {note}\n" for spec, note in notes.items())
    return text
