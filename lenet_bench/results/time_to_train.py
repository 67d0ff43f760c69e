"""Time to train, as MLPerf Training reports it: several seeds to a target accuracy, the spread, and a score.

A run's time to target (training/loop.time_to_target) counts every training step, warm-up included,
and every evaluation on the validation split up to the first one that reaches the spec's
`target_accuracy`; not loading the data, building the model or the final test-set evaluation.
Per spec, backend, device and timing conditions (never pooled across hardware or load): each
seed's time, how many converged, median and mean with a 95% Student-t interval over the converged
seeds, and MLPerf's score: with at least three seeds, the fastest and the slowest dropped and the
rest averaged, a seed that never reached the target counting as the slowest (so one such seed is
dropped, two make the score undefined).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from lenet_bench.results.compare import with_groups
from lenet_bench.results.row import runs_with_numbers
from lenet_bench.results.stats import format_mean_ci, summarize

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BY = ("setup", "backend", "device", "conditions")
TIME_TO_TRAIN_MD = "time_to_train.md"
TIME_TO_TRAIN_PNG = "time_to_train.png"


def mlperf_score(times: list[float]) -> float:
    """The mean of the seeds' times without the fastest and the slowest (inf: not converged); NaN with fewer
    than three seeds or when a seed that never converged is left after the drop."""
    if len(times) < 3:
        return math.nan
    kept = sorted(times)[1:-1]
    return float(np.mean(kept)) if all(math.isfinite(t) for t in kept) else math.nan


def time_to_train_table(frame: pd.DataFrame, variants: Sequence | None = None) -> pd.DataFrame:
    """One row per (setup, backend, device, conditions) of completed runs whose spec has a target.

    Rows recorded before the target was a column get it from their spec in `variants`; their times count
    training only (evaluations were not timed then), which the `counted` column says.
    """
    columns = [*BY, "target", "counted", "seeds", "converged", "times", "median_s", "mean_s", "ci_low_s",
               "ci_high_s", "mlperf_s", "epochs_median"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame = frame.copy()
    recorded = pd.to_numeric(frame.get("target_accuracy", pd.Series(np.nan, index=frame.index)), errors="coerce")
    frame["counted"] = np.where(recorded.notna(), "training + evaluations", "training only")
    targets = {v.name: v.spec.train.target_accuracy for v in variants or ()}
    frame["target_accuracy"] = recorded.fillna(pd.to_numeric(frame["spec"].map(targets), errors="coerce"))
    runs = with_groups(frame)
    runs = runs_with_numbers(runs)
    runs = runs[pd.to_numeric(runs["target_accuracy"], errors="coerce").notna()]
    found = []
    for keys, group in runs.groupby(list(BY), sort=True):
        group = group.sort_values("seed")
        seconds = pd.to_numeric(group["time_to_target_s"], errors="coerce")
        times = [float(t) if math.isfinite(t) else math.inf for t in seconds.fillna(math.inf)]
        summary = summarize(t for t in times if math.isfinite(t))
        epochs = pd.to_numeric(group["epochs_to_target"], errors="coerce").dropna()
        counted = group["counted"].unique()
        found.append({**dict(zip(BY, keys, strict=True)), "target": float(group["target_accuracy"].iloc[0]),
                      "counted": counted[0] if len(counted) == 1 else "mixed",
                      "seeds": len(times), "converged": summary.n,
                      "times": dict(zip(group["seed"].astype(int), times, strict=True)),
                      "median_s": float(np.median([t for t in times if math.isfinite(t)])) if summary.n else math.nan,
                      "mean_s": summary.mean, "ci_low_s": summary.ci_low, "ci_high_s": summary.ci_high,
                      "mlperf_s": mlperf_score(times), "epochs_median": float(epochs.median()) if len(epochs) else math.nan})
    return pd.DataFrame(found, columns=columns)


def _seconds(value: float) -> str:
    return f"{value:.1f}" if math.isfinite(value) else "not reached"


def time_to_train_markdown(table: pd.DataFrame) -> str:
    head = ("# Time to train\n\nAs MLPerf Training counts it: every training step (warm-up included) and every "
            "evaluation on the validation split up to the first that reached the spec's target accuracy; not data "
            "loading, model building or the final test. `MLPerf score`: with at least three seeds, the fastest and "
            "the slowest dropped and the rest averaged (a seed that never reached the target counts as the "
            "slowest). Mean ± half-width of the 95% Student-t interval over the seeds that converged. Timings "
            "of different hardware or load are never pooled. `counted`: runs recorded before evaluations were "
            "timed count training only (evaluation adds about 1%).\n\n")
    if table.empty:
        return head + "(no completed run of a spec with a target_accuracy)\n"
    rows = [{"setup": r["setup"], "backend": f"{r['backend']}/{r['device']}", "conditions": r["conditions"],
             "target": f"{r['target']:.2%}", "counted": r["counted"], "converged": f"{r['converged']}/{r['seeds']}",
             "seconds per seed": ", ".join(f"{seed}: {_seconds(t)}" for seed, t in r["times"].items()),
             "median s": _seconds(r["median_s"]),
             "mean s": format_mean_ci(r["mean_s"], r["ci_low_s"], r["ci_high_s"], digits=1),
             "MLPerf score s": _seconds(r["mlperf_s"]) if r["seeds"] >= 3 else "(needs 3 seeds)",
             "epochs": f"{r['epochs_median']:g}" if math.isfinite(r["epochs_median"]) else ""}
            for _, r in table.iterrows()]
    return head + pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True) + "\n"


def time_to_train_figure(table: pd.DataFrame) -> Figure:
    """Each seed's time to target per setup and backend; a cross above the points for a seed that never got there."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9, max(2.5, 0.45 * len(table) + 1.2)), layout="constrained")
    ax = fig.subplots()
    if table.empty:
        ax.text(0.5, 0.5, "no completed run of a spec with a target_accuracy", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    finite = [t for times in table["times"] for t in times.values() if math.isfinite(t)]
    ceiling = 1.1 * max(finite) if finite else 1.0
    for y, (_, row) in enumerate(table.iloc[::-1].iterrows()):
        times = list(row["times"].values())
        reached = [t for t in times if math.isfinite(t)]
        ax.plot(reached, [y] * len(reached), "o", color=f"C{y % 10}", alpha=0.8)
        if len(reached) < len(times):
            ax.plot([ceiling] * (len(times) - len(reached)), [y] * (len(times) - len(reached)), "x", color="red")
        if math.isfinite(row["mlperf_s"]):
            ax.plot([row["mlperf_s"]] * 2, [y - 0.3, y + 0.3], color="black", linewidth=2)
    ax.set_yticks(range(len(table)))
    ax.set_yticklabels([f"{r.setup} {r.backend}/{r.device} ({r.target:.0%}) [{r.conditions}]"
                        for r in table.iloc[::-1].itertuples()], fontsize=7)
    ax.set_xlabel("seconds to the target (training and evaluations); bar: MLPerf score; x: never reached")
    ax.set_xlim(left=0)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title("Time to train, per seed")
    return fig
