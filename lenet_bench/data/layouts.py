"""How a dataset's files lie on disk: finding them (here, with pathlib only), reading and downloading them
(formats.py and download.py, imported on first use so that the registry stays light for the spec schema)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

    from lenet_bench.data.registry import DatasetInfo

ARRAYS = ("x_train", "y_train", "x_test", "y_test")
IDX_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")

# What a reader returns: the four arrays (ARRAYS order) and the sha256 of each one's bytes (see IdxLayout).
Arrays = dict[str, "np.ndarray"]


@dataclass(frozen=True)
class IdxLayout:
    """MNIST's layout: the four IDX files (gzipped or not) in one folder, or one `<name>.npz` of the four arrays.

    Checksum tuples follow ARRAYS / IDX_FILES order.
    """

    file_sha256: tuple[str, ...]  # of each decompressed IDX file
    # Of the array bytes after each IDX header, i.e. what an .npz holds, so both formats verify and digest alike.
    payload_sha256: tuple[str, ...]

    def find(self, name: str, root: Path) -> Path | None:
        """The dataset at `root`: the file itself, a folder of the four IDX files, or `root/<name>.npz`."""
        if root.is_file():
            return root
        if all(self.idx_path(root, stem) for stem in IDX_FILES):
            return root
        npz = root / f"{name}.npz"
        return npz if npz.is_file() else None

    @staticmethod
    def idx_path(folder: Path, stem: str) -> Path | None:
        for path in (folder / f"{stem}.gz", folder / stem):
            if path.is_file():
                return path
        return None

    def expected(self, name: str) -> str:
        return f"the four IDX files {', '.join(f + '.gz' for f in IDX_FILES)} (gzipped or not), or {name}.npz"

    def read(self, dataset: DatasetInfo, source: Path) -> tuple[Arrays, tuple[str, ...]]:
        from lenet_bench.data import formats  # formats and download import this module

        return formats.read_idx_dataset(dataset, self, source)

    def download(self, dataset: DatasetInfo, folder: Path) -> None:
        from lenet_bench.data import download

        download.fetch_idx_files(dataset, self, folder)


@dataclass(frozen=True)
class CifarLayout:
    """CIFAR-10's python release: a folder of pickled batches, the folder holding it, or the tar.gz archive.
    The batches themselves have no published checksum; the archive's md5 is checked when it is downloaded."""

    archive_md5: str
    folder: str = "cifar-10-batches-py"
    archive: str = "cifar-10-python.tar.gz"
    train_batches: tuple[str, ...] = tuple(f"data_batch_{i}" for i in range(1, 6))
    test_batch: str = "test_batch"

    @property
    def batches(self) -> tuple[str, ...]:
        return (*self.train_batches, self.test_batch)

    def find(self, name: str, root: Path) -> Path | None:
        if root.is_file():
            return root
        for folder in (root, root / self.folder):
            if (folder / self.test_batch).is_file():
                return folder
        archive = root / self.archive
        return archive if archive.is_file() else None

    def expected(self, name: str) -> str:
        return (f"the {self.folder} folder ({self.train_batches[0]}..{self.train_batches[-1][-1]}, "
                f"{self.test_batch}), the folder containing it, or {self.archive}")

    def read(self, dataset: DatasetInfo, source: Path) -> tuple[Arrays, tuple[str, ...]]:
        from lenet_bench.data import formats

        return formats.read_cifar_dataset(dataset, self, source)

    def download(self, dataset: DatasetInfo, folder: Path) -> None:
        from lenet_bench.data import download

        download.fetch_cifar_archive(dataset, self, folder)


Layout = IdxLayout | CifarLayout
