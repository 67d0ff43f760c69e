"""The datasets lenet_bench knows: one entry each, with everything about it in one place.

Importable without a framework or numpy (the spec schema validates against it): the readers behind each
entry's `layout` are imported when data are first read.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass
from pathlib import Path

from lenet_bench.data.layouts import CifarLayout, IdxLayout, Layout


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    image_size: int  # images are image_size x image_size
    num_classes: int
    n_train: int
    n_test: int
    _: KW_ONLY
    class_names: tuple[str, ...]  # label i is class_names[i]
    layout: Layout  # the files on disk: their checksums, how to find, read and download them
    mirrors: tuple[str, ...] = ()  # base URLs, each serving the layout's files, tried in order
    system_dirs: tuple[Path, ...] = ()  # read-only copies installed outside the cache (e.g. by Debian)

    def __post_init__(self) -> None:
        if len(self.class_names) != self.num_classes:
            raise ValueError(f"{self.name}: {len(self.class_names)} class names for {self.num_classes} classes")

    @property
    def raw_image_shape(self) -> tuple[int, ...]:
        """One image as read from disk: (H, W) for grey images, (H, W, C) for colour ones."""
        size = (self.image_size, self.image_size)
        return size if self.channels == 1 else (*size, self.channels)


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        "mnist", 1, 28, 10, 60_000, 10_000,
        class_names=tuple(str(digit) for digit in range(10)),
        layout=IdxLayout(
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
        ),
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
            "http://yann.lecun.com/exdb/mnist/",
        ),
    ),
    "fashion_mnist": DatasetInfo(
        "fashion_mnist", 1, 28, 10, 60_000, 10_000,
        class_names=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                     "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        # Checksums taken from Debian's dataset-fashion-mnist (0.0~git20200523.55506a9-1), decompressed.
        layout=IdxLayout(
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
        ),
        mirrors=("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
        system_dirs=(Path("/usr/share/datasets/fashion-mnist"),),
    ),
    "cifar10": DatasetInfo(
        "cifar10", 3, 32, 10, 50_000, 10_000,
        class_names=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        layout=CifarLayout(archive_md5="c58f30108f718f92721af3b95e74349a"),
        mirrors=("https://www.cs.toronto.edu/~kriz/",),
    ),
}


def dataset_names() -> tuple[str, ...]:
    return tuple(DATASETS)


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset; expected one of {', '.join(DATASETS)}, received {name!r}")
    return DATASETS[name]
