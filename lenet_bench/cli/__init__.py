"""Command line: run, list, validate, bench, check, predict, serve, compare, report, effects, export.

Exit codes: 0 all good; 1 a run failed or missed its expectation; 2 invalid input
(bad spec, bad selection, missing data, an unusable store or results folder, nothing ran);
130 interrupted.
"""

from __future__ import annotations

import argparse
import sys

from lenet_bench import __version__
from lenet_bench.cli import bench, check, compare, effects, export, predict, run, serve, specs
from lenet_bench.cli.common import EXIT_INVALID
from lenet_bench.console import console
from lenet_bench.spec import SpecError

COMMANDS = (run, specs, bench, check, predict, serve, compare, effects, export)  # each adds its subcommands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lenet_bench", description="Benchmark and reproduce LeNet variants.")
    parser.add_argument("--version", action="version", version=f"lenet_bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in COMMANDS:
        module.add_arguments(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except SpecError as err:
        console.print(f"[bold red]invalid specs[/] ({len(err.issues)} problem(s)):")
        for issue in err.issues:
            console.print(f"  {issue}", markup=False)
        return EXIT_INVALID


def entry_point() -> None:
    sys.exit(main())
