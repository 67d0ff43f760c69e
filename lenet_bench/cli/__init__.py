"""Command line: run, list, validate, bench, check, predict, serve, compare, report, effects, export.

Exit codes: 0 all good; 1 a run failed or missed its expectation; 2 invalid input
(bad spec, bad selection, missing data, an unusable store or results folder, nothing ran);
130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

from lenet_bench.cli.arguments import build_parser
from lenet_bench.cli.common import EXIT_INVALID
from lenet_bench.console import console
from lenet_bench.spec import SpecError

__all__ = ["build_parser", "command_handler", "main", "entry_point"]


def command_handler(name: str) -> Callable[[argparse.Namespace], int]:
    """The function a parser's `handler` default names ("module:function" of lenet_bench.cli), its module imported
    now: only the command that runs pays for its imports."""
    module, function = name.split(":")
    return getattr(importlib.import_module(f"lenet_bench.cli.{module}"), function)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = command_handler(args.handler)
    try:
        return int(handler(args))
    except SpecError as err:
        console.print(f"[bold red]invalid specs[/] ({len(err.issues)} problem(s)):")
        for issue in err.issues:
            console.print(f"  {issue}", markup=False)
        return EXIT_INVALID


def entry_point() -> None:
    sys.exit(main())
