"""lenet_bench.data: the registry, finding, verifying and downloading datasets, prepare(), and data that is
corrupt, hostile or unreadable (always a DataError naming the file, never a traceback or a memory blow-up)."""
from __future__ import annotations

import builtins
import dataclasses
import errno
import gzip
import hashlib
import http.server
import io
import os
import pickle
import subprocess
import sys
import tarfile
import threading
import tracemalloc
import zipfile
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from lenet_bench import data
from lenet_bench.data import DataError, load_dataset, prepare, registry, sources
from lenet_bench.data.layouts import IdxLayout

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
MNIST_TRAIN_CLASS_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch, tmp_path):
    """Every test gets its own empty cache and no data-dir override, whatever the caller's environment says."""
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(tmp_path / "cache"))
    monkeypatch.delenv(data.DATA_DIR_ENV, raising=False)


@pytest.fixture()
def mnist(mnist_raw) -> data.RawDataset:
    return mnist_raw


def link_mnist_files(folder: Path, mnist_dir: Path, except_file: str | None = None) -> None:
    """Symlink the real MNIST files into `folder` (cheap), all but `except_file`."""
    folder.mkdir(parents=True, exist_ok=True)
    for stem in IDX_FILES:
        if stem != except_file:
            (folder / f"{stem}.gz").symlink_to(mnist_dir / f"{stem}.gz")


def idx_bytes(array: np.ndarray) -> bytes:
    return idx_header(array.ndim, array.shape) + array.astype(np.uint8).tobytes()


def idx_header(ndim: int, shape: tuple[int, ...]) -> bytes:
    return (0x0800 + ndim).to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in shape)


def fake_mnist(monkeypatch, folder: Path, mirrors: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A tiny MNIST-layout dataset (30 train, 10 test images) as four .gz files in `folder`, made the registry's
    'mnist' (counts, checksums, mirrors) for this test."""
    rng = np.random.default_rng(0)
    arrays = {"x_train": rng.integers(0, 256, (30, 28, 28)), "y_train": np.arange(30) % 10,
              "x_test": rng.integers(0, 256, (10, 28, 28)), "y_test": np.arange(10)}
    folder.mkdir(parents=True, exist_ok=True)
    file_sha256, payload_sha256 = [], []
    for stem, array in zip(IDX_FILES, arrays.values()):
        content = idx_bytes(array)
        (folder / f"{stem}.gz").write_bytes(gzip.compress(content))
        file_sha256.append(hashlib.sha256(content).hexdigest())
        payload_sha256.append(hashlib.sha256(array.astype(np.uint8).tobytes()).hexdigest())
    entry = dataclasses.replace(registry.info("mnist"), n_train=30, n_test=10, mirrors=mirrors,
                                layout=IdxLayout(file_sha256=tuple(file_sha256), payload_sha256=tuple(payload_sha256)))
    monkeypatch.setitem(registry.DATASETS, "mnist", entry)
    return arrays


# --- loading real MNIST -----------------------------------------------------------------------------------


def test_loads_mnist_idx_gz(mnist, mnist_dir):
    assert mnist.name == "mnist"
    assert mnist.x_train.shape == (60000, 28, 28) and mnist.x_test.shape == (10000, 28, 28)
    assert mnist.x_train.dtype == np.uint8 and mnist.y_train.dtype == np.int64
    assert mnist.y_test.shape == (10000,)
    assert np.bincount(mnist.y_train).tolist() == MNIST_TRAIN_CLASS_COUNTS
    assert mnist.source == str(mnist_dir.resolve())
    assert len(mnist.digest) == 16
    assert not mnist.x_train.flags.writeable  # shared through the in-process cache


def test_loads_uncompressed_idx_and_npz_with_the_same_digest(mnist, mnist_dir, tmp_path):
    raw_dir = tmp_path / "raw"
    raw_dir.mkdir()
    for stem in IDX_FILES:
        (raw_dir / stem).write_bytes(gzip.decompress((mnist_dir / f"{stem}.gz").read_bytes()))
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


def test_data_dir_from_env(monkeypatch, mnist_dir):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(mnist_dir))
    assert load_dataset("mnist", download=False).source == str(mnist_dir.resolve())


def test_data_dir_argument_beats_env(monkeypatch, mnist_dir, tmp_path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))  # empty: would fail if it were used
    assert load_dataset("mnist", mnist_dir).source == str(mnist_dir.resolve())


def test_data_dir_may_hold_a_folder_per_dataset(mnist_dir, tmp_path):
    link_mnist_files(tmp_path / "mnist", mnist_dir)
    assert load_dataset("mnist", tmp_path).source == str((tmp_path / "mnist").resolve())


def test_env_dir_without_data_is_an_error_even_if_the_cache_has_it(monkeypatch, mnist_dir, tmp_path):
    link_mnist_files(data.cache_dir() / "mnist", mnist_dir)
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv(data.DATA_DIR_ENV, str(empty))
    with pytest.raises(DataError, match=rf"{data.DATA_DIR_ENV}={empty}: no mnist data.*train-images-idx3-ubyte"):
        load_dataset("mnist")


def test_cache_dir_is_searched(mnist_dir):
    link_mnist_files(data.cache_dir() / "mnist", mnist_dir)
    assert load_dataset("mnist", download=False).source == str((data.cache_dir() / "mnist").resolve())


def test_cache_dir_defaults_to_xdg(monkeypatch, tmp_path):
    monkeypatch.delenv(data.CACHE_DIR_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert data.cache_dir() == tmp_path / "lenet_bench"


def test_tampered_file_is_rejected_naming_it(mnist_dir, tmp_path):
    link_mnist_files(tmp_path, mnist_dir, except_file="t10k-labels-idx1-ubyte")
    content = bytearray(gzip.decompress((mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()))
    content[100] = (content[100] + 1) % 10  # still a valid label: only the checksum can tell
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: sha256 .*expected ff7bcfd4.*received"):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_is_rejected_naming_it(mnist_dir, tmp_path):
    link_mnist_files(tmp_path, mnist_dir, except_file="t10k-labels-idx1-ubyte")
    content = (mnist_dir / "t10k-labels-idx1-ubyte.gz").read_bytes()
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: corrupt or truncated gzip"):
        load_dataset("mnist", tmp_path)


def test_wrong_idx_magic_is_rejected(mnist_dir, tmp_path):
    link_mnist_files(tmp_path, mnist_dir, except_file="t10k-labels-idx1-ubyte")
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_bytes(np.zeros((10000, 2))))
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: expected IDX magic number 0x00000801"):
        load_dataset("mnist", tmp_path)


def test_missing_data_without_download_is_an_error():
    with pytest.raises(DataError, match=r"mnist not found in .*download=False.*--data-dir"):
        load_dataset("mnist", download=False)


def test_fashion_mnist_from_the_debian_package():
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        message = "Debian package dataset-fashion-mnist not installed (apt-get install dataset-fashion-mnist)"
        if os.environ.get("CI"):  # .ci/run installs it: missing there is a broken set-up, not a skip
            pytest.fail(message)
        pytest.skip(message)
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


def test_download_verifies_and_falls_back_to_the_next_mirror(monkeypatch, server):
    url, root = server
    arrays = fake_mnist(monkeypatch, root / "good", mirrors=(url + "missing/", url + "corrupt/", url + "good/"))
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
    fake_mnist(monkeypatch, root / "good", mirrors=(url + "missing/", url + "corrupt/"))
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
    np.testing.assert_allclose(prepared.x_train[0].transpose(1, 2, 0), first / 255, rtol=1e-6)
    with pytest.raises(ValueError, match="input_size for cifar10"):
        prepare(raw, input_size=28)


def test_cifar10_archive_and_download(monkeypatch, server, tmp_path):
    url, root = server
    write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    md5 = hashlib.md5((root / "cifar-10-python.tar.gz").read_bytes()).hexdigest()
    (root / "mirror").mkdir()
    (root / "cifar-10-python.tar.gz").rename(root / "mirror" / "cifar-10-python.tar.gz")
    cifar10 = registry.info("cifar10")
    monkeypatch.setitem(registry.DATASETS, "cifar10", dataclasses.replace(
        cifar10, mirrors=(url + "missing/", url + "mirror/"),
        layout=dataclasses.replace(cifar10.layout, archive_md5=md5)))

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


def test_dataset_loader_tries_a_missing_dataset_once(tmp_path, monkeypatch):
    calls = []
    real = sources.load_dataset

    def counting(name, data_dir=None, **kwargs):
        calls.append(name)
        return real(name, data_dir, **kwargs)

    monkeypatch.setattr(sources, "load_dataset", counting)
    loader = data.DatasetLoader(tmp_path)  # an empty folder: no dataset there
    for _ in range(3):
        with pytest.raises(data.DataError, match=str(tmp_path)):
            loader.load("mnist")
    assert calls == ["mnist"]


# --- the registry -----------------------------------------------------------------------------------------


def test_registry_describes_what_is_loaded(mnist):
    entry = registry.info("mnist")
    assert (len(mnist.x_train), len(mnist.x_test)) == (entry.n_train, entry.n_test)
    assert mnist.x_train.shape[1:] == entry.raw_image_shape == (entry.image_size,) * 2 and entry.channels == 1
    assert mnist.y_train.max() + 1 == entry.num_classes == len(entry.class_names)
    assert registry.info("cifar10").raw_image_shape == (32, 32, 3)
    assert registry.dataset_names() == tuple(registry.DATASETS) == ("mnist", "fashion_mnist", "cifar10")
    with pytest.raises(ValueError, match="unknown dataset; expected one of mnist, fashion_mnist, cifar10"):
        registry.info("svhn")
    with pytest.raises(ValueError, match="3 class names for 10 classes"):
        dataclasses.replace(entry, class_names=("a", "b", "c"))


def test_registry_imports_no_numpy_and_no_framework():
    # The spec schema validates against the registry: importing it must stay light.
    code = ("import sys, lenet_bench.data.registry, lenet_bench.spec.schema\n"
            "heavy = {'numpy', 'torch', 'tensorflow', 'keras', 'jax', 'PIL'} & set(sys.modules)\n"
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_public_api_is_importable_from_the_package():
    from lenet_bench.data import (  # noqa: F401
        CACHE_DIR_ENV,
        DATA_DIR_ENV,
        DataError,
        DatasetLoader,
        PreparedData,
        RawDataset,
        cache_dir,
        load_dataset,
        preparation_key,
        prepare,
        preprocess_images,
    )

    assert callable(prepare) and prepare.__name__ == "prepare"  # the function, not a module of the same name
    with pytest.raises(AttributeError, match="to_channels_last"):
        _ = data.to_channels_last  # moved to backends/keras_common/model.py


# --- hostile, corrupt and unreadable data: a DataError naming the file, never a traceback -----------------


@pytest.fixture(scope="module")
def zeros_gz() -> bytes:
    """A gzip member of 256 MiB of zeros, about 250 kB compressed: appended to a valid IDX header, a gzip bomb."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
    chunk = bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(256)) + compressor.flush()


def gzip_bomb(path: Path, header: bytes, zeros_gz: bytes) -> None:
    path.write_bytes(gzip.compress(header) + zeros_gz)  # two gzip members read as one stream


def test_gzip_bomb_is_cut_off_at_the_size_the_file_must_have(monkeypatch, tmp_path, zeros_gz):
    fake_mnist(monkeypatch, tmp_path)  # 30 training labels: the file must be 8 + 30 bytes
    bomb = tmp_path / "train-labels-idx1-ubyte.gz"
    gzip_bomb(bomb, idx_header(1, (30,)), zeros_gz)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=rf"{bomb}: expected at most 38 bytes once decompressed"):
            load_dataset("mnist", tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # the 256 MiB it expands to were never held


def test_gzip_bomb_in_real_mnist_names_the_limit_from_the_registry(mnist_dir, tmp_path, zeros_gz):
    link_mnist_files(tmp_path, mnist_dir, except_file="t10k-labels-idx1-ubyte")
    gzip_bomb(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_header(1, (10_000,)), zeros_gz)
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\.gz: expected at most 10008 bytes once "
                                        r"decompressed \(the 8-byte IDX header and 10000 items"):
        load_dataset("mnist", tmp_path)


def test_gzip_bomb_from_a_mirror_is_cut_off(monkeypatch, server, zeros_gz):
    url, root = server
    fake_mnist(monkeypatch, root / "good", mirrors=(url + "bomb/",))
    (root / "bomb").mkdir()
    gzip_bomb(root / "bomb" / "train-images-idx3-ubyte.gz", idx_header(3, (30, 28, 28)), zeros_gz)
    with pytest.raises(DataError, match=rf"{url}bomb/train-images-idx3-ubyte\.gz: expected at most 23536 bytes"):
        load_dataset("mnist")


def test_idx_header_that_lies_about_its_shape(mnist_dir, tmp_path):
    link_mnist_files(tmp_path, mnist_dir, except_file="t10k-labels-idx1-ubyte")
    labels = tmp_path / "t10k-labels-idx1-ubyte"
    labels.write_bytes(idx_header(1, (10_000,)) + bytes(5_000))  # announces 10000 labels, holds 5000
    with pytest.raises(DataError, match=rf"{labels}: header announces shape \(10000,\), i.e. 10008 bytes; "
                                        r"received 5008 bytes"):
        load_dataset("mnist", tmp_path)
    labels.write_bytes(idx_header(1, (4_000_000_000,)) + bytes(20_000))  # more than the registry's 10000
    with pytest.raises(DataError, match=rf"{labels}: expected at most 10008 bytes \(the 8-byte IDX header"):
        load_dataset("mnist", tmp_path)
    labels.write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match=rf"{labels}: expected an IDX header of 8 bytes; received a 3-byte file"):
        load_dataset("mnist", tmp_path)


def write_npz_members(path: Path, members: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as npz:
        for name, content in members.items():
            npz.writestr(name, content)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def test_corrupt_npz_files(monkeypatch, tmp_path):
    arrays = fake_mnist(monkeypatch, tmp_path / "idx")
    npz = tmp_path / "mnist.npz"
    np.savez_compressed(npz, **{key: array.astype(np.uint8) for key, array in arrays.items()})
    content = npz.read_bytes()
    assert load_dataset("mnist", tmp_path).x_train.shape == (30, 28, 28)  # intact, it loads

    npz.write_bytes(content[: len(content) // 2])
    with pytest.raises(DataError, match=rf"{npz}: expected a readable .npz file \(File is not a zip file\)"):
        load_dataset("mnist", tmp_path)

    # A header announcing a billion images: numpy would allocate 730 GiB before noticing the data are missing.
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False,
                                                  "shape": (10**9, 28, 28)})
    others = {f"{key}.npy": npy_bytes(arrays[key].astype(np.uint8)) for key in ARRAYS[1:]}
    write_npz_members(npz, {"x_train.npy": header.getvalue() + bytes(100), **others})
    with pytest.raises(DataError, match=rf"{npz}: expected 30 train images; received 1000000000"):
        load_dataset("mnist", tmp_path)

    write_npz_members(npz, {"x_train": b"raw bytes, not an .npy", **others})  # np.load hands back bytes
    with pytest.raises(DataError, match=rf"{npz}: expected a readable .npz file \(the magic string is not"):
        load_dataset("mnist", tmp_path)


def test_folder_where_a_file_is_expected(tmp_path):
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    batch.unlink()
    batch.mkdir()
    with pytest.raises(DataError, match=rf"{batch}: cannot read CIFAR-10 batch \(.*Is a directory"):
        load_dataset("cifar10", tmp_path)

    (tmp_path / "mnist.npz").mkdir()  # neither IDX files nor an .npz file: not there
    with pytest.raises(DataError, match=r"no mnist data there.*or mnist\.npz"):
        load_dataset("mnist", tmp_path)


def test_cifar10_batch_with_malformed_labels(tmp_path):
    write_cifar_batches(tmp_path / "cifar-10-batches-py")
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    pixels = np.zeros((20, 3072), np.uint8)
    for labels, received in (([[label] for label in range(20)], r"int64 \(20, 1\)"), (list(range(19)), r"\(19,\)"),
                             ([[1], [1, 2]] + [[0]] * 18, "inhomogeneous")):
        with path.open("wb") as f:
            pickle.dump({b"labels": labels, b"data": pixels}, f)
        with pytest.raises(DataError, match=rf"{path}: expected b'.*{received}"):
            load_dataset("cifar10", tmp_path)


def test_cache_that_cannot_be_written(monkeypatch, tmp_path):
    fake_mnist(monkeypatch, tmp_path / "www", mirrors=("http://127.0.0.1:9/",))  # never reached
    not_a_folder = tmp_path / "cache-file"
    not_a_folder.write_text("")
    monkeypatch.setenv(data.CACHE_DIR_ENV, str(not_a_folder))
    with pytest.raises(DataError, match=rf"{not_a_folder}/mnist: cannot write the download there \(.*\); "
                                        rf"set {data.CACHE_DIR_ENV} to a writable folder"):
        load_dataset("mnist")


@pytest.fixture()
def deny_reading(monkeypatch):
    """deny_reading(path) makes a file or folder unreadable, as chmod 000 does. Where chmod denies nothing (as
    root), the calls that pathlib, open() and numpy make raise the kernel's PermissionError instead: stat, list
    or open anything inside a denied folder; list or open a denied folder or file."""
    restore = []

    def deny(path: Path) -> None:
        assert not path.is_symlink()  # chmod would change the shared data it points to
        restore.append((path, path.stat().st_mode))
        path.chmod(0)
        try:
            os.listdir(path) if path.is_dir() else open(path, "rb").close()
        except PermissionError:
            return  # the kernel denies it
        denied = str(path.resolve())

        def guarded(function, itself: bool):
            def call(target=".", *args, **kwargs):
                if not isinstance(target, int):
                    name = os.path.abspath(os.fspath(target))
                    if name.startswith(denied + os.sep) or (itself and name == denied):
                        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), name)
                return function(target, *args, **kwargs)
            return call

        for module, name, itself in ((os, "stat", False), (os, "lstat", False), (os, "listdir", True),
                                     (os, "scandir", True), (io, "open", True), (builtins, "open", True)):
            monkeypatch.setattr(module, name, guarded(getattr(module, name), itself))

    yield deny
    monkeypatch.undo()
    for path, mode in reversed(restore):
        path.chmod(mode)


def _cifar_archive(tmp_path: Path) -> Path:
    write_cifar_batches(tmp_path / "src" / "cifar-10-batches-py")
    archive = tmp_path / "data" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


@pytest.mark.parametrize("case", ["idx folder", "idx file", "npz file", "cifar batch", "cifar archive"])
def test_unreadable_data_names_the_path(case, monkeypatch, tmp_path, deny_reading):
    data_dir = tmp_path / "data"
    if case.startswith("cifar"):
        name = "cifar10"
        if case == "cifar batch":
            write_cifar_batches(data_dir / "cifar-10-batches-py")
            denied = data_dir / "cifar-10-batches-py" / "data_batch_4"
        else:
            denied = _cifar_archive(tmp_path)
    else:
        name = "mnist"
        arrays = fake_mnist(monkeypatch, data_dir)
        if case == "npz file":
            for stem in IDX_FILES:
                (data_dir / f"{stem}.gz").unlink()
            np.savez(data_dir / "mnist.npz", **{key: array.astype(np.uint8) for key, array in arrays.items()})
        denied = {"idx folder": data_dir, "idx file": data_dir / "t10k-images-idx3-ubyte.gz",
                  "npz file": data_dir / "mnist.npz"}[case]
    deny_reading(denied)
    with pytest.raises(DataError, match=rf"{denied}.*: cannot read .*Permission denied") as error:
        load_dataset(name, data_dir)
    assert error.value.__cause__ is not None and isinstance(error.value.__cause__, PermissionError)
