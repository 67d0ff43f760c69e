"""`check`: exit 1 when a recorded run misses its spec's expectation, or a setup's mean regressed against the
project's reference results."""

from __future__ import annotations

import argparse

from rich.markup import escape
from rich.table import Table

from lenet_bench.cli.common import (
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    error,
    specs_or_default,
)
from lenet_bench.cli.json_output import print_json
from lenet_bench.console import console, output
from lenet_bench.results.check import Verdict, check_results
from lenet_bench.results.table import ResultsError
from lenet_bench.spec import load_variants


def cmd_check(args: argparse.Namespace) -> int:
    specs = specs_or_default(args.specs)
    if specs is None:
        error("no specs to judge the runs by: pass --specs PATH (no specs/ folder here)")
        return EXIT_INVALID
    try:
        verdicts = check_results(args.results, load_variants(specs), args.reference)
    except (FileNotFoundError, ResultsError) as err:
        error(str(err))
        return EXIT_INVALID
    counts = {status: sum(v.status == status for v in verdicts) for status in STATUSES}
    if args.json:  # the same verdicts; the exit code says the same as with the table
        print_json({"results": args.results, "specs": specs, "counts": counts, "verdicts": verdicts})
    else:
        _print_verdicts(verdicts, f"{args.results}: {len(verdicts)} run(s) against {', '.join(map(str, specs))}")
    console.print(", ".join(f"{n} {status}" for status, n in counts.items()))
    unjudged = sorted({v.run.split("/", 1)[0] for v in verdicts if v.status == "not in specs"})
    if unjudged:
        console.print(f"{counts['not in specs']} run(s) of {len(unjudged)} spec(s) not among "
                      f"{' '.join(map(str, specs))} were not judged ({', '.join(unjudged[:4])}"
                      f"{', ...' if len(unjudged) > 4 else ''}): specs no longer in the project, or pass their files with --specs "
                      f"(without it, check reads the project's own: --specs {' '.join(map(str, specs_or_default(None) or []))})",
                      markup=False)
    return EXIT_FAILED if counts["miss"] or counts["regressed"] else EXIT_OK


STATUSES = ("pass", "miss", "regressed", "skipped", "interrupted", "not judged", "superseded", "not in specs")
COLOURS = {"pass": "green", "miss": "red", "regressed": "red", "skipped": "yellow", "interrupted": "yellow", "not judged": "dim",
           "not in specs": "dim", "superseded": "dim"}


def _print_verdicts(verdicts: list[Verdict], title: str) -> None:
    table = Table(title=title)
    for column in ("run", "verdict", "test acc", "expected", "note"):
        table.add_column(column)
    for v in verdicts:
        table.add_row(escape(v.run), f"[{COLOURS[v.status]}]{v.status}[/]",
                      f"{100 * v.test_accuracy:.2f}%" if v.test_accuracy is not None else "",
                      f">= {100 * v.expected:.2f}%" if v.expected is not None else "", escape(v.note))
    output.print(table)
