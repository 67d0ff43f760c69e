"""Predict the digit in a user's own image with a trained run's model.

The image is read as grayscale, resized to 28x28, inverted when the digit is dark on a
light background (MNIST digits are light on black), then prepared exactly as the run's
training data were (padding and normalization from the run's preprocessing.json).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml
from PIL import Image, ImageOps

from lenet_bench import backends
from lenet_bench.results.tracking import Tracker, resolve_tracking_uri
from lenet_bench.data import preprocess_images
from lenet_bench.spec import Spec

MNIST_SIZE = 28


def load_digit(path: Path) -> np.ndarray:
    """A uint8 (28, 28) image, light digit on dark background."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("L").resize((MNIST_SIZE, MNIST_SIZE), Image.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 255 - pixels if border.mean() > 127 else pixels


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def predict_files(run: str, images: list[Path], tracking_uri: str | None = None) -> tuple[str, list[np.ndarray]]:
    """(run name, class probabilities per image) for a completed run given by id or name."""
    tracker = Tracker(resolve_tracking_uri(tracking_uri), create=False)
    found = tracker.find_run(run)
    run_id = found.info.run_id
    spec = Spec.model_validate(yaml.safe_load(tracker.download_text(run_id, "spec.yaml")))
    if spec.model.in_channels != 1:
        raise ValueError(f"run {run!r} was trained on {spec.model.in_channels}-channel images; predict reads grayscale digits")
    preprocessing = json.loads(tracker.download_text(run_id, "preprocessing.json"))
    backend = backends.activate(found.data.tags["backend"])
    model = tracker.load_model(run_id, backend.MLFLOW_FLAVOR)
    batch = np.stack([load_digit(path) for path in images])
    x = preprocess_images(batch, preprocessing["input_size"], preprocessing["offset"], preprocessing["divisor"])
    return found.info.run_name, list(softmax(backend.predict_logits(model, x, "cpu")))
