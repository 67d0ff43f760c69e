"""Seed statistics against values computed by hand."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from lenet_bench.results.stats import aggregate, format_mean_ci, summarize

T_975_DF2 = 4.302653  # Student t quantile, 97.5%, 2 degrees of freedom (printed tables: 4.303)


def test_three_values_mean_sample_std_and_t_interval():
    s = summarize([0.98, 0.99, 1.00])
    assert s.n == 3
    assert s.mean == pytest.approx(0.99)
    assert s.std == pytest.approx(0.01)  # sqrt(((-0.01)^2 + 0 + 0.01^2) / (3 - 1))
    half = T_975_DF2 * 0.01 / math.sqrt(3)
    assert half == pytest.approx(0.024841, abs=1e-6)
    assert s.half_width == pytest.approx(half)
    assert (s.ci_low, s.ci_high) == (pytest.approx(0.99 - half), pytest.approx(0.99 + half))


def test_two_values_use_t_with_one_degree_of_freedom():
    s = summarize([1.0, 3.0])
    assert s.std == pytest.approx(math.sqrt(2))
    assert s.half_width == pytest.approx(12.706205, rel=1e-6)  # t(0.975, 1) * sqrt(2) / sqrt(2)


def test_one_value_has_a_mean_but_no_spread():
    s = summarize([0.97])
    assert (s.n, s.mean) == (1, 0.97)
    assert math.isnan(s.std) and math.isnan(s.ci_low) and math.isnan(s.ci_high)


def test_missing_values_are_dropped_and_nothing_gives_nan():
    assert summarize([0.5, float("nan"), None, 0.7]).n == 2
    empty = summarize([])
    assert empty.n == 0 and math.isnan(empty.mean)


def test_aggregate_groups_and_names_columns():
    df = pd.DataFrame({
        "spec": ["a", "a", "a", "b"], "backend": ["torch"] * 4,
        "test_accuracy": [0.98, 0.99, 1.00, 0.5], "train_seconds": [1.0, 2.0, 3.0, 4.0],
    })
    table = aggregate(df, by=["spec", "backend"], metrics=["test_accuracy", "train_seconds", "absent"])
    assert list(table.columns[:2]) == ["spec", "backend"]
    assert {"test_accuracy_mean", "test_accuracy_std", "test_accuracy_ci_low", "test_accuracy_ci_high",
            "test_accuracy_n"} <= set(table.columns)
    a = table.set_index("spec").loc["a"]
    assert a["test_accuracy_mean"] == pytest.approx(0.99)
    assert a["test_accuracy_ci_high"] - a["test_accuracy_mean"] == pytest.approx(0.024841, abs=1e-6)
    assert a["train_seconds_std"] == pytest.approx(1.0)
    assert a["test_accuracy_n"] == 3 and a["absent_n"] == 0 and math.isnan(a["absent_mean"])
    b = table.set_index("spec").loc["b"]
    assert b["test_accuracy_n"] == 1 and math.isnan(b["test_accuracy_ci_low"])


def test_aggregate_of_nothing_is_an_empty_table_with_the_columns():
    table = aggregate(pd.DataFrame(), by=["spec"], metrics=["test_accuracy"])
    assert table.empty and "test_accuracy_mean" in table.columns


def test_format_mean_ci():
    assert format_mean_ci(0.9891, 0.9879, 0.9903) == "0.9891 ± 0.0012"
    assert format_mean_ci(0.9891, float("nan"), float("nan")) == "0.9891"
    assert format_mean_ci(12345.4, 12135.4, 12555.4, digits=0) == "12,345 ± 210"
    assert format_mean_ci(float("nan"), float("nan"), float("nan")) == ""
