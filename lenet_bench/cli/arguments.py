"""Every command's arguments, declared apart from the commands themselves: building the parser imports no
command module, so `--help` and a mistyped option answer at once, and a command's module (with its imports at
its top) is imported only when that command runs. A parser's `handler` names it as "module:function" of
lenet_bench.cli.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lenet_bench import __version__
from lenet_bench.cli.common import (
    DEFAULT_RESULTS,
    Commands,
    add_results_folder,
    add_selection,
    add_specs,
    add_store,
    add_tracking_uri,
    add_update_reference,
    port_number,
    positive_int,
)
from lenet_bench.cli.json_output import add_json_flag
from lenet_bench.reference_folder import REFERENCE_RESULTS
from lenet_bench.results.compare import DEFAULT_GROUPING

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000  # serve


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m lenet_bench", description="Benchmark and reproduce LeNet variants.")
    parser.add_argument("--version", action="version", version=f"lenet_bench {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in (_run, _specs, _bench, _check, _predict, _serve, _compare, _effects, _export):
        add(commands)
    return parser


def _run(commands: Commands) -> None:
    run = commands.add_parser("run", help="train every selected run, log to MLflow, write the results folder")
    add_selection(run)
    run.add_argument("--data-dir", help="folder with the dataset (IDX .gz files or <name>.npz); default: "
                                        "$LENET_BENCH_DATA_DIR, the cache, a download")
    add_store(run, experiment_default=None)
    run.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                     help="your results folder: runs.csv, summary.md, compare.md, figures (default: %(default)s)")
    add_update_reference(run)
    run.add_argument("--force", action="store_true", help="rerun runs already completed with the same spec, code and data")
    run.add_argument("--no-log-model", dest="log_models", action="store_false",
                     help="do not log trained models to MLflow (they are small, so logging is on by default)")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, metavar="N",
                       help="run N runs at once in local worker processes, each pinned to its own cores")
    where.add_argument("--cluster", metavar="ADDRESS",
                       help="run on a Dask scheduler, e.g. tcp://127.0.0.1:8786 (GPU runs go to workers started "
                            "with --resources GPU=1)")
    run.set_defaults(handler="run:cmd_run")


def _specs(commands: Commands) -> None:
    validate = commands.add_parser("validate", help="check specs and report every problem")
    validate.add_argument("paths", nargs="+", help="spec files or folders")
    validate.set_defaults(handler="specs:cmd_validate")
    listing = commands.add_parser("list", help="print the expanded matrix, one row per run, without training")
    add_selection(listing)
    listing.add_argument("--layers", action="store_true", help="also print each variant's per-layer summary")
    listing.add_argument("--diagrams", type=Path, metavar="FOLDER",
                         help="also draw each variant's architecture diagram into FOLDER (one PNG per layer "
                              "description, README.md says which variant has which), as runs do in results/")
    add_json_flag(listing)
    listing.set_defaults(handler="specs:cmd_list")


def _bench(commands: Commands) -> None:
    bench = commands.add_parser(
        "bench", help="training and inference throughput vs a plain loop and the machine's ceiling, without full "
                      "training")
    add_selection(bench, overrides=False)  # here --steps and --repeats set the length
    bench.add_argument("--steps", type=positive_int, default=50,
                       help="optimizer steps per timed epoch (default: %(default)s)")
    bench.add_argument("--repeats", type=positive_int, default=5,
                       help="timed epochs after the warm-up one; the median is reported (default: %(default)s)")
    bench.add_argument("--rounds", type=positive_int, default=3,
                       help="harness and reference alternate this many times; the ratio is the median of the "
                            "rounds' ratios (default: %(default)s)")
    bench.add_argument("--batch-size", type=positive_int, help="override every spec's batch size")
    bench.add_argument("--full", action="store_true",
                       help="train the spec's full split for its epochs, once (--steps, --repeats and --rounds "
                            "ignored), and report the test accuracy of harness and reference")
    bench.add_argument("--reference", action=argparse.BooleanOptionalAction, default=True,
                       help="also time a plain loop written the usual way for each framework (default: on)")
    bench.add_argument("--data-dir",
                       help="folder with the dataset; default: $LENET_BENCH_DATA_DIR, the cache, a download")
    bench.add_argument("--csv", type=Path, help="also write the rows to this CSV file")
    add_json_flag(bench)
    bench.set_defaults(handler="bench:cmd_bench")


def _check(commands: Commands) -> None:
    check = commands.add_parser("check", help="exit 1 when a recorded run misses its spec's expectation")
    add_results_folder(check, "check")
    add_specs(check, "the specs whose expectations apply (default: the project's own, specs/ and paper1998/, where "
                     "they are)")
    check.add_argument("--reference", type=Path, default=REFERENCE_RESULTS, metavar="DIR",
                       help="results whose setups' seeds set the floor a setup's mean must not fall below "
                            "(default: %(default)s, when it is there; not when it is the folder checked)")
    add_json_flag(check)
    check.set_defaults(handler="check:cmd_check")


def _predict(commands: Commands) -> None:
    predict = commands.add_parser("predict", help="predict the digit in your own image files with a trained run")
    _trained_run(predict)
    predict.add_argument("images", nargs="+", type=Path,
                         help="image files (any format Pillow reads), one digit each, any size, dark on light or "
                              "light on dark")
    predict.set_defaults(handler="predict:cmd_predict")


def _serve(commands: Commands) -> None:
    serve = commands.add_parser("serve", help="a local page to draw a digit on and watch a trained run's network "
                                              "read it, layer by layer")
    _trained_run(serve)
    serve.add_argument("--host", default=DEFAULT_HOST,
                       help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    serve.add_argument("--port", type=port_number, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    serve.set_defaults(handler="serve:cmd_serve")


def _trained_run(parser: argparse.ArgumentParser) -> None:
    """The trained run a command loads from MLflow (predict, serve)."""
    parser.add_argument("run", help="MLflow run id, or run name such as lenet5/torch/cpu/seed0 (newest wins)")
    add_tracking_uri(parser)


def _compare(commands: Commands) -> None:
    compare = commands.add_parser(
        "compare", help="compare the completed runs of a results folder: mean ± 95%% CI over seeds per "
                        "setup/backend/device")
    add_results_folder(compare, "compare")
    compare.add_argument("--by", default=",".join(DEFAULT_GROUPING),
                         help="comma-separated columns to group by (default: %(default)s; also e.g. activation, "
                              "optimizer, input_size)")
    add_json_flag(compare)
    compare.set_defaults(handler="compare:cmd_compare")
    report = commands.add_parser(
        "report", help="draw a results folder's reports again from its runs.csv (summary.md, compare.md, "
                       "effects.md, figures; learning curves from the MLflow store that has the runs' epochs)")
    report.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="folder whose runs.csv to report on, and to write the reports in (default: %(default)s)")
    add_store(report)
    add_update_reference(report)
    add_specs(report, "specs that name each matrix's factors for effects.md (default: specs/ when it exists)")
    report.set_defaults(handler="compare:cmd_report")


def _effects(commands: Commands) -> None:
    effects = commands.add_parser(
        "effects", help="what each design choice does to accuracy and speed: effects with 95%% CIs, Holm-adjusted "
                        "p-values and the seeds an unresolved effect needs")
    add_results_folder(effects, "read")
    add_specs(effects, "specs that name each matrix's factors and reference levels (default: specs/ when it exists; "
                       "without specs the factors are the columns that vary within a matrix)")
    shown = effects.add_mutually_exclusive_group()
    shown.add_argument("--markdown", action="store_true", help="print effects.md instead of the table")
    shown.add_argument("--readme-section", metavar="MATRIX",
                       help="print one matrix's effects in plain words, between markers, for a README")
    add_json_flag(shown)
    effects.add_argument("--write", action="store_true",
                         help="also write effects.md and its figures (effects_<matrix>.png, effects_backends.png) into "
                              "the results folder, as run and report do")
    add_update_reference(effects, "with --write: ")
    effects.set_defaults(handler="effects:cmd_effects")


def _export(commands: Commands) -> None:
    export = commands.add_parser(
        "export", help="log a results folder's completed runs (runs.csv) to MLflow, with the view `run` sets up, "
                       "to browse them in MLflow's UI (e.g. results/reference on a fresh clone)")
    add_results_folder(export, "export")
    add_store(export, experiment_default=None)
    export.set_defaults(handler="export:cmd_export")
