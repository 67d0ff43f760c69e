"""Read runs back from MLflow: compare them (mean ± 95% CI over seeds) and rebuild results/.

`python -m lenet_bench compare` prints one row per (spec, backend, device), best first;
`python -m lenet_bench report` regenerates results/ (runs.csv, summary.md, compare.md and
figures) from the MLflow store alone, so results/ can be rebuilt on any machine that can
read the store. The runner uses `run_figures`, `invocation_figures` and
`aggregate_metrics` to log the same figures and numbers while it runs.

Exit codes: 0 ok; 2 no such experiment, no completed runs, or an unknown --by column.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import pandas as pd
from rich.markup import escape
from rich.table import Table

from lenet_bench import report
from lenet_bench.console import console, output
from lenet_bench.stats import aggregate, format_mean_ci, usable_runs
from lenet_bench.training import EpochRecord

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# matplotlib (via lenet_bench.figures) and MLflow are imported where used: the CLI imports this
# module for its arguments, and `list` or `validate` should not wait for them.

EXIT_OK, EXIT_INVALID = 0, 2
DEFAULT_EXPERIMENT = "lenet_bench/specs"  # what `python -m lenet_bench run specs/` logs to
DEFAULT_GROUPING = ("spec", "backend", "device")
COMPARED_METRICS = ("test_accuracy", "delta_to_baseline", "train_seconds", "train_images_per_sec")
HISTORY_METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "epoch_seconds")

KIND_TAG, STATUS_TAG = "lenet_bench.kind", "lenet_bench.status"  # as in tracking.py (not imported: it imports mlflow)
# MLflow column -> runs.csv column. Metrics keep their own names (prefix stripped).
_PARAM_COLUMNS = {
    **{axis: axis for axis in ("architecture", "activation", "pooling", "padding", "input_size", "optimizer",
                               "dataset", "backend", "device", "seed")},
    "variant": "spec", "expect.min_test_accuracy": "min_test_accuracy", "reference.test_accuracy": "reference_accuracy",
}
_TAG_COLUMNS = {"mlflow.runName": "run", STATUS_TAG: "status", "framework_version": "framework_version",
                "met_expectation": "met_expectation", "code_version": "code_version", "host": "host",
                "lenet_bench.fingerprint": "fingerprint"}
_ATTRIBUTE_COLUMNS = {"run_id": "mlflow_run_id", "status": "mlflow_status", "start_time": "start_time",
                      "experiment_id": "experiment_id"}
# The columns of results/runs.csv that a run read back from MLflow can fill, in the runner's order.
_RUNS_CSV_LEADING = ("run", "spec", "backend", "device", "seed", "architecture", "activation", "pooling", "padding",
                     "input_size", "optimizer", "dataset", "params", "flops", "epochs", "min_test_accuracy",
                     "reference_accuracy")
_RUNS_CSV_TRAILING = ("status", "mlflow_run_id", "met_expectation", "framework_version", "fingerprint")
# MLflow bookkeeping, and the per-epoch series (their last value is already in final_*_accuracy).
_NOT_IN_RUNS_CSV = {"experiment_id", "mlflow_status", "start_time", "end_time", "artifact_uri", "code_version", "host",
                    *HISTORY_METRICS}
_INTEGER_COLUMNS = ("seed", "input_size", "params", "flops", "train_flops", "epochs", "epochs_to_target")
_GROUPING_COLUMNS = ("spec", "backend", "device", "seed", "architecture", "activation", "pooling", "padding",
                     "input_size", "optimizer", "dataset", "framework_version")


class StoreProblem(Exception):
    """The experiment cannot be read: the message names the store, the experiment and what exists."""


class LoadedRuns(NamedTuple):
    runs: pd.DataFrame  # completed child runs, newest per run name, runs.csv column names
    baselines: pd.DataFrame  # run, dataset, test_accuracy, train_seconds, data_digest
    experiment_id: str


# ------------------------------------------------------------------ reading MLflow

def load_runs(tracking_uri: str, experiment: str) -> LoadedRuns:
    """Completed runs and baselines of `experiment`; raises StoreProblem when it does not exist.

    A run that was re-run (--force) appears once per invocation in MLflow; only the newest
    is kept per run name, as in results/runs.csv, so a seed is never counted twice.
    """
    import mlflow
    from mlflow.tracking import MlflowClient

    _require_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found is None:
        names = sorted(e.name for e in client.search_experiments())
        raise StoreProblem(f"no experiment {experiment!r} in MLflow store {tracking_uri}; "
                           f"experiments there: {', '.join(map(repr, names)) or 'none'}")
    mlflow.set_tracking_uri(tracking_uri)  # search_runs reads the global URI
    completed = mlflow.search_runs(
        experiment_ids=[found.experiment_id], output_format="pandas",
        filter_string=f"tags.`{KIND_TAG}` = 'run' and tags.`{STATUS_TAG}` = 'completed' "
                      "and attributes.status = 'FINISHED'")
    baselines = mlflow.search_runs(experiment_ids=[found.experiment_id], output_format="pandas",
                                   filter_string=f"tags.`{KIND_TAG}` = 'baseline' and attributes.status = 'FINISHED'")
    return LoadedRuns(_newest_per_run(normalize_columns(completed)), _baseline_table(baselines), found.experiment_id)


def _require_store(tracking_uri: str) -> None:
    """Refuse a missing SQLite file: opening it would silently create an empty store there."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.exists():
            raise StoreProblem(f"no MLflow store at {tracking_uri} ({path} does not exist); "
                               "pass --tracking-uri or set MLFLOW_TRACKING_URI")


def normalize_columns(raw: pd.DataFrame) -> pd.DataFrame:
    """mlflow.search_runs columns -> runs.csv names: `metrics.test_accuracy` -> `test_accuracy`,
    `params.variant` -> `spec`, `tags.lenet_bench.status` -> `status`, MLflow's own status ->
    `mlflow_status`. Other params and tags keep their prefixes (still usable with --by)."""
    renames: dict[str, str] = {}
    for column in raw.columns:
        prefix, _, name = column.partition(".")
        if column in _ATTRIBUTE_COLUMNS:
            renames[column] = _ATTRIBUTE_COLUMNS[column]
        elif prefix == "metrics":
            renames[column] = name
        elif prefix == "params" and name in _PARAM_COLUMNS:
            renames[column] = _PARAM_COLUMNS[name]
        elif prefix == "tags" and name in _TAG_COLUMNS:
            renames[column] = _TAG_COLUMNS[name]
    df = raw.rename(columns=renames)
    df = df.loc[:, ~df.columns.duplicated()]
    for column in _INTEGER_COLUMNS:  # MLflow stores metrics as floats and params as text
        if column in df:
            df[column] = pd.to_numeric(df[column], errors="coerce").round().astype("Int64")
    for column in ("min_test_accuracy", "reference_accuracy"):
        if column in df:
            df[column] = pd.to_numeric(df[column], errors="coerce")
    if "met_expectation" in df:
        df["met_expectation"] = df["met_expectation"].map({"True": True, "False": False})
    return df


def _newest_per_run(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty or "run" not in df:
        return df
    df = df.sort_values("start_time", ascending=False).drop_duplicates("run")
    return df.sort_values(["spec", "backend", "device", "seed"], kind="stable").reset_index(drop=True)


def _baseline_table(raw: pd.DataFrame) -> pd.DataFrame:
    """One row per baseline (each invocation logs its own): the newest."""
    columns = {"tags.mlflow.runName": "run", "tags.dataset": "dataset", "metrics.test_accuracy": "test_accuracy",
               "metrics.train_seconds": "train_seconds", "tags.data_digest": "data_digest"}
    if raw.empty:
        return pd.DataFrame(columns=list(columns.values()))
    newest = raw.sort_values("start_time", ascending=False).drop_duplicates("tags.mlflow.runName")
    return newest.reindex(columns=list(columns)).rename(columns=columns).sort_values("run").reset_index(drop=True)


def load_histories(tracking_uri: str, run_ids: Iterable[str]) -> dict[str, list[EpochRecord]]:
    """Per-epoch records of each run, rebuilt from its metric histories (step = epoch)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    histories = {}
    for run_id in run_ids:
        series = {name: {m.step: m.value for m in client.get_metric_history(run_id, name)} for name in HISTORY_METRICS}
        histories[run_id] = history_from_series(series)
    return histories


def history_from_series(series: dict[str, dict[int, float]]) -> list[EpochRecord]:
    epochs = sorted(set(series.get("train_loss", {})) | set(series.get("train_accuracy", {})))
    nan = float("nan")
    return [EpochRecord(epoch=e, train_loss=series.get("train_loss", {}).get(e, nan),
                        train_accuracy=series.get("train_accuracy", {}).get(e, nan),
                        val_loss=series.get("val_loss", {}).get(e), val_accuracy=series.get("val_accuracy", {}).get(e),
                        seconds=series.get("epoch_seconds", {}).get(e, nan), images=0) for e in epochs]


# ------------------------------------------------------------------ comparing

def compare_table(df: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUPING) -> pd.DataFrame:
    """One row per group: n runs, params, mean/std/95% CI of the compared metrics; best mean test accuracy first.

    Rows without numbers (skipped, failed, killed: the runner's own rows include them) are left out.
    """
    by = list(by)
    df = usable_runs(df)
    table = aggregate(df, by=by, metrics=COMPARED_METRICS)
    table.insert(len(by), "n", table["test_accuracy_n"].astype(int))
    if "params" in df and "params" not in by and not table.empty:
        params = df.groupby(by, dropna=False)["params"].agg(_constant_or_nan).reset_index()
        table = table.merge(params, on=by, how="left")
    return table.sort_values("test_accuracy_mean", ascending=False, kind="stable").reset_index(drop=True)


def _constant_or_nan(values: pd.Series) -> float:
    """The parameter count of a group when it has one (a variant); NaN when it mixes variants."""
    distinct = values.dropna().unique()
    return distinct[0] if len(distinct) == 1 else float("nan")


def _cells(row: pd.Series) -> dict[str, str]:
    def ci(metric: str, digits: int) -> str:
        return format_mean_ci(row[f"{metric}_mean"], row[f"{metric}_ci_low"], row[f"{metric}_ci_high"], digits)

    return {"test accuracy": ci("test_accuracy", 4), "Δ baseline": ci("delta_to_baseline", 4),
            "train s": ci("train_seconds", 1), "train img/s": ci("train_images_per_sec", 0)}


def print_compare(table: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUPING, title: str = "") -> None:
    """The comparison as a rich table on stdout (the command's output; messages go to stderr)."""
    rich_table = Table(title=title or None, caption="mean ± half-width of the 95% Student-t CI over n runs "
                                                    "(mean alone when n = 1)")
    for name in by:
        rich_table.add_column(name)
    rich_table.add_column("n", justify="right")
    if "params" in table:
        rich_table.add_column("params", justify="right")
    for name in ("test accuracy", "Δ baseline", "train s", "train img/s"):
        rich_table.add_column(name, justify="right")
    for _, row in table.iterrows():
        params = [f"{int(row['params']):,}" if pd.notna(row["params"]) else ""] if "params" in table else []
        rich_table.add_row(*[str(row[name]) for name in by], str(row["n"]), *params, *_cells(row).values())
    output.print(rich_table)


def compare_markdown(table: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUPING) -> str:
    """The comparison as Markdown, for results/compare.md and the invocation's run in MLflow."""
    rows = []
    for _, row in table.iterrows():
        params = {"params": f"{int(row['params']):,}" if pd.notna(row["params"]) else ""} if "params" in table else {}
        rows.append({**{name: row[name] for name in by}, "n": row["n"], **params, **_cells(row)})
    text = pd.DataFrame(rows).to_markdown(index=False) if rows else "(no completed runs)"
    return ("# lenet_bench comparison\n\nMean ± half-width of the 95% Student-t confidence interval over the n runs "
            "(seeds) of each group; the mean alone when n = 1. Best mean test accuracy first.\n\n" + text + "\n")


def aggregate_metrics(df: pd.DataFrame, by: Sequence[str] = DEFAULT_GROUPING) -> dict[str, float]:
    """Flat metrics for the invocation's parent run: '<spec>/<backend>/<device>/test_accuracy_mean' etc."""
    usable = usable_runs(df)
    metrics: dict[str, float] = {}
    for _, row in aggregate(usable, by=list(by), metrics=COMPARED_METRICS).iterrows():
        group = "/".join(str(row[name]) for name in by)
        for metric in COMPARED_METRICS:
            for stat in ("mean", "std", "ci_low", "ci_high", "n"):
                value = row[f"{metric}_{stat}"]
                if pd.notna(value):
                    metrics[f"{group}/{metric}_{stat}"] = float(value)
    return metrics


# ------------------------------------------------------------------ figures

def run_figures(history: Sequence[EpochRecord], confusion: Sequence[Sequence[int]] | None,
                title: str = "") -> dict[str, Figure]:
    """Per-run figures, keyed by artifact file name (for tracker.log_figure on the child run)."""
    from lenet_bench import figures

    found = {"learning_curves.png": figures.learning_curves(history, title)}
    if confusion is not None:
        found["confusion_matrix.png"] = figures.confusion_matrix(confusion, title)
    return found


def invocation_figures(df: pd.DataFrame) -> dict[str, Figure]:
    """Comparison figures of an invocation's rows (runs.csv columns), keyed by artifact file name."""
    from lenet_bench import figures

    return {"accuracy_vs_params.png": figures.accuracy_vs_params(df),
            "accuracy_vs_time.png": figures.accuracy_vs_time(df),
            "backend_comparison.png": figures.backend_comparison(df)}


def variant_learning_curves(runs: pd.DataFrame, histories: dict[str, list[EpochRecord]]) -> dict[str, Figure]:
    """One figure per variant overlaying its runs (backend/device/seed); keyed by variant name."""
    from lenet_bench import figures

    found = {}
    for spec, group in runs.groupby("spec", sort=True):
        overlay = {f"{r.backend}/{r.device} seed{r.seed}": histories[r.mlflow_run_id]
                   for r in group.itertuples() if histories.get(r.mlflow_run_id)}
        if overlay:
            found[spec] = figures.learning_curves(overlay, f"{spec}: learning curves")
    return found


def safe_file_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "unnamed"


# ------------------------------------------------------------------ commands

def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    _add_store_arguments(parser)
    parser.add_argument("--by", default=",".join(DEFAULT_GROUPING),
                        help="comma-separated columns to group by (default: %(default)s; also e.g. activation, "
                             "optimizer, input_size)")


def add_report_arguments(parser: argparse.ArgumentParser) -> None:
    _add_store_arguments(parser)
    parser.add_argument("--results", type=Path, default=Path("results"),
                        help="folder to (re)write runs.csv, summary.md, compare.md and figures in (default: results)")


def _add_store_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI or sqlite:///mlflow.db)")
    parser.add_argument("--experiment", default=DEFAULT_EXPERIMENT,
                        help="MLflow experiment name (default: %(default)s, i.e. the spec folder 'specs')")


def cmd_compare(args: argparse.Namespace) -> int:
    loaded = _load_or_explain(args)
    if loaded is None:
        return EXIT_INVALID
    by = [name.strip() for name in args.by.split(",") if name.strip()]
    unknown = [name for name in by if name not in loaded.runs.columns]
    if not by or unknown:
        columns = ", ".join([c for c in _GROUPING_COLUMNS if c in loaded.runs] + ["params.<name>", "tags.<name>"])
        console.print(f"[red]error:[/] cannot group by {escape(', '.join(unknown) or '(nothing)')}; "
                      f"columns include: {escape(columns)}")
        return EXIT_INVALID
    title = f"{args.experiment}: {len(loaded.runs)} completed run(s)"
    print_compare(compare_table(loaded.runs, by), by, title)
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    loaded = _load_or_explain(args)
    if loaded is None:
        return EXIT_INVALID
    results: Path = args.results
    runs = loaded.runs
    merged = report.update_results(runs_csv_rows(runs), results)
    written = [report.RUNS_CSV, report.SUMMARY_MD, *write_comparison(merged, results)]
    curves = results / "learning_curves"
    curves.mkdir(exist_ok=True)
    histories = load_histories(_tracking_uri(args), runs["mlflow_run_id"])
    for spec, figure in variant_learning_curves(runs, histories).items():
        figure.savefig(curves / f"{safe_file_name(spec)}.png")
        written.append(f"learning_curves/{safe_file_name(spec)}.png")
    console.print(f"report: {len(runs)} completed run(s) of {args.experiment!r} -> {results}/: {', '.join(written)}",
                  markup=False)
    return EXIT_OK


def write_comparison(runs: pd.DataFrame, results: Path) -> list[str]:
    """compare.md, reproduction.md and the comparison figures for every run in `runs`, into `results`; the names written."""
    from lenet_bench import reproduction

    (results / "compare.md").write_text(compare_markdown(compare_table(runs)))
    (results / reproduction.REPRODUCTION_MD).write_text(
        reproduction.reproduction_markdown(reproduction.reproduction_table(runs)))
    written = ["compare.md", reproduction.REPRODUCTION_MD]
    for name, figure in invocation_figures(runs).items():
        figure.savefig(results / name)
        written.append(name)
    return written


def runs_csv_rows(runs: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as the runner writes them to results/runs.csv: its leading columns, the metrics, then status."""
    leading = [c for c in _RUNS_CSV_LEADING if c in runs]
    trailing = [c for c in _RUNS_CSV_TRAILING if c in runs]
    # Prefixed params/tags ("."), MLflow's system metrics ("system/..."), and bookkeeping stay in MLflow.
    metrics = [c for c in runs.columns if "." not in c and "/" not in c
               and c not in leading + trailing and c not in _NOT_IN_RUNS_CSV]
    return runs[leading + metrics + trailing].to_dict("records")


def _tracking_uri(args: argparse.Namespace) -> str:
    from lenet_bench.tracking import resolve_tracking_uri

    return resolve_tracking_uri(args.tracking_uri)


def _load_or_explain(args: argparse.Namespace) -> LoadedRuns | None:
    """The experiment's runs, or None after saying why there are none (exit code 2)."""
    uri = _tracking_uri(args)
    try:
        loaded = load_runs(uri, args.experiment)
    except StoreProblem as err:
        console.print(f"[red]error:[/] {escape(str(err))}")
        return None
    if loaded.runs.empty:
        console.print(f"[red]error:[/] experiment {escape(repr(args.experiment))} in MLflow store {escape(uri)} has no "
                      "completed runs (skipped, failed and interrupted runs have no numbers to compare)")
        return None
    return loaded
