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
from matplotlib.lines import Line2D
from matplotlib.ticker import MaxNLocator

from lenet_bench.results.compare import safe_file_name, with_groups
from lenet_bench.results.effects import INTERACTION, METRICS, RUN_FACTORS, cell_table, main_condition
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

_EFFECT_ROW_INCHES = 0.34  # one effect per row, with 10-point labels, readable at 100% zoom
_SHOWN = ("tested", "no spread")  # timings under load and effects of one seed stay in effects.md


def effects_figures(analysis) -> dict[str, Figure]:
    """effects_<matrix>.png for every matrix with axes of its own (a panel per metric, and the interaction plot of
    its largest accuracy interaction) and effects_backends.png for the backend and device comparisons."""
    table = analysis.effects
    shown = table[table["status"].isin(_SHOWN)]
    figures = {}
    for group in dict.fromkeys(shown["group"]):
        own = shown[(shown["group"] == group) & ~shown["factor"].isin(RUN_FACTORS)]
        if len(own):
            figures[f"effects_{safe_file_name(str(group))}.png"] = matrix_effects(analysis, str(group))
    if shown["factor"].isin(RUN_FACTORS).any():
        figures["effects_backends.png"] = backend_effects(analysis)
    if not figures:
        figures["effects_backends.png"] = _empty_figure("Effects of design choices",
                                                        "no effect with two or more seeds among the completed runs")
    return figures


def matrix_effects(analysis, group: str) -> Figure:
    """One matrix: the effect of each level against its reference on accuracy, speed and time to target (interval
    at Holm's level; filled: distinguishable), and the cell means of its largest accuracy interaction."""
    table = analysis.effects
    rows = table[(table["group"] == group) & table["status"].isin(_SHOWN) & ~table["factor"].isin(RUN_FACTORS)]
    timing = analysis.levels[(analysis.levels["group"] == group) & (analysis.levels["metric"] != METRICS[0].label)]
    condition = main_condition(timing["conditions"], timing["n"])
    factors = list(dict.fromkeys(rows.loc[rows["kind"] != INTERACTION, "factor"]))
    colours = {name: f"C{index}" for index, name in enumerate(factors)} | {"interaction": "dimgray"}
    panels = [rows[(rows["metric"] == m.label) & ((rows["conditions"] == condition) | ~pd.Series(m.timing, rows.index))]
              for m in METRICS]
    height = max(4.0, _EFFECT_ROW_INCHES * max(len(p) for p in panels) + 1.6)
    fig = Figure(figsize=(14, 2 * height), layout="constrained")
    axes = fig.subplots(2, 2).ravel()
    for ax, metric, part in zip(axes, METRICS, panels, strict=False):
        title = metric.label + ("" if not metric.timing else f"\n{condition}" if condition else "")
        _effect_panel(ax, part, colours, title)
    _interaction_panel(axes[3], analysis, group, rows)
    handles = [Line2D([], [], color=colour, marker="o", linestyle="-", label=name) for name, colour in colours.items()
               if name in factors or (name == "interaction" and (rows["kind"] == INTERACTION).any())]
    handles += [Line2D([], [], color="black", marker="o", linestyle="none", label="distinguishable (Holm)"),
                Line2D([], [], color="black", marker="o", markerfacecolor="white", linestyle="none",
                       label="not distinguishable")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=10)
    fig.suptitle(f"{group}: what each choice does against the reference level (interval at Holm's level)",
                 fontsize=13)
    return fig


def backend_effects(analysis) -> Figure:
    """Backends and devices against the reference (torch, cpu) in every group: one row per group and level, a
    panel per metric side by side; timings in each group's quiet condition with the most seeds."""
    table = analysis.effects
    rows = table[table["status"].isin(_SHOWN) & table["factor"].isin(RUN_FACTORS)]
    timing = analysis.levels[analysis.levels["metric"] != METRICS[0].label]
    conditions = {group: main_condition(part["conditions"], part["n"]) for group, part in timing.groupby("group")}
    rows = rows[(rows["conditions"] == "any") | (rows["conditions"] == rows["group"].map(conditions))]
    keys = list(dict.fromkeys(zip(rows["group"], rows["level"], rows["reference"], strict=True)))
    levels = list(dict.fromkeys(rows["level"]))
    colours = {level: f"C{index % 10}" for index, level in enumerate(levels)}
    fig = Figure(figsize=(15, max(3.5, _EFFECT_ROW_INCHES * len(keys) + 2.0)), layout="constrained")
    axes = fig.subplots(1, len(METRICS), sharey=True)
    for ax, metric in zip(axes, METRICS, strict=True):
        part = rows[rows["metric"] == metric.label].set_index(["group", "level", "reference"])
        full = part.reindex(pd.MultiIndex.from_tuples(keys, names=["group", "level", "reference"])).reset_index()
        _effect_panel(ax, full, colours, metric.label + (" (quiet runs)" if metric.timing else ""), colour_by="level",
                      label=lambda r: f"{r['group']}: {r['level']} vs {r['reference']}")
    handles = [Line2D([], [], color=c, marker="o", label=f"{level} vs reference") for level, c in colours.items()]
    handles += [Line2D([], [], color="black", marker="o", linestyle="none", label="distinguishable (Holm)"),
                Line2D([], [], color="black", marker="o", markerfacecolor="white", linestyle="none",
                       label="not distinguishable")]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=10)
    fig.suptitle("Backends and devices against torch on cpu, per spec (interval at Holm's level)", fontsize=13)
    return fig


def _effect_label(row: pd.Series) -> str:
    if row["kind"] == "interaction":
        return f"{row['level']} (interaction)"
    return f"{row['level']} vs {row['reference']}"


def _effect_panel(ax: Axes, rows: pd.DataFrame, colours: dict[str, str], title: str, *, colour_by: str = "factor",
                  label=_effect_label) -> None:
    """Each effect a point with its interval; intervals that two seeds make thousands of percent wide are cut at
    a width the points can be read beside, their cut ends drawn as arrows."""
    unit = "percentage points" if (rows["unit"] == "points").all() else "% change"
    ax.set_title(title, fontsize=11)
    ax.axvline(0, color="black", linewidth=0.8)
    if not rows["effect"].notna().any():
        ax.text(0.5, 0.5, "no tested effect", ha="center", va="center", transform=ax.transAxes, fontsize=10)
        ax.set_yticks([])
        return
    rows = rows.reset_index(drop=True)
    positions = np.arange(len(rows))[::-1]
    effects = np.abs(rows["effect"].to_numpy(dtype=float))
    reach = max(2.5 * float(np.max(effects, initial=0.0, where=np.isfinite(effects))), 1e-9)
    for y, (_, row) in zip(positions, rows.iterrows(), strict=True):
        if not np.isfinite(row["effect"]):
            continue  # this comparison has no tested effect on this metric (a shared row of another panel)
        key = "interaction" if row["kind"] == "interaction" and colour_by == "factor" else str(row[colour_by])
        colour = colours.get(key, "black")
        low, high = float(row["low"]), float(row["high"])
        distinguishable = bool(row["distinguishable"]) if isinstance(row["distinguishable"], (bool, np.bool_)) else False
        if np.isfinite(low) and np.isfinite(high):
            ax.plot([max(low, -reach), min(high, reach)], [y, y], color=colour, linewidth=2)
            for end, arrow in ((low, "<"), (high, ">")):
                if abs(end) > reach:
                    ax.plot(np.sign(end) * reach, y, arrow, color=colour, markersize=7)
        ax.plot(row["effect"], y, "o", color=colour, markersize=7,
                markerfacecolor=colour if distinguishable else "white")
    ax.set_yticks(positions)
    ax.set_yticklabels([label(r) for _, r in rows.iterrows()], fontsize=10)
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"effect ({unit})", fontsize=10)
    ax.tick_params(axis="x", labelsize=9)
    ax.grid(axis="x", alpha=0.3)


def _interaction_panel(ax: Axes, analysis, group: str, rows: pd.DataFrame) -> None:
    """Cell means of the largest accuracy interaction: the first factor's levels along x, a line per level of
    the second, 95% intervals over seeds; parallel lines would mean no interaction."""
    candidates = rows[(rows["kind"] == INTERACTION) & (rows["metric"] == METRICS[0].label)]
    if candidates.empty or analysis.design is None:
        ax.set_axis_off()
        ax.text(0.5, 0.5, "no interaction with two or more seeds", ha="center", va="center", transform=ax.transAxes)
        return
    largest = candidates.sort_values("effect", key=lambda effect: effect.abs()).iloc[-1]
    first, second = str(largest["factor"]).split(" × ")
    cells = cell_table(analysis.design, group, first, second)
    order = list(dict.fromkeys(cells[first]))
    for index, (level, line) in enumerate(cells.groupby(second, sort=False)):
        x = [order.index(a) + (index - 0.5) * 0.06 for a in line[first]]
        ax.errorbar(x, line["mean"], yerr=_error_bars_of(line), marker="o", capsize=4, linewidth=2, markersize=6,
                    color=f"C{index % 10}", label=str(level))
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels(order, fontsize=10)
    ax.set_xlabel(first, fontsize=10)
    ax.set_ylabel("test accuracy (%)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=10, title=second, title_fontsize=10)
    ax.set_title(f"{largest['factor']}: cell means, 95% CI over seeds\n"
                 f"interaction {largest['level']}: {largest['effect']:+.2f} points", fontsize=11)


def _error_bars_of(cells: pd.DataFrame) -> np.ndarray:
    half = np.nan_to_num((cells["ci_high"] - cells["ci_low"]).to_numpy(dtype=float) / 2, nan=0.0)
    return np.vstack([half, half])


# ------------------------------------------------------------------ the figures of a run, an invocation, a folder


def run_figures(history: Sequence[EpochRecord], confusion: Sequence[Sequence[int]] | None,
                title: str = "") -> dict[str, Figure]:
    """Per-run figures, keyed by artifact file name."""
    found = {"learning_curves.png": learning_curves(history, title)}
    if confusion is not None:
        found["confusion_matrix.png"] = confusion_matrix(confusion, title)
    return found


def invocation_figures(df: pd.DataFrame) -> dict[str, Figure]:
    """Comparison figures of results rows, keyed by artifact file name."""
    df = with_groups(df)
    return {"accuracy_vs_params.png": accuracy_vs_params(df),
            "accuracy_vs_time.png": accuracy_vs_time(df),
            "backend_comparison.png": backend_comparison(df)}


def variant_learning_curves(runs: pd.DataFrame, histories: dict[str, list[EpochRecord]]) -> dict[str, Figure]:
    """One figure per setup overlaying its runs (backend/device/seed); keyed by setup."""
    found = {}
    for setup, group in with_groups(runs).groupby("setup", sort=True):
        overlay = {f"{r.backend}/{r.device} seed{r.seed}": histories[str(r.mlflow_run_id)]
                   for r in group.itertuples() if histories.get(str(r.mlflow_run_id))}
        if overlay:
            found[str(setup)] = learning_curves(overlay, f"{setup}: learning curves")
    return found
