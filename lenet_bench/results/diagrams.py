"""Architecture diagrams drawn from the layer description (spec/arch.py), as matplotlib `Figure`s.

One box per layer, top to bottom from the input, each with its name and kind, parameter count
and output shape, and below them the fields its kind adds (filters, kernel, mode, units, ...),
read generically from the layer's dataclass so that a new kind of layer needs nothing here.
Built with `matplotlib.figure.Figure` directly, as figures.py explains.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from lenet_bench.results.compare import safe_file_name
from lenet_bench.spec.arch import ArchSummary, Layer

if TYPE_CHECKING:
    from lenet_bench.spec.schema import Spec

WIDTH_IN = 7.0
BOX_WIDTH_IN = 6.2
BOX_HEIGHT_IN = 0.56
GAP_IN = 0.26  # between boxes, where the arrows are
TITLE_IN = 0.9
KIND_COLUMN_IN = 1.45  # from a box's left edge: room for a name of about 13 characters
SHAPE_COLUMN_IN = 1.15  # from a box's right edge: room for a shape such as 120×14×14
MAX_DETAILS = 110  # characters of a layer's fields that fit on a box's second line
_BASE_FIELDS = {field.name for field in dataclasses.fields(Layer)}
# Colours of the kinds known today; any other kind takes the next colour of the cycle.
_KIND_COLOURS = {"input": "#e9ecef", "conv": "#d0e2f7", "pool": "#d8f0d8", "flatten": "#f1e6c8", "dense": "#f6d5d5"}
_OTHER_COLOURS = ("#e3d7f3", "#d3efef", "#f7e1c4", "#e0e0e0")


def architecture_diagram(summary: ArchSummary, title: str) -> Figure:
    """The layers of `summary` as a column of boxes joined by arrows; totals (params, MFLOPs) in the title."""
    rows = [("input", "input", summary.input_shape, 0, "")] + [
        (layer.name, layer.kind, layer.output_shape, layer.params, _details(layer)) for layer in summary.layers]
    height = TITLE_IN + len(rows) * (BOX_HEIGHT_IN + GAP_IN)
    fig = Figure(figsize=(WIDTH_IN, height))
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, WIDTH_IN)
    ax.set_ylim(height, 0)  # inches from the top
    ax.axis("off")
    colours = _colours([kind for _, kind, *_ in rows])
    left = (WIDTH_IN - BOX_WIDTH_IN) / 2
    for index, (name, kind, shape, params, details) in enumerate(rows):
        top = TITLE_IN + index * (BOX_HEIGHT_IN + GAP_IN)
        _box(ax, left, top, colours[kind], name, kind, shape, params, details)
        if index:
            ax.annotate("", xy=(WIDTH_IN / 2, top), xytext=(WIDTH_IN / 2, top - GAP_IN),
                        arrowprops={"arrowstyle": "-|>", "color": "#555555", "lw": 1.2})
    ax.text(WIDTH_IN / 2, 0.3, title, ha="center", va="center", fontsize=13, weight="bold")
    ax.text(WIDTH_IN / 2, 0.62, f"{summary.params:,} parameters · {summary.flops / 1e6:.2f} MFLOPs per image "
            f"(forward) · {len(summary.layers)} layers", ha="center", va="center", fontsize=10, color="#333333")
    return fig


class DiagramFolder:
    """A folder of architecture diagrams: one PNG per layer description, shared by every variant that has
    it, and README.md listing each variant's file (kept across invocations: it is merged, not rewritten)."""

    INDEX = "README.md"

    def __init__(self, path: Path):
        self.path = path
        self._drawn: dict[Path, set[str]] = {}  # file -> the variants drawn with it

    def diagram(self, variant_name: str, spec: Spec) -> Path:
        """The PNG of `spec`'s diagram, drawn and written the first time its layer description is seen."""
        summary = spec.summary()
        key = hashlib.sha256(repr(summary.layers).encode()).hexdigest()[:8]
        path = self.path / f"{safe_file_name(spec.model.arch_label)}-{key}.png"
        if path not in self._drawn:
            self.path.mkdir(parents=True, exist_ok=True)
            title = f"{spec.model.arch_label} on {'x'.join(map(str, spec.input_shape))} input"
            architecture_diagram(summary, title).savefig(path)
            self._drawn[path] = set()
        self._drawn[path].add(variant_name)
        self._write_index()
        return path

    def _write_index(self) -> None:
        index = self.path / self.INDEX
        lines = index.read_text().splitlines() if index.exists() else []
        listed = dict(line[2:].split(": ", 1) for line in lines if line.startswith("- "))
        listed.update({name: path.name for path, names in self._drawn.items() for name in names})
        index.write_text("# Architecture diagrams\n\nOne per layer description; each variant and its diagram:\n\n"
                         + "".join(f"- {name}: {file}\n" for name, file in sorted(listed.items())))


def _box(ax: Axes, left: float, top: float, colour: str, name: str, kind: str, shape: tuple[int, ...],
         params: int, details: str) -> None:
    ax.add_patch(FancyBboxPatch((left, top), BOX_WIDTH_IN, BOX_HEIGHT_IN, boxstyle="round,pad=0,rounding_size=0.08",
                                facecolor=colour, edgecolor="#555555", linewidth=1))
    pad, upper, lower = 0.15, top + BOX_HEIGHT_IN * 0.33, top + BOX_HEIGHT_IN * 0.72
    right = left + BOX_WIDTH_IN - pad
    ax.text(left + pad, upper, name, ha="left", va="center", fontsize=10.5, weight="bold")
    if kind != name:
        ax.text(left + KIND_COLUMN_IN, upper, kind, ha="left", va="center", fontsize=9.5, color="#444444",
                style="italic")
    ax.text(right - SHAPE_COLUMN_IN, upper, f"{params:,} params" if params else "no parameters", ha="right",
            va="center", fontsize=9, color="#333333")
    ax.text(right, upper, "×".join(map(str, shape)), ha="right", va="center", fontsize=10.5, weight="bold")
    ax.text(left + pad, lower, details, ha="left", va="center", fontsize=8, color="#333333")


def _details(layer: Layer) -> str:
    """The fields a layer's kind adds, 'filters 6 · kernel 5 · ...'; unset (None) ones left out."""
    values = [(field.name, getattr(layer, field.name)) for field in dataclasses.fields(layer)
              if field.name not in _BASE_FIELDS]
    text = " · ".join(f"{name} {_value(value)}" for name, value in values if value is not None)
    return text if len(text) <= MAX_DETAILS else text[:MAX_DETAILS - 1] + "…"


def _value(value: Any) -> str:
    """A scalar as it is; a short flat tuple as 5×5; a table (a connection scheme, ...) by its size."""
    if isinstance(value, (tuple, list)):
        if len(value) <= 4 and not any(isinstance(item, (tuple, list)) for item in value):
            return "×".join(map(str, value))
        return f"({len(value)} entries)"
    return str(value)


def _colours(kinds: list[str]) -> dict[str, str]:
    colours = dict(_KIND_COLOURS)
    others = [kind for kind in dict.fromkeys(kinds) if kind not in colours]
    for index, kind in enumerate(others):
        colours[kind] = _OTHER_COLOURS[index % len(_OTHER_COLOURS)]
    return colours
