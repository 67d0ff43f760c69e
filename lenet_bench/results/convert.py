"""Rows -> MLflow runs, rows <-> tables: the one place that converts between them, driven by `row.FIELDS`."""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Iterable
from typing import Any

import pandas as pd

from lenet_bench.results.row import COLUMNS, FIELDS, METRIC, PARAM, TAG, ResultRow, Status, mlflow_key

_HINTS = typing.get_type_hints(ResultRow)


def _base_type(name: str) -> tuple[type, bool]:
    """(the field's type, whether it may be None)."""
    hint = _HINTS[name]
    if isinstance(hint, types.UnionType):
        args = [a for a in hint.__args__ if a is not type(None)]
        return args[0], True
    return hint, False


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA or value == ""


def coerce(name: str, value: Any) -> Any:
    """A value read from MLflow or a CSV (text, float, NaN) as the field's own type."""
    kind, optional = _base_type(name)
    if _missing(value):
        if optional:
            return None
        return next(f for f in FIELDS if f.name == name).default
    if kind is bool:
        return value if isinstance(value, bool) else str(value).strip().lower() == "true"
    if kind is int:
        return int(round(float(value)))
    if kind is float:
        return float(value)
    if kind is Status:
        return Status(str(value))
    return str(value)


def row_from_mapping(values: dict[str, Any]) -> ResultRow:
    """A row from column -> value (a CSV record); unknown columns are ignored, missing ones default."""
    return ResultRow(**{name: coerce(name, values.get(name)) for name in COLUMNS})


# ------------------------------------------------------------------ tables

def rows_to_frame(rows: Iterable[ResultRow]) -> pd.DataFrame:
    """Columns in the order of `ResultRow`, statuses as their text."""
    records = [{name: _plain(getattr(row, name)) for name in COLUMNS} for row in rows]
    return pd.DataFrame.from_records(records, columns=list(COLUMNS))


def rows_from_frame(frame: pd.DataFrame) -> list[ResultRow]:
    return [row_from_mapping({str(k): v for k, v in record.items()}) for record in frame.to_dict("records")]


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Status) else value


# ------------------------------------------------------------------ MLflow

def to_mlflow(row: ResultRow) -> tuple[dict[str, str], dict[str, float], dict[str, str]]:
    """(params, metrics, tags) of a row; empty values are left out."""
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    tags: dict[str, str] = {}
    for f in FIELDS:
        value = getattr(row, f.name)
        if _missing(value):
            continue
        where = f.metadata["mlflow"]
        if where == PARAM:
            params[mlflow_key(f)] = str(_plain(value))
        elif where == METRIC and math.isfinite(float(value)):
            metrics[mlflow_key(f)] = float(value)
        elif where == TAG:
            tags[mlflow_key(f)] = str(_plain(value))
    return params, metrics, tags
