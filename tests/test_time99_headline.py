"""The README's time-to-99% headline says how sure it is, with the numbers of the committed rows."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from lenet_bench.results.convert import rows_to_frame
from lenet_bench.results.stats import summarize
from lenet_bench.results.table import ResultsFolder

REPO = Path(__file__).resolve().parents[1]


def test_the_headline_gives_the_seeds_spread_from_runs_csv():
    frame = rows_to_frame(ResultsFolder(REPO / "results" / "reference").read())
    torch = frame[(frame["spec"] == "lenet5-time99") & (frame["backend"] == "torch")
                  & (frame["status"] == "completed") & (frame["overrides"].fillna("") == "")]
    accuracy = 100 * torch.sort_values("seed")["test_accuracy"].astype(float)
    assert list(torch.sort_values("seed")["seed"]) == [0, 1, 2, 3, 4]
    summary = summarize(accuracy)
    readme = " ".join((REPO / "README.md").read_text().split())
    assert (f"the five PyTorch seeds (0-4) gave {accuracy.min():.2f}% to {accuracy.max():.2f}%, standard deviation "
            f"{summary.std:.3f} points, a 95% interval of the mean of {summary.ci_low:.2f}-{summary.ci_high:.2f}%, "
            f"so the mean clears 99.00% by {summary.mean - 99:.2f} points") in readme
    assert summary.ci_low < 99.0  # hence "less than its own uncertainty"
    assert "another machine of this kind gave 98.99% on PyTorch" in readme


def _sweep_script():
    spec = importlib.util.spec_from_file_location("time99_sweep_table", REPO / "scripts" / "time99_sweep_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_margin_sweeps_table_and_the_headlines_ten_seed_numbers_are_the_committed_rows():
    sweep = _sweep_script()
    rows = sweep.sweep_rows()
    reference_readme = (REPO / "results" / "reference" / "README.md").read_text()
    shown = reference_readme.split("<!-- time99-sweep:begin -->\n")[1].split("\n<!-- time99-sweep:end -->")[0]
    assert shown == sweep.table(rows, sweep.changes())
    recipe = rows[rows["spec"] == "t99-base"]
    assert sorted(recipe["seed"]) == list(range(10))
    # The sweep's recipe is the committed one: its seeds 0-4 give the reference rows' accuracies.
    frame = rows_to_frame(ResultsFolder(REPO / "results" / "reference").read())
    committed = frame[(frame["spec"] == "lenet5-time99") & (frame["backend"] == "torch")
                      & (frame["status"] == "completed") & (frame["overrides"].fillna("") == "")]
    ten, later = summarize(recipe["test_accuracy_pct"]), summarize(recipe[recipe["seed"] >= 5]["test_accuracy_pct"])
    readme = " ".join((REPO / "README.md").read_text().split())
    assert (f"over seeds 0-9 the same recipe gives {ten.mean:.2f}% (sd {ten.std:.2f} points; seeds 5-9 alone "
            f"{later.mean:.2f}%)") in readme
    first = recipe[recipe["seed"] < 5].sort_values("seed")["test_accuracy_pct"].round(2).tolist()
    assert first == (100 * committed.sort_values("seed")["test_accuracy"].astype(float)).round(2).tolist()
