"""Downloading a dataset's files from its registry mirrors into the cache; a file lands there only verified."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import shutil
import tempfile
import urllib.request
from collections.abc import Callable
from functools import partial
from pathlib import Path

from lenet_bench.data import formats
from lenet_bench.data.errors import DataError
from lenet_bench.data.layouts import ARRAYS, IDX_FILES, CifarLayout, IdxLayout
from lenet_bench.data.registry import DatasetInfo
from lenet_bench.data.sources import CACHE_DIR_ENV, DATA_DIR_ENV

_DOWNLOAD_TIMEOUT_S = 60

_log = logging.getLogger(__name__)


def fetch_idx_files(dataset: DatasetInfo, layout: IdxLayout, folder: Path) -> None:
    """The IDX files missing from `folder`, each from the first mirror serving it with the right content."""
    for key, stem, sha256 in zip(ARRAYS, IDX_FILES, layout.file_sha256):
        if layout.idx_path(folder, stem) is None:
            _fetch(tuple(mirror + stem + ".gz" for mirror in dataset.mirrors), folder / f"{stem}.gz",
                   partial(_verify_idx, dataset, key, sha256))


def fetch_cifar_archive(dataset: DatasetInfo, layout: CifarLayout, folder: Path) -> None:
    _fetch(tuple(mirror + layout.archive for mirror in dataset.mirrors), folder / layout.archive,
           partial(_verify_md5, layout.archive_md5))


def _verify_idx(dataset: DatasetInfo, key: str, expected: str, path: Path, url: str) -> None:
    # Read like any IDX file, so a hostile mirror's gzip bomb is cut off at the size the file must have.
    _, actual = formats.read_idx_file(path, *formats.idx_extent(dataset, key), where=url)
    formats.check_sha256(url, "decompressed content", actual, expected)


def _verify_md5(expected: str, path: Path, url: str) -> None:
    with path.open("rb") as file:
        actual = hashlib.file_digest(file, "md5").hexdigest()
    if actual != expected:
        raise DataError(f"{url}: md5 does not match: expected {expected}, received {actual}")


def _fetch(urls: tuple[str, ...], dest: Path, verify: Callable[[Path, str], None]) -> None:
    """Download `dest` from the first of `urls` that serves verified content."""
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(dest.parent, exc) from exc
    failures = []
    for url in urls:
        # A temp file in the destination folder, renamed only once verified: the cache never holds a partial file.
        try:
            fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        except OSError as exc:
            raise _unwritable(dest.parent, exc) from exc
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


def _unwritable(folder: Path, exc: OSError) -> DataError:
    return DataError(f"{folder}: cannot write the download there ({exc}); set {CACHE_DIR_ENV} to a writable "
                     f"folder, or download the data yourself and pass --data-dir DIR or set {DATA_DIR_ENV}=DIR")
