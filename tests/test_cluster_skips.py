"""`run --cluster` says before training which runs the cluster cannot take, as `run` does for this machine,
and its estimate and progress count only the runs that will train (a real Dask cluster on loopback)."""

from __future__ import annotations

import re

import pandas as pd
import pytest
from test_executors import dask_cluster, run, workspace  # noqa: F401 (fixture)

NO_GPU_WORKER = "no Dask worker offers a GPU resource (start one with: dask worker ADDRESS --resources GPU=1)"


@pytest.mark.slow
def test_gpu_runs_on_a_cluster_without_a_gpu_worker_are_announced_up_front_and_left_out_of_the_eta(
        workspace, mnist_dir, noop, capsys, tmp_path):
    with dask_cluster(tmp_path, {"cpu-worker": {}}) as address:  # three seeds on cpu and gpu: 3 runs the cluster takes
        assert run(workspace, mnist_dir, "dask", "--cluster", address) == 0
    lines = capsys.readouterr().err.splitlines()
    announced = lines.index(f"skipping 3 run(s) of tiny: {NO_GPU_WORKER}")
    first_started = next(i for i, line in enumerate(lines) if re.match(r"\[\d+/6\] ", line))
    assert announced < first_started, "the skips are said before anything trains"
    assert any(line.startswith("expected: ") and " for 3 run(s) to train " in line for line in lines)
    started = [line.split()[1] for line in lines if re.match(r"\[\d+/6\] ", line)]
    assert started == [f"tiny/noop/cpu/seed{seed}" for seed in range(3)], "no GPU run is started, then skipped"
    assert not any("/gpu/" in line and "skipped" in line for line in lines[first_started:]), "said once, up front"
    table = pd.read_csv(workspace / "dask" / "runs.csv").set_index("run")
    gpu = table[table["device"] == "gpu"]
    assert set(gpu["status"]) == {"skipped"} and set(gpu["reason"]) == {NO_GPU_WORKER}
    assert set(table.loc[table["device"] == "cpu", "status"]) == {"completed"}
