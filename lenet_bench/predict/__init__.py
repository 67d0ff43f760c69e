"""Your own digits read by a trained run: images made MNIST-like (digits.py), the run's model (trained.py)."""

from __future__ import annotations

import stat
from pathlib import Path

import numpy as np

from lenet_bench.predict.digits import DigitError, NoDigit, load_digit, normalize_digit, read_image
from lenet_bench.predict.trained import RunUnusable, TrainedModel

__all__ = ["DigitError", "NoDigit", "RunUnusable", "TrainedModel", "image_file_problem", "load_digit",
           "normalize_digit", "predict_digits", "read_digits", "read_image"]


def image_file_problem(path: Path) -> str | None:
    """Why `path` cannot be an image file, before anything opens it (a FIFO would block the reader), or None."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return f"{path}: no such image file"
    except OSError as err:
        return f"{path}: cannot read the image ({err.strerror or err})"
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _NOT_REGULAR if test(mode)), "not a regular file")
    return f"{path}: {kind}, not an image file"


_NOT_REGULAR = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def read_digits(images: list[Path]) -> tuple[dict[Path, np.ndarray], dict[Path, str]]:
    """Each readable image's uint8 (28, 28) MNIST-style digit, and each other image's problem, by path."""
    digits, problems = {}, {}
    for path in images:
        problem = image_file_problem(path)
        if problem is None:
            try:
                digits[path] = load_digit(path)
            except DigitError as err:
                problem = str(err)
        if problem is not None:
            problems[path] = problem
    return digits, problems


def predict_digits(run: str, digits: dict[Path, np.ndarray], tracking_uri: str | None = None
                   ) -> tuple[str, dict[Path, np.ndarray]]:
    """(run name, class probabilities per image) for a completed run given by id or name."""
    trained = TrainedModel.load(run, tracking_uri)
    probabilities = trained.probabilities(trained.inputs(np.stack(list(digits.values()))))
    return trained.run_name, dict(zip(digits, probabilities, strict=True))
