"""`--json`: a table-printing command's rows as one JSON document on stdout, for scripts and tests.

The document is built from the same rows as the table; only the formatting differs. Numbers stay numbers
(no thousands separators, no percent signs); a number that is not there (NaN, an estimate never measured)
is null, as strict JSON has no NaN.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import sys
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

import numpy as np
import pandas as pd

from lenet_bench.cli.common import TakesArguments


def add_json_flag(parser: TakesArguments) -> None:
    parser.add_argument("--json", action="store_true",
                        help="print the rows as one JSON document on stdout instead of the table (messages stay on "
                             "stderr)")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A table's rows as plain dicts, column name to value."""
    return [{str(name): value for name, value in row.items()} for row in frame.to_dict(orient="records")]


def plain(value: Any) -> Any:
    """`value` as what json can write: NaN and infinities as None, numpy and pandas scalars as Python ones,
    paths as strings, enums as their values, dataclasses and frames as dicts and lists of dicts."""
    if isinstance(value, pd.DataFrame):
        return plain(records(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain(dataclasses.asdict(value))
    if isinstance(value, Mapping):
        return {str(key): plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset | np.ndarray):
        return [plain(item) for item in value]
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.generic):
        return plain(value.item())
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_json(document: Mapping[str, Any]) -> None:
    """Write `document` to stdout as indented JSON (plain print: rich would wrap and colour it)."""
    sys.stdout.write(json.dumps(plain(document), indent=2, allow_nan=False) + "\n")
    sys.stdout.flush()
