"""What a results folder holds besides runs.csv: compare.md, reproduction.md, effects.md, comparison and
effects figures and per-setup learning curves; written after a run and by the `report` command."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lenet_bench.results import compare, effects, effects_words, figures, reproduction, time_to_train
from lenet_bench.results.convert import rows_to_frame
from lenet_bench.results.row import ResultRow
from lenet_bench.training.result import EpochRecord

COMPARE_MD = "compare.md"
EFFECTS_MD = "effects.md"
EFFECTS_FIGURES = "effects_*.png"  # effects_<matrix>.png per matrix, effects_backends.png
LEARNING_CURVES = "learning_curves"


def write_comparison(rows: list[ResultRow], folder: Path, variants: Sequence | None = None) -> list[str]:
    """compare.md, reproduction.md, effects.md and the figures of every row, into `folder`; the names written.

    `variants` (the specs' variants, when known) name the factors of each matrix and tell which rows
    belong to variants a spec no longer has.
    """
    frame = rows_to_frame(rows)
    current, superseded = compare.split_superseded(frame, variants)
    (folder / COMPARE_MD).write_text(compare.compare_markdown(compare.compare_table(current),
                                                              superseded=compare.compare_table(superseded)))
    (folder / reproduction.REPRODUCTION_MD).write_text(
        reproduction.reproduction_markdown(reproduction.reproduction_table(compare.with_groups(current))))
    analysis = effects.analyse(frame, variants)
    to_target = time_to_train.time_to_train_table(current, variants)
    (folder / time_to_train.TIME_TO_TRAIN_MD).write_text(time_to_train.time_to_train_markdown(to_target))
    written = [COMPARE_MD, reproduction.REPRODUCTION_MD, time_to_train.TIME_TO_TRAIN_MD]
    drawn = {**figures.invocation_figures(current),
             time_to_train.TIME_TO_TRAIN_PNG: time_to_train.time_to_train_figure(to_target)}
    for name, figure in drawn.items():
        figure.savefig(folder / name)
        written.append(name)
    return written + write_effects(analysis, folder)


def write_effects(analysis: effects.Analysis, folder: Path) -> list[str]:
    """effects.md and its figures (effects_<matrix>.png, effects_backends.png) into `folder`; the names written."""
    (folder / EFFECTS_MD).write_text(effects_words.effects_markdown(analysis))
    drawn = figures.effects_figures(analysis)
    for stale in set(folder.glob("effects*.png")) - {folder / name for name in drawn}:
        stale.unlink()  # a matrix no longer in the folder (or effects.png, one figure of old): it would outlive its numbers
    for name, figure in drawn.items():
        figure.savefig(folder / name)
    return [EFFECTS_MD, *drawn]



def write_learning_curves(rows: list[ResultRow], histories: dict[str, list[EpochRecord]], folder: Path) -> list[str]:
    curves = folder / LEARNING_CURVES
    curves.mkdir(exist_ok=True)
    written = []
    for setup, figure in figures.variant_learning_curves(rows_to_frame(rows), histories).items():
        name = f"{compare.safe_file_name(setup)}.png"
        figure.savefig(curves / name)
        written.append(f"{LEARNING_CURVES}/{name}")
    return written
