"""The table of the time-to-99% margin sweep (issue "glance", point 11), from its committed rows.

The sweep's specs are sweeps/time99/*.yaml (one matrix axis, `recipe`, over the lenet5-time99 recipe);
their rows are results/reference/sweeps/time99/*_runs.csv. results/reference/README.md carries this
script's output between its `time99-sweep` markers, and tests/test_time99_headline.py checks it is current.

    .venv/bin/python -m lenet_bench run sweeps/time99/t99.yaml --results /tmp/t99 --no-log-model
    .venv/bin/python -m lenet_bench run sweeps/time99/t99.yaml --only t99-base --seed 5 --seed 6 --seed 7 \\
        --seed 8 --seed 9 --results /tmp/t99 --no-log-model
    .venv/bin/python -m lenet_bench run sweeps/time99/u99.yaml --results /tmp/u99 --no-log-model
    .venv/bin/python scripts/time99_sweep_table.py
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from lenet_bench.results.stats import summarize

REPO = Path(__file__).resolve().parents[1]
SWEEP_ROWS = REPO / "results" / "reference" / "sweeps" / "time99"
SWEEP_SPECS = REPO / "sweeps" / "time99"
SEED_SETS = {"0-4": range(0, 5), "5-9": range(5, 10), "0-9": range(0, 10)}


def sweep_rows(folder: Path = SWEEP_ROWS) -> pd.DataFrame:
    frames = [pd.read_csv(path) for path in sorted(folder.glob("*_runs.csv"))]
    rows = pd.concat(frames, ignore_index=True)
    return rows[rows["status"] == "completed"]


def changes(folder: Path = SWEEP_SPECS) -> dict[str, str]:
    """Each sweep variant's change to specs/lenet5_time99.yaml, as its spec's matrix writes it."""
    recipe = yaml.safe_load((REPO / "specs" / "lenet5_time99.yaml").read_text())

    def as_published(key: str):
        value = recipe
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        return value

    found = {}
    for path in sorted(folder.glob("*.yaml")):
        spec = yaml.safe_load(path.read_text())
        for level, overrides in spec["matrix"]["recipe"].items():
            changed = [f"{key} {value}" for key, value in overrides.items() if as_published(key) != value]
            found[f"{spec['name']}-{level}"] = ", ".join(changed) or "none"
    return found


def table(rows: pd.DataFrame, changed: dict[str, str]) -> str:
    """One line per recipe and seed set that has all its seeds: mean test accuracy, sd, lowest seed, mean
    training seconds."""
    lines = ["| variant | change to lenet5-time99 | seeds | mean test accuracy | sd | lowest seed | mean training s |",
             "|---|---|---|---|---|---|---|"]
    ordered = rows.groupby("spec")["test_accuracy_pct"].mean().sort_values(ascending=False).index
    for variant in ordered:
        runs = rows[rows["spec"] == variant]
        for label, seeds in SEED_SETS.items():
            chosen = runs[runs["seed"].isin(seeds)]
            if len(chosen) != len(seeds):
                continue
            accuracy = summarize(chosen["test_accuracy_pct"])
            lines.append(f"| {variant} | {changed[variant]} | {label} | {accuracy.mean:.2f}% | {accuracy.std:.2f} | "
                         f"{chosen['test_accuracy_pct'].min():.2f}% | {chosen['train_seconds'].mean():.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(table(sweep_rows(), changes()))
