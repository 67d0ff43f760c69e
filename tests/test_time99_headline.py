"""The README's time-to-99% headline says how sure it is, with the numbers of the committed rows."""

from __future__ import annotations

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
