"""A user's digit image made to look like an MNIST digit, the way MNIST's were made.

LeCun's page: the digits were "size normalized to fit in a 20x20 pixel box while preserving
their aspect ratio", then "centered in a 28x28 image by computing the center of mass of the
pixels". Here, in order:

1. grayscale (a transparent background counts as white paper), large photos shrunk first;
2. the paper: a plane fitted to the image's border, so an even lighting gradient drops out;
3. the ink: whichever side of the paper strays farther from it (a dark digit on light paper
   is inverted: MNIST digits are light on black), smoothed before thresholding so that
   faint noise and JPEG ripples never count as ink;
4. crop to the ink's bounding box, scale its longer side to 20 pixels with antialiasing;
5. paste into 28x28 with its centre of mass at the centre (MNIST's sits at (14, 14)).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

MNIST_SIZE = 28
BOX = 20  # the longer side of an MNIST digit's bounding box
MAX_SIDE = 512  # larger images are shrunk first: a digit needs no more, and filtering stays fast
BORDER_FRACTION = 0.03  # the frame whose pixels are taken as paper
INK_THRESHOLD = 0.3  # of the digit's contrast, on the smoothed image: what counts as ink for the bounding box
NOISE_FLOOR = 0.15  # of the contrast: fainter pixels inside the box are paper
RIM_PIXELS = 2  # how far around the strokes their soft edges count
MIN_CONTRAST = 24.0  # grey levels: less than this between ink and paper is a blank image
Array = np.ndarray


class DigitError(ValueError):
    """The file is not an image, cannot be read, or shows no digit; the message names it."""


class NoDigit(DigitError):
    """The image is blank, or its contrast too faint to be ink."""


def load_digit(path: Path) -> Array:
    """A uint8 (28, 28) MNIST-style digit (light on black) from an image file."""
    return normalize_digit(read_image(path), source=str(path))


def read_image(source: Path | BinaryIO, name: str | None = None) -> Image.Image:
    """The image, upright (EXIF orientation applied) and fully decoded; DigitError naming it if not."""
    name = name or str(source)
    try:
        with Image.open(source) as image:
            image.load()
            return ImageOps.exif_transpose(image)
    except UnidentifiedImageError:
        raise DigitError(f"{name}: not an image (Pillow does not recognise its format)") from None
    except (OSError, ValueError, Image.DecompressionBombError) as err:  # unreadable, truncated, corrupt, huge
        raise DigitError(f"{name}: cannot read the image ({err})") from None


def grayscale(image: Image.Image) -> Array:
    """float32 (H, W) in 0-255; transparent pixels become white paper, large images are shrunk."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        image = _scaled_to_8_bit(image)
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        paper = Image.new("RGBA", image.size, "white")
        image = Image.alpha_composite(paper, image.convert("RGBA"))
    gray = image.convert("L")
    if max(gray.size) > MAX_SIDE:
        gray.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    return np.asarray(gray, dtype=np.float32)


def _scaled_to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit or 32-bit grey (a scan, a TIFF) as 8-bit, by the image's own range: Pillow's conversion clips
    values above 255, which turns a 16-bit page white and its ink with it."""
    values = np.asarray(image, dtype=np.float64)
    low, high = float(values.min()), float(values.max())
    scaled = (values - low) * (255.0 / (high - low)) if high > low else np.zeros_like(values)
    return Image.fromarray(np.round(scaled).astype(np.uint8), mode="L")


def normalize_digit(image: Image.Image | Array, source: str = "image") -> Array:
    """An image (or a 2-D grey array) -> uint8 (28, 28), light digit on black; DigitError when blank."""
    gray = grayscale(image) if isinstance(image, Image.Image) else np.asarray(image, dtype=np.float32)
    ink, contrast, strokes = _ink(gray, source)
    inked = np.clip((ink - NOISE_FLOOR * contrast) / ((1 - NOISE_FLOOR) * contrast), 0.0, 1.0)
    # The box holds the strokes and their soft rims (as MNIST's holds every lit pixel), not stray noise.
    rims = ndimage.binary_dilation(strokes, iterations=RIM_PIXELS) & (inked > 0)
    rows, cols = ndimage.find_objects(rims.astype(np.int8))[0]
    crop = inked[rows, cols]
    return _centre(_fit_box(crop))


def _ink(gray: Array, source: str) -> tuple[Array, float, Array]:
    """(ink above paper, >= 0; the digit's contrast; the mask of its strokes)."""
    deviation = gray - _paper(gray)
    sigma = max(1.0, max(gray.shape) / 256)
    smooth = ndimage.gaussian_filter(deviation, sigma)
    light, dark = float(smooth.max(initial=0.0)), float(-smooth.min(initial=0.0))
    if max(light, dark) < MIN_CONTRAST:
        raise NoDigit(f"{source}: no digit found (the image is blank or too faint: "
                      f"{max(light, dark):.0f} grey levels of contrast, at least {MIN_CONTRAST:.0f} needed)")
    if dark > light:  # dark ink on light paper
        deviation, smooth = -deviation, -smooth
    contrast = max(light, dark)
    return np.clip(deviation, 0.0, None), contrast, smooth > INK_THRESHOLD * contrast


def _paper(gray: Array) -> Array:
    """The paper's brightness at every pixel: a plane least-squares fitted to the image's border frame."""
    height, width = gray.shape
    frame = max(1, round(BORDER_FRACTION * min(height, width)))
    inner = np.zeros_like(gray, dtype=bool)
    inner[frame:height - frame, frame:width - frame] = True
    rows, cols = np.indices(gray.shape, dtype=np.float32)
    design = np.stack([np.ones_like(rows), rows, cols], axis=-1)
    coefficients, *_ = np.linalg.lstsq(design[~inner], gray[~inner], rcond=None)
    return design @ coefficients


def _fit_box(crop: Array) -> Array:
    """Scale so that the longer side is BOX pixels, aspect ratio kept, antialiased."""
    height, width = crop.shape
    scale = BOX / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    resized = Image.fromarray(crop.astype(np.float32)).resize(size, Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized), 0.0, 1.0)


def _centre(digit: Array) -> Array:
    """Paste into 28x28 with the centre of mass at (14, 14), kept whole inside the frame."""
    height, width = digit.shape
    mass_row, mass_col = ndimage.center_of_mass(digit)
    top = int(np.clip(round(MNIST_SIZE / 2 - mass_row), 0, MNIST_SIZE - height))
    left = int(np.clip(round(MNIST_SIZE / 2 - mass_col), 0, MNIST_SIZE - width))
    canvas = np.zeros((MNIST_SIZE, MNIST_SIZE), np.float32)
    canvas[top:top + height, left:left + width] = digit
    return np.round(canvas * 255).astype(np.uint8)
