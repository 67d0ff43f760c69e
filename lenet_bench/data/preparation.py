"""The one place for preprocessing: raw uint8 images -> model-ready float32 NCHW splits, and their keys."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from lenet_bench.data.sources import RawDataset

NORMALIZATIONS = ("unit", "standardize", "centered", "lecun")


@dataclass(frozen=True)
class PreparedData:
    """Model-ready float32 NCHW arrays (C-contiguous) and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray  # 0 rows when validation_split == 0
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    key: str  # identifies the raw content and every preparation setting, for caching results derived from it
    input_size: int = 0
    resize: int | None = None  # images were down-sampled to resize x resize before padding
    offset: tuple[float, ...] = ()  # per channel, in uint8 pixel units: x -> (x - offset) / divisor
    divisor: tuple[float, ...] = ()

    def preprocessing(self) -> dict:
        """What `preprocess_images` needs to prepare new images exactly as these were (e.g. for predict)."""
        return {"input_size": self.input_size, "offset": list(self.offset), "divisor": list(self.divisor),
                "resize": self.resize}

    @property
    def background(self) -> tuple[float, ...]:
        """Per channel, what normalizing made of a raw 0 pixel: the padding's value (and MNIST's background), which
        pixels shifted in from outside an image take when it is distorted. In float32, as the images were made."""
        return tuple(float((np.float32(0) - np.float32(o)) / np.float32(d)) for o, d in zip(self.offset, self.divisor))

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def prepare(raw: RawDataset, *, input_size: int, normalization: str = "unit", validation_split: float = 0.0,
            subset: int | None = None, test_subset: int | None = None, resize: int | None = None) -> PreparedData:
    """Subset, split, pad and normalise `raw` for a model taking (C, input_size, input_size) inputs.

    input_size 32 on 28x28 images zero-pads 2 pixels each side (LeNet-5's original input size). Validation data
    are the last `validation_split` fraction of the (subset) training set, as in Keras' `validation_split`.
    "standardize" uses per-channel statistics of the training split as the model sees it (padding included).
    `resize` down-samples every image to resize x resize (area averaging) before the padding: LeNet-1's
    digits were "down-sampled to 16x16 pixels and centered in the 28x28 input layer" (LeCun et al. 1998).
    """
    native = raw.x_train.shape[1]
    allowed = (native, 32) if native == 28 else (native,)
    if input_size not in allowed:
        raise ValueError(f"input_size for {raw.name} ({native}x{native} images) must be one of {allowed}; "
                         f"received {input_size}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}; received {normalization!r}")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1); received {validation_split}")
    n_train = _first_n(subset, len(raw.x_train), "subset")
    n_test = _first_n(test_subset, len(raw.x_test), "test_subset")
    n_fit = math.floor(n_train * (1.0 - validation_split))  # Keras' formula, so splits match it exactly
    if n_fit == 0:
        raise ValueError(f"validation_split {validation_split} of {n_train} images leaves none to train on")
    if resize is not None and (resize > input_size or (input_size - resize) % 2):
        raise ValueError(f"resize must be at most input_size ({input_size}) and leave an even margin; "
                         f"received {resize}")

    fit = _resized(raw.x_train[:n_fit], resize)
    offset, divisor = _normalization(normalization, _nchw(fit, (input_size - fit.shape[1]) // 2))
    x_fit, x_val, x_test = (preprocess_images(x, input_size, offset, divisor, resize)
                            for x in (raw.x_train[:n_fit], raw.x_train[n_fit:n_train], raw.x_test[:n_test]))

    key = preparation_key(raw, input_size=input_size, normalization=normalization,
                          validation_split=validation_split, subset=subset, test_subset=test_subset, resize=resize)
    return PreparedData(
        x_train=x_fit, y_train=np.array(raw.y_train[:n_fit], dtype=np.int64),
        x_val=x_val, y_val=np.array(raw.y_train[n_fit:n_train], dtype=np.int64),
        x_test=x_test, y_test=np.array(raw.y_test[:n_test], dtype=np.int64),
        key=key, input_size=input_size, resize=resize,
        offset=tuple(float(v) for v in offset.ravel()), divisor=tuple(float(v) for v in divisor.ravel()),
    )


def preparation_key(raw: RawDataset, *, input_size: int, normalization: str, validation_split: float,
                    subset: int | None, test_subset: int | None, resize: int | None = None) -> str:
    """What `prepare` would make of `raw` with these settings, identified without preparing it."""
    n_train = _first_n(subset, len(raw.x_train), "subset")
    n_test = _first_n(test_subset, len(raw.x_test), "test_subset")
    # Effective counts rather than subset/test_subset, so that subset=None and subset=N give the same key.
    settings = [raw.digest, input_size, normalization, validation_split, n_train, n_test]
    if resize is not None:  # appended only when set, so every key made before resize existed still holds
        settings.append(resize)
    return f"{raw.name}-{hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]}"


def preprocess_images(images: np.ndarray, input_size: int, offset, divisor, resize: int | None = None) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,C) images -> float32 NCHW model input: resized if asked, padded to input_size,
    then normalized."""
    images = _resized(images, resize)
    pad = (input_size - images.shape[1]) // 2
    shape = (1, -1, 1, 1)
    return _to_float(_nchw(images, pad), np.asarray(offset, np.float32).reshape(shape),
                     np.asarray(divisor, np.float32).reshape(shape))


def _first_n(n: int | None, total: int, what: str) -> int:
    if n is None:
        return total
    if not 1 <= n <= total:
        raise ValueError(f"{what} must be between 1 and {total}; received {n}")
    return n


def _resized(images: np.ndarray, size: int | None) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,C) images resized to size x size by area averaging (Pillow's box filter)."""
    if size is None or size == images.shape[1]:
        return images
    resized = [np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BOX)) for image in images]
    return np.stack(resized) if resized else np.empty((0, size, size, *images.shape[3:]), images.dtype)


def _nchw(images: np.ndarray, pad: int) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,C) -> uint8 NCHW, zero-padded while still uint8 so padding equals the background."""
    x = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x


def _normalization(name: str, x_fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, divisor) per channel, shaped (1, C, 1, 1), in uint8 pixel units: x -> (x - offset) / divisor."""
    channels = x_fit.shape[1]
    if name == "unit":
        offset, divisor = np.zeros(channels), np.full(channels, 255.0)
    elif name == "lecun":
        # LeCun et al. (1998), II.B: background (0) -> -0.1, foreground (255) -> 1.175: (x - 20) / 200.
        offset, divisor = np.full(channels, 20.0), np.full(channels, 200.0)
    elif name == "centered":
        offset, divisor = np.full(channels, 127.5), np.full(channels, 127.5)
    else:
        # Exact statistics from a histogram of the 256 pixel values: no float copy of the whole training set.
        values = np.arange(256.0)
        offset, divisor = np.empty(channels), np.empty(channels)
        for c in range(channels):
            counts = np.bincount(x_fit[:, c].ravel(), minlength=256)
            offset[c] = counts @ values / counts.sum()
            std = math.sqrt(counts @ (values - offset[c]) ** 2 / counts.sum())
            divisor[c] = std if std > 0 else 1.0  # a constant channel: centre it, nothing to scale
    return offset.reshape(1, -1, 1, 1).astype(np.float32), divisor.reshape(1, -1, 1, 1).astype(np.float32)


def _to_float(x: np.ndarray, offset: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    out = x.astype(np.float32, order="C")
    out -= offset
    out /= divisor
    return out
