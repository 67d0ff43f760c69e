"""`effects`: what each design choice does to accuracy and speed, over the completed runs of a results folder.

Exit codes: 0 the table (also when no factor varies: it says so); 2 no readable runs.csv, no completed
runs, or specs that do not load.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from lenet_bench.cli.common import DEFAULT_RESULTS, EXIT_INVALID, EXIT_OK, error, specs_or_default
from lenet_bench.console import console, output


def add_arguments(commands: argparse._SubParsersAction) -> None:
    effects = commands.add_parser(
        "effects", help="what each design choice does to accuracy and speed: effects with 95%% CIs, Holm-adjusted "
                        "p-values and the seeds an unresolved effect needs")
    effects.add_argument("results", type=Path, nargs="?", default=DEFAULT_RESULTS,
                         help="folder with runs.csv (default: %(default)s; the project's own: results/reference)")
    effects.add_argument("--specs", nargs="+", metavar="PATH",
                         help="specs that name each matrix's factors and reference levels (default: specs/ when "
                              "it exists; without specs the factors are the columns that vary within a matrix)")
    effects.add_argument("--markdown", action="store_true", help="print effects.md instead of the table")
    effects.add_argument("--readme-section", metavar="MATRIX",
                         help="print one matrix's effects in plain words, between markers, for a README")
    effects.set_defaults(handler=cmd_effects)


def cmd_effects(args: argparse.Namespace) -> int:
    from lenet_bench.results import effects
    from lenet_bench.results.convert import rows_to_frame
    from lenet_bench.results.table import ResultsError, ResultsFolder
    from lenet_bench.spec import load_variants

    folder = ResultsFolder(args.results)
    if not folder.runs_csv.is_file():
        error(f"{folder.runs_csv} not found: no runs recorded in {args.results} (run `python -m lenet_bench run` "
              "first, or pass the folder that holds runs.csv)")
        return EXIT_INVALID
    try:
        rows = folder.read()
    except ResultsError as err:
        error(str(err))
        return EXIT_INVALID
    if not any(r.status.value == "completed" for r in rows):
        error(f"{folder.runs_csv} has no completed runs: nothing to compare")
        return EXIT_INVALID
    spec_paths = specs_or_default(args.specs)
    variants = load_variants(spec_paths) if spec_paths else None  # a SpecError is reported by main(), exit 2
    table, notes = effects.effects_table(rows_to_frame(rows), variants)
    if args.readme_section:
        if args.readme_section not in set(table["group"]):
            error(f"no effects of a matrix named {args.readme_section!r}; matrices with effects: "
                  f"{', '.join(dict.fromkeys(table['group'])) or '(none)'}")
            return EXIT_INVALID
        output.print(effects.readme_section(table, args.readme_section), markup=False, highlight=False,
                     soft_wrap=True)
        return EXIT_OK
    if args.markdown:
        output.print(effects.effects_markdown(table, notes), markup=False, highlight=False, soft_wrap=True)
        return EXIT_OK
    for note in notes:
        console.print(f"note: {note}", markup=False)
    if table.empty:
        console.print("no factor varies among the completed runs: nothing to compare", markup=False)
        return EXIT_OK
    caption = ("level against reference, paired by seed; 95% CI unadjusted, p adjusted with Holm's method per metric; "
               "timings only within one condition; resolved: distinguishable from zero, or about how many seeds "
               "would tell (80% power)")
    groups = list(dict.fromkeys(table["group"]))
    for index, group in enumerate(groups):
        rich_table = Table(title=f"{args.results}: {group}", caption=caption if index == len(groups) - 1 else None)
        rich_table.add_column("choice", overflow="fold")
        rich_table.add_column("metric", no_wrap=True)
        rich_table.add_column("conditions", overflow="fold", max_width=26)
        rich_table.add_column("n", justify="right")
        for name in ("effect [95% CI]", "p (Holm)", "resolved"):
            rich_table.add_column(name, justify="right" if name != "resolved" else "left", no_wrap=True)
        for _, row in table[table["group"] == group].iterrows():
            colour = "green" if row["distinguishable"] else "dim"
            rich_table.add_row(escape(f"{row['factor']}: {row['level']} vs {row['reference']}"), str(row["metric"]),
                               escape(str(row["conditions"])), str(int(row["n"])), effects.format_effect(row),
                               effects.p_text(row["p_adjusted"]), f"[{colour}]{escape(effects.short_verdict(row))}[/]")
        output.print(rich_table)
    return EXIT_OK
