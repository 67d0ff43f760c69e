"""`effects`: what each design choice does to accuracy and speed, over the completed runs of a results folder.

Exit codes: 0 the table (also when no factor varies: it says so); 2 no readable runs.csv, one that lacks a
column the effects need, no completed runs, or specs that do not load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from lenet_bench.cli.common import EXIT_INVALID, EXIT_OK, error, specs_or_default
from lenet_bench.cli.json_output import print_json
from lenet_bench.console import console, output
from lenet_bench.results import effects
from lenet_bench.results import effects_words as words
from lenet_bench.results.convert import rows_to_frame
from lenet_bench.results.report import write_effects
from lenet_bench.results.table import ResultsError, ResultsFolder
from lenet_bench.spec import load_variants


def cmd_effects(args: argparse.Namespace) -> int:
    try:
        rows = ResultsFolder(args.results).read_table(require=("test_accuracy",))
    except ResultsError as err:
        error(str(err))
        return EXIT_INVALID
    spec_paths = specs_or_default(args.specs)
    variants = load_variants(spec_paths) if spec_paths else None  # a SpecError is reported by main(), exit 2
    analysis = effects.analyse(rows_to_frame(rows), variants)
    groups = list(dict.fromkeys(analysis.effects["group"]))
    if args.readme_section:
        if args.readme_section not in groups:
            error(f"no effects of a matrix named {args.readme_section!r}; matrices with effects: "
                  f"{', '.join(groups) or '(none)'}")
            return EXIT_INVALID
        output.print(words.readme_section(analysis, args.readme_section), markup=False, highlight=False,
                     soft_wrap=True)
        return EXIT_OK
    if args.markdown:
        output.print(words.effects_markdown(analysis), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    if args.write:
        folder = ResultsFolder(args.results, update_reference=args.update_reference)
        try:
            folder.check_writable()
        except ResultsError as err:
            error(str(err))
            return EXIT_INVALID

        console.print(f"wrote {', '.join(write_effects(analysis, folder.path))} in {folder.path}", markup=False)
    for note in analysis.notes:
        console.print(f"note: {note}", markup=False)
    if args.json:  # every effect and every level's own numbers, untested ones included (`status` says why)
        print_json({"results": args.results, "notes": analysis.notes, "levels": analysis.levels,
                    "effects": analysis.effects})
        return EXIT_OK
    if not groups:
        console.print("no factor varies among the completed runs: nothing to compare", markup=False)
        return EXIT_OK
    for group in groups:
        _print_group(analysis, group, args.results)
    console.print(CAPTION, markup=False)
    return EXIT_OK


CAPTION = ("Each level against the reference (the spec's first level), paired by seed. The interval is taken at the "
           "level Holm's method tested the effect at (the 'at' column), so it excludes zero exactly when 'resolved' "
           "says yes; otherwise about how many seeds would resolve an effect this size (80% power). Timings only of "
           "runs timed quiet, within one condition; the rest is in effects.md (`effects --markdown`).")


def _print_group(analysis, group: str, results: Path) -> None:
    levels, condition = words.level_rows(analysis.levels, group)
    if levels:
        table = Table(title=f"{results}: {group}: each level's own numbers (mean [95% CI] over seeds)",
                      caption=f"timings: {condition}" if condition else "no quiet timings")
        for name in levels[0]:
            table.add_column(name, justify="left" if name in ("factor", "level") else "right")
        for row in levels:
            table.add_row(*(escape(str(value)) for value in row.values()))
        output.print(table)
    part = analysis.effects[analysis.effects["group"] == group]
    shown = part[part["status"].isin(["tested", "no spread"])]
    table = Table(title=f"{results}: {group}: effects")
    table.add_column("choice", no_wrap=True)
    table.add_column("metric", no_wrap=True)
    table.add_column("conditions", overflow="fold", min_width=14, max_width=26)
    table.add_column("n", justify="right")
    for name in ("effect [interval]", "at", "resolved"):
        table.add_column(name, justify="left" if name == "resolved" else "right", no_wrap=True)
    for _, row in shown.iterrows():
        colour = "green" if row["distinguishable"] else "dim"
        cells = words.cells_text(row)  # an interaction: what comparing its two cells shows, beside it
        table.add_row(escape(words.choice(row) + (f"\n  (cells {cells})" if cells else "")), str(row["metric"]), escape(str(row["conditions"])),
                      str(int(row["n"])), words.format_effect(row), words.shown_interval(row)[2],  # type: ignore[index]
                      f"[{colour}]{escape(words.short_verdict(row))}[/]")
    if len(shown):
        output.print(table)
    untested = len(part) - len(shown)
    if untested:
        reasons = words.counted(part.loc[~part.index.isin(shown.index), "status"])
        console.print(f"{group}: {untested} more effect(s) untested ({reasons}): see effects.md", markup=False)
