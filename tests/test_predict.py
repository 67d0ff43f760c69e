"""predict: a user's image made MNIST-like (cropped, scaled to a 20-pixel box, centred by mass),
the errors a user can cause, and a trained model reading real MNIST test digits drawn the ways
users draw them - small in a corner, dark on white, photographed - where the old preprocessing
(resize the whole image to 28x28) failed."""

from __future__ import annotations

import io
import os
import socket
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps
from scipy import ndimage
from trained_run import TrainedStore, noop_run, quick_torch_run

from lenet_bench.cli import main
from lenet_bench.predict import NoDigit, TrainedModel, load_digit, normalize_digit
from lenet_bench.predict.trained import RunUnusable

Maker = Callable[[np.ndarray, np.random.Generator], Image.Image]


# ------------------------------------------------------------------ how users draw digits

def off_centre(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """The digit at MNIST's own size in a random corner of a 200x200 black canvas."""
    canvas = np.zeros((200, 200), np.uint8)
    top, left = rng.integers(0, 20, 2)
    if rng.random() < 0.5:
        top = 200 - 28 - top
    if rng.random() < 0.5:
        left = 200 - 28 - left
    canvas[top:top + 28, left:left + 28] = digit
    return Image.fromarray(canvas)


def inverted(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Dark on white at 4x size, on a landscape page (3:2) with the digit left of centre."""
    page = np.full((112, 168), 255, np.uint8)
    left = int(rng.integers(0, 30))
    page[:, left:left + 112] = 255 - np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC))
    return Image.fromarray(page)


def photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """A photo of dark ink on paper: 6x size, rotated a few degrees, lit unevenly, noisy, JPEG-compressed."""
    size, scale = 300, 180
    big = Image.fromarray(digit).resize((scale, scale), Image.Resampling.BICUBIC)
    big = big.rotate(float(rng.uniform(-8, 8)), Image.Resampling.BICUBIC)
    ink = np.zeros((size, size), np.float32)
    top, left = rng.integers(20, size - scale - 20, 2)
    ink[top:top + scale, left:left + scale] = np.asarray(big, np.float32) / 255
    rows, cols = np.mgrid[0:size, 0:size] / size
    paper = 140 + 90 * (0.6 * cols + 0.4 * rows)  # brighter towards the lower right
    pixels = paper * (1 - 0.8 * ink) + rng.normal(0, 12, (size, size))
    buffer = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).convert("RGB").save(buffer, "JPEG", quality=60)
    return Image.open(io.BytesIO(buffer.getvalue()))


def transparent(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """Black ink whose strokes are only in the alpha channel (a PNG from a drawing program), 3x size."""
    alpha = Image.fromarray(digit).resize((84, 84), Image.Resampling.BICUBIC)
    image = Image.new("RGBA", alpha.size, (0, 0, 0, 0))
    image.putalpha(alpha)
    return image


KINDS: dict[str, Maker] = {"off_centre": off_centre, "inverted": inverted, "photo": photo}


def write_images(folder: Path, maker: Maker, digits: np.ndarray, seed: int = 0) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index, digit in enumerate(digits):
        image = maker(digit, rng)
        path = folder / f"{maker.__name__}{index}.{'jpg' if image.format == 'JPEG' else 'png'}"
        image.save(path)
        paths.append(path)
    return paths


def resize_only(path: Path) -> np.ndarray:
    """The old preprocessing, for comparison: the whole image resized to 28x28, inverted when its border is light."""
    image = ImageOps.exif_transpose(Image.open(path)).convert("L").resize((28, 28), Image.Resampling.LANCZOS)
    pixels = np.asarray(image, dtype=np.uint8)
    border = np.concatenate([pixels[0], pixels[-1], pixels[:, 0], pixels[:, -1]])
    return 255 - pixels if border.mean() > 127 else pixels


def geometry(digit: np.ndarray) -> tuple[int, tuple[float, float]]:
    """(longer side of the bounding box of every lit pixel, centre of mass)."""
    rows, cols = np.nonzero(digit)
    return max(np.ptp(rows), np.ptp(cols)) + 1, ndimage.center_of_mass(digit.astype(float))


# ------------------------------------------------------------------ the normalization, no model

def shift_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """The best correlation of a and b when a moves by at most one pixel either way."""
    return max(np.corrcoef(np.roll(a, (down, right), (0, 1)).ravel(), b.ravel())[0, 1]
               for down in (-1, 0, 1) for right in (-1, 0, 1))


def test_mnist_digits_come_back_unchanged_up_to_a_pixel(mnist_raw):
    """MNIST's own digits already fill a 20-pixel box and are centred by mass to the nearest pixel
    (their centres of mass spread uniformly over 14 +- 0.5): normalizing gives them back."""
    for digit in mnist_raw.x_test[:100]:
        again = normalize_digit(digit)
        assert geometry(again)[0] == 20
        assert shift_correlation(again, digit) > 0.95


# How close each kind comes to the clean digit's normalization: a digit merely moved comes back
# identical; resampling (4x, 3x) blurs its rims; a photo is also rotated up to 8 degrees.
SIMILARITY = {off_centre: 0.999, inverted: 0.85, transparent: 0.85, photo: 0.7}


@pytest.mark.parametrize("maker", list(SIMILARITY), ids=lambda m: m.__name__)
def test_user_images_normalize_like_mnist(tmp_path, mnist_raw, maker):
    """Whatever the canvas, the result is a light digit on black, 20 pixels on its longer side, centred
    by mass at (14, 14) to the nearest pixel, and close to what the clean digit normalizes to."""
    digits = mnist_raw.x_test[:20]
    for path, digit in zip(write_images(tmp_path, maker, digits), digits):
        loaded = load_digit(path)
        assert loaded.shape == (28, 28) and loaded.dtype == np.uint8
        side, (row, col) = geometry(loaded)
        assert side == 20, (path.name, side)
        assert abs(row - 14) <= 0.5 and abs(col - 14) <= 0.5, (path.name, row, col)
        assert loaded[:2].max() == 0 and loaded[:, :2].max() == 0, path.name  # black margins, no noise
        assert shift_correlation(loaded, normalize_digit(digit)) > SIMILARITY[maker], path.name


def test_faint_noise_and_blank_images_hold_no_digit():
    rng = np.random.default_rng(0)
    faint = np.clip(200 + rng.normal(0, 4, (120, 120)), 0, 255)  # grey paper with sensor noise
    for blank in (np.full((50, 50), 255.0), np.zeros((28, 28)), faint):
        with pytest.raises(NoDigit, match="no digit found"):
            normalize_digit(blank)


# ------------------------------------------------------------------ what a user can get wrong

def test_bad_image_files_exit_2_naming_every_file(tmp_path, mnist_raw, capsys):
    """Images are read before the model is looked up: no store is needed to report them, all together."""
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    good = tmp_path / "good.png"
    Image.fromarray(mnist_raw.x_test[0]).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:120])
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    store = ["--tracking-uri", f"sqlite:///{tmp_path}/none.db"]

    assert main(["predict", "any-run", str(text), str(good), str(truncated), str(blank), *store]) == 2
    err = capsys.readouterr().err
    assert f"{text}: not an image" in err
    assert f"{truncated}: cannot read the image" in err
    assert f"{blank}: no digit found" in err
    assert str(good) not in err and "Traceback" not in err

    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)  # opened, it would block the reader for ever
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(tmp_path / "socket.png"))
        assert main(["predict", "any-run", str(tmp_path / "missing.png"), str(tmp_path), str(fifo),
                     str(tmp_path / "socket.png"), "/dev/null", *store]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"{tmp_path / 'missing.png'}: no such image file" in err
    assert f"{tmp_path}: a folder, not an image file" in err
    assert f"{fifo}: a named pipe (FIFO), not an image file" in err
    assert f"{tmp_path / 'socket.png'}: a socket, not an image file" in err
    assert "/dev/null: a character device, not an image file" in err


@pytest.mark.slow
def test_a_run_without_a_saved_model_is_a_clear_error(tmp_path_factory, mnist_dir, noop, tmp_path, capsys):
    store = noop_run(tmp_path_factory, mnist_dir)
    with pytest.raises(RunUnusable, match="has no saved model"):
        TrainedModel.load(store.run_name, store.tracking_uri)
    digit = tmp_path / "digit.png"
    Image.fromarray(255 - np.kron(np.eye(8, dtype=np.uint8), np.full((8, 8), 255, np.uint8))).save(digit)
    capsys.readouterr()
    assert main(["predict", store.run_name, str(digit), "--tracking-uri", store.tracking_uri]) == 2
    assert f"run {store.run_name!r}" in capsys.readouterr().err


# ------------------------------------------------------------------ a trained model reading them

@pytest.fixture(scope="module")
def trained_store(tmp_path_factory, mnist_dir) -> TrainedStore:
    return quick_torch_run(tmp_path_factory, mnist_dir)


@pytest.fixture(scope="module")
def trained(trained_store) -> TrainedModel:
    return TrainedModel.load(trained_store.run_name, trained_store.tracking_uri)


def read(trained: TrainedModel, digits: np.ndarray) -> np.ndarray:
    return trained.probabilities(trained.inputs(digits)).argmax(axis=1)


@pytest.mark.slow
def test_users_digits_are_read_right_where_resizing_failed(trained, mnist_raw, tmp_path):
    """Of test digits the model reads right as MNIST gives them, at least 18 of 20 per kind are still
    read right; resizing the whole image (the old way) reads at most 8 of 20 of the off-centre and
    photographed ones, and at most 60% of all three kinds together."""
    clean_right = np.nonzero(read(trained, mnist_raw.x_test[:100]) == mnist_raw.y_test[:100])[0][:20]
    assert len(clean_right) == 20
    digits, labels = mnist_raw.x_test[clean_right], mnist_raw.y_test[clean_right]
    new_total = old_total = 0
    for name, maker in KINDS.items():
        paths = write_images(tmp_path / name, maker, digits, seed=1)
        new = int((read(trained, np.stack([load_digit(p) for p in paths])) == labels).sum())
        old = int((read(trained, np.stack([resize_only(p) for p in paths])) == labels).sum())
        assert new >= 18, f"{name}: {new}/20 read right"
        if name != "inverted":  # resizing a whole page of dark-on-white keeps the digit's place and size
            assert old <= 8, f"{name}: the old preprocessing read {old}/20 right"
        new_total, old_total = new_total + new, old_total + old
    assert old_total <= 0.6 * 60 < new_total, (new_total, old_total)


@pytest.mark.slow
def test_predict_command_prints_a_guess_per_image(trained_store, mnist_raw, tmp_path, capsys):
    paths = write_images(tmp_path, photo, mnist_raw.x_test[:5], seed=2)
    uri = ["--tracking-uri", trained_store.tracking_uri]
    capsys.readouterr()
    assert main(["predict", trained_store.run_name, *map(str, paths), *uri]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(p) for p in paths]
    assert all(f"[model: {trained_store.run_name}]" in line for line in lines)
    guesses = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert sum(g == t for g, t in zip(guesses, mnist_raw.y_test[:5])) >= 4, guesses

    assert main(["predict", "no-such-run", str(paths[0]), *uri]) == 2
    assert "no completed run with id or name 'no-such-run'" in capsys.readouterr().err


@pytest.mark.slow
def test_good_images_are_read_beside_bad_ones_and_every_bad_one_is_named(trained_store, mnist_raw, tmp_path, capsys):
    good = write_images(tmp_path, photo, mnist_raw.x_test[:2], seed=3)
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    fifo = tmp_path / "pipe.png"
    os.mkfifo(fifo)
    capsys.readouterr()
    assert main(["predict", trained_store.run_name, str(good[0]), str(text), str(fifo), str(good[1]),
                 "--tracking-uri", trained_store.tracking_uri]) == 2
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split(": ")[0] for line in lines] == [str(good[0]), str(good[1])], captured
    err = " ".join(captured.err.split())
    assert f"{text}: not an image" in err and f"{fifo}: a named pipe (FIFO), not an image file" in err
    assert str(good[0]) not in err and "Traceback" not in err

    assert main(["predict", "no-such-run", str(good[0]), str(text), "--tracking-uri",
                 trained_store.tracking_uri]) == 2  # a run that cannot read them: said with the files' problems
    err = " ".join(capsys.readouterr().err.split())
    assert "no completed run with id or name 'no-such-run'" in err and f"{text}: not an image" in err


@pytest.mark.slow
def test_a_baseline_run_is_not_a_model(trained_store):
    from lenet_bench.results.tracking import Tracker

    tracker = Tracker(trained_store.tracking_uri, create=False)
    experiments = [e.experiment_id for e in tracker.client.search_experiments()]
    baseline = tracker.search("tags.`lenet_bench.kind` = 'baseline'", experiments)[0]
    with pytest.raises(RunUnusable, match="is not a model's training run"):
        TrainedModel.load(baseline.info.run_id, trained_store.tracking_uri)



def test_a_16_bit_scan_with_dark_ink_on_light_paper_is_read_by_its_own_range(tmp_path, mnist_raw):
    """Pillow's 16-to-8-bit conversion clips at 255, which made a 16-bit page (and its ink) white."""
    digit = mnist_raw.x_test[0].astype(np.float64)
    page = np.full((112, 112), 52_000.0)
    page[30:58, 40:68] -= digit * (40_000 / 255)  # dark ink on light paper, all of it above 255
    path = tmp_path / "scan.tif"
    Image.fromarray(page.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    read = load_digit(path)
    expected = normalize_digit(Image.fromarray(255 - (page - page.min()) / (page.max() - page.min()) * 255)
                               .convert("L"))
    assert np.abs(read.astype(int) - expected.astype(int)).max() <= 1
    assert read.max() > 200  # a digit, not "no digit found"
