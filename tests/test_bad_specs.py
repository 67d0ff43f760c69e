"""The corpus of bad specs (tests/bad_specs/): each file is refused alone, with exit code 2, a message that
names it and its expected fragment, and no traceback; and the bad inputs a file cannot hold (a pipe, an
unreadable file, an oversized one)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lenet_bench.cli import main
from lenet_bench.cli.common import EXIT_INVALID
from lenet_bench.spec import SpecError, bounded_yaml, load_variants

CORPUS = Path(__file__).resolve().parent / "bad_specs"
FILES = sorted(CORPUS.glob("*.yaml"))


def expected_fragment(path: Path) -> str:
    """The file's `# expect: ...` line: the Issue's 'field: message' (or its line) must contain it."""
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        if line.startswith("# expect: "):
            return line.removeprefix("# expect: ")
    raise AssertionError(f"{path.name} has no '# expect: ...' line")


def test_corpus_is_there():
    assert len(FILES) >= 40
    for path in FILES:
        first = path.read_bytes().splitlines()[0]
        assert first.startswith(b"# ") and not first.startswith(b"# expect:"), f"{path.name}: say what is wrong first"


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
def test_bad_spec_is_refused_with_its_message(path, capsys):
    fragment = expected_fragment(path)
    with pytest.raises(SpecError) as caught:
        load_variants([path])
    [issue] = caught.value.issues  # one problem per file, so the fragment pins down the check
    assert issue.file == str(path)
    assert fragment in str(issue), str(issue)
    for command in ("validate", "list"):
        assert main([command, str(path)]) == EXIT_INVALID
        err = capsys.readouterr().err
        assert f"{path}" in err and fragment in err, err


def test_whole_corpus_exits_2_without_traceback(tmp_path):
    # A process of its own: whatever escapes would print a traceback and exit 1.
    proc = subprocess.run([sys.executable, "-m", "lenet_bench", "validate", str(CORPUS)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == EXIT_INVALID, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    for path in FILES:
        assert expected_fragment(path) in proc.stderr, path.name


def test_run_refuses_the_corpus_before_training(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(CORPUS)]) == EXIT_INVALID
    err = capsys.readouterr().err
    assert all(expected_fragment(path) in err for path in FILES)
    # Nothing trained, nothing logged.
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "results").exists()


# ---------------------------------------------------------------- what a committed file cannot be


def only_issue(paths) -> str:
    with pytest.raises(SpecError) as caught:
        load_variants(paths)
    [issue] = caught.value.issues
    return str(issue)


def test_oversized_file(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("name: big\nmodel: {conv: [{filters: 6}]}\ndescription: " + "x" * bounded_yaml.MAX_FILE_BYTES + "\n")
    assert f"{path}: (top level): the file is larger than 256 KiB" in only_issue([path])


def test_pipe_is_refused_not_read(tmp_path):
    # Reading a pipe with no writer would block forever.
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)
    assert f"{pipe}: (top level): not a regular file or folder" in only_issue([pipe])


def test_unreadable_file(tmp_path, monkeypatch):
    # The tests may run as root, which reads anything: the permission error is raised where the file is opened.
    path = tmp_path / "locked.yaml"
    path.write_text("name: locked\nmodel: {conv: [{filters: 6}]}\n")
    real_open = Path.open

    def deny(self, *args, **kwargs):
        if self == path:
            raise PermissionError(13, "Permission denied", str(self))
        return real_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", deny)
    assert f"{path}: (top level): cannot read: Permission denied" in only_issue([path])


def test_folder_named_like_a_spec_file(tmp_path):
    folder = tmp_path / "looks_like.yaml"
    folder.mkdir()
    assert f"{folder}: (top level): no spec files found" in only_issue([folder])


def test_a_folder_is_limited_in_variants_as_a_whole(tmp_path, monkeypatch):
    # Each matrix is within the limit; together they are not, and the spec that crosses the line says so.
    from lenet_bench.spec import loading

    monkeypatch.setattr(loading, "MAX_VARIANTS", 10)  # the same count as 10,000, a thousand times faster
    cells = loading.MAX_VARIANTS // 2 + 1
    for name in ("a", "b"):
        (tmp_path / f"{name}.yaml").write_text(
            f"name: {name}\nmodel: {{conv: [{{filters: 6}}]}}\nmatrix: {{train.seeds: {[[s] for s in range(cells)]}}}\n")
    message = only_issue([tmp_path])
    assert "b.yaml [b]: matrix:" in message and f"would make {2 * cells:,} in one invocation" in message


def test_many_broken_entries_are_capped_per_file(tmp_path):
    from lenet_bench.spec.loading import MAX_ISSUES_PER_FILE

    path = tmp_path / "many.yaml"
    path.write_text("".join(f"- {i}\n" for i in range(MAX_ISSUES_PER_FILE + 7)))
    with pytest.raises(SpecError) as caught:
        load_variants([path])
    issues = caught.value.issues
    assert len(issues) == MAX_ISSUES_PER_FILE + 1
    assert "7 more problem(s) in this file" in str(issues[-1])
