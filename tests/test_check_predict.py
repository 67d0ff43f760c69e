"""The check command against recorded results, and predict on image files the test writes."""

from __future__ import annotations

import textwrap

import numpy as np
import pytest
from PIL import Image

import noop_backend
from lenet_bench import backends
from lenet_bench.cli import main
from lenet_bench.data import load_dataset
from lenet_bench.predict import load_digit


@pytest.fixture
def noop():
    backends.register("noop", "noop_backend")
    noop_backend.TRAINED.clear()
    yield noop_backend
    backends.unregister("noop")


def write_spec(folder, backend, expect, extra=""):
    folder.mkdir(exist_ok=True)
    (folder / "s.yaml").write_text(textwrap.dedent(f"""
        name: small
        data: {{subset: 20000, test_subset: 1000}}
        model: {{conv: [{{filters: 6}}, {{filters: 16}}], dense: [84]}}
        train: {{optimizer: {{name: adam}}, epochs: 1}}
        backends: [{backend}]
        expect: {{min_test_accuracy: {expect}}}
    """) + extra)


def run(tmp_path, mnist_dir, *extra):
    return main(["run", str(tmp_path / "specs"), "--data-dir", str(mnist_dir), "--tracking-uri",
                 f"sqlite:///{tmp_path}/mlflow.db", "--results", str(tmp_path / "results"), *extra])


def test_check_passes_then_fails_when_the_expectation_is_raised(tmp_path, mnist_dir, noop, capsys):
    write_spec(tmp_path / "specs", "noop", 0.05)
    assert run(tmp_path, mnist_dir) == 0
    check = ["check", str(tmp_path / "results"), "--specs", str(tmp_path / "specs")]
    assert main(check) == 0
    write_spec(tmp_path / "specs", "noop", 0.5)  # above the ~11% the majority class gets
    assert main(check) == 1
    assert "miss" in capsys.readouterr().out
    assert main(["check", str(tmp_path / "nowhere"), "--specs", str(tmp_path / "specs")]) == 2


def test_load_digit_inverts_dark_on_light_and_resizes(tmp_path):
    digit = np.zeros((28, 28), np.uint8)
    digit[6:22, 12:16] = 255  # a light "1" on black, as in MNIST
    Image.fromarray(255 - digit).resize((84, 84)).save(tmp_path / "dark_on_light.png")
    Image.fromarray(digit).save(tmp_path / "light_on_dark.png")
    for name in ("dark_on_light.png", "light_on_dark.png"):
        loaded = load_digit(tmp_path / name)
        assert loaded.shape == (28, 28) and loaded.dtype == np.uint8
        assert loaded[14, 14] > 200 and loaded[2, 2] < 30, name


@pytest.mark.slow
def test_predict_reads_a_users_image_with_a_trained_model(tmp_path, mnist_dir, capsys):
    write_spec(tmp_path / "specs", "torch", 0.9)
    assert run(tmp_path, mnist_dir, "--max-steps", "150") == 0
    raw = load_dataset("mnist", mnist_dir)
    paths = []
    for i in range(10):  # real test digits, drawn dark on light at 3x size, as a user's scan would be
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(255 - raw.x_test[i]).resize((84, 84), Image.BICUBIC).save(path)
        paths.append(path)
    capsys.readouterr()
    assert main(["predict", "small/torch/cpu/seed0", *map(str, paths), "--tracking-uri",
                 f"sqlite:///{tmp_path}/mlflow.db"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert sum(p == t for p, t in zip(predicted, raw.y_test[:10])) >= 9, (predicted, raw.y_test[:10])
    assert main(["predict", "no-such-run", str(paths[0]), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]) == 2
