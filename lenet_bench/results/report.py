"""What a results folder holds besides runs.csv: compare.md, reproduction.md, comparison figures and
per-setup learning curves; written after a run and by the `report` command."""

from __future__ import annotations

from pathlib import Path

from lenet_bench.results import compare, reproduction
from lenet_bench.results.convert import rows_to_frame
from lenet_bench.results.row import ResultRow
from lenet_bench.training.result import EpochRecord

COMPARE_MD = "compare.md"
LEARNING_CURVES = "learning_curves"


def write_comparison(rows: list[ResultRow], folder: Path) -> list[str]:
    """compare.md, reproduction.md and the comparison figures of every row, into `folder`; the names written."""
    frame = rows_to_frame(rows)
    (folder / COMPARE_MD).write_text(compare.compare_markdown(compare.compare_table(frame)))
    (folder / reproduction.REPRODUCTION_MD).write_text(
        reproduction.reproduction_markdown(reproduction.reproduction_table(compare.with_groups(frame))))
    written = [COMPARE_MD, reproduction.REPRODUCTION_MD]
    for name, figure in compare.invocation_figures(frame).items():
        figure.savefig(folder / name)
        written.append(name)
    return written


def write_learning_curves(rows: list[ResultRow], histories: dict[str, list[EpochRecord]], folder: Path) -> list[str]:
    curves = folder / LEARNING_CURVES
    curves.mkdir(exist_ok=True)
    written = []
    for setup, figure in compare.variant_learning_curves(rows_to_frame(rows), histories).items():
        name = f"{compare.safe_file_name(setup)}.png"
        figure.savefig(curves / name)
        written.append(f"{LEARNING_CURVES}/{name}")
    return written
