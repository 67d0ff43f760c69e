"""The MLflow UI's view of an experiment, set up once: runs only, best first, the numbers a person compares.

MLflow's runs table shows Source, Models and Dataset by default and no metric at all. MLflow
keeps named views as experiment tags (`mlflow.sharedViewState.<key>`, the UI's "Share" button);
the recorder writes one, and `<ui>/#/experiments/<id>/runs?viewStateShareKey=lenet_bench` opens it.
"""

from __future__ import annotations

import json

from lenet_bench.results.row import KIND_TAG, Kind

VIEW_KEY = "lenet_bench"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
# Metrics come first in the UI's table (each kind's columns in name order), then params, then tags.
METRICS = ("test_accuracy_pct", "test_error_pct", "gap_to_baseline_pp", "params", "train_seconds")
PARAMS = ("backend", "device", "architecture", "activation", "pooling", "padding", "overrides")
TAGS = ("timing",)


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"


def shared_view_state() -> str:
    """The view as the UI stores it: its search (filter, order) and table state (columns)."""
    columns = ([_column("metrics", m) for m in METRICS] + [_column("params", p) for p in PARAMS]
               + [_column("tags", t) for t in TAGS])
    return json.dumps({
        "searchFilter": f"tags.`{KIND_TAG}` = '{Kind.RUN.value}'",
        "orderByKey": _column("metrics", "test_accuracy_pct"), "orderByAsc": False,
        "lifecycleFilter": "Active",
        "selectedColumns": columns, "runsHiddenMode": "SHOW_ALL",
    })


def view_url(ui: str, experiment_id: str) -> str:
    return f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"
