"""Command line: run, list, validate, bench, check, predict.

Exit codes: 0 all good; 1 a run failed or missed its expectation; 2 invalid input
(bad spec, bad selection, missing data); 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from pathlib import Path

from rich.markup import escape
from rich.table import Table

from lenet_bench import __version__, compare
from lenet_bench.console import console, output
from lenet_bench.spec import SpecError, load_variants

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERRUPTED = 0, 1, 2, 130


def _add_selection(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", help="spec files or folders")
    parser.add_argument("--only", action="append", default=[], metavar="PATTERN",
                        help="only variants whose name matches this glob (lenet5 exactly, 'lenet5*' its family); repeatable")
    parser.add_argument("--backend", action="append", default=[], help="only this backend; repeatable")
    parser.add_argument("--device", action="append", default=[], choices=["cpu", "gpu"], help="only this device; repeatable")
    parser.add_argument("--epochs", type=int, help="override every spec's epochs")
    parser.add_argument("--max-steps", type=int, help="cap the optimizer steps per epoch (quick runs)")
    parser.add_argument("--seed", dest="seeds", type=int, action="append", default=[],
                        help="run these seeds instead of each spec's; repeatable")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lenet_bench", description="Benchmark and reproduce LeNet variants.")
    parser.add_argument("--version", action="version", version=f"lenet_bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="train every selected run, log to MLflow, write results/")
    _add_selection(run)
    run.add_argument("--data-dir", help="folder with MNIST (IDX .gz files or mnist.npz); default: $LENET_BENCH_DATA_DIR, the cache, a download")
    run.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    run.add_argument("--experiment", help="MLflow experiment name (default: lenet_bench/<spec folder>)")
    run.add_argument("--results", type=Path, default=Path("results"), help="folder for runs.csv and summary.md")
    run.add_argument("--force", action="store_true", help="rerun runs already completed with the same spec, code and data")
    run.add_argument("--no-log-model", dest="log_models", action="store_false",
                     help="do not log trained models to MLflow (they are small, so logging is on by default)")

    listing = commands.add_parser("list", help="print the expanded matrix, one row per run, without training")
    _add_selection(listing)
    listing.add_argument("--layers", action="store_true", help="also print each variant's per-layer summary")

    validate = commands.add_parser("validate", help="check specs and report every problem")
    validate.add_argument("paths", nargs="+")

    from lenet_bench.bench import add_bench_arguments

    add_bench_arguments(commands.add_parser(
        "bench", help="training and inference throughput vs a plain loop and the machine's ceiling, without full training"))

    check = commands.add_parser("check", help="exit 1 when a recorded run misses its spec's expectation")
    check.add_argument("results", type=Path, nargs="?", default=Path("results"), help="folder with runs.csv")
    check.add_argument("--specs", nargs="+", default=["specs"], help="the specs whose expectations apply")

    predict = commands.add_parser("predict", help="predict the digit in your own image files with a trained run")
    predict.add_argument("run", help="MLflow run id, or run name such as lenet5/torch/cpu/seed0 (newest wins)")
    predict.add_argument("images", nargs="+", type=Path, help="image files (any format Pillow reads)")
    predict.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    compare.add_compare_arguments(commands.add_parser(
        "compare", help="compare completed runs in MLflow: mean ± 95% CI over seeds per spec/backend/device"))
    compare.add_report_arguments(commands.add_parser(
        "report", help="regenerate results/ (runs.csv, summary.md, compare.md, figures) from MLflow"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers = {"run": cmd_run, "list": cmd_list, "validate": cmd_validate, "check": cmd_check,
                "predict": cmd_predict, "bench": cmd_bench, "compare": compare.cmd_compare, "report": compare.cmd_report}
    try:
        return handlers[args.command](args)
    except SpecError as err:
        console.print(f"[bold red]invalid specs[/] ({len(err.issues)} problem(s)):")
        for issue in err.issues:
            console.print(f"  {issue}", markup=False)
        return EXIT_INVALID


def cmd_validate(args: argparse.Namespace) -> int:
    variants = load_variants(args.paths)
    files = sorted({str(v.file) for v in variants})
    console.print(f"ok: {len(variants)} variant(s) in {len(files)} file(s)")
    return EXIT_OK


def _options(args: argparse.Namespace):
    from lenet_bench.plan import RunOptions

    return RunOptions(
        data_dir=getattr(args, "data_dir", None), tracking_uri=getattr(args, "tracking_uri", None),
        results_dir=getattr(args, "results", Path("results")), only=tuple(args.only), backends=tuple(args.backend),
        devices=tuple(args.device), epochs=args.epochs, max_steps=args.max_steps, seeds=tuple(args.seeds), force=getattr(args, "force", False),
        log_models=getattr(args, "log_models", True),
    )


def cmd_list(args: argparse.Namespace) -> int:
    from lenet_bench.plan import SelectionError, plan_jobs

    try:
        jobs = plan_jobs(load_variants(args.paths), _options(args))
    except SelectionError as err:
        console.print(f"[red]error:[/] {err}")
        return EXIT_INVALID
    table = Table(title=f"{len(jobs)} run(s)")
    for column in ("run", "params", "MFLOPs/img", "input", "epochs", "batch", "optimizer", "expect"):
        table.add_column(column, justify="right" if column in ("params", "MFLOPs/img", "epochs", "batch") else "left")
    for job in jobs:
        spec = job.spec
        summary = spec.summary()
        table.add_row(job.name, f"{summary.params:,}", f"{summary.flops / 1e6:.3f}", "x".join(map(str, spec.input_shape)),
                      str(spec.train.epochs), str(spec.train.batch_size), spec.train.optimizer.name,
                      f">= {spec.expect.min_test_accuracy:.2%}")
    output.print(table)
    if args.layers:
        for variant in {job.variant.name: job.variant for job in jobs}.values():
            print(f"\n{variant.name}\n{variant.spec.summary().table()}")
    return EXIT_OK


def _experiment_name(paths: list[str]) -> str:
    first = Path(paths[0]).resolve()
    return f"lenet_bench/{(first if first.is_dir() else first.parent).name}"


@contextlib.contextmanager
def _stops_as_interrupts():
    """SIGTERM (kill, a scheduler, a session's end) and SIGINT are handled like Ctrl-C.

    A job started in the background by a non-interactive shell inherits SIGINT ignored, and
    SIGTERM would end it without marking its run KILLED; both now stop it cleanly.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from lenet_bench.plan import SelectionError
    from lenet_bench.runner import DATA_UNAVAILABLE, Runner

    variants = load_variants(args.paths)
    options = _options(args)
    runner = Runner(options)
    try:
        with _stops_as_interrupts():
            outcomes = runner.run(variants, args.experiment or _experiment_name(args.paths))
    except SelectionError as err:
        console.print(f"[red]error:[/] {err}")
        return EXIT_INVALID
    except KeyboardInterrupt:
        console.print("\ninterrupted: completed runs are logged and in results/; the interrupted run is marked KILLED. "
                      "Run the same command again to resume.")
        return EXIT_INTERRUPTED
    data_problems = [o for o in outcomes if o.status == "skipped" and o.reason.startswith(DATA_UNAVAILABLE)]
    if data_problems and not any(o.status in ("completed", "cached") for o in outcomes):
        console.print(f"[red]data error:[/] no run could load its data: {escape(data_problems[0].reason)}")
        return EXIT_INVALID
    counts = {s: sum(o.status == s for o in outcomes) for s in ("completed", "cached", "skipped", "failed")}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()) + f"; results in {options.results_dir}/")
    problems = [o for o in outcomes if not o.ok]
    for outcome in problems:
        label = "failed" if outcome.status == "failed" else "missed expectation"
        console.print(f"[red]{label}:[/] {outcome.job.name}: {escape(outcome.reason)}")
    return EXIT_FAILED if problems else EXIT_OK


def cmd_bench(args: argparse.Namespace) -> int:
    from lenet_bench import bench

    return bench.cmd_bench(args, load_variants(args.paths))


def cmd_check(args: argparse.Namespace) -> int:
    from lenet_bench.check import check_results

    try:
        verdicts = check_results(args.results, load_variants(args.specs))
    except FileNotFoundError as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        return EXIT_INVALID
    table = Table(title=f"{args.results}: {len(verdicts)} run(s) against {', '.join(map(str, args.specs))}")
    for column in ("run", "verdict", "test acc", "expected", "note"):
        table.add_column(column)
    colours = {"pass": "green", "miss": "red", "skipped": "yellow", "not in specs": "dim"}
    for v in verdicts:
        table.add_row(v.run, f"[{colours[v.status]}]{v.status}[/]", f"{v.test_accuracy:.4f}" if v.test_accuracy else "",
                      f">= {v.expected:.4f}" if v.expected else "", escape(v.note))
    output.print(table)
    misses = [v for v in verdicts if v.status == "miss"]
    console.print(f"{sum(v.status == 'pass' for v in verdicts)} pass, {len(misses)} miss, "
                  f"{sum(v.status == 'skipped' for v in verdicts)} skipped")
    return EXIT_FAILED if misses else EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from lenet_bench.predict import predict_files

    missing = [str(p) for p in args.images if not p.is_file()]
    if missing:
        console.print(f"[red]error:[/] no such image: {', '.join(missing)}")
        return EXIT_INVALID
    try:
        run_name, probabilities = predict_files(args.run, args.images, args.tracking_uri)
    except (LookupError, ValueError) as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        return EXIT_INVALID
    for path, p in zip(args.images, probabilities):
        top = p.argsort()[::-1][:3]
        others = ", ".join(f"{k}: {p[k]:.3f}" for k in top[1:])
        output.print(f"{path}: {int(top[0])} (p={p[top[0]]:.3f}; next {others}) [model: {run_name}]", markup=False)
    return EXIT_OK


def entry_point() -> None:
    sys.exit(main())
