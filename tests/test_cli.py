"""The command line itself: every command's --help works and says what it does; exit codes are documented."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lenet_bench.cli import build_parser, main


def commands() -> list[str]:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_the_commands_are_the_documented_ones():
    assert {"run", "list", "validate", "bench", "check", "predict", "compare", "report"} <= set(commands())


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
