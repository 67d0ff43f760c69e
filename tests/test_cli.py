"""The command line itself: every command's --help works and says what it does; exit codes are documented."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import SPEC_FOLDERS

from lenet_bench.cli import build_parser, main


def commands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_the_commands_are_the_documented_ones():
    assert {"run", "list", "validate", "bench", "check", "predict", "compare", "report", "effects"} <= set(commands())


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


def test_list_gives_each_runs_training_flops_an_estimated_time_and_whether_it_runs_here(capsys, monkeypatch):
    from lenet_bench.engine import hardware

    monkeypatch.setattr(hardware, "nvidia_driver_version", lambda: "")
    assert main(["list", str(SPEC_FOLDERS[0] / "lenet5.yaml"), "--backend", "torch", "--seed", "0"]) == 0
    captured = capsys.readouterr()
    rows = {line.split("│")[1].strip(): [c.strip() for c in line.split("│")[2:-1]]
            for line in captured.out.splitlines() if line.startswith("│ lenet5/")}
    cpu, gpu = rows["lenet5/torch/cpu/seed0"], rows["lenet5/torch/gpu/seed0"]
    from lenet_bench.spec import load_variants

    spec = load_variants([SPEC_FOLDERS[0] / "lenet5.yaml"])[0].spec
    # the training images (60,000 less the validation split) x epochs x the layer description's FLOPs per image
    images = int(60_000 * (1 - spec.data.validation_split))
    assert float(cpu[2]) == pytest.approx(images * spec.train.epochs * spec.summary().train_flops / 1e12, abs=0.005)
    assert cpu[3] and cpu[-1] == "ok"  # an estimate from the committed reference speeds
    assert gpu[3] == "" and gpu[-1] == "skip"
    err = " ".join(captured.err.split())
    assert "skipped here: 1 run(s): no GPU on this machine" in err
    assert "torch: 1 run(s), about " in err and "with --workers 2" in err


def test_an_only_pattern_that_matches_nothing_says_the_glob_is_exact(capsys):
    assert main(["list", str(SPEC_FOLDERS[0]), "--only", "lenet5-classic"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "--only matches whole names (a glob): 'lenet5-classic*' selects 12 variant(s)" in err


def test_run_help_names_the_backends(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    assert "torch, keras, keras-jax" in " ".join(capsys.readouterr().out.split())
