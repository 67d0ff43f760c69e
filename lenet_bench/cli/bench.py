"""`bench`: training and inference throughput against the plain loops and the machine's ceiling."""

from __future__ import annotations

import argparse
import math

import pandas as pd
from rich.markup import escape
from rich.table import Table

from lenet_bench import bench
from lenet_bench.bench import BenchRow, BenchSettings
from lenet_bench.cli.common import EXIT_FAILED, EXIT_INVALID, EXIT_OK, error
from lenet_bench.cli.json_output import print_json
from lenet_bench.console import console, output
from lenet_bench.device import Device
from lenet_bench.engine.backends_here import BackendsHere
from lenet_bench.engine.driver import announce_reasons
from lenet_bench.engine.plan import Job, RunOptions, SelectionError, plan_jobs
from lenet_bench.engine.worker_context import WorkerContext
from lenet_bench.results.row import LOADED_THRESHOLD_CORES, Status
from lenet_bench.spec import load_variants


def _number(value: object, pattern: str) -> str:
    return "-" if not isinstance(value, float) or not math.isfinite(value) else pattern.format(value)


def print_table(records: list[dict[str, object]], full: bool, steps: int, repeats: int, rounds: int) -> None:
    length = "every epoch of the spec but the first (warm-up)" if full else \
        f"{repeats} epochs of {steps} steps after a warm-up epoch"
    table = Table(title=f"training throughput: median of {length}, {rounds} round(s); ratio: median of the "
                        "rounds (min–max)")
    columns = ("variant", "backend", "device", "batch", "harness img/s", "min–max", "reference img/s", "ratio",
               "% of ceiling", "warm-up s", "infer img/s", "p50 ms", "p95 ms", "other load") + \
        (("harness acc", "ref. acc") if full else ())
    for column in columns:
        table.add_column(column, justify="left" if column in ("variant", "backend", "device") else "right")
    for r in records:
        row = [str(r["variant"]), str(r["backend"]), str(r["device"]), str(r["batch_size"])]
        if r["status"] != Status.COMPLETED.value:
            table.add_row(*row, str(r["status"]), *[""] * (len(columns) - len(row) - 1))
            continue
        spread = f"{_number(r['harness_min'], '{:,.0f}')}–{_number(r['harness_max'], '{:,.0f}')}"
        ratio = _number(r["harness_to_reference"], "{:.2f}x")
        if isinstance(r["rounds"], int) and r["rounds"] > 1:
            ratio += f" ({_number(r['ratio_min'], '{:.2f}')}–{_number(r['ratio_max'], '{:.2f}')})"
        fraction = r["fraction_of_ceiling"]
        table.add_row(*row, _number(r["harness_images_per_sec"], "{:,.0f}"), spread,
                      _number(r["reference_images_per_sec"], "{:,.0f}"), ratio,
                      _number(100 * fraction if isinstance(fraction, float) else fraction, "{:.1f}%"),
                      _number(r["warmup_epoch_seconds"], "{:.2f}"),
                      _number(r["inference_images_per_sec"], "{:,.0f}"), _number(r["latency_p50_ms"], "{:.2f}"),
                      _number(r["latency_p95_ms"], "{:.2f}"), _number(r["other_load_cores"], "{:.2f} cores"),
                      *((_number(r["harness_test_accuracy"], "{:.4f}"), _number(r["reference_test_accuracy"], "{:.4f}"))
                        if full else ()))
    output.print(table)


def print_ceilings(ceilings: dict[Device, tuple[float, str]], records: list[dict[str, object]]) -> None:
    for device, (flops, backend) in ceilings.items():
        output.print(f"ceiling {device}: {flops / 1e9:,.1f} GFLOP/s ({backend} float32 {bench.CEILING_SIZE}x{bench.CEILING_SIZE} "
                     f"matrix product, median of {bench.CEILING_REPEATS})")
        bounds = {(r["variant"], r["train_mflops_per_image"], r["ceiling_images_per_sec"])
                  for r in records if r["device"] == device and r["status"] == Status.COMPLETED.value}
        for variant, mflops, images in sorted(bounds, key=str):
            output.print(f"  {variant}: {mflops:,.2f} training MFLOP/image -> at most {images:,.0f} img/s "
                         f"at the ceiling")


def warn_of_load(records: list[dict[str, object]]) -> None:
    """A row timed under load, said on stderr: a loaded machine's numbers are no facts."""
    for r in records:
        load = r["other_load_cores"]
        if r["status"] == Status.COMPLETED.value and isinstance(load, float) and load >= LOADED_THRESHOLD_CORES:
            console.print(f"[yellow]warning:[/] {r['variant']}/{r['backend']}/{r['device']} was timed with "
                          f"{load:.2f} cores' worth of other work on its cores: its numbers are not this machine's "
                          "quiet speed; rerun on a quiet machine")


def print_hardware(records: list[dict[str, object]]) -> None:
    hardware = sorted({str(r["hardware"]) for r in records if r["hardware"]})
    if hardware:
        output.print(f"measured on: {'; '.join(hardware)}")


def cmd_bench(args: argparse.Namespace) -> int:
    options = RunOptions(only=tuple(args.only), backends=tuple(args.backend), devices=tuple(args.device),
                         seeds=tuple(args.seeds))
    try:
        jobs = bench.bench_jobs(plan_jobs(load_variants(args.paths), options))
    except SelectionError as err:
        error(str(err))
        return EXIT_INVALID
    settings = BenchSettings(steps=args.steps, repeats=args.repeats, rounds=args.rounds,
                             batch_size=args.batch_size, full=args.full, reference=args.reference,
                             data_dir=args.data_dir)

    here = BackendsHere()
    reasons = {id(job): here.skip_reason(job, cluster=False, inline=False) for job in jobs}
    announce_reasons([(f"{job.variant.name}/{job.backend}/{job.device}", reason) for job in jobs
                      if (reason := reasons[id(job)])], noun="bench row(s)", whole_names=True)
    rows = _measure(jobs, reasons, args, settings)
    measured_devices = list(dict.fromkeys(r.device for r in rows if r.status is Status.COMPLETED))
    ceilings = {}
    for device in measured_devices:
        found = bench.measure_ceiling(device)
        if found is None:
            console.print(f"no ceiling for {device}: no backend here can run a matrix product on it", markup=False)
        else:
            ceilings[device] = found
    records = [r.record(ceilings[r.device][0] if r.device in ceilings else None) for r in rows]

    rounds = 1 if args.full else args.rounds
    if args.json:  # the rows the table shows (and --csv writes), and each device's ceiling
        print_json({"rows": records, "ceilings": [{"device": device, "gflops": flops / 1e9, "backend": backend}
                                                  for device, (flops, backend) in ceilings.items()]})
    else:
        print_table(records, args.full, args.steps, args.repeats, rounds)
        print_ceilings(ceilings, records)
        print_hardware(records)
    warn_of_load(records)
    for r in rows:
        if r.status is Status.FAILED:
            console.print(f"failed {r.variant}/{r.backend}/{r.device}: {escape(r.reason)}")
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        pd.DataFrame(records).to_csv(args.csv, index=False)
        console.print(f"rows written to {args.csv}")

    if any(r.status is Status.FAILED for r in rows):
        return EXIT_FAILED
    if not measured_devices:
        error("nothing was measured: " + "; ".join(f"{r.variant}/{r.backend}/{r.device}: {r.reason}" for r in rows[:3]))
        return EXIT_INVALID
    return EXIT_OK


def _measure(jobs: list[Job], reasons: dict[int, str | None], args: argparse.Namespace,
             settings: BenchSettings) -> list[BenchRow]:
    """Every job's bench row, in order; an engine helper process started for some of them is ended after."""
    rows: list[BenchRow] = []
    context = WorkerContext()
    try:
        for job in jobs:  # what cannot run here was said once, up front: it is not announced and then skipped
            if reasons[id(job)]:
                rows.append(BenchRow(job.variant.name, job.backend, job.device,
                                           args.batch_size or job.spec.train.batch_size, job.spec.summary().train_flops,
                                           status=Status.SKIPPED, reason=str(reasons[id(job)])))
                continue
            console.print(f"bench {job.variant.name}/{job.backend}/{job.device}: "
                          + ("the spec's epochs" if args.full else f"{args.rounds} round(s) of {args.repeats} x "
                             f"{args.steps} steps after a warm-up epoch") + (", then the reference loop" if args.reference
                                                                              else ""), markup=False)
            rows.append(bench.bench_row(context, job, settings))
    finally:
        context.close()
    return rows
