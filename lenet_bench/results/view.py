"""The MLflow UI's view of an experiment, set up once: runs only, grouped over seeds, best first, the design axes
first and the numbers a person compares beside them.

MLflow keeps named views as experiment tags (`mlflow.sharedViewState.<key>`, the UI's "Share" button);
the recorder writes one, and `view_url` opens it. What such a view holds is the runs page's search
facets (filter, order) and its UI state (MLflow 3.17's `mlflow/server/js`: selectedColumns,
columnOrder, columnWidths, groupBy, runsHiddenMode, ...). MLflow 3 opens an experiment in its GenAI
mode unless the URL says `workflowType=machine_learning` (3.17 reads the mode from the URL, else from
the browser's last choice, never from the experiment); the `mlflow.experimentKind` tag marks the
experiment as model training, so the UI does not ask which kind it is.

Grouped rows show each metric's mean over the group's runs (MLflow's "average" aggregate); a group is a
setup on a backend and device (`SEED_GROUP_TAG`), its runs the seeds, and the view opens with every group
it names folded, one line per setup. MLflow averages params as numbers, so a text param (activation,
pooling) is blank on a group row and shown on its runs (the group's name says its design in the
variant's name), and the seed column is the run's tag, not its param (a mean seed of 2 means nothing).
"""

from __future__ import annotations

import json
from collections.abc import Collection
from typing import TYPE_CHECKING

from lenet_bench.results.row import AXIS_COLUMNS, KIND_TAG, Kind, ResultRow

if TYPE_CHECKING:
    from lenet_bench.results.tracking import Tracker

VIEW_KEY = "lenet_bench"
VIEW_TAG = f"mlflow.sharedViewState.{VIEW_KEY}"
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
WORKFLOW = "machine_learning"  # MLflow 3's model-training UI (its other mode: genai)
SEED_GROUP_TAG = "seeds_of"  # a run's setup, backend and device: the runs of one group differ by seed only
# The design axes first (params of every run; `architecture` is the layer widths), then the numbers.
AXES = ("params", "activation"), ("params", "pooling"), ("params", "padding"), ("params", "architecture"), \
    ("params", "backend"), ("params", "device"), ("tags", "seed")
METRICS = ("test_accuracy_pct", "gap_to_baseline_pp", "train_seconds", "train_images_per_sec", "params")
MORE = ("params", "overrides"), ("tags", "timing")  # after the numbers
RUN_NAME, CREATED = "attributes.`Run Name`", "runDateAndNestInfo"  # the UI's ids of its first two columns
# Widths that fit the name, the axes and the first metrics in a 1400 px window (MLflow gives every column 100 px,
# and its name column 190 px: 'lenet5@epochs=1,max_steps=50/torch/cpu/seed0' reads 'lenet5@epochs=1,max_...').
AXIS_PX = (75, 65, 65, 95, 70, 55, 45)
CREATED_PX = 95
PX_PER_CHARACTER, NAME_PADDING_PX, GROUP_PADDING_PX, MIN_NAME_PX, MAX_NAME_PX = 6.5, 80, 115, 190, 440
MAX_STATE_CHARS = 20_000  # MLflow's limit on an experiment tag's value
# The UI loads an experiment's runs 100 at a time and groups (and averages) only those it has loaded: ordered by
# accuracy, a larger experiment's first page splits groups and shows means over some of their seeds.
UI_PAGE_RUNS = 100


def _column(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"


def name_width(names: Collection[str], groups: Collection[str] = ()) -> int:
    """Pixels for the Run Name column to show the longest of the runs' `names` and of the groups' labels
    ('Group: <group>' after the row's fold button and colour, before its count) whole: MLflow's default, 190
    px, cuts 'lenet5@epochs=1,max_steps=50/torch/cpu/seed0' to 'lenet5@epochs=1,max_...'. At most MAX_NAME_PX."""
    needed = [len(name) * PX_PER_CHARACTER + NAME_PADDING_PX for name in names]
    needed += [len(f"Group: {group}") * PX_PER_CHARACTER + GROUP_PADDING_PX for group in groups]
    return int(min(max([MIN_NAME_PX, *needed]), MAX_NAME_PX))


def stored_name_width(state: str | None) -> int:
    """The Run Name width of a view stored before (MIN_NAME_PX if none): a new view never narrows it."""
    try:
        return int(json.loads(state or "{}").get("columnWidths", {}).get(RUN_NAME, MIN_NAME_PX))
    except (ValueError, TypeError, AttributeError):
        return MIN_NAME_PX


def identity_tags(row: ResultRow) -> dict[str, str]:
    """The tags that say which run a row is and where the view puts it (its seed group, its design axes), for a
    run being trained (from its job's row) and for one exported from a table alike."""
    identity = row.identity
    return {KIND_TAG: Kind.RUN.value, "backend": identity.backend, "device": identity.device, "seed": str(identity.seed),
            "variant": identity.variant, "overrides": identity.overrides, SEED_GROUP_TAG: identity.seed_group,
            **{axis: str(getattr(row, axis)) for axis in AXIS_COLUMNS}}


def group_id(group: str) -> str:
    """The UI's id of the group of runs whose SEED_GROUP_TAG is `group` (mode.key.value)."""
    return f"tag.{SEED_GROUP_TAG}.{group}"


def shared_view_state(run_name_px: int = MIN_NAME_PX, groups: Collection[str] = (), runs: int = 0) -> str:
    """The view as the UI stores it: its search (filter, order) and table state (columns, their order and
    widths, the grouping, and `groups` folded: the UI unfolds a group it is not told about). Best first when
    the experiment's `runs` fit the UI's first page; else by group, so that every group on a page is whole."""
    axes = [_column(kind, key) for kind, key in AXES]
    columns = axes + [_column("metrics", m) for m in METRICS] + [_column(kind, key) for kind, key in MORE]
    state = {
        "searchFilter": f"tags.`{KIND_TAG}` = '{Kind.RUN.value}'",
        **({"orderByKey": _column("metrics", "test_accuracy_pct"), "orderByAsc": False} if runs <= UI_PAGE_RUNS
           else {"orderByKey": _column("tags", SEED_GROUP_TAG), "orderByAsc": True}),
        "lifecycleFilter": "Active",
        "selectedColumns": columns,
        "columnOrder": [RUN_NAME, CREATED, *columns],
        "columnWidths": {RUN_NAME: run_name_px, CREATED: CREATED_PX, **dict(zip(axes, AXIS_PX, strict=True))},
        "groupBy": {"aggregateFunction": "average", "groupByKeys": [{"mode": "tag", "groupByData": SEED_GROUP_TAG}]},
        "useGroupedValuesInCharts": True, "runsHiddenMode": "SHOW_ALL",
    }
    folded = json.dumps({**state, "groupsExpanded": {group_id(g): False for g in sorted(groups)}})
    return folded if len(folded) <= MAX_STATE_CHARS else json.dumps(state)  # too many groups: shown unfolded


def store_view(tracker: Tracker, names: Collection[str], groups: Collection[str], runs: int) -> None:
    """The experiment's view and its model-training mark, set on the tracker's experiment: the name column wide
    enough for `names` and the `groups`' labels and never narrower than the view stored before."""
    stored = tracker.client.get_experiment(tracker.experiment_id).tags.get(VIEW_TAG)
    width = max(name_width(names, groups), stored_name_width(stored))
    tracker.set_experiment_tag(VIEW_TAG, shared_view_state(width, groups, runs=runs))
    tracker.set_experiment_tag(EXPERIMENT_KIND_TAG, MODEL_TRAINING)


def view_url(ui: str, experiment_id: str) -> str:
    return (f"{ui.rstrip('/')}/#/experiments/{experiment_id}/runs?viewStateShareKey={VIEW_KEY}"
            f"&workflowType={WORKFLOW}")
