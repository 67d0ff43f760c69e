"""`validate` and `list`: the specs, checked and expanded, without training."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path

from rich.table import Table

from lenet_bench.cli.common import DEFAULT_RESULTS, EXIT_INVALID, EXIT_OK, add_selection, error
from lenet_bench.console import console, duration, output
from lenet_bench.device import allowed_cores
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
    from lenet_bench.engine import estimate
    from lenet_bench.engine.driver import skip_reason_here

    book = estimate.measured_speeds(DEFAULT_RESULTS)
    cores = len(allowed_cores())
    table = Table(title=f"{len(jobs)} run(s)", caption="train TFLOP: images x epochs x training FLOPs per image; "
                  f"est. time: inline on this machine ({cores} core(s)), from speeds measured in results/ and "
                  "results/reference/; here: whether it can run on this machine (the reasons below)")
    for column in ("run", "params", "MFLOPs/img", "train TFLOP", "est. time", "input", "epochs", "batch",
                   "optimizer", "expect", "here"):
        numeric = column in ("params", "MFLOPs/img", "train TFLOP", "est. time", "epochs", "batch")
        table.add_column(column, justify="right" if numeric else "left")
    guesses, worker_guesses, reasons = [], [], []
    for job in jobs:
        spec = job.spec
        summary = spec.summary()
        expect = "not judged" if job.overrides else f">= {spec.expect.min_test_accuracy:.2%}"
        reason = skip_reason_here(job, cluster=False, inline=False)
        guess = book.estimate(job, cores) if reason is None else estimate.Estimate(math.nan, "skipped")
        guesses.append(guess)
        # --workers 2 gives each run its own share of the cores: its speed is the one measured on that share.
        worker_guesses.append(book.estimate(job, max(cores // 2, 1)) if reason is None else guess)
        reasons.append(reason)
        table.add_row(job.name, f"{summary.params:,}", f"{summary.flops / 1e6:.3f}",
                      f"{estimate.training_flops(job) / 1e12:.2f}", duration(guess.seconds) if reason is None else "",
                      "x".join(map(str, spec.input_shape)), str(spec.train.epochs), str(spec.train.batch_size),
                      spec.train.optimizer.name, expect, "ok" if reason is None else "skip")
    output.print(table)
    for reason, count in Counter(r for r in reasons if r).items():
        console.print(f"skipped here: {count} run(s): {reason}", markup=False)
    total = sum(estimate.training_flops(job) for job in jobs) / 1e12
    console.print(f"{len(jobs)} run(s), {sum(map(bool, reasons))} of them skipped here; {total:,.1f} TFLOP of training",
                  markup=False)
    by_backend: dict[str, tuple[list[estimate.Estimate], list[estimate.Estimate]]] = {}
    for guess, worker_guess, job, reason in zip(guesses, worker_guesses, jobs, reasons, strict=True):
        if reason is None:
            inline, workers = by_backend.setdefault(job.backend, ([], []))
            inline.append(guess)
            workers.append(worker_guess)
    for backend, (found, on_workers) in by_backend.items():
        unknown = sum(not math.isfinite(g.seconds) for g in found)
        console.print(f"  {backend}: {len(found)} run(s), about {duration(estimate.invocation_seconds(found, 1))} "
                      f"inline, {duration(estimate.invocation_seconds(on_workers, 2))} with --workers 2"
                      + (f" ({unknown} never measured, not counted)" if unknown else ""), markup=False)
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
