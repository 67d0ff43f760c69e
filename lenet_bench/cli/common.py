"""What the commands share: exit codes, argument groups, error printing, and stop signals."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Protocol

from rich.markup import escape

from lenet_bench import backends
from lenet_bench.console import console
from lenet_bench.spec import DEFAULT_SUITE, DEVICES

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130
DEFAULT_RESULTS = Path("results")
DEFAULT_EXPERIMENT = "lenet_bench/specs"  # what `python -m lenet_bench run specs/` logs to


class Commands(Protocol):
    """What a command module adds its parser to: the parser's subcommands (argparse's own type is private)."""

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser: ...


class TakesArguments(Protocol):
    """A parser, or a group of its arguments (argparse's group types are private)."""

    def add_argument(self, *names: str, **kwargs: Any) -> Any: ...


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, received {text}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, received {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a port number from 0 to 65535, received {value}")
    return value


def add_selection(parser: argparse.ArgumentParser, *, overrides: bool = True) -> None:
    parser.add_argument("paths", nargs="+", help="spec files or folders")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only variants whose name matches this glob (lenet5 exactly, 'lenet5*' its family); "
                             "repeatable")
    parser.add_argument("--backend", action="append", default=[],
                        help=f"only this backend ({', '.join(backends.names())}); repeatable")
    parser.add_argument("--device", action="append", default=[], choices=DEVICES, help="only this device; repeatable")
    parser.add_argument("--seed", dest="seeds", type=int, action="append", default=[],
                        help="run these seeds instead of each spec's; repeatable")
    if overrides:
        parser.add_argument("--epochs", type=positive_int,
                            help="override every spec's epochs (a run of its own: never replaces the spec's run)")
        parser.add_argument("--max-steps", type=positive_int,
                            help="cap the optimizer steps per epoch, for quick runs (a run of its own, likewise)")
        parser.add_argument("--subset", type=positive_int,
                            help="train on the first N training images only (a run of its own, likewise)")


def add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri",
                        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")


def add_store(parser: argparse.ArgumentParser, *, experiment_default: str | None = DEFAULT_EXPERIMENT) -> None:
    add_tracking_uri(parser)
    parser.add_argument("--experiment", default=experiment_default,
                        help="MLflow experiment name (default: "
                             + (f"{experiment_default}, what `run specs/` logs to)" if experiment_default
                                else "lenet_bench/<spec folder>)"))


def add_results_folder(parser: argparse.ArgumentParser, verb: str) -> None:
    """The results folder a command reads, as its optional first argument."""
    parser.add_argument("results", nargs="?", type=Path, default=DEFAULT_RESULTS,
                        help=f"results folder whose runs.csv to {verb} (default: %(default)s; the project's own: "
                             "results/reference)")


def add_specs(parser: argparse.ArgumentParser, purpose: str) -> None:
    """--specs: the spec files or folders a command reads the runs' specs from, and what it takes from them."""
    parser.add_argument("--specs", nargs="+", metavar="PATH", help=purpose)


def add_update_reference(parser: argparse.ArgumentParser, condition: str = "") -> None:
    """--update-reference: writing into a folder of reference results is refused without it (reference_folder.py)."""
    parser.add_argument("--update-reference", action="store_true",
                        help=f"{condition}allow writing a folder of reference results (results/reference), for "
                             "maintainers")


def error(message: str) -> None:
    console.print(f"[red]error:[/] {escape(message)}")


PAPER_SPECS = Path("paper1998")  # the project's other spec folder: hours of one-image updates, not in the suite


def specs_or_default(paths: list[str | Path] | None) -> list[str | Path] | None:
    """The spec paths a command was given, else the project's own spec folders that are here (the default suite
    and paper1998/, whose runs results/reference holds too), else None."""
    if paths:
        return paths
    found: list[str | Path] = [folder for folder in (DEFAULT_SUITE, PAPER_SPECS) if folder.is_dir()]
    return found if DEFAULT_SUITE.is_dir() else None
