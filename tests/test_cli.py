"""The command line itself: every command's --help works and says what it does; exit codes are documented."""

from __future__ import annotations

import fnmatch
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import SPEC_FOLDERS

from lenet_bench.cli import build_parser, command_handler, main
from lenet_bench.cli.json_output import print_json
from lenet_bench.console import duration
from lenet_bench.spec import load_variants


def commands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_the_commands_are_the_documented_ones():
    assert {"run", "list", "validate", "bench", "check", "predict", "compare", "report", "effects"} <= set(commands())


@pytest.mark.parametrize("command", commands())
def test_every_command_names_a_handler_that_exists(command):
    """A parser names its handler as text (cli/arguments.py), so a misspelt one would fail only when run."""
    parser = build_parser()
    subcommand = next(a for a in parser._actions if a.dest == "command").choices[command]
    assert callable(command_handler(subcommand.get_default("handler")))


@pytest.mark.parametrize("command", [None, *commands()])
def test_help_of_every_command(command, capsys):
    with pytest.raises(SystemExit) as stopped:
        main(["--help"] if command is None else [command, "--help"])
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: python -m lenet_bench") and (command is None or command in out.split("\n")[0])


def test_module_entry_point_runs():
    done = subprocess.run([sys.executable, "-m", "lenet_bench", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("lenet_bench ")


def test_an_unknown_command_or_option_is_exit_2(capsys):
    for argv in (["fly"], ["run", "specs", "--epochs", "0"], ["run", "specs", "--workers", "-1"]):
        with pytest.raises(SystemExit) as stopped:
            main(argv)
        assert stopped.value.code == 2
    assert "expected a positive integer" in capsys.readouterr().err


def strict_json(text: str):
    """The document a --json command printed, refusing NaN and infinities (no strict JSON reader takes them)."""
    def refuse(constant: str):
        raise AssertionError(f"{constant} in the JSON output")

    return json.loads(text, parse_constant=refuse)


def test_json_output_writes_missing_numbers_as_null_and_library_types_as_plain_ones(capsys):
    from lenet_bench.device import Device

    frame = pd.DataFrame({"accuracy": [0.99, math.nan], "n": np.array([2, 3])})
    print_json({"rows": frame, "folder": Path("results"), "device": Device.GPU, "ratio": np.float32(0.5),
                "ceiling": math.inf, "quiet": np.bool_(True), "times": {np.int64(0): 1.5}})
    assert strict_json(capsys.readouterr().out) == {
        "rows": [{"accuracy": 0.99, "n": 2}, {"accuracy": None, "n": 3}], "folder": "results", "device": "gpu",
        "ratio": 0.5, "ceiling": None, "quiet": True, "times": {"0": 1.5}}


def test_list_gives_each_runs_training_flops_an_estimated_time_and_whether_it_runs_here(capsys, monkeypatch):
    from lenet_bench.engine import hardware

    monkeypatch.setattr(hardware, "nvidia_driver_version", lambda: "")
    lenet5 = str(SPEC_FOLDERS[0] / "lenet5.yaml")
    assert main(["list", lenet5, "--backend", "torch", "--seed", "0", "--json"]) == 0
    captured = capsys.readouterr()
    runs = {row["run"]: row for row in strict_json(captured.out)["runs"]}
    assert list(runs) == ["lenet5/torch/cpu/seed0", "lenet5/torch/gpu/seed0"]
    cpu, gpu = runs["lenet5/torch/cpu/seed0"], runs["lenet5/torch/gpu/seed0"]
    spec = load_variants([lenet5])[0].spec
    # the training images (60,000 less the validation split) x epochs x the layer description's FLOPs per image
    images = int(60_000 * (1 - spec.data.validation_split))
    assert cpu["train_flops"] == images * spec.train.epochs * spec.summary().train_flops
    assert (cpu["params"], cpu["flops_per_image"]) == (spec.summary().params, spec.summary().flops)
    assert (cpu["epochs"], cpu["batch_size"], cpu["min_test_accuracy"]) == (
        spec.train.epochs, spec.train.batch_size, spec.expect.min_test_accuracy)
    assert cpu["runs_here"] and cpu["skip_reason"] is None
    assert cpu["estimated_seconds"] > 0 and cpu["estimate_source"]  # from the committed reference speeds
    assert not gpu["runs_here"] and gpu["estimated_seconds"] is None
    assert gpu["skip_reason"] == "no GPU on this machine (no NVIDIA driver found)"
    err = " ".join(captured.err.split())
    assert "skipped here: 1 run(s): no GPU on this machine" in err
    assert f"torch: 1 run(s), about {duration(cpu['estimated_seconds'])} inline" in err and "with --workers 2" in err

    # The table is the same rows formatted: the figures printed are the JSON's.
    assert main(["list", lenet5, "--backend", "torch", "--seed", "0"]) == 0
    table = capsys.readouterr().out
    cpu_line = next(line for line in table.splitlines() if "lenet5/torch/cpu/seed0" in line)
    assert f"{cpu['train_flops'] / 1e12:.2f}" in cpu_line and duration(cpu["estimated_seconds"]) in cpu_line
    assert "lenet5/torch/gpu/seed0" in table


def test_list_json_names_overridden_runs_unjudged_and_gives_the_layers(capsys):
    lenet5 = str(SPEC_FOLDERS[0] / "lenet5.yaml")
    assert main(["list", lenet5, "--backend", "torch", "--device", "cpu", "--seed", "1", "--epochs", "2",
                 "--layers", "--json"]) == 0
    document = strict_json(capsys.readouterr().out)
    (run,) = document["runs"]
    assert run["run"] == "lenet5@epochs=2/torch/cpu/seed1" and run["overrides"] == "epochs=2"
    assert run["epochs"] == 2 and run["min_test_accuracy"] is None, "a run with overrides is not judged"
    (variant,) = document["variants"]
    summary = load_variants([lenet5])[0].spec.summary()
    assert variant["variant"] == "lenet5"
    assert [layer["layer"] for layer in variant["layers"]] == [layer.name for layer in summary.layers]
    assert sum(layer["params"] for layer in variant["layers"]) == summary.params
    assert variant["layers"][-1]["output_shape"] == [10]


def test_an_only_pattern_that_matches_nothing_says_the_glob_is_exact(capsys):
    assert main(["list", str(SPEC_FOLDERS[0]), "--only", "lenet5-classic"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    family = [v.name for v in load_variants([SPEC_FOLDERS[0]]) if fnmatch.fnmatchcase(v.name, "lenet5-classic*")]
    assert len(family) > 1
    assert f"--only matches whole names (a glob): 'lenet5-classic*' selects {len(family)} variant(s)" in err


def test_run_help_names_the_backends(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "torch, keras, keras-jax" in " ".join(capsys.readouterr().out.split())
