"""Comparisons of results rows: mean ± 95% CI over seeds per group, as a table and Markdown (their figures: figures.py).

Rows are grouped by setup (the variant, with any command-line overrides), backend, device
and the conditions their timings were taken under (hardware class and cores, whether other work
ran on the run's cores, and the executor), so a mean never mixes a run on other hardware, under
load, or beside other workers with this machine's quiet inline numbers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from lenet_bench.results.identity import setup_name
from lenet_bench.results.stats import aggregate, format_mean_ci, usable_runs

DEFAULT_GROUPING = ("setup", "backend", "device", "conditions")
COMPARED_METRICS = ("test_accuracy", "delta_to_baseline", "train_seconds", "train_images_per_sec")
GROUPING_COLUMNS = ("setup", "spec", "overrides", "backend", "device", "seed", "architecture", "activation", "pooling",
                    "padding", "input_size", "optimizer", "dataset", "framework_version", "hardware", "timing",
                    "conditions", "executor")


def with_groups(df: pd.DataFrame) -> pd.DataFrame:
    """The table with its derived grouping columns: setup (spec@overrides) and conditions (hardware and cores,
    load, executor): the one definition that compare, effects and time to train group timings by."""
    df = df.copy()
    if df.empty:
        return df.assign(setup=pd.Series(dtype=str), conditions=pd.Series(dtype=str))
    overrides = df["overrides"].fillna("").astype(str) if "overrides" in df else pd.Series("", index=df.index)
    df["setup"] = [setup_name(spec, override) for spec, override in zip(df["spec"].astype(str), overrides, strict=True)]
    hardware = df["hardware"].fillna("").astype(str) if "hardware" in df else pd.Series("", index=df.index)
    loaded = (df["timing"] == "loaded") if "timing" in df else pd.Series(False, index=df.index)
    executor = df["executor"].fillna("").astype(str) if "executor" in df else pd.Series("", index=df.index)
    df["conditions"] = (hardware.where(hardware != "", "unrecorded")
                        + loaded.map(lambda busy: ", loaded" if busy else "")
                        + executor.map(lambda name: f", {name}" if name else ""))
    return df


def split_superseded(df: pd.DataFrame, variants: Sequence | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows of current variants, rows of a matrix's variants that its spec no longer has).

    Without the specs every row is current: only a spec can say a variant is gone.
    """
    if variants is None or df.empty or "base_spec" not in df:
        return df, df.iloc[0:0]
    gone = superseded(df, variants)
    return df[~gone], df[gone]


def superseded(df: pd.DataFrame, variants: Sequence) -> pd.Series:
    """Which rows are of a matrix's variant that its spec no longer has (the matrix is in the specs; the
    variant is not): the one rule compare and effects leave such rows out by."""
    names = {v.name for v in variants}
    matrices = {v.base_name for v in variants if v.labels}
    return df["base_spec"].astype(str).isin(matrices) & ~df["spec"].astype(str).isin(names)


def compare_table(df: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUPING) -> pd.DataFrame:
    """One row per group: n runs, params, mean/std/95% CI of the compared metrics; best mean test accuracy first.

    Rows without numbers (skipped, failed, killed) are left out.
    """
    by = list(by)
    df = usable_runs(with_groups(df))
    table = aggregate(df, by=by, metrics=COMPARED_METRICS)
    table.insert(len(by), "n", table["test_accuracy_n"].astype(int))
    if "params" in df and "params" not in by and not table.empty:
        params = df.groupby(by, dropna=False)["params"].agg(_constant_or_nan).reset_index()
        table = table.merge(params, on=by, how="left")
    return table.sort_values("test_accuracy_mean", ascending=False, kind="stable").reset_index(drop=True)


def _constant_or_nan(values: pd.Series) -> float:
    """The parameter count of a group when it has one (a variant); NaN when it mixes variants."""
    distinct = pd.to_numeric(values, errors="coerce").dropna().unique()
    return distinct[0] if len(distinct) == 1 else float("nan")


def cells(row: pd.Series) -> dict[str, str]:
    """Accuracy as a percentage and its gap to the baseline in points, as `run` prints them."""
    def ci(metric: str, digits: int, scale: float = 1.0) -> str:
        return format_mean_ci(scale * row[f"{metric}_mean"], scale * row[f"{metric}_ci_low"],
                              scale * row[f"{metric}_ci_high"], digits)

    return {"test accuracy %": ci("test_accuracy", 2, 100), "Δ baseline pp": ci("delta_to_baseline", 2, 100),
            "train s": ci("train_seconds", 1), "train img/s": ci("train_images_per_sec", 0)}


def compare_markdown(table: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUPING,
                     superseded: pd.DataFrame | None = None) -> str:
    """The comparison as Markdown, for results/compare.md and the invocation's run in MLflow; rows of variants
    that their spec no longer has in a section of their own."""
    text = _markdown_rows(table, by) or "(no completed runs)"
    if superseded is not None and not superseded.empty:
        text += ("\n\n## Variants no longer in the specs\n\nRuns of matrix cells that the current specs do not "
                 "have (renamed or replaced); kept for the record, left out of the table above and of the "
                 "effects.\n\n" + _markdown_rows(superseded, by))
    return ("# lenet_bench comparison\n\nMean ± half-width of the 95% Student-t confidence interval over the n runs "
            "(seeds) of each group; the mean alone when n = 1. Best mean test accuracy first. `setup`: the spec, "
            "with `@overrides` when the command line changed it; `conditions`: the hardware the timings were taken "
            "on, `loaded` when other work ran on the run's cores, and the executor (timings of different conditions are never "
            "averaged together).\n\n" + text + "\n")


def _markdown_rows(table: pd.DataFrame, by: Sequence[str]) -> str:
    rows = []
    for _, row in table.iterrows():
        params = {"params": f"{int(row['params']):,}" if pd.notna(row["params"]) else ""} if "params" in table else {}
        rows.append({**{name: row[name] for name in by}, "n": row["n"], **params, **cells(row)})
    return pd.DataFrame(rows).to_markdown(index=False) if rows else ""


def aggregate_metrics(df: pd.DataFrame, by: Sequence[str] = ("setup", "backend", "device")) -> dict[str, float]:
    """Flat metrics for the invocation's run: '<setup>/<backend>/<device>/test_accuracy_mean' etc."""
    usable = usable_runs(with_groups(df))
    metrics: dict[str, float] = {}
    for _, row in aggregate(usable, by=list(by), metrics=("test_accuracy", "delta_to_baseline")).iterrows():
        group = "/".join(str(row[name]) for name in by)
        for metric in ("test_accuracy", "delta_to_baseline"):
            for stat in ("mean", "std", "ci_low", "ci_high", "n"):
                value = row[f"{metric}_{stat}"]
                if pd.notna(value):
                    metrics[_metric_key(f"{group}/{metric}_{stat}")] = float(value)
    return metrics


def _metric_key(name: str) -> str:
    # MLflow metric names take letters, digits, _ - . / and spaces; '@', ',' and '=' of overrides do not pass.
    return re.sub(r"[^A-Za-z0-9_\-./ ]", "_", name)


# ------------------------------------------------------------------ figures

def safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "unnamed"
