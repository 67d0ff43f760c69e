"""results/: a CSV of every run and a Markdown summary table (pandas)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

RUNS_CSV = "runs.csv"
SUMMARY_MD = "summary.md"
SUMMARY_COLUMNS = {
    "spec": "spec", "backend": "backend", "device": "device", "seed": "seed", "status": "status",
    "params": "params", "test_accuracy": "test acc", "baseline_accuracy": "baseline acc",
    "delta_to_baseline": "delta", "train_seconds": "train s", "train_images_per_sec": "img/s",
    "reason": "note",
}


def update_results(rows: list[dict[str, Any]], results_dir: Path) -> pd.DataFrame:
    """Merge this invocation's rows into results/runs.csv (keyed by run) and rewrite the summary.

    Rows of runs not in this invocation are kept, so a selective re-run loses nothing.
    """
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / RUNS_CSV
    new = pd.DataFrame(rows)
    if path.exists():
        old = pd.read_csv(path)
        new = pd.concat([old[~old["run"].isin(new["run"])], new], ignore_index=True)
    new = new.sort_values(["spec", "backend", "device", "seed"], kind="stable").reset_index(drop=True)
    tmp = path.with_suffix(".tmp")
    new.to_csv(tmp, index=False)
    tmp.replace(path)  # atomic: an interrupted write never leaves half a table
    (results_dir / SUMMARY_MD).write_text(summary_markdown(new))
    return new


def completed_runs(results_dir: Path) -> dict[str, dict[str, Any]]:
    """Rows of results/runs.csv that finished with numbers, keyed by fingerprint (rows without one are left out)."""
    path = results_dir / RUNS_CSV
    if not path.exists():
        return {}
    runs = pd.read_csv(path)
    if "fingerprint" not in runs:
        return {}
    done = runs[runs["status"].isin(["completed", "cached"]) & runs["test_accuracy"].notna() & runs["fingerprint"].notna()]
    return {row["fingerprint"]: {k: v for k, v in row.items() if pd.notna(v)} for row in done.to_dict("records")}


def summary_markdown(runs: pd.DataFrame) -> str:
    table = runs[[c for c in SUMMARY_COLUMNS if c in runs.columns]].rename(columns=SUMMARY_COLUMNS)
    for column in ("test acc", "baseline acc", "delta"):
        if column in table:
            table[column] = table[column].map(lambda v: f"{v:.4f}" if pd.notna(v) else "")
    for column in ("train s", "img/s"):
        if column in table:
            table[column] = table[column].map(lambda v: f"{v:,.1f}" if pd.notna(v) else "")
    if "params" in table:
        table["params"] = table["params"].map(lambda v: f"{int(v):,}" if pd.notna(v) else "")
    table = table.fillna("")
    return "# lenet_bench results\n\nOne row per run (variant/backend/device/seed).\n\n" + table.to_markdown(index=False, disable_numparse=True) + "\n"
