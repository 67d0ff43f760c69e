"""What a written picture (a saved figure, a browser screenshot) must be: a whole image of the expected size
that shows something. Its bytes are decoded: a file size says nothing of a truncated or blank image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

# A blank page, a figure with nothing drawn, is one colour; a chart or a page of text has a few percent of its
# pixels in other colours (the lightest figure here, a "no completed runs" notice on empty axes, has ~1%).
MIN_DRAWN_SHARE = 0.005


def drawn_share(pixels: np.ndarray) -> float:
    """The share of pixels that differ from the picture's most common colour (its background)."""
    flat = pixels.reshape(-1, pixels.shape[-1]) if pixels.ndim == 3 else pixels.reshape(-1, 1)
    colours, counts = np.unique(flat, axis=0, return_counts=True)
    return 1.0 - counts.max() / len(flat)


def assert_picture(path: Path, width: int, height: int | None = None, *, min_height: int | None = None) -> float:
    """Decode the PNG at `path` (a truncated or corrupt file fails here), check its size in pixels (the height
    exactly, or at least `min_height` for a full-page screenshot) and that it is not blank; the drawn share."""
    with Image.open(path) as image:
        assert image.format == "PNG", f"{path}: {image.format}"
        image.load()
        rgb = np.asarray(image.convert("RGB"))
    found_height, found_width = rgb.shape[:2]
    assert found_width == width, f"{path}: {found_width} px wide, expected {width}"
    if height is not None:
        assert found_height == height, f"{path}: {found_height} px high, expected {height}"
    if min_height is not None:
        assert found_height >= min_height, f"{path}: {found_height} px high, expected at least {min_height}"
    share = drawn_share(rgb)
    assert share > MIN_DRAWN_SHARE, f"{path} is blank: {share:.2%} of its pixels differ from its background"
    return share
