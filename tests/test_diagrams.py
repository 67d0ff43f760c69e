"""Architecture diagrams from the layer description: every committed spec, and kinds of layer not known today."""

from __future__ import annotations

import dataclasses
import io
import re
from itertools import combinations
from typing import ClassVar

import pytest
from conftest import SPEC_FOLDERS
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from lenet_bench.results.diagrams import architecture_diagram
from lenet_bench.spec import load_variants
from lenet_bench.spec.arch import ArchSummary, Conv, Dense, Flatten, Layer, Pool

VARIANTS = load_variants(SPEC_FOLDERS)


def texts(fig: Figure) -> list[str]:
    return [text.get_text() for ax in fig.axes for text in ax.texts]


def assert_readable(fig: Figure) -> None:
    """Drawn: no two texts overlap, and every text lies inside the figure."""
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [text.get_window_extent(renderer) for ax in fig.axes for text in ax.texts if text.get_text()]
    page = fig.bbox
    for box in boxes:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, box
    for (i, a), (j, b) in combinations(enumerate(boxes), 2):
        assert not a.overlaps(b), (texts(fig)[i], texts(fig)[j])
    fig.savefig(io.BytesIO(), format="png")


def stated_params(fig: Figure) -> tuple[int, list[int]]:
    """(the total in the title, every layer's own count), read back from the figure's text."""
    total = next(int(m.group(1).replace(",", "")) for t in texts(fig) if (m := re.match(r"([\d,]+) parameters", t)))
    layers = [int(m.group(1).replace(",", "")) for t in texts(fig) if (m := re.fullmatch(r"([\d,]+) params", t))]
    return total, layers


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: v.name)
def test_every_committed_spec_gets_a_diagram_naming_its_layers_and_params(variant):
    summary = variant.spec.summary()
    fig = architecture_diagram(summary, variant.name)
    shown = texts(fig)
    assert variant.name in shown
    for layer in summary.layers:
        assert layer.name in shown and "×".join(map(str, layer.output_shape)) in shown, layer.name
    total, per_layer = stated_params(fig)
    assert total == summary.params == sum(per_layer)
    assert f"{summary.flops / 1e6:.2f} MFLOPs" in " ".join(shown)
    assert_readable(fig)


@dataclasses.dataclass(frozen=True)
class Subsampling(Layer):
    """A kind of layer this module has never heard of (LeNet-1998's trainable subsampling)."""

    kind: ClassVar[str] = "subsampling"
    size: int
    activation: str | None

    @property
    def weight_shapes(self) -> tuple[tuple[int, ...], ...]:
        return (self.output_shape[0],), (self.output_shape[0],)


def fifteen_layers() -> ArchSummary:
    layers: list[Layer] = []
    shape: tuple[int, ...] = (1, 32, 32)
    for i in range(4):
        out = (6 * (i + 1), shape[1] - 2, shape[2] - 2)
        layers.append(Conv(f"conv{i + 1}", shape, out, out[0], 3, 1, "valid", "tanh"))
        shape = out
        out = (shape[0], shape[1] // 2, shape[2] // 2) if i < 2 else shape
        layers.append(Subsampling(f"subsampling{i + 1}", shape, out, 2, "tanh") if i % 2 == 0
                      else Pool(f"maxpool{i + 1}", shape, out, "max", 2))
        shape = out
    layers.append(Flatten("flatten", shape, (shape[0] * shape[1] * shape[2],)))
    shape = layers[-1].output_shape
    for j, units in enumerate((120, 84, 84, 42)):
        layers.append(Dense(f"dense{j + 1}", shape, (units,), units, "tanh"))
        shape = (units,)
    layers.append(Dense("output", shape, (10,), 10, None))
    return ArchSummary((1, 32, 32), tuple(layers))


def test_fifteen_layers_and_a_new_kind_of_layer_read_well():
    summary = fifteen_layers()
    assert len(summary.layers) == 14 and any(layer.kind == "subsampling" for layer in summary.layers)
    fig = architecture_diagram(summary, "fourteen layers and an input")
    shown = texts(fig)
    for layer in summary.layers:
        assert layer.name in shown
    assert "subsampling" in shown and "size 2 · activation tanh" in shown  # a new kind's own fields
    total, per_layer = stated_params(fig)
    assert total == summary.params == sum(per_layer)
    assert_readable(fig)
    assert fig.get_size_inches()[1] > architecture_diagram(VARIANTS[0].spec.summary(), "x").get_size_inches()[1]


@dataclasses.dataclass(frozen=True)
class Wordy(Layer):
    """A kind whose fields make a long line: it is shortened to fit its box."""

    kind: ClassVar[str] = "wordy"
    first_setting_with_a_long_name: str
    second_setting_with_a_long_name: str
    table: tuple[tuple[int, ...], ...]


def test_a_long_line_of_fields_is_shortened_to_fit():
    wordy = Wordy("wordy1", (1, 28, 28), (1, 28, 28), "a rather long value " * 3, "another long value " * 3,
                  tuple((i, i + 1) for i in range(16)))
    dense = Dense("output", (784,), (10,), 10, None)
    fig = architecture_diagram(ArchSummary((1, 28, 28), (wordy, Flatten("flatten", (1, 28, 28), (784,)), dense)),
                               "wordy")
    details = next(t for t in texts(fig) if t.startswith("first_setting_with_a_long_name"))
    assert details.endswith("…")
    assert_readable(fig)


def test_list_draws_one_diagram_per_layer_description_and_indexes_every_variant(tmp_path, capsys):
    from lenet_bench.cli import main

    folder = tmp_path / "architectures"
    classic = str(SPEC_FOLDERS[0] / "classic_matrix.yaml")
    assert main(["list", classic, "--only", "lenet5-classic-relu-*", "--diagrams", str(folder)]) == 0
    index = (folder / "README.md").read_text()
    listed = dict(line[2:].split(": ") for line in index.splitlines() if line.startswith("- "))
    assert sorted(listed) == [f"lenet5-classic-relu-{pool}-{pad}" for pool in ("avg", "max") for pad in ("padded", "unpadded")]
    # Activation and pooling change the layer description, padding changes the shapes: four diagrams.
    assert len(set(listed.values())) == len(list(folder.glob("*.png"))) == 4
    # A second listing adds to the index instead of replacing it.
    assert main(["list", classic, "--only", "lenet5-classic-tanh-max-padded", "--diagrams", str(folder)]) == 0
    assert len([line for line in (folder / "README.md").read_text().splitlines() if line.startswith("- ")]) == 5


def test_list_into_a_folder_it_cannot_write_is_exit_2_naming_it(tmp_path, capsys):
    from lenet_bench.cli import main

    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    assert main(["list", str(SPEC_FOLDERS[0] / "lenet5.yaml"), "--diagrams", str(blocked / "architectures")]) == 2
    assert str(blocked) in " ".join(capsys.readouterr().err.split())
