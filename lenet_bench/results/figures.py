"""Figures of one run and of a comparison of runs, as matplotlib `Figure` objects.

Figures are built with `matplotlib.figure.Figure` directly rather than `pyplot`: no global
figure registry to leak memory in a long matrix, no GUI backend, nothing ever shown.
Saving picks the Agg renderer (`fig.savefig("x.png")`), and MLflow's `log_figure` takes
the object as it is.

Comparison figures take a DataFrame with the columns of results/runs.csv and the derived `setup`
(see compare.with_groups); several seeds of a (setup, backend, device) become one point or bar
with a 95% CI.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lenet_bench.results.stats import aggregate, usable_runs
from lenet_bench.training.result import EpochRecord

_MARKERS = {"torch": "o", "keras": "s", "keras-jax": "D"}
_OTHER_MARKERS = ("^", "D", "v", "P", "X")
_LOG_SCALE_RATIO = 10  # a spread wider than this reads better on a log axis
_FRACTIONS = {"test_accuracy"}  # quantities bounded by 1; all compared quantities are >= 0

History = Sequence[EpochRecord]


# ------------------------------------------------------------------ one run

def learning_curves(history: History | Mapping[str, History], title: str) -> Figure:
    """Accuracy (left) and loss (right) per epoch: training dashed, validation solid.

    `history` is one run's records, or {label: records} to overlay several runs
    (e.g. every backend and seed of a variant), one colour per run.
    """
    runs = dict(history) if isinstance(history, Mapping) else {"": list(history)}
    fig = Figure(figsize=(10, 4), layout="constrained")
    accuracy_ax, loss_ax = fig.subplots(1, 2)
    for index, (label, records) in enumerate(runs.items()):
        color = f"C{index % 10}"
        prefix = f"{label} " if label else ""
        for ax, quantity in ((accuracy_ax, "accuracy"), (loss_ax, "loss")):
            _plot_series(ax, records, f"train_{quantity}", color, "--", f"{prefix}train")
            _plot_series(ax, records, f"val_{quantity}", color, "-", f"{prefix}validation")
    for ax, quantity in ((accuracy_ax, "accuracy"), (loss_ax, "loss")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(quantity)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize="small")
    fig.suptitle(title)
    return fig


def _plot_series(ax: Axes, records: History, field: str, color: str, style: str, label: str) -> None:
    points = [(r.epoch, getattr(r, field)) for r in records if getattr(r, field) is not None]
    if points:
        epochs, values = zip(*points, strict=True)
        ax.plot(epochs, values, style, color=color, marker=".", label=label)


def confusion_matrix(matrix: Sequence[Sequence[int]], title: str) -> Figure:
    """Counts annotated in each cell; colour is the row share, so rare classes show their errors too."""
    counts = np.asarray(matrix, dtype=int)
    classes = counts.shape[0]
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    fig = Figure(figsize=(6, 5.5), layout="constrained")
    ax = fig.subplots()
    ax.imshow(row_share, cmap="Blues", vmin=0, vmax=1)
    for true in range(classes):
        for predicted in range(classes):
            dark = row_share[true, predicted] > 0.5
            ax.text(predicted, true, str(counts[true, predicted]), ha="center", va="center", fontsize=7,
                    color="white" if dark else "black")
    ax.set_xticks(range(classes))
    ax.set_yticks(range(classes))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title} (accuracy {accuracy:.4f})")
    return fig


# ------------------------------------------------------------------ many runs

def accuracy_vs_params(df: pd.DataFrame) -> Figure:
    """Mean test accuracy (95% CI over seeds) against parameter count, one marker per backend."""
    return _accuracy_scatter(df, "params", "parameters", "Test accuracy vs model size", x_error=False)


def accuracy_vs_time(df: pd.DataFrame) -> Figure:
    """Mean test accuracy against training seconds, both with a 95% CI over seeds."""
    return _accuracy_scatter(df, "train_seconds", "training time (s)", "Test accuracy vs training time", x_error=True)


def backend_comparison(df: pd.DataFrame) -> Figure:
    """Per variant, one bar per backend: mean test accuracy (95% CI) and training images per second."""
    runs = usable_runs(df)
    if runs.empty:
        return _empty_figure("Backend comparison", "no completed runs")
    table = aggregate(runs, by=["setup", "series"], metrics=["test_accuracy", "train_images_per_sec"])
    specs = list(table.groupby("setup")["test_accuracy_mean"].max().sort_values(ascending=False).index)
    series = sorted(table["series"].unique())
    fig = Figure(figsize=(max(7.0, 1.3 * len(specs) + 3), 7), layout="constrained")
    accuracy_ax, speed_ax = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(series)
    for index, name in enumerate(series):
        rows = table[table["series"] == name].set_index("setup")
        present = [s for s in specs if s in rows.index]
        positions = np.array([specs.index(s) for s in present]) + (index - (len(series) - 1) / 2) * width
        rows = rows.loc[present]
        color = f"C{index % 10}"
        accuracy_ax.bar(positions, rows["test_accuracy_mean"], width, yerr=_error_bars(rows, "test_accuracy"),
                        capsize=3, color=color, label=name)
        speed_ax.bar(positions, rows["train_images_per_sec_mean"], width,
                     yerr=_error_bars(rows, "train_images_per_sec"), capsize=3, color=color, label=name)
    _zoom_accuracy_axis(accuracy_ax, table)
    accuracy_ax.set_ylabel("test accuracy")
    accuracy_ax.set_title("Test accuracy (mean, 95% CI over seeds)")
    speed_ax.set_ylabel("training images / s")
    speed_ax.set_title("Training throughput (steady state)")
    speed_ax.set_xticks(range(len(specs)))
    speed_ax.set_xticklabels(specs, rotation=20 if len(specs) > 3 else 0, ha="right" if len(specs) > 3 else "center")
    for ax in (accuracy_ax, speed_ax):
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize="small")
    fig.suptitle("Backends per variant")
    return fig


def _accuracy_scatter(df: pd.DataFrame, x: str, x_label: str, title: str, *, x_error: bool) -> Figure:
    runs = usable_runs(df)
    if runs.empty or x not in runs:
        return _empty_figure(title, "no completed runs")
    table = aggregate(runs, by=["setup", "series"], metrics=["test_accuracy", x])
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.subplots()
    for index, name in enumerate(sorted(table["series"].unique())):
        rows = table[table["series"] == name]
        ax.errorbar(rows[f"{x}_mean"], rows["test_accuracy_mean"], yerr=_error_bars(rows, "test_accuracy"),
                    xerr=_error_bars(rows, x) if x_error else None, fmt=_marker(name, index), color=f"C{index % 10}",
                    capsize=3, markersize=7, linestyle="none", label=name)
        for _, row in rows.iterrows():
            ax.annotate(row["setup"], (row[f"{x}_mean"], row["test_accuracy_mean"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=7)
    if "baseline_accuracy" in runs and runs["baseline_accuracy"].notna().any():
        ax.axhline(runs["baseline_accuracy"].mean(), color="grey", linestyle=":", label="logistic regression baseline")
    values = table[f"{x}_mean"].dropna()
    if len(values) and values.min() > 0 and values.max() / values.min() > _LOG_SCALE_RATIO:
        ax.set_xscale("log")
    ax.set_xlabel(x_label)
    ax.set_ylabel("test accuracy")
    ax.set_title(f"{title} (mean, 95% CI over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return fig


def _half_width(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """Half the 95% interval; zero where one seed gives no interval (the point still shows)."""
    half = (rows[f"{metric}_ci_high"] - rows[f"{metric}_ci_low"]).to_numpy(dtype=float) / 2
    return np.nan_to_num(half, nan=0.0)


def _error_bars(rows: pd.DataFrame, metric: str) -> np.ndarray:
    """(below, above) lengths of the 95% interval, cut at what the quantity can be.

    With two seeds t(0.975, 1) = 12.7, so an interval of seconds or images/s can reach
    below zero, and one of accuracy above 1; drawing that would be drawing the impossible.
    """
    mean = rows[f"{metric}_mean"].to_numpy(dtype=float)
    half = _half_width(rows, metric)
    low = np.maximum(mean - half, 0.0)
    high = np.minimum(mean + half, 1.0) if metric in _FRACTIONS else mean + half
    return np.vstack([mean - low, high - mean])


def _zoom_accuracy_axis(ax: Axes, table: pd.DataFrame) -> None:
    """Accuracies of LeNets differ in the third decimal; bars from zero would hide that."""
    low = (table["test_accuracy_mean"] - _half_width(table, "test_accuracy")).min()
    if np.isfinite(low) and low > 0.5:
        ax.set_ylim(max(0.0, low - (1 - low) * 0.5), 1.0)


def _marker(series: str, index: int) -> str:
    return _MARKERS.get(series.split("/")[0], _OTHER_MARKERS[index % len(_OTHER_MARKERS)])


def _empty_figure(title: str, message: str) -> Figure:
    fig = Figure(figsize=(6, 3), layout="constrained")
    ax = fig.subplots()
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()
    ax.set_title(title)
    return fig


# ------------------------------------------------------------------ effects

def effects_forest(table: pd.DataFrame) -> Figure:
    """Every effect (results.effects) as a point with its 95% interval, one panel per metric, grouped by
    matrix and factor, zero marked. Filled: distinguishable from zero after Holm's correction; hollow: not;
    a point without a bar: one seed."""
    if table.empty:
        return _empty_figure("Effects of design choices", "no factor varies among the completed runs")
    panels = list(dict.fromkeys(table["metric"]))
    heights = [max(1.5, 0.28 * int((table["metric"] == m).sum()) + 0.8) for m in panels]
    fig = Figure(figsize=(11, sum(heights) + 0.8), layout="constrained")
    axes = fig.subplots(len(panels), 1, squeeze=False, gridspec_kw={"height_ratios": heights})[:, 0]
    for ax, metric in zip(axes, panels, strict=True):
        rows = table[table["metric"] == metric].reset_index(drop=True)
        positions = np.arange(len(rows))[::-1]
        # Two seeds give t(0.975, 1) = 12.7 and intervals of thousands of percent: cut them at a width the
        # point estimates can be read beside, and mark the cut end with an arrow.
        reach = 2.5 * float(np.nanmax(np.abs(rows["effect"]))) if rows["effect"].notna().any() else 1.0
        reach = max(reach, float(np.nanmedian(np.abs(rows[["ci_low", "ci_high"]].to_numpy()))) if len(rows) else 1.0)
        colours = {key: f"C{i % 10}" for i, key in enumerate(dict.fromkeys(rows["group"] + "/" + rows["factor"]))}
        for y, (_, row) in zip(positions, rows.iterrows(), strict=True):
            colour = colours[row["group"] + "/" + row["factor"]]
            low, high = row["ci_low"], row["ci_high"]
            if np.isfinite(low) and np.isfinite(high):
                ax.plot([max(low, -reach), min(high, reach)], [y, y], color=colour, linewidth=1.5)
                for end, arrow in ((low, "<"), (high, ">")):
                    if abs(end) > reach:
                        ax.plot(np.sign(end) * reach, y, arrow, color=colour, markersize=5)
            ax.plot(row["effect"], y, "o", color=colour, markersize=5,
                    markerfacecolor=colour if row["distinguishable"] else "white")
        labels = [f"{r.group}: {r.factor} {r.level} vs {r.reference}"
                  + ("" if r.conditions == "any" else f" [{r.conditions}]") for r in rows.itertuples()]
        ax.set_yticks(positions)
        ax.set_yticklabels(labels, fontsize=7)
        ax.axvline(0, color="black", linewidth=0.8)
        unit = rows["unit"].iloc[0]
        ax.set_xlabel(f"effect on {metric} ({'percentage points' if unit == 'points' else '% change'})")
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-0.7, len(rows) - 0.3)
    fig.suptitle("Effects of design choices (95% CI over seeds; filled: distinguishable from zero, Holm)")
    return fig
