"""A real small filesystem for the full-disk tests: a tmpfs of a given size, mounted in a mount namespace of
its own (`unshare --user --map-root-user --mount`: no root needed where user namespaces are allowed, as on
Debian and in CI's container), with a Python script run inside it.

The filesystem lives as long as the script: the script copies out what the test looks at afterwards.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TESTS = Path(__file__).parent


@functools.cache
def unavailable_reason() -> str | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return "no `unshare` (util-linux) on this machine"
    probe = subprocess.run([unshare, "--user", "--map-root-user", "--mount", "sh", "-c",
                            "mount -t tmpfs -o size=64k tmpfs /mnt 2>&1 || mount -t tmpfs -o size=64k tmpfs /tmp"],
                           capture_output=True, text=True)
    return None if probe.returncode == 0 else f"cannot mount a tmpfs in a user namespace: {probe.stderr.strip()}"


def require() -> None:
    """Skip where no small filesystem can be made; under CI (env CI set) fail instead."""
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"full-disk tests need a tmpfs: {reason}")
        pytest.skip(reason)


PROLOGUE = """
import json, os, shutil, sys
from pathlib import Path
sys.path.insert(0, {tests!r})
SMALL = Path({small!r})
AFTER = Path({after!r})
found = {{}}

def copy_out():
    # The tmpfs goes with this process: what the test reads afterwards is copied beside it.
    shutil.copytree(SMALL, AFTER, symlinks=True, dirs_exist_ok=True)
"""


def run_on_small_disk(workspace: Path, body: str, size_kib: int, timeout: float = 300, *, at: str = "small",
                      read_only: bool = False) -> tuple[dict, str]:
    """Run `body` with `workspace / at` a fresh tmpfs of `size_kib` KiB (`read_only`: mounted so, which stops
    root too). The body sees SMALL (the mount), AFTER (where copy_out() copies it to) and `found` (a dict it
    fills); returns (found, output)."""
    require()
    small, after = workspace / at, workspace / "after"
    small.mkdir(parents=True, exist_ok=True)
    script = PROLOGUE.format(tests=str(TESTS), small=str(small), after=str(after)) + textwrap.dedent(body) + \
        "\nprint('FOUND ' + json.dumps(found))\n"
    options = f"size={size_kib}k" + (",ro" if read_only else "")
    command = f"mount -t tmpfs -o {options} tmpfs {small} && exec {sys.executable} -c \"$SCRIPT\""
    done = subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", command], cwd=workspace,
                          env={**os.environ, "SCRIPT": script, "PYTHONUNBUFFERED": "1"}, capture_output=True,
                          text=True, timeout=timeout)
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("FOUND ")]
    assert done.returncode == 0 and lines, output[-4000:]
    return json.loads(lines[-1].removeprefix("FOUND ")), output


def cli(workspace, mnist_dir, results: str, store: str, body: str) -> str:
    """`body`, after a function `invoke(name, *argv)` that runs the CLI with the no-op backend, results in
    `results` and the store in `store` (Python expressions), keeping its exit code and output in found[name]."""
    return textwrap.dedent(f"""
        import contextlib, io
        import noop_backend
        from lenet_bench import backends
        from lenet_bench.cli import main
        from lenet_bench.console import console
        backends.register(backends.BackendEntry("noop", "noop_backend", distributions=()))

        def invoke(name, *argv):
            err = io.StringIO()
            console.file = err
            with contextlib.redirect_stderr(err):
                code = main(["run", {str(workspace / "specs")!r}, "--data-dir", {str(mnist_dir)!r},
                             "--tracking-uri", "sqlite:///" + str({store}), "--results", str({results}), *argv])
            console.file = None
            found[name] = {{"code": code, "err": " ".join(err.getvalue().split())}}
    """) + textwrap.dedent(body)
