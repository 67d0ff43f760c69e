"""Give the rows of a results table that predate the `batch_size` column their batch size, from the specs.

The column lets `list` and `run` estimate a never-measured one-image variant from one-image runs
(engine/estimate.py). A row's batch size is its variant's `train.batch_size` as the specs say now (the
command-line overrides never change it); rows of variants no spec has any more stay empty.

    .venv/bin/python scripts/backfill_batch_size.py results/reference specs paper1998 --update-reference
"""

from __future__ import annotations

import argparse
from pathlib import Path

from lenet_bench.results.table import ResultsFolder
from lenet_bench.spec import load_variants


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", type=Path)
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--update-reference", action="store_true")
    args = parser.parse_args()
    batch = {variant.name: variant.spec.train.batch_size for variant in load_variants(args.specs)}
    folder = ResultsFolder(args.results, update_reference=args.update_reference)
    rows = [row.update(batch_size=batch[row.spec]) for row in folder.read()
            if row.batch_size is None and row.spec in batch]
    folder.merge(rows)
    print(f"{len(rows)} row(s) of {folder.runs_csv} given their batch size")


if __name__ == "__main__":
    main()
