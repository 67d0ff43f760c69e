"""`validate` and `list`: the specs, checked and expanded, without training."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.table import Table

from lenet_bench.cli.common import EXIT_INVALID, EXIT_OK, add_selection, error
from lenet_bench.console import console, output
from lenet_bench.engine.plan import RunOptions, SelectionError, plan_jobs
from lenet_bench.spec import Spec, load_variants


def add_arguments(commands: argparse._SubParsersAction) -> None:
    validate = commands.add_parser("validate", help="check specs and report every problem")
    validate.add_argument("paths", nargs="+", help="spec files or folders")
    validate.set_defaults(handler=cmd_validate)
    listing = commands.add_parser("list", help="print the expanded matrix, one row per run, without training")
    add_selection(listing)
    listing.add_argument("--layers", action="store_true", help="also print each variant's per-layer summary")
    listing.add_argument("--diagrams", type=Path, metavar="FOLDER",
                         help="also draw each variant's architecture diagram into FOLDER (one PNG per layer "
                              "description, README.md says which variant has which), as runs do in results/")
    listing.set_defaults(handler=cmd_list)


def cmd_validate(args: argparse.Namespace) -> int:
    variants = load_variants(args.paths)
    files = sorted({str(v.file) for v in variants})
    console.print(f"ok: {len(variants)} variant(s) in {len(files)} file(s)")
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    options = RunOptions(only=tuple(args.only), backends=tuple(args.backend), devices=tuple(args.device),
                         epochs=args.epochs, max_steps=args.max_steps, subset=args.subset, seeds=tuple(args.seeds))
    try:
        jobs = plan_jobs(load_variants(args.paths), options)
    except SelectionError as err:
        error(str(err))
        return EXIT_INVALID
    table = Table(title=f"{len(jobs)} run(s)")
    for column in ("run", "params", "MFLOPs/img", "input", "epochs", "batch", "optimizer", "expect"):
        table.add_column(column, justify="right" if column in ("params", "MFLOPs/img", "epochs", "batch") else "left")
    for job in jobs:
        spec = job.spec
        summary = spec.summary()
        expect = "not judged" if job.overrides else f">= {spec.expect.min_test_accuracy:.2%}"
        table.add_row(job.name, f"{summary.params:,}", f"{summary.flops / 1e6:.3f}", "x".join(map(str, spec.input_shape)),
                      str(spec.train.epochs), str(spec.train.batch_size), spec.train.optimizer.name, expect)
    output.print(table)
    if args.layers:
        for variant in {job.variant.name: job.variant for job in jobs}.values():
            output.print(f"\n{variant.name}\n{variant.spec.summary().table()}", markup=False)
    if args.diagrams:
        return _draw_diagrams(args.diagrams, {job.variant.name: job.variant.spec for job in jobs})
    return EXIT_OK


def _draw_diagrams(folder: Path, specs: dict[str, Spec]) -> int:
    from lenet_bench.results.diagrams import DiagramFolder

    diagrams = DiagramFolder(folder)
    try:
        for name, spec in specs.items():
            diagrams.diagram(name, spec)
    except OSError as err:
        error(f"cannot write the diagrams into {folder}: {err.strerror or err}")
        return EXIT_INVALID
    files = len(list(folder.glob("*.png")))
    console.print(f"diagrams of {len(specs)} variant(s) in {folder}/ ({files} file(s), index {DiagramFolder.INDEX})")
    return EXIT_OK
