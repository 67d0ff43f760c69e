"""Published vs measured: one row per setup that carries a `reference`, per backend and device.

Reads the columns of results/runs.csv. A measured mean that misses the published number by
more than `NOTABLE_GAP_PP` percentage points is flagged, so the reader knows to look for the
explanation next to it (results/README.md).
"""

from __future__ import annotations

import math

import pandas as pd

from lenet_bench.results.stats import aggregate, format_mean_ci, usable_runs

NOTABLE_GAP_PP = 0.3  # percentage points; the threshold for "explain the difference"
REPRODUCTION_MD = "reproduction.md"
_METRICS = ("test_accuracy", "baseline_accuracy")


def reproduction_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per (spec, backend, device) with a published accuracy: n, mean ± CI, gap in pp, baseline, params, time."""
    usable = usable_runs(runs)
    if usable.empty or "reference_accuracy" not in usable:
        return pd.DataFrame()
    usable = usable[pd.to_numeric(usable["reference_accuracy"], errors="coerce").notna()]
    if "overrides" in usable:  # a run the command line changed reproduces nothing published
        usable = usable[usable["overrides"].fillna("").astype(str) == ""]
    if usable.empty:
        return pd.DataFrame()
    by = ["spec", "backend", "device"]
    table = aggregate(usable, by=by, metrics=[m for m in _METRICS if m in usable])
    constants = usable.groupby(by)[["reference_accuracy", "params", "epochs"]].first().reset_index()
    table = table.merge(constants, on=by)
    table["gap_pp"] = 100 * (table["test_accuracy_mean"] - table["reference_accuracy"])
    table["notable"] = table["gap_pp"].abs() > NOTABLE_GAP_PP
    return table.sort_values(by, kind="stable").reset_index(drop=True)


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
            "published": f"{r['reference_accuracy']:.4f}",
            "measured": format_mean_ci(r["test_accuracy_mean"], r["test_accuracy_ci_low"], r["test_accuracy_ci_high"]),
            "gap pp": gap,
            "baseline": format_mean_ci(r.get("baseline_accuracy_mean", math.nan), math.nan, math.nan),
        })
    return ("# Published vs measured\n\nTest accuracy, mean ± half-width of the 95% Student-t CI over n seeds "
            "(the mean alone when n = 1). `gap pp`: measured mean minus published, in percentage points; "
            f"(!) marks a gap larger than {NOTABLE_GAP_PP} pp, explained in results/README.md. "
            "`baseline`: the logistic-regression baseline on the same split.\n\n"
            + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n")
