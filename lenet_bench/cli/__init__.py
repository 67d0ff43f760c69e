"""Command line: run, list, validate, bench, check, predict, serve, compare, report, effects, export.

Exit codes: 0 all good; 1 a run failed or missed its expectation; 2 invalid input
(bad spec, bad selection, missing data, an unusable store or results folder, nothing ran);
130 interrupted.
"""

from __future__ import annotations

import importlib
import sys

from lenet_bench.cli.arguments import build_parser
from lenet_bench.cli.common import EXIT_INVALID
from lenet_bench.console import console
from lenet_bench.spec import SpecError

__all__ = ["build_parser", "main", "entry_point"]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, function = args.handler.split(":")
    handler = getattr(importlib.import_module(f"lenet_bench.cli.{module}"), function)
    try:
        return int(handler(args))
    except SpecError as err:
        console.print(f"[bold red]invalid specs[/] ({len(err.issues)} problem(s)):")
        for issue in err.issues:
            console.print(f"  {issue}", markup=False)
        return EXIT_INVALID


def entry_point() -> None:
    sys.exit(main())
