"""`validate` and `list`: the specs, checked and expanded, without training."""

from __future__ import annotations

import argparse
import math
from collections import Counter
from pathlib import Path
from typing import Any

from rich.table import Table

from lenet_bench.cli.common import DEFAULT_RESULTS, EXIT_INVALID, EXIT_OK, error
from lenet_bench.cli.json_output import print_json
from lenet_bench.console import console, duration, output
from lenet_bench.device import allowed_cores
from lenet_bench.engine.backends_here import BackendsHere
from lenet_bench.engine.estimate import TimeEstimate, invocation_seconds, measured_speeds, training_flops
from lenet_bench.engine.plan import Job, RunOptions, SelectionError, plan_jobs
from lenet_bench.spec import Spec, load_variants
from lenet_bench.spec.arch import layer_type


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
    cores = len(allowed_cores())
    rows = listing(jobs, cores)
    variants = {job.variant.name: job.variant.spec for job in jobs}
    if args.json:
        print_json({"runs": rows, **({"variants": [{"variant": name, "layers": layer_rows(spec)}
                                                   for name, spec in variants.items()]} if args.layers else {})})
    else:
        _print_listing(rows, cores)
    _print_totals(rows)
    if args.layers and not args.json:
        for name, spec in variants.items():
            output.print(f"\n{name}\n{spec.summary().table()}", markup=False)
    if args.diagrams:
        return _draw_diagrams(args.diagrams, variants)
    return EXIT_OK


def listing(jobs: list[Job], cores: int) -> list[dict[str, Any]]:
    """One row per run, what `list` prints and `list --json` writes: what it trains, its work, its estimated time
    inline and on one of two workers' shares of the cores (null when it does not run here or was never measured),
    and whether it can run on this machine, with the reason when not."""
    book = measured_speeds(DEFAULT_RESULTS)
    rows, here = [], BackendsHere()
    for job in jobs:
        spec, summary = job.spec, job.spec.summary()
        reason = here.skip_reason(job, cluster=False, inline=False)
        # --workers 2 gives each run its own share of the cores: its speed is the one measured on that share.
        inline, on_worker = ((book.estimate(job, cores), book.estimate(job, max(cores // 2, 1))) if reason is None
                             else (None, None))
        rows.append({"run": job.name, "variant": job.variant.name, "backend": job.backend, "device": str(job.device),
                     "seed": job.seed, "overrides": job.overrides_label or None, "params": summary.params,
                     "flops_per_image": summary.flops, "train_flops_per_image": summary.train_flops,
                     "train_flops": training_flops(job), "input_shape": list(spec.input_shape),
                     "epochs": spec.train.epochs, "batch_size": spec.train.batch_size,
                     "optimizer": spec.train.optimizer.name,
                     "min_test_accuracy": None if job.overrides else spec.expect.min_test_accuracy,
                     "estimated_seconds": inline.seconds if inline else None,
                     "estimated_seconds_two_workers": on_worker.seconds if on_worker else None,
                     "estimate_source": inline.source if inline else None,
                     "runs_here": reason is None, "skip_reason": reason})
    return rows


def layer_rows(spec: Spec) -> list[dict[str, Any]]:
    """The per-layer summary `list --layers` prints, as rows: name, type, output shape, params, MACs."""
    summary = spec.summary()
    return [{"layer": layer.name, "type": layer_type(layer), "output_shape": list(layer.output_shape),
             "params": layer.params, "macs": layer.macs} for layer in summary.layers]


def _seconds(value: float | None) -> float:
    return math.nan if value is None else value


def _print_listing(rows: list[dict[str, Any]], cores: int) -> None:
    table = Table(title=f"{len(rows)} run(s)", caption="train TFLOP: images x epochs x training FLOPs per image; "
                  f"est. time: inline on this machine ({cores} core(s)), from speeds measured in results/ and "
                  "results/reference/; here: whether it can run on this machine (the reasons below)")
    for column in ("run", "params", "MFLOPs/img", "train TFLOP", "est. time", "input", "epochs", "batch",
                   "optimizer", "expect", "here"):
        numeric = column in ("params", "MFLOPs/img", "train TFLOP", "est. time", "epochs", "batch")
        table.add_column(column, justify="right" if numeric else "left")
    for row in rows:
        expect = "not judged" if row["min_test_accuracy"] is None else f">= {row['min_test_accuracy']:.2%}"
        table.add_row(row["run"], f"{row['params']:,}", f"{row['flops_per_image'] / 1e6:.3f}",
                      f"{row['train_flops'] / 1e12:.2f}",
                      duration(_seconds(row["estimated_seconds"])) if row["runs_here"] else "",
                      "x".join(map(str, row["input_shape"])), str(row["epochs"]), str(row["batch_size"]),
                      row["optimizer"], expect, "ok" if row["runs_here"] else "skip")
    output.print(table)


def _print_totals(rows: list[dict[str, Any]]) -> None:
    """What is skipped here and why, the work in all, and each backend's estimated wall time (on stderr)."""
    for reason, count in Counter(row["skip_reason"] for row in rows if row["skip_reason"]).items():
        console.print(f"skipped here: {count} run(s): {reason}", markup=False)

    total = sum(row["train_flops"] for row in rows) / 1e12
    skipped = sum(not row["runs_here"] for row in rows)
    console.print(f"{len(rows)} run(s), {skipped} of them skipped here; {total:,.1f} TFLOP of training", markup=False)
    by_backend: dict[str, tuple[list[TimeEstimate], list[TimeEstimate]]] = {}
    for row in rows:
        if row["runs_here"]:
            inline, workers = by_backend.setdefault(row["backend"], ([], []))
            inline.append(TimeEstimate(_seconds(row["estimated_seconds"]), row["estimate_source"]))
            workers.append(TimeEstimate(_seconds(row["estimated_seconds_two_workers"]), row["estimate_source"]))
    for backend, (found, on_workers) in by_backend.items():
        unknown = sum(not math.isfinite(guess.seconds) for guess in found)
        console.print(f"  {backend}: {len(found)} run(s), about {duration(invocation_seconds(found, 1))} "
                      f"inline, {duration(invocation_seconds(on_workers, 2))} with --workers 2"
                      + (f" ({unknown} never measured, not counted)" if unknown else ""), markup=False)


def _draw_diagrams(folder: Path, specs: dict[str, Spec]) -> int:
    # Only `list --diagrams` draws: matplotlib, which the drawing imports, would add about half of a plain `list`'s
    # second (measured: 1.0 s of CPU without it, 1.45 s with it).
    from lenet_bench.results.diagrams import DiagramFolder

    diagrams = DiagramFolder(folder)
    try:
        for name, spec in specs.items():
            diagrams.diagram(name, spec)
    except OSError as err:
        error(f"cannot write the diagrams into {folder}: {err.strerror or err}")
        return EXIT_INVALID
    files = len(list(folder.glob("*.png")))
    console.print(f"diagrams of {len(specs)} variant(s) in {folder}/ ({files} file(s), index {diagrams.INDEX})")
    return EXIT_OK
