"""Figures: the right panels, lines and bars for a small table, and they save as PNG."""

from __future__ import annotations

import pandas as pd
import pytest
from image_checks import assert_picture
from matplotlib.container import BarContainer, ErrorbarContainer
from matplotlib.figure import Figure
from PIL import Image

from lenet_bench.results import figures
from lenet_bench.training.result import EpochRecord


def history(epochs=3, with_validation=True):
    return [EpochRecord(e, 1.0 / e, 0.9 + e / 100, 1.1 / e if with_validation else None,
                        0.89 + e / 100 if with_validation else None, 1.0, 100, float(e)) for e in range(1, epochs + 1)]


@pytest.fixture
def runs() -> pd.DataFrame:
    """Two variants x two backends x two seeds, plus a skipped and a failed row that have no numbers."""
    rows = []
    for spec, params, accuracy in (("small", 5_000, 0.97), ("lenet5", 61_706, 0.99)):
        for backend, seconds, speed in (("torch", 10.0, 9000.0), ("keras", 14.0, 7000.0)):
            for seed in (0, 1):
                rows.append({"spec": spec, "backend": backend, "device": "cpu", "seed": seed, "status": "completed",
                             "params": params, "test_accuracy": accuracy + seed / 1000, "baseline_accuracy": 0.92,
                             "train_seconds": seconds + seed, "train_images_per_sec": speed + 100 * seed})
    rows.append({"spec": "small", "backend": "keras", "device": "gpu", "seed": 0, "status": "skipped"})
    rows.append({"spec": "small", "backend": "torch", "device": "cpu", "seed": 2, "status": "failed"})
    return pd.DataFrame(rows)


def assert_saves_png(fig: Figure, tmp_path, name="figure.png"):
    """Saved, the figure decodes as a PNG of its own size in pixels with something drawn on it."""
    path = tmp_path / name
    fig.savefig(path)
    width, height = (fig.get_size_inches() * fig.dpi).round().astype(int)
    assert_picture(path, int(width), int(height))


def test_a_blank_truncated_or_wrongly_sized_picture_is_refused(tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 100), "white").save(blank)
    with pytest.raises(AssertionError, match="is blank"):
        assert_picture(blank, 200, 100)
    drawn = tmp_path / "drawn.png"
    fig = figures.confusion_matrix([[5, 1], [0, 4]], "run")
    fig.savefig(drawn)
    width, height = (fig.get_size_inches() * fig.dpi).round().astype(int)
    assert assert_picture(drawn, int(width), int(height)) > 0.05
    with pytest.raises(AssertionError, match="px wide"):
        assert_picture(drawn, int(width) + 1, int(height))
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(drawn.read_bytes()[: drawn.stat().st_size // 2])
    with pytest.raises(OSError):
        assert_picture(truncated, int(width), int(height))


def test_learning_curves_two_panels_train_and_validation(tmp_path):
    fig = figures.learning_curves(history(), "lenet5/torch/cpu/seed0")
    accuracy_ax, loss_ax = fig.axes
    assert len(accuracy_ax.lines) == 2 and len(loss_ax.lines) == 2
    assert [line.get_label() for line in accuracy_ax.lines] == ["train", "validation"]
    assert list(accuracy_ax.lines[1].get_ydata()) == pytest.approx([0.90, 0.91, 0.92])
    assert accuracy_ax.get_ylabel() == "accuracy" and loss_ax.get_ylabel() == "loss"
    assert_saves_png(fig, tmp_path)


def test_learning_curves_without_validation_and_overlaid_runs():
    assert [len(ax.lines) for ax in figures.learning_curves(history(with_validation=False), "t").axes] == [1, 1]
    fig = figures.learning_curves({"torch seed0": history(), "keras seed0": history()}, "lenet5")
    assert [len(ax.lines) for ax in fig.axes] == [4, 4]
    assert "keras seed0 validation" in [line.get_label() for line in fig.axes[0].lines]


def test_confusion_matrix_is_annotated_with_counts(tmp_path):
    matrix = [[50, 2, 0], [1, 40, 3], [0, 0, 30]]
    fig = figures.confusion_matrix(matrix, "run")
    (ax,) = fig.axes
    texts = [t.get_text() for t in ax.texts]
    assert len(texts) == 9 and texts[:3] == ["50", "2", "0"]
    assert "accuracy 0.9524" in ax.get_title()  # 120 / 126
    assert_saves_png(fig, tmp_path)


def test_accuracy_vs_params_one_errorbar_series_per_backend(runs, tmp_path):
    fig = figures.accuracy_vs_params(runs)
    (ax,) = fig.axes
    bars = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    assert [c.get_label() for c in bars] == ["keras", "torch"]  # the gpu row was skipped: one device, no suffix
    assert all(len(c.lines[0].get_xdata()) == 2 for c in bars)  # one point per variant
    torch = dict(zip(bars[1].lines[0].get_xdata(), bars[1].lines[0].get_ydata(), strict=True))
    assert torch == pytest.approx({5_000: 0.9705, 61_706: 0.9905})  # each variant's mean over its two seeds
    assert ax.get_xlabel() == "parameters" and ax.get_title().startswith("Test accuracy vs model size")
    assert ax.get_xscale() == "log"  # 5k to 62k parameters
    assert any("baseline" in line.get_label() for line in ax.lines)
    assert {t.get_text() for t in ax.texts} == {"small", "lenet5"}
    assert_saves_png(fig, tmp_path)


def test_accuracy_vs_time_has_error_bars_from_seeds(runs, tmp_path):
    fig = figures.accuracy_vs_time(runs)
    (ax,) = fig.axes
    torch = next(c for c in ax.containers if isinstance(c, ErrorbarContainer) and c.get_label() == "torch")
    assert torch.has_xerr and torch.has_yerr
    assert ax.get_xscale() == "linear"  # 10 s to 15 s
    assert ax.get_xlabel() == "training time (s)"
    points = sorted(zip(torch.lines[0].get_xdata(), torch.lines[0].get_ydata(), strict=True))
    assert points == [pytest.approx((10.5, 0.9705)), pytest.approx((10.5, 0.9905))]  # means over the seeds
    assert_saves_png(fig, tmp_path)


def test_backend_comparison_grouped_bars(runs, tmp_path):
    fig = figures.backend_comparison(runs)
    accuracy_ax, speed_ax = fig.axes
    for ax in (accuracy_ax, speed_ax):
        containers = [c for c in ax.containers if isinstance(c, BarContainer)]
        assert [c.get_label() for c in containers] == ["keras", "torch"]
        assert sum(len(c.patches) for c in containers) == 4  # 2 variants x 2 backends
    heights = sorted(p.get_height() for p in speed_ax.patches)
    assert heights == pytest.approx([7050.0, 7050.0, 9050.0, 9050.0])  # mean over the two seeds
    assert [t.get_text() for t in speed_ax.get_xticklabels()] == ["lenet5", "small"]  # best accuracy first
    assert accuracy_ax.get_ylim()[0] > 0.9  # zoomed onto the differences
    assert_saves_png(fig, tmp_path)


def test_several_devices_become_separate_series(runs):
    gpu = runs[runs["status"] == "completed"].assign(device="gpu", train_images_per_sec=50_000.0)
    fig = figures.backend_comparison(pd.concat([runs, gpu]))
    labels = [c.get_label() for c in fig.axes[0].containers if isinstance(c, BarContainer)]
    assert labels == ["keras/cpu", "keras/gpu", "torch/cpu", "torch/gpu"]


@pytest.mark.parametrize("make", [figures.accuracy_vs_params, figures.accuracy_vs_time, figures.backend_comparison])
def test_no_completed_runs_gives_a_figure_that_says_so(make, runs, tmp_path):
    fig = make(runs[runs["status"] != "completed"])
    assert "no completed runs" in [t.get_text() for t in fig.axes[0].texts]
    assert_saves_png(fig, tmp_path)


def test_error_bars_stop_at_what_is_possible(runs):
    """Two seeds far apart: t(0.975, 1) = 12.7 would stretch the interval below 0 s and above accuracy 1."""
    noisy = runs[runs["status"] == "completed"].copy()
    noisy.loc[noisy["seed"] == 1, "train_seconds"] = 100.0
    noisy.loc[noisy["seed"] == 1, "test_accuracy"] = 0.5
    (ax,) = figures.accuracy_vs_time(noisy).axes
    for container in (c for c in ax.containers if isinstance(c, ErrorbarContainer)):
        x_bars, y_bars = container.lines[2]
        assert min(point[0] for segment in x_bars.get_segments() for point in segment) >= 0
        assert max(point[1] for segment in y_bars.get_segments() for point in segment) <= 1


# ------------------------------------------------------------------ effects


def _effects_analysis():
    from test_effects import synthetic_runs, variants_of

    from lenet_bench.results import effects

    frame = synthetic_runs(backends=("torch", "keras"), speed_of_avg=1.3)
    cell = (frame["activation"] == "sigmoid") & (frame["pooling"] == "avg")
    frame.loc[cell, "test_accuracy"] -= 0.004
    return effects.analyse(frame, variants_of(frame))


def test_effects_figures_one_per_matrix_and_one_for_backends(tmp_path):
    figures_by_name = figures.effects_figures(_effects_analysis())
    assert sorted(figures_by_name) == ["effects_backends.png", "effects_m.png"]
    matrix = figures_by_name["effects_m.png"]
    accuracy, speed, to_target, interaction = matrix.axes
    assert accuracy.get_title() == "test accuracy" and speed.get_title().startswith("training img/s\n")
    labels = [t.get_text() for t in accuracy.get_yticklabels()]
    assert labels == ["sigmoid vs relu", "tanh vs relu", "avg vs max", "sigmoid × avg (interaction)",
                      "tanh × avg (interaction)"]  # the backend is in its own figure
    legend = [t.get_text() for t in matrix.legends[0].get_texts()]
    assert legend == ["activation", "pool", "interaction", "distinguishable (Holm)", "not distinguishable"]
    # The interaction plot: activation along x, one line per pooling level, the largest interaction named.
    assert [t.get_text() for t in interaction.get_xticklabels()] == ["relu", "sigmoid", "tanh"]
    assert [t.get_text() for t in interaction.get_legend().get_texts()] == ["max", "avg"]
    assert "interaction sigmoid × avg" in interaction.get_title()
    assert all(min(text.get_fontsize() for text in ax.get_yticklabels()) >= 9 for ax in (accuracy, speed, to_target))
    width, height = matrix.get_size_inches() * matrix.dpi
    assert width <= 1500 and height <= 1000  # one laptop screen at 100%
    backends = figures_by_name["effects_backends.png"]
    assert [t.get_text() for t in backends.axes[0].get_yticklabels()] == ["m: keras vs torch"]
    assert "keras vs reference" in [t.get_text() for t in backends.legends[0].get_texts()]
    for name, figure in figures_by_name.items():
        assert_saves_png(figure, tmp_path, name)


def test_effects_markers_follow_the_verdict():
    """Filled markers exactly for the distinguishable effects, hollow for the others."""
    analysis = _effects_analysis()
    accuracy = figures.effects_figures(analysis)["effects_m.png"].axes[0]
    table = analysis.effects
    rows = table[(table["metric"] == "test accuracy") & (table["factor"] != "backend")]
    points = [line for line in accuracy.lines if line.get_marker() == "o"]
    filled = [line.get_markerfacecolor() != "white" for line in points]
    assert filled == list(rows["distinguishable"])
