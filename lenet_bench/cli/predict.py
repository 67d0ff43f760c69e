"""`predict`: the digit in your own image files, read by a trained run's model."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenet_bench.backends import BackendUnavailable
from lenet_bench.cli.common import EXIT_INVALID, EXIT_OK, error
from lenet_bench.console import output
from lenet_bench.predict import RunUnusable, predict_digits, read_digits
from lenet_bench.results.tracking import TrackingError

UNSURE = 0.6  # below this probability the top guess is flagged


def cmd_predict(args: argparse.Namespace) -> int:
    """Every readable image's guess, then every other image's problem; exit 2 if there was any."""
    digits, unreadable = read_digits(args.images)
    problems = list(unreadable.values())
    if digits:
        try:
            run_name, probabilities = predict_digits(args.run, digits, args.tracking_uri)
        except (LookupError, RunUnusable, TrackingError, BackendUnavailable) as err:
            problems.insert(0, str(err))
        else:
            for path, p in probabilities.items():  # one line each, however long: scripts read it
                output.print(guess_line(path, p, run_name), markup=False, soft_wrap=True)
    for problem in problems:
        error(problem)
    return EXIT_INVALID if problems else EXIT_OK


def guess_line(path: Path, p, run_name: str) -> str:
    top = p.argsort()[::-1][:3]
    others = ", ".join(f"digit {k} p={p[k]:.3f}" for k in top[1:])  # 'digit 3': not read as "three more"
    unsure = " - unsure: is it one digit, alone?" if p[top[0]] < UNSURE else ""
    return f"{path}: {int(top[0])} (p={p[top[0]]:.3f}; then {others}) [model: {run_name}]{unsure}"
