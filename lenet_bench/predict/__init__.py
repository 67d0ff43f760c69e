"""Your own digits read by a trained run: images made MNIST-like (digits.py), the run's model (trained.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lenet_bench.predict.digits import DigitError, NoDigit, load_digit, normalize_digit, read_image
from lenet_bench.predict.trained import RunUnusable, TrainedModel

__all__ = ["DigitError", "NoDigit", "RunUnusable", "TrainedModel", "load_digit", "normalize_digit", "predict_files",
           "read_image", "read_digits"]


def read_digits(images: list[Path]) -> np.ndarray:
    """uint8 (N, 28, 28) MNIST-style digits; one DigitError naming every file that cannot be used."""
    digits, problems = [], []
    for path in images:
        try:
            digits.append(load_digit(path))
        except DigitError as err:
            problems.append(str(err))
    if problems:
        raise DigitError("\n".join(problems))
    return np.stack(digits)


def predict_files(run: str, images: list[Path], tracking_uri: str | None = None) -> tuple[str, list[np.ndarray]]:
    """(run name, class probabilities per image) for a completed run given by id or name."""
    digits = read_digits(images)  # before loading the model: a bad file is reported at once
    trained = TrainedModel.load(run, tracking_uri)
    return trained.run_name, list(trained.probabilities(trained.inputs(digits)))
