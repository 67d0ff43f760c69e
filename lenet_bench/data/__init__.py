"""Datasets (MNIST, Fashion-MNIST, CIFAR-10): finding, downloading, verifying, and the one place for preprocessing.

Where `load_dataset` looks, in order:
  1. the `data_dir` argument, else $LENET_BENCH_DATA_DIR (once given, the data must be there: no fall-through);
  2. the cache, `cache_dir() / name`;
  3. system-wide copies (Fashion-MNIST from Debian's `dataset-fashion-mnist`);
  4. public mirrors, downloaded into the cache.
Everything read is verified (layout, sizes, labels and, for MNIST and Fashion-MNIST, sha256 of the content)
before use, so a result can never come from silently corrupt data.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import json
import logging
import math
import os
import pickle
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import BinaryIO

import numpy as np

DATASETS = ("mnist", "fashion_mnist", "cifar10")
NORMALIZATIONS = ("unit", "standardize", "centered")
DATA_DIR_ENV = "LENET_BENCH_DATA_DIR"
CACHE_DIR_ENV = "LENET_BENCH_CACHE_DIR"

_log = logging.getLogger(__name__)


class DataError(Exception):
    """A dataset is missing, unreadable, or not what it should be; the message names the file or folder."""


# --- what the known datasets must be ------------------------------------------------------------------------

_ARRAYS = ("x_train", "y_train", "x_test", "y_test")
_IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class _IdxSpec:
    """A dataset in MNIST's four-IDX-file layout. Checksum tuples follow _ARRAYS / _IDX_FILES order."""

    n_train: int
    n_test: int
    file_sha256: tuple[str, ...]  # of each decompressed IDX file
    # Of the array bytes after each IDX header, i.e. what an .npz holds, so both formats verify and digest alike.
    payload_sha256: tuple[str, ...]
    mirrors: tuple[str, ...]  # base URLs, each serving the four .gz files, tried in order
    system_dirs: tuple[Path, ...] = ()  # read-only copies installed outside the cache


_IDX_SPECS = {
    "mnist": _IdxSpec(
        n_train=60000,
        n_test=10000,
        file_sha256=(
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
        ),
        payload_sha256=(
            "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
            "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
            "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
            "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    # Checksums taken from Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1), decompressed.
    "fashion_mnist": _IdxSpec(
        n_train=60000,
        n_test=10000,
        file_sha256=(
            "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
        ),
        payload_sha256=(
            "2e487a6c89124f78f2d7521542223cafe96f7123c3ca13d447772ac6ecbb3012",
            "657fbd221bfc9f4198cc14b5619cc33ec57c58dd0e47af4d99d6650759e869a7",
            "c867c93ff95360594e8ec3287995350b824dd110b11595c0e13d5423f621867a",
            "3d0e6c6ea990b53b6f8f500a41cac93881d981b315f84578b7d915342ade01e9",
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    ),
}

_CIFAR_FOLDER = "cifar-10-batches-py"
_CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
_CIFAR_URLS = ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",)
_CIFAR_MD5 = "c58f30108f718f92721af3b95e74349a"  # of the archive; the batches themselves have no published checksum
_CIFAR_TRAIN_BATCHES = tuple(f"data_batch_{i}" for i in range(1, 6))
_CIFAR_BATCHES = (*_CIFAR_TRAIN_BATCHES, "test_batch")

_DOWNLOAD_TIMEOUT_S = 60


# --- loading ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RawDataset:
    """A verified dataset as stored: uint8 images (N,28,28) or (N,32,32,3), int64 labels. Arrays are read-only."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str  # the file or folder it was read from
    digest: str  # 16 hex digits identifying the exact content, whatever the file format


def cache_dir() -> Path:
    """Root of lenet_bench's cache: $LENET_BENCH_CACHE_DIR, else $XDG_CACHE_HOME/lenet_bench (~/.cache/lenet_bench)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "lenet_bench"


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = True) -> RawDataset:
    """Find, verify and load dataset `name` (see the module docstring for where it looks)."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; expected one of {DATASETS}")
    given, origin = (data_dir, "data_dir") if data_dir is not None else (os.environ.get(DATA_DIR_ENV), DATA_DIR_ENV)
    if given:
        root = Path(given).expanduser()
        found = _find(name, root / name) or _find(name, root)
        if found is None:
            raise DataError(f"{origin}={root}: no {name} data there or in {root / name}; "
                            f"expected {_expected_layout(name)}")
        return _load(name, found)

    cached = cache_dir() / name
    system_dirs = _IDX_SPECS[name].system_dirs if name in _IDX_SPECS else ()
    for root in (cached, *system_dirs):
        found = _find(name, root)
        if found is not None:
            return _load(name, found)
    if not download:
        searched = ", ".join(str(p) for p in (cached, *system_dirs))
        raise DataError(f"{name} not found in {searched} and download=False; expected {_expected_layout(name)}. "
                        f"Pass --data-dir DIR or set {DATA_DIR_ENV}=DIR to use a local copy.")
    _download(name, cached)
    return _load(name, _find(name, cached))


class DatasetLoader:
    """`load_dataset` for one data_dir, remembering failures too, so that a missing dataset
    (a failed download takes up to a minute per mirror) is tried once per invocation, not once per run."""

    def __init__(self, data_dir: str | os.PathLike | None = None):
        self.data_dir = data_dir
        self._found: dict[str, RawDataset | DataError] = {}

    def load(self, name: str) -> RawDataset:
        if name not in self._found:
            try:
                self._found[name] = load_dataset(name, self.data_dir)
            except DataError as err:
                self._found[name] = err
        found = self._found[name]
        if isinstance(found, DataError):
            raise found
        return found


def _expected_layout(name: str) -> str:
    if name == "cifar10":
        return (f"the {_CIFAR_FOLDER} folder (data_batch_1..5, test_batch), the folder containing it, "
                f"or {_CIFAR_ARCHIVE}")
    return f"the four IDX files {', '.join(f + '.gz' for f in _IDX_FILES)} (gzipped or not), or {name}.npz"


def _find(name: str, root: Path) -> Path | None:
    """The dataset inside `root`: a folder of its files or one archive file; None if it is not there."""
    if root.is_file():
        return root
    if name == "cifar10":
        for folder in (root, root / _CIFAR_FOLDER):
            if (folder / "test_batch").is_file():
                return folder
        archive = root / _CIFAR_ARCHIVE
        return archive if archive.is_file() else None
    if all(_idx_path(root, stem) for stem in _IDX_FILES):
        return root
    npz = root / f"{name}.npz"
    return npz if npz.is_file() else None


def _idx_path(folder: Path, stem: str) -> Path | None:
    for path in (folder / f"{stem}.gz", folder / stem):
        if path.is_file():
            return path
    return None


def _load(name: str, source: Path) -> RawDataset:
    source = source.resolve()
    return _load_verified(name, source, _fingerprint(source), _IDX_SPECS.get(name))


def _fingerprint(source: Path) -> tuple:
    """Sizes and mtimes of the files at `source`: cheap, and changes whenever a file is rewritten."""
    files = sorted(p for p in source.iterdir() if p.is_file()) if source.is_dir() else [source]
    return tuple((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files)


# Parsing and hashing 60k images takes about a second; a process (e.g. a sweep) loads the same data many times.
# The fingerprint and spec are part of the key so that changed files or expectations are read afresh.
@lru_cache(maxsize=4)
def _load_verified(name: str, source: Path, fingerprint: tuple, spec: _IdxSpec | None) -> RawDataset:
    if name == "cifar10":
        arrays = _read_cifar(source)
        payload_sha256 = tuple(_sha256(arrays[key]) for key in _ARRAYS)
    elif source.name.endswith(".npz"):
        arrays, payload_sha256 = _read_npz(source, spec)
    elif source.is_dir():
        arrays, payload_sha256 = _read_idx_folder(source, spec)
    else:
        raise DataError(f"{source}: expected a folder of IDX files or a {name}.npz file; received another file")
    frozen = {}
    for key, array in arrays.items():
        array = np.ascontiguousarray(array, dtype=np.int64 if key.startswith("y") else np.uint8)
        array.flags.writeable = False  # shared through the cache above: nobody may alter it in place
        frozen[key] = array
    digest = hashlib.sha256("".join(payload_sha256).encode()).hexdigest()[:16]
    return RawDataset(name=name, source=str(source), digest=digest, **frozen)


def _read_idx_folder(folder: Path, spec: _IdxSpec) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    arrays, paths, file_sha256 = {}, {}, {}
    for key, stem in zip(_ARRAYS, _IDX_FILES):
        path = _idx_path(folder, stem)
        content = _read_bytes(path)
        arrays[key] = _parse_idx(content, path, ndim=3 if key.startswith("x") else 1)
        paths[key] = path
        file_sha256[key] = hashlib.sha256(content).hexdigest()
    _check_arrays(arrays, paths, (28, 28), (spec.n_train, spec.n_test))
    for key, expected in zip(_ARRAYS, spec.file_sha256):
        _check_sha256(str(paths[key]), "decompressed content", file_sha256[key], expected)
    # The whole file matched, so its payload is the known one too: no need to hash it again.
    return arrays, spec.payload_sha256


def _read_bytes(path: Path) -> bytes:
    """The file's content, decompressed if it is gzip (recognised by content: mirrors are inconsistent with names)."""
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc
    return _gunzip(content, str(path)) if content[:2] == _GZIP_MAGIC else content


def _gunzip(content: bytes, where: str) -> bytes:
    try:
        return gzip.decompress(content)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{where}: corrupt or truncated gzip data ({exc})") from exc


def _parse_idx(content: bytes, path: Path, ndim: int) -> np.ndarray:
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataError(f"{path}: expected an IDX header of {header} bytes; received a {len(content)}-byte file")
    magic = int.from_bytes(content[:4], "big")
    expected_magic = 0x0800 + ndim  # 0x08: unsigned bytes, then the number of dimensions
    if magic != expected_magic:
        raise DataError(f"{path}: expected IDX magic number {expected_magic:#010x} (uint8, {ndim}-d); "
                        f"received {magic:#010x}")
    shape = tuple(int.from_bytes(content[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    if len(content) != header + math.prod(shape):
        raise DataError(f"{path}: header announces shape {shape}, i.e. {header + math.prod(shape)} bytes; "
                        f"received {len(content)} bytes")
    return np.frombuffer(content, np.uint8, offset=header).reshape(shape)


def _read_npz(path: Path, spec: _IdxSpec) -> tuple[dict[str, np.ndarray], tuple[str, ...]]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in _ARRAYS if key not in npz.files]
            if missing:
                raise DataError(f"{path}: expected arrays {', '.join(_ARRAYS)}; received {', '.join(npz.files)}")
            arrays = {key: npz[key] for key in _ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: expected a readable .npz file ({exc})") from exc
    _check_arrays(arrays, dict.fromkeys(_ARRAYS, path), (28, 28), (spec.n_train, spec.n_test))
    payload_sha256 = tuple(_sha256(arrays[key]) for key in _ARRAYS)
    for key, actual, expected in zip(_ARRAYS, payload_sha256, spec.payload_sha256):
        _check_sha256(str(path), f"array {key}", actual, expected)
    return arrays, payload_sha256


def _read_cifar(source: Path) -> dict[str, np.ndarray]:
    """CIFAR-10 from its batches folder or the original tar.gz. The format is pickle: only load trusted files."""
    batches = {}
    if source.is_dir():
        for batch in _CIFAR_BATCHES:
            path = source / batch
            try:
                with path.open("rb") as file:
                    batches[batch] = _unpickle_batch(file, str(path))
            except OSError as exc:
                raise DataError(f"{path}: cannot read CIFAR-10 batch ({exc})") from exc
    else:
        try:
            with tarfile.open(source, "r:gz") as tar:
                for batch in _CIFAR_BATCHES:
                    member = f"{_CIFAR_FOLDER}/{batch}"
                    try:
                        file = tar.extractfile(member)
                    except KeyError:
                        raise DataError(f"{source}: expected member {member} in the archive; it is missing") from None
                    batches[batch] = _unpickle_batch(file, f"{source}:{member}")
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{source}: expected a CIFAR-10 .tar.gz; it is corrupt or truncated ({exc})") from exc
    train = [batches[batch] for batch in _CIFAR_TRAIN_BATCHES]
    arrays = {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": batches["test_batch"][0],
        "y_test": batches["test_batch"][1],
    }
    _check_arrays(arrays, {"x_train": source, "y_train": source, "x_test": source, "y_test": source}, (32, 32, 3))
    return arrays


def _unpickle_batch(file: BinaryIO, where: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.load(file, encoding="bytes")
    except Exception as exc:  # unpickling garbage can raise nearly any exception type
        raise DataError(f"{where}: expected a pickled CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: expected a dict with keys b'data' and b'labels'; received {type(batch).__name__}"
                        f"{' with keys ' + str(list(batch)) if isinstance(batch, dict) else ''}")
    data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: expected b'data' as uint8 (N, 3072); received {data.dtype} {data.shape}")
    # Each row holds the red, then green, then blue 32x32 plane.
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def _check_arrays(arrays: dict[str, np.ndarray], paths: dict[str, Path], image_shape: tuple[int, ...],
                  counts: tuple[int, int] | None = None) -> None:
    """Shapes, dtypes, counts and label range, the same for every file format."""
    for split, count in zip(("train", "test"), counts or (None, None)):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        x_path, y_path = paths[f"x_{split}"], paths[f"y_{split}"]
        if x.dtype != np.uint8 or x.shape[1:] != image_shape:
            raise DataError(f"{x_path}: expected {split} images as uint8 (N, {', '.join(map(str, image_shape))}); "
                            f"received {x.dtype} {x.shape}")
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            raise DataError(f"{y_path}: expected {split} labels as integers of shape (N,); received {y.dtype} {y.shape}")
        if count is not None and len(x) != count:
            raise DataError(f"{x_path}: expected {count} {split} images; received {len(x)}")
        if len(x) != len(y):
            raise DataError(f"{y_path}: expected one {split} label per image ({len(x)}); received {len(y)}")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{y_path}: expected {split} labels in 0..9; received {y.min()}..{y.max()}")


def _sha256(array: np.ndarray) -> str:
    """Of the array's uint8 bytes; labels (checked to be 0..9) hash as uint8, exactly like an IDX payload."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.uint8)).hexdigest()


def _check_sha256(where: str, what: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise DataError(f"{where}: sha256 of {what} does not match: expected {expected}, received {actual}; "
                        f"the file is corrupt or not the official release")


# --- downloading ------------------------------------------------------------------------------------------


def _download(name: str, folder: Path) -> None:
    """Fetch what is missing from `folder` (the cache); each file lands there only once verified."""
    if name == "cifar10":
        _fetch(_CIFAR_URLS, folder / _CIFAR_ARCHIVE, _md5_verifier(_CIFAR_MD5))
        return
    spec = _IDX_SPECS[name]
    for stem, sha256 in zip(_IDX_FILES, spec.file_sha256):
        if _idx_path(folder, stem) is None:
            _fetch(tuple(mirror + stem + ".gz" for mirror in spec.mirrors), folder / f"{stem}.gz",
                   _gzip_sha256_verifier(sha256))


def _gzip_sha256_verifier(expected: str) -> Callable[[Path, str], None]:
    def verify(path: Path, url: str) -> None:
        content = path.read_bytes()
        if content[:2] == _GZIP_MAGIC:
            content = _gunzip(content, url)
        _check_sha256(url, "decompressed content", hashlib.sha256(content).hexdigest(), expected)
    return verify


def _md5_verifier(expected: str) -> Callable[[Path, str], None]:
    def verify(path: Path, url: str) -> None:
        md5 = hashlib.md5()
        with path.open("rb") as file:
            for chunk in iter(lambda: file.read(1 << 20), b""):
                md5.update(chunk)
        actual = md5.hexdigest()
        if actual != expected:
            raise DataError(f"{url}: md5 does not match: expected {expected}, received {actual}")
    return verify


def _fetch(urls: tuple[str, ...], dest: Path, verify: Callable[[Path, str], None]) -> None:
    """Download `dest` from the first of `urls` that serves verified content."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures = []
    for url in urls:
        # A temp file in the destination folder, renamed only once verified: the cache never holds a partial file.
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        tmp_path = Path(tmp_name)
        try:
            _log.info("downloading %s", url)
            with os.fdopen(fd, "wb") as tmp, urllib.request.urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S) as response:
                shutil.copyfileobj(response, tmp)
            verify(tmp_path, url)
            os.replace(tmp_path, dest)
            return
        except (OSError, ValueError, http.client.HTTPException, DataError) as exc:  # URLError is an OSError
            failures.append(f"{url}: {exc}")
        finally:
            tmp_path.unlink(missing_ok=True)
    tried = "\n  ".join(failures)
    raise DataError(f"could not download {dest.name} into {dest.parent}; tried:\n  {tried}\n"
                    f"Download it yourself and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR.")


# --- preprocessing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PreparedData:
    """Model-ready float32 NCHW arrays (C-contiguous) and int64 labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray  # 0 rows when validation_split == 0
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    key: str  # identifies the raw content and every preparation setting, for caching results derived from it
    input_size: int = 0
    offset: tuple[float, ...] = ()  # per channel, in uint8 pixel units: x -> (x - offset) / divisor
    divisor: tuple[float, ...] = ()

    def preprocessing(self) -> dict:
        """What `preprocess_images` needs to prepare new images exactly as these were (e.g. for predict)."""
        return {"input_size": self.input_size, "offset": list(self.offset), "divisor": list(self.divisor)}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])


def prepare(raw: RawDataset, *, input_size: int, normalization: str = "unit", validation_split: float = 0.0,
            subset: int | None = None, test_subset: int | None = None) -> PreparedData:
    """Subset, split, pad and normalise `raw` for a model taking (C, input_size, input_size) inputs.

    input_size 32 on 28x28 images zero-pads 2 pixels each side (LeNet-5's original input size). Validation data
    are the last `validation_split` fraction of the (subset) training set, as in Keras' `validation_split`.
    "standardize" uses per-channel statistics of the training split as the model sees it (padding included).
    """
    native = raw.x_train.shape[1]
    allowed = (native, 32) if native == 28 else (native,)
    if input_size not in allowed:
        raise ValueError(f"input_size for {raw.name} ({native}x{native} images) must be one of {allowed}; "
                         f"received {input_size}")
    if normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization must be one of {NORMALIZATIONS}; received {normalization!r}")
    if not 0.0 <= validation_split < 1.0:
        raise ValueError(f"validation_split must be in [0, 1); received {validation_split}")
    n_train = _first_n(subset, len(raw.x_train), "subset")
    n_test = _first_n(test_subset, len(raw.x_test), "test_subset")
    n_fit = math.floor(n_train * (1.0 - validation_split))  # Keras' formula, so splits match it exactly
    if n_fit == 0:
        raise ValueError(f"validation_split {validation_split} of {n_train} images leaves none to train on")

    pad = (input_size - native) // 2
    offset, divisor = _normalization(normalization, _nchw(raw.x_train[:n_fit], pad))
    x_fit, x_val, x_test = (preprocess_images(x, input_size, offset, divisor)
                            for x in (raw.x_train[:n_fit], raw.x_train[n_fit:n_train], raw.x_test[:n_test]))

    key = preparation_key(raw, input_size=input_size, normalization=normalization,
                          validation_split=validation_split, subset=subset, test_subset=test_subset)
    return PreparedData(
        x_train=x_fit, y_train=np.array(raw.y_train[:n_fit], dtype=np.int64),
        x_val=x_val, y_val=np.array(raw.y_train[n_fit:n_train], dtype=np.int64),
        x_test=x_test, y_test=np.array(raw.y_test[:n_test], dtype=np.int64),
        key=key, input_size=input_size,
        offset=tuple(float(v) for v in offset.ravel()), divisor=tuple(float(v) for v in divisor.ravel()),
    )


def preparation_key(raw: RawDataset, *, input_size: int, normalization: str, validation_split: float,
                    subset: int | None, test_subset: int | None) -> str:
    """What `prepare` would make of `raw` with these settings, identified without preparing it."""
    n_train = _first_n(subset, len(raw.x_train), "subset")
    n_test = _first_n(test_subset, len(raw.x_test), "test_subset")
    # Effective counts rather than subset/test_subset, so that subset=None and subset=N give the same key.
    settings = [raw.digest, input_size, normalization, validation_split, n_train, n_test]
    return f"{raw.name}-{hashlib.sha256(json.dumps(settings).encode()).hexdigest()[:16]}"


def preprocess_images(images: np.ndarray, input_size: int, offset, divisor) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,C) images -> float32 NCHW model input: padded to input_size, then normalized."""
    pad = (input_size - images.shape[1]) // 2
    shape = (1, -1, 1, 1)
    return _to_float(_nchw(images, pad), np.asarray(offset, np.float32).reshape(shape),
                     np.asarray(divisor, np.float32).reshape(shape))


def to_channels_last(x: np.ndarray) -> np.ndarray:
    """NCHW -> NHWC, contiguous (Keras' layout)."""
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW array with 4 dimensions; received shape {x.shape}")
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1))


def _first_n(n: int | None, total: int, what: str) -> int:
    if n is None:
        return total
    if not 1 <= n <= total:
        raise ValueError(f"{what} must be between 1 and {total}; received {n}")
    return n


def _nchw(images: np.ndarray, pad: int) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,C) -> uint8 NCHW, zero-padded while still uint8 so padding equals the background."""
    x = images[:, None] if images.ndim == 3 else images.transpose(0, 3, 1, 2)
    return np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad))) if pad else x


def _normalization(name: str, x_fit: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, divisor) per channel, shaped (1, C, 1, 1), in uint8 pixel units: x -> (x - offset) / divisor."""
    channels = x_fit.shape[1]
    if name == "unit":
        offset, divisor = np.zeros(channels), np.full(channels, 255.0)
    elif name == "centered":
        offset, divisor = np.full(channels, 127.5), np.full(channels, 127.5)
    else:
        # Exact statistics from a histogram of the 256 pixel values: no float copy of the whole training set.
        values = np.arange(256.0)
        offset, divisor = np.empty(channels), np.empty(channels)
        for c in range(channels):
            counts = np.bincount(x_fit[:, c].ravel(), minlength=256)
            offset[c] = counts @ values / counts.sum()
            std = math.sqrt(counts @ (values - offset[c]) ** 2 / counts.sum())
            divisor[c] = std if std > 0 else 1.0  # a constant channel: centre it, nothing to scale
    return offset.reshape(1, -1, 1, 1).astype(np.float32), divisor.reshape(1, -1, 1, 1).astype(np.float32)


def _to_float(x: np.ndarray, offset: np.ndarray, divisor: np.ndarray) -> np.ndarray:
    out = x.astype(np.float32, order="C")
    out -= offset
    out /= divisor
    return out
