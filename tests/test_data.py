"""lenet_bench.data: finding, verifying and downloading datasets, and prepare()."""
from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import pickle
import tarfile
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from lenet_bench import data
from lenet_bench.data import DataError, load_dataset, prepare, to_channels_last

IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def mnist_dir() -> Path:
    """Real MNIST: $LENET_BENCH_TEST_DATA, else shared/data/mnist beside the repository."""
    return Path(os.environ.get("LENET_BENCH_TEST_DATA") or Path(__file__).resolve().parents[2] / "shared/data/mnist")


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Every test gets its own empty cache and no data-dir override, whatever the caller's environment says."""
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def mnist() -> data.RawDataset:
    return load_dataset("mnist", mnist_dir(), download=False)


def link_mnist_files(folder: Path, except_file: str | None = None) -> None:
    """Symlink the real MNIST files into `folder` (cheap), all but `except_file`."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES:
        if stem != except_file:
            (folder / f"{stem}.gz").symlink_to(mnist_dir() / f"{stem}.gz")


def idx_bytes(array: np.ndarray) -> bytes:
    header = (0x0800 + array.ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


# --- loading real MNIST -----------------------------------------------------------------------------------


def test_loads_mnist_idx_gz(mnist):
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64
    assert mnist.y_test.shape == (10000,)
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_CLASS_COUNTS
    assert mnist.source == str(mnist_dir().resolve())
    assert len(mnist.digest) == 16
    assert not mnist.x_train.flags.writeable  # shared through the in-process cache


def test_loads_uncompressed_idx_and_npz_with_the_same_digest(mnist, tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for stem in IDX_FILES:
        (raw_dir / stem).write_bytes(gzip.decompress((mnist_dir() / f"{stem}.gz").read_bytes()))
    np.savez(tmp_path / "mnist.npz", **{key: getattr(mnist, key).astype(np.uint8)
                                         for key in ("x_train", "y_train", "x_test", "y_test")})

    from_raw = load_dataset("mnist", raw_dir)
    from_npz = load_dataset("mnist", tmp_path / "mnist.npz")
    assert from_raw.digest == from_npz.digest == mnist.digest
    assert from_npz.source == str((tmp_path / "mnist.npz").resolve())
    np.testing.assert_array_equal(from_npz.x_test, mnist.x_test)
    np.testing.assert_array_equal(from_npz.y_train, mnist.y_train)


def test_npz_with_wrong_content_is_rejected(mnist, tmp_path):
    arrays = {key: getattr(mnist, key).astype(np.uint8) for key in ("x_train", "y_train", "x_test", "y_test")}
    arrays["x_test"] = arrays["x_test"].copy()
    arrays["x_test"][0, 0, 0] = 1
    np.savez(tmp_path / "mnist.npz", **arrays)
    with pytest.raises(DataError, match=r"mnist\.npz.*x_test.*expected 6d87418d"):
        load_dataset("mnist", tmp_path)

    np.savez(tmp_path / "mnist.npz", x_train=arrays["x_train"])
    with pytest.raises(DataError, match=r"mnist\.npz: expected arrays x_train, y_train"):
        load_dataset("mnist", tmp_path)


def test_data_dir_from_env(monkeypatch):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_dir()))
    assert load_dataset("mnist", download=False).source == str(mnist_dir().resolve())


def test_data_dir_argument_beats_env(monkeypatch, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))  # empty: would fail if it were used
    assert load_dataset("mnist", mnist_dir()).source == str(mnist_dir().resolve())


def test_data_dir_may_hold_a_folder_per_dataset(tmp_path):
    link_mnist_files(tmp_path / "mnist")
    assert load_dataset("mnist", tmp_path).source == str((tmp_path / "mnist").resolve())


def test_env_dir_without_data_is_an_error_even_if_the_cache_has_it(monkeypatch, tmp_path):
    link_mnist_files(data.cache_dir() / "mnist")
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(empty))
    with pytest.raises(DataError, match=rf"{data.DATA_DIR_ENV}={empty}: no mnist data.*train-images-idx3-ubyte"):
        load_dataset("mnist")


def test_cache_dir_is_searched(tmp_path):
    link_mnist_files(data.cache_dir() / "mnist")
    assert load_dataset("mnist", download=False).source == str((data.cache_dir() / "mnist").resolve())


def test_cache_dir_defaults_to_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(data.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / "lenet_bench"


def test_tampered_file_is_rejected_naming_it(tmp_path):
    link_mnist_files(tmp_path, except_file="t10k-labels-idx1-ubyte")
    content = bytearray(gzip.decompress((mnist_dir() / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    content[100] = (content[100] + 1) % 10  # still a valid label: only the checksum can tell
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: sha256 .*expected ff7bcfd4.*received"):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_is_rejected_naming_it(tmp_path):
    link_mnist_files(tmp_path, except_file="t10k-labels-idx1-ubyte")
    content = (mnist_dir() / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: corrupt or truncated gzip"):
        load_dataset("mnist", tmp_path)


def test_wrong_idx_magic_is_rejected(tmp_path):
    link_mnist_files(tmp_path, except_file="t10k-labels-idx1-ubyte")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((10000, 2))))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: expected IDX magic number 0x00000801"):
        load_dataset("mnist", tmp_path)


def test_missing_data_without_download_is_an_error():
    with pytest.raises(DataError, match=r"mnist not found in .*download=False.*--data-dir"):
        load_dataset("mnist", download=False)


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Debian package dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package():
    fashion = load_dataset("fashion_mnist", download=False)
    assert fashion.source == "/usr/share/datasets/fashion-mnist"
    assert fashion.x_train.shape == (60000, 28, 28)
    assert np.bincount(fashion.y_test).tolist() == [1000] * 10


# --- downloading (from a local server: tests never touch the network) -------------------------------------


@pytest.fixture()
def server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/www; yields its base URL."""
    root = tmp_path / "www"
    root.mkdir()
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    httpd.shutdown()
    httpd.server_close()


def serve_fake_mnist(monkeypatch, server, mirrors: list[str]) -> dict[str, np.ndarray]:
    """Put a tiny MNIST-layout dataset at www/good/ and make it the expected 'mnist' fetched from `mirrors`."""
    url, root = server
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (30, 28, 28)), "y_train": np.arange(30) % 10,
              "x_test": rng.integers(0, 256, (10, 28, 28)), "y_test": np.arange(10)}
    (root / "good").mkdir()
    file_sha256, payload_sha256 = [], []
    for stem, array in zip(IDX_FILES, arrays.values()):
        content = idx_bytes(array)
        (root / "good" / f"{stem}.gz").write_bytes(gzip.compress(content))
        file_sha256.append(hashlib.sha256(content).hexdigest())
        payload_sha256.append(hashlib.sha256(array.astype(np.uint8).tobytes()).hexdigest())
    spec = data._IdxSpec(n_train=30, n_test=10, file_sha256=tuple(file_sha256),
                         payload_sha256=tuple(payload_sha256), mirrors=tuple(url + m for m in mirrors))
    monkeypatch.setitem(data._IDX_SPECS, "mnist", spec)
    return arrays


def test_download_verifies_and_falls_back_to_the_next_mirror(monkeypatch, server):
    _, root = server
    arrays = serve_fake_mnist(monkeypatch, server, ["missing/", "corrupt/", "good/"])
    (root / "corrupt").mkdir()
    for stem in IDX_FILES:  # served fine, but with the wrong content
        (root / "corrupt" / f"{stem}.gz").write_bytes(gzip.compress(b"not mnist"))

    raw = load_dataset("mnist")
    cached = data.cache_dir() / "mnist"
    assert raw.source == str(cached.resolve())
    assert sorted(p.name for p in cached.iterdir()) == sorted(f"{stem}.gz" for stem in IDX_FILES)  # no temp files
    np.testing.assert_array_equal(raw.x_train, arrays["x_train"])
    np.testing.assert_array_equal(raw.y_test, arrays["y_test"])

    assert load_dataset("mnist", download=False).digest == raw.digest  # now found in the cache


def test_download_failure_lists_what_was_tried(monkeypatch, server):
    url, root = server
    serve_fake_mnist(monkeypatch, server, ["missing/", "corrupt/"])
    (root / "corrupt").mkdir()
    (root / "corrupt" / "train-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8btruncated")
    with pytest.raises(DataError) as error:
        load_dataset("mnist")
    message = str(error.value)
    assert f"{url}missing/train-images-idx3-ubyte.gz: HTTP Error 404" in message
    assert f"{url}corrupt/train-images-idx3-ubyte.gz: " in message and "gzip" in message
    assert "--data-dir" in message and data.DATA_DIR_ENV in message
    assert not list((data.cache_dir() / "mnist").iterdir())  # nothing half-written left behind


# --- CIFAR-10 ---------------------------------------------------------------------------------------------


def write_cifar_batches(folder: Path, per_batch: int = 20) -> np.ndarray:
    """The standard python-pickle batches, small; returns the first training image as (32, 32, 3)."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    first = None
    for i, batch in enumerate([f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]):
        pixels = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = [(i + j) % 10 for j in range(per_batch)]
        with (folder / batch).open("wb") as f:
            pickle.dump({b"batch_label": batch.encode(), b"labels": labels, b"data": pixels}, f)
        if first is None:
            first = pixels[0].reshape(3, 32, 32).transpose(1, 2, 0)
    return first


def test_cifar10_batches_folder(tmp_path):
    first = write_cifar_batches(tmp_path / "cifar-10-batches-py")
    raw = load_dataset("cifar10", tmp_path)  # the folder containing cifar-10-batches-py
    assert raw.x_train.shape == (100, 32, 32, 3) and raw.x_test.shape == (20, 32, 32, 3)
    assert raw.x_train.dtype == np.uint8 and raw.y_train.dtype == np.int64
    np.testing.assert_array_equal(raw.x_train[0], first)  # rows are R, G, B planes
    assert raw.y_train[:3].tolist() == [0, 1, 2] and raw.y_train[20:23].tolist() == [1, 2, 3]
    assert raw.y_test[:2].tolist() == [5, 6]

    prepared = prepare(raw, input_size=32)
    assert prepared.input_shape == (3, 32, 32)
    np.testing.assert_allclose(to_channels_last(prepared.x_train)[0], first / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="input_size for cifar10"):
        prepare(raw, input_size=28)


def test_cifar10_archive_and_download(monkeypatch, server, tmp_path):
    url, root = server
    write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5((root / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    monkeypatch.setattr(data, "_CIFAR_URLS", (url + "missing.tar.gz", url + "cifar-10-python.tar.gz"))
    monkeypatch.setattr(data, "_CIFAR_MD5", md5)

    raw = load_dataset("cifar10")
    assert raw.source == str((data.cache_dir() / "cifar10" / "cifar-10-python.tar.gz").resolve())
    assert raw.x_train.shape == (100, 32, 32, 3)
    assert raw.digest == load_dataset("cifar10", tmp_path / "src").digest


def test_cifar10_corrupt_batch_names_the_file(tmp_path):
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"data_batch_3: expected a pickled CIFAR-10 batch"):
        load_dataset("cifar10", tmp_path)


# --- prepare() --------------------------------------------------------------------------------------------


def test_padding_to_32_adds_a_background_border(mnist):
    prepared = prepare(mnist, input_size=32, test_subset=100)
    assert prepared.x_train.shape == (60000, 1, 32, 32) and prepared.x_test.shape == (100, 1, 32, 32)
    assert prepared.input_shape == (1, 32, 32)
    assert prepared.x_train.dtype == np.float32 and prepared.x_train.flags.c_contiguous
    assert prepared.y_train.dtype == np.int64
    border = np.ones((32, 32), bool)
    border[2:30, 2:30] = False
    assert not prepared.x_test[:, 0, border].any()
    np.testing.assert_array_equal(prepared.x_test[:, 0, 2:30, 2:30], mnist.x_test[:100] / np.float32(255))


@pytest.mark.parametrize("normalization", ["unit", "standardize", "centered"])
def test_normalizations(mnist, normalization):
    prepared = prepare(mnist, input_size=32, normalization=normalization, subset=2000, validation_split=0.5)
    x = prepared.x_train
    corner = x[:, 0, 0, 0]  # padding: the background value, whatever the normalization
    if normalization == "unit":
        assert x.min() == 0 and x.max() == 1 and (corner == 0).all()
    elif normalization == "centered":
        assert x.min() == -1 and x.max() == 1 and (corner == -1).all()
    else:
        assert abs(x.mean()) < 1e-4 and abs(x.std() - 1) < 1e-4
        assert (corner == x.min()).all()
        # Statistics come from the training split alone and are applied unchanged to the others.
        unit = prepare(mnist, input_size=32, subset=2000, validation_split=0.5)
        mean, std = unit.x_train.mean(dtype=np.float64), unit.x_train.std(dtype=np.float64)
        np.testing.assert_allclose(prepared.x_val, (unit.x_val - mean) / std, atol=1e-5)


def test_validation_split_is_the_last_fraction(mnist):
    prepared = prepare(mnist, input_size=28, validation_split=0.1, subset=1000)
    assert prepared.x_train.shape == (900, 1, 28, 28) and prepared.x_val.shape == (100, 1, 28, 28)
    np.testing.assert_array_equal(prepared.x_val[:, 0] * 255, mnist.x_train[900:1000])
    np.testing.assert_array_equal(prepared.y_val, mnist.y_train[900:1000])
    np.testing.assert_array_equal(prepared.y_train, mnist.y_train[:900])
    assert prepare(mnist, input_size=28, subset=1000).x_val.shape == (0, 1, 28, 28)


def test_keys_identify_the_preparation(mnist):
    small = prepare(mnist, input_size=28, subset=500, test_subset=100)
    assert small.key == prepare(mnist, input_size=28, subset=500, test_subset=100).key
    assert small.key != prepare(mnist, input_size=32, subset=500, test_subset=100).key
    assert small.key != prepare(mnist, input_size=28, subset=501, test_subset=100).key
    assert small.key != prepare(mnist, input_size=28, subset=500, test_subset=100, validation_split=0.1).key
    full_test = prepare(mnist, input_size=28, subset=500)
    assert full_test.key == prepare(mnist, input_size=28, subset=500, test_subset=10000).key


@pytest.mark.parametrize("kwargs, message", [
    ({"input_size": 30}, "input_size for mnist"),
    ({"input_size": 28, "normalization": "zscore"}, "normalization must be one of"),
    ({"input_size": 28, "validation_split": 1.0}, r"validation_split must be in \[0, 1\)"),
    ({"input_size": 28, "subset": 0}, "subset must be between 1 and 60000"),
    ({"input_size": 28, "test_subset": 10001}, "test_subset must be between 1 and 10000"),
])
def test_invalid_preparation(mnist, kwargs, message):
    with pytest.raises(ValueError, match=message):
        prepare(mnist, **kwargs)


def test_to_channels_last():
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    nhwc = to_channels_last(x)
    assert nhwc.shape == (2, 4, 5, 3) and nhwc.flags.c_contiguous
    assert nhwc[1, 2, 3, 0] == x[1, 0, 2, 3]


def test_dataset_loader_tries_a_missing_dataset_once(tmp_path, monkeypatch):
    calls = []
    real = data.load_dataset

    def counting(name, data_dir=None, **kwargs):
        calls.append(name)
        return real(name, data_dir, **kwargs)

    monkeypatch.setattr(data, "load_dataset", counting)
    loader = data.DatasetLoader(tmp_path)  # an empty folder: no dataset there
    for _ in range(3):
        with pytest.raises(data.DataError, match=str(tmp_path)):
            loader.load("mnist")
    assert calls == ["mnist"]
