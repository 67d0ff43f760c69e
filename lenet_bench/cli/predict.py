"""`predict`: the digit in your own image files, read by a trained run's model."""

from __future__ import annotations

import argparse
from pathlib import Path

from lenet_bench.cli.common import EXIT_INVALID, EXIT_OK, error
from lenet_bench.console import output

UNSURE = 0.6  # below this probability the top guess is flagged


def add_arguments(commands: argparse._SubParsersAction) -> None:
    predict = commands.add_parser("predict", help="predict the digit in your own image files with a trained run")
    predict.add_argument("run", help="MLflow run id, or run name such as lenet5/torch/cpu/seed0 (newest wins)")
    predict.add_argument("images", nargs="+", type=Path,
                         help="image files (any format Pillow reads), one digit each, any size, dark on light or "
                              "light on dark")
    predict.add_argument("--tracking-uri",
                         help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    predict.set_defaults(handler=cmd_predict)


def cmd_predict(args: argparse.Namespace) -> int:
    from lenet_bench.backends import BackendUnavailable
    from lenet_bench.predict import DigitError, RunUnusable, predict_files
    from lenet_bench.results.tracking import TrackingError

    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        error(f"no such image file: {', '.join(missing)}")
        return EXIT_INVALID
    try:
        run_name, probabilities = predict_files(args.run, args.images, args.tracking_uri)
    except (DigitError, LookupError, RunUnusable, TrackingError, BackendUnavailable) as err:
        error(str(err))
        return EXIT_INVALID
    for path, p in zip(args.images, probabilities):
        top = p.argsort()[::-1][:3]
        others = ", ".join(f"digit {k} p={p[k]:.3f}" for k in top[1:])  # 'digit 3': not read as "three more"
        unsure = " - unsure: is it one digit, alone?" if p[top[0]] < UNSURE else ""
        output.print(f"{path}: {int(top[0])} (p={p[top[0]]:.3f}; then {others}) [model: {run_name}]{unsure}",
                     markup=False, soft_wrap=True)  # one line per image, however long: scripts read it
    return EXIT_OK
