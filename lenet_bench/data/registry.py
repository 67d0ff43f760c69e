"""The datasets lenet_bench knows: one entry each, with everything about it in one place.

Importable without a framework (the spec schema validates against it).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    image_size: int  # images are image_size x image_size
    num_classes: int
    n_train: int
    n_test: int


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo("mnist", 1, 28, 10, 60_000, 10_000),
    "fashion_mnist": DatasetInfo("fashion_mnist", 1, 28, 10, 60_000, 10_000),
    "cifar10": DatasetInfo("cifar10", 3, 32, 10, 50_000, 10_000),
}


def dataset_names() -> tuple[str, ...]:
    return tuple(DATASETS)


def info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset; expected one of {', '.join(DATASETS)}, received {name!r}")
    return DATASETS[name]
