"""Reading datasets from disk (IDX files, .npz archives, CIFAR-10's pickled batches) and the checks every
format shares: shapes, counts, labels, checksums. Every problem is a DataError naming the file.

Nothing here reads more than the file must hold: an IDX file is read up to the size its dataset's counts
allow, and an .npz member's header is checked before its data, so a corrupt or hostile file (a gzip bomb)
fails early instead of filling the memory.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import math
import pickle
import tarfile
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np

from lenet_bench.data.errors import DataError, unreadable
from lenet_bench.data.layouts import ARRAYS, IDX_FILES, Arrays, CifarLayout, IdxLayout
from lenet_bench.data.registry import DatasetInfo

_GZIP_MAGIC = b"\x1f\x8b"
_CHUNK = 1 << 20  # bytes decompressed at a time


# --- MNIST's layout: IDX files or one .npz ----------------------------------------------------------------


def read_idx_dataset(dataset: DatasetInfo, layout: IdxLayout, source: Path) -> tuple[Arrays, tuple[str, ...]]:
    """The four arrays from a folder of IDX files or an .npz, verified against the registry's checksums."""
    if source.name.endswith(".npz"):
        return _read_npz(dataset, layout, source)
    if source.is_dir():
        return _read_idx_folder(dataset, layout, source)
    raise DataError(f"{source}: expected a folder of IDX files or a {dataset.name}.npz file; received another file")


def idx_extent(dataset: DatasetInfo, key: str) -> tuple[tuple[int, ...], int]:
    """(shape of one item, number of items) the IDX file holding array `key` must have."""
    item_shape = dataset.raw_image_shape if key.startswith("x") else ()
    return item_shape, dataset.n_train if key.endswith("train") else dataset.n_test


def _read_idx_folder(dataset: DatasetInfo, layout: IdxLayout, folder: Path) -> tuple[Arrays, tuple[str, ...]]:
    arrays, paths, file_sha256 = {}, {}, {}
    for key, stem in zip(ARRAYS, IDX_FILES):
        path = layout.idx_path(folder, stem)
        if path is None:
            raise DataError(f"{folder}: expected {stem}.gz or {stem}; it is missing")
        arrays[key], file_sha256[key] = read_idx_file(path, *idx_extent(dataset, key))
        paths[key] = path
    check_arrays(dataset, arrays, paths, with_counts=True)
    for key, expected in zip(ARRAYS, layout.file_sha256):
        check_sha256(str(paths[key]), "decompressed content", file_sha256[key], expected)
    # The whole file matched, so its payload is the known one too: no need to hash it again.
    return arrays, layout.payload_sha256


def read_idx_file(path: Path, item_shape: tuple[int, ...], count: int, where: str | None = None
                  ) -> tuple[np.ndarray, str]:
    """An IDX file of uint8 items (gzipped or not: recognised by content, as mirrors are inconsistent with
    names) and the sha256 of its decompressed content. `where` names it in errors (default: the path).

    At most the IDX header plus `count` items are read: a longer file fails there, whatever it expands to.
    """
    where = where or str(path)
    ndim = 1 + len(item_shape)
    header_size = 4 + 4 * ndim
    limit = header_size + count * math.prod(item_shape)
    try:
        file = path.open("rb")
    except OSError as exc:
        raise unreadable(where, exc) from exc
    with file:
        gzipped = False
        try:
            gzipped = file.read(2) == _GZIP_MAGIC
            file.seek(0)
            stream: io.BufferedIOBase = gzip.GzipFile(fileobj=file) if gzipped else file
            header = _read_up_to(stream, header_size)
            shape = _parse_idx_header(header, ndim, where)
            payload = _read_up_to(stream, limit - header_size + 1)  # one byte more tells that the file is longer
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DataError(f"{where}: corrupt or truncated gzip data ({exc})") from exc
        except OSError as exc:
            raise unreadable(where, exc) from exc
    size = header_size + len(payload)
    if size > limit:
        what = "x".join(map(str, item_shape)) or "1"
        raise DataError(f"{where}: expected at most {limit} bytes{' once decompressed' if gzipped else ''} "
                        f"(the {header_size}-byte IDX header and {count} items of {what} bytes); it holds more, "
                        "so reading stopped there")
    if size != header_size + math.prod(shape):
        raise DataError(f"{where}: header announces shape {shape}, i.e. {header_size + math.prod(shape)} bytes; "
                        f"received {size} bytes")
    sha256 = hashlib.sha256(header)
    sha256.update(payload)
    return np.frombuffer(payload, np.uint8).reshape(shape), sha256.hexdigest()


def _parse_idx_header(header: bytearray, ndim: int, where: str) -> tuple[int, ...]:
    header_size = 4 + 4 * ndim
    if len(header) < header_size:
        raise DataError(f"{where}: expected an IDX header of {header_size} bytes; received a {len(header)}-byte file")
    magic = int.from_bytes(header[:4], "big")
    expected_magic = 0x0800 + ndim  # 0x08: unsigned bytes, then the number of dimensions
    if magic != expected_magic:
        raise DataError(f"{where}: expected IDX magic number {expected_magic:#010x} (uint8, {ndim}-d); "
                        f"received {magic:#010x}")
    return tuple(int.from_bytes(header[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))


def _read_up_to(stream: io.BufferedIOBase, size: int) -> bytearray:
    """Up to `size` bytes of `stream`, decompressed a chunk at a time into one buffer of that size."""
    buffer = bytearray(size)
    filled = 0
    with memoryview(buffer) as view:
        while filled < size:
            received = stream.readinto(view[filled:filled + _CHUNK])
            if not received:
                break
            filled += received
    del buffer[filled:]
    return buffer


def _read_npz(dataset: DatasetInfo, layout: IdxLayout, path: Path) -> tuple[Arrays, tuple[str, ...]]:
    try:
        file = path.open("rb")
    except OSError as exc:
        raise unreadable(path, exc) from exc
    try:
        with file, np.load(file, allow_pickle=False) as npz:
            missing = [key for key in ARRAYS if key not in npz.files]
            if missing:
                raise DataError(f"{path}: expected arrays {', '.join(ARRAYS)}; received {', '.join(npz.files)}")
            # Shapes and dtypes from the headers first: numpy allocates what a header announces.
            headers = {key: _npy_header(npz, key) for key in ARRAYS}
            for split in ("train", "test"):
                check_split(dataset, split, headers[f"x_{split}"], headers[f"y_{split}"], path, path, with_count=True)
            arrays = {key: npz[key] for key in ARRAYS}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: expected a readable .npz file ({exc})") from exc
    check_arrays(dataset, arrays, dict.fromkeys(ARRAYS, path), with_counts=True)
    payload_sha256 = tuple(array_sha256(arrays[key]) for key in ARRAYS)
    for key, actual, expected in zip(ARRAYS, payload_sha256, layout.payload_sha256):
        check_sha256(str(path), f"array {key}", actual, expected)
    return arrays, payload_sha256


def _npy_header(npz: np.lib.npyio.NpzFile, key: str) -> tuple[np.dtype, tuple[int, ...]]:
    """(dtype, shape) of array `key`, from its .npy header alone (a member that is no .npy: ValueError)."""
    archive = npz.zip
    assert archive is not None  # open until the NpzFile is closed
    member = f"{key}.npy" if f"{key}.npy" in archive.namelist() else key
    with archive.open(member) as file:
        version = np.lib.format.read_magic(file)
        read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                       else np.lib.format.read_array_header_2_0)
        shape, _, dtype = read_header(file)
    return dtype, shape


# --- CIFAR-10's layout: pickled batches -------------------------------------------------------------------


def read_cifar_dataset(dataset: DatasetInfo, layout: CifarLayout, source: Path) -> tuple[Arrays, tuple[str, ...]]:
    """CIFAR-10 from its batches folder or the original tar.gz. The format is pickle: only load trusted files."""
    batches = {}
    if source.is_dir():
        for batch in layout.batches:
            path = source / batch
            try:
                with path.open("rb") as file:
                    batches[batch] = _unpickle_batch(file, str(path), dataset)
            except OSError as exc:
                raise DataError(f"{path}: cannot read CIFAR-10 batch ({exc})") from exc
    else:
        batches = _read_cifar_archive(dataset, layout, source)
    train = [batches[batch] for batch in layout.train_batches]
    arrays = {
        "x_train": np.concatenate([x for x, _ in train]),
        "y_train": np.concatenate([y for _, y in train]),
        "x_test": batches[layout.test_batch][0],
        "y_test": batches[layout.test_batch][1],
    }
    check_arrays(dataset, arrays, dict.fromkeys(ARRAYS, source), with_counts=False)
    return arrays, tuple(array_sha256(arrays[key]) for key in ARRAYS)


def _read_cifar_archive(dataset: DatasetInfo, layout: CifarLayout, source: Path
                        ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    try:
        file = source.open("rb")
    except OSError as exc:
        raise unreadable(source, exc) from exc
    batches = {}
    with file:
        try:
            with tarfile.open(fileobj=file, mode="r:gz") as tar:
                for batch in layout.batches:
                    member = f"{layout.folder}/{batch}"
                    try:
                        extracted = tar.extractfile(member)
                    except KeyError:
                        raise DataError(f"{source}: expected member {member} in the archive; it is missing") from None
                    if extracted is None:
                        raise DataError(f"{source}: expected member {member} to be a file; it is not")
                    batches[batch] = _unpickle_batch(extracted, f"{source}:{member}", dataset)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{source}: expected a CIFAR-10 .tar.gz; it is corrupt or truncated ({exc})") from exc
    return batches


def _unpickle_batch(file: IO[bytes], where: str, dataset: DatasetInfo) -> tuple[np.ndarray, np.ndarray]:
    try:
        batch = pickle.load(file, encoding="bytes")
    except Exception as exc:  # unpickling garbage can raise nearly any exception type
        raise DataError(f"{where}: expected a pickled CIFAR-10 batch ({type(exc).__name__}: {exc})") from exc
    if not isinstance(batch, dict) or b"data" not in batch or b"labels" not in batch:
        raise DataError(f"{where}: expected a dict with keys b'data' and b'labels'; received {type(batch).__name__}"
                        f"{' with keys ' + str(list(batch)) if isinstance(batch, dict) else ''}")
    try:
        data, labels = np.asarray(batch[b"data"]), np.asarray(batch[b"labels"])
    except (ValueError, TypeError) as exc:  # e.g. ragged lists
        raise DataError(f"{where}: expected b'data' and b'labels' as arrays ({exc})") from exc
    channels, size = dataset.channels, dataset.image_size
    pixels = channels * size * size
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != pixels:
        raise DataError(f"{where}: expected b'data' as uint8 (N, {pixels}); received {data.dtype} {data.shape}")
    if not np.issubdtype(labels.dtype, np.integer) or labels.shape != (len(data),):
        raise DataError(f"{where}: expected b'labels' as {len(data)} integers, one per image; "
                        f"received {labels.dtype} {labels.shape}")
    # Each row holds the red, then green, then blue size x size plane.
    return data.reshape(-1, channels, size, size).transpose(0, 2, 3, 1), labels


# --- checks every format shares ---------------------------------------------------------------------------


def check_split(dataset: DatasetInfo, split: str, x: tuple[np.dtype, tuple[int, ...]],
                y: tuple[np.dtype, tuple[int, ...]], x_where: Path, y_where: Path, with_count: bool) -> None:
    """Dtypes, shapes and counts of a split's images and labels, given as (dtype, shape)."""
    (x_dtype, x_shape), (y_dtype, y_shape) = x, y
    image_shape = dataset.raw_image_shape
    if x_dtype != np.uint8 or x_shape[1:] != image_shape:
        raise DataError(f"{x_where}: expected {split} images as uint8 (N, {', '.join(map(str, image_shape))}); "
                        f"received {x_dtype} {x_shape}")
    if not np.issubdtype(y_dtype, np.integer) or len(y_shape) != 1:
        raise DataError(f"{y_where}: expected {split} labels as integers of shape (N,); received {y_dtype} {y_shape}")
    count = dataset.n_train if split == "train" else dataset.n_test
    if with_count and x_shape[0] != count:
        raise DataError(f"{x_where}: expected {count} {split} images; received {x_shape[0]}")
    if x_shape[0] != y_shape[0]:
        raise DataError(f"{y_where}: expected one {split} label per image ({x_shape[0]}); received {y_shape[0]}")


def check_arrays(dataset: DatasetInfo, arrays: Arrays, paths: dict[str, Path], with_counts: bool) -> None:
    """Shapes, dtypes, counts (if `with_counts`) and label range, the same for every file format."""
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        y_path = paths[f"y_{split}"]
        check_split(dataset, split, (x.dtype, x.shape), (y.dtype, y.shape), paths[f"x_{split}"], y_path, with_counts)
        top = dataset.num_classes - 1
        if y.size and (y.min() < 0 or y.max() > top):
            raise DataError(f"{y_path}: expected {split} labels in 0..{top}; received {y.min()}..{y.max()}")


def array_sha256(array: np.ndarray) -> str:
    """Of the array's uint8 bytes; labels (checked to be 0..9) hash as uint8, exactly like an IDX payload."""
    return hashlib.sha256(np.ascontiguousarray(array, dtype=np.uint8).data).hexdigest()


def check_sha256(where: str, what: str, actual: str, expected: str) -> None:
    if actual != expected:
        raise DataError(f"{where}: sha256 of {what} does not match: expected {expected}, received {actual}; "
                        f"the file is corrupt or not the official release")
