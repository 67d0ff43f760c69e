"""A/B of ways to warp the training images for data.augment: images/s of each on one thread, in interleaved rounds.

    LENET_BENCH_DATA_DIR=/path/to/mnist .venv/bin/python scripts/ab_augment.py [--rounds 5] [--images 54000]

Every candidate warps the same MNIST training images (32x32, lecun normalization: background -0.1) by the same
random affine maps, bilinearly, with the background beyond the edges, into one output buffer; their outputs are
compared to lenet_bench's own (numpy_gather) before any timing. Rates are medians over the rounds, by the wall clock
and per second of the process's CPU time (steadier where other processes share the cores). Also times `import torch`
in a fresh interpreter, alone and after TensorFlow and Keras: what a Keras run would pay if the shared layer used it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np
import scipy.ndimage
import threadpoolctl
import torch
from PIL import Image

from lenet_bench.data import load_dataset, prepare
from lenet_bench.spec.schema import AugmentSpec
from lenet_bench.training import augment

# (images, sampling maps, background, out): each candidate writes into `out`, one buffer reused by all of them, so
# that the page faults of a new array (timed apart, as numpy_gather_fresh_output) weigh on none
Warp = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray], object]


def numpy_gather(images: np.ndarray, sampling: np.ndarray, background: np.ndarray, out: np.ndarray) -> object:
    """lenet_bench's own: chunks of 64 images, four `take`s from a background-framed copy, three lerps."""
    return augment.warp_images(images, sampling, background, out=out)


def numpy_gather_fresh_output(images: np.ndarray, sampling: np.ndarray, background: np.ndarray,
                              out: np.ndarray) -> object:
    """The same into a new array, as without `out=`: its first writes fault its pages in."""
    return augment.warp_images(images, sampling, background)


def normalized_theta(sampling: np.ndarray, height: int, width: int, frame: int = 0) -> np.ndarray:
    """(N, 2, 3) float32 sampling maps in grid_sample's coordinates (align_corners=False), from the h x w output's to
    the input's, framed by `frame` pixels: pixel x of an image n pixels wide is at (2x + 1) / n - 1."""

    def to_grid(h: int, w: int) -> np.ndarray:
        return np.array([[2 / w, 0, 1 / w - 1], [0, 2 / h, 1 / h - 1], [0, 0, 1]])

    into_frame = np.array([[1, 0, frame], [0, 1, frame], [0, 0, 1]])
    square = np.concatenate([sampling, np.tile([[[0, 0, 1]]], (len(sampling), 1, 1))], axis=1)
    theta = to_grid(height + 2 * frame, width + 2 * frame) @ into_frame @ square @ np.linalg.inv(to_grid(height, width))
    return theta[:, :2].astype(np.float32)


def torch_affine_grid(images: np.ndarray, sampling: np.ndarray, background: np.ndarray, out: np.ndarray,
                      chunk: int = 256) -> object:
    """F.affine_grid + F.grid_sample on chunks; the background by warping x - b with zero padding, then + b."""
    n, _, h, w = images.shape
    theta = torch.from_numpy(normalized_theta(sampling, h, w))
    b = torch.from_numpy(background.astype(np.float32)).reshape(1, -1, 1, 1)
    out_t, source = torch.from_numpy(out), torch.from_numpy(images)
    with torch.no_grad():
        for start in range(0, n, chunk):
            part = slice(start, start + chunk)
            grid = torch.nn.functional.affine_grid(theta[part], list(source[part].shape), align_corners=False)
            warped = torch.nn.functional.grid_sample(source[part] - b, grid, mode="bilinear", padding_mode="zeros",
                                                     align_corners=False)
            torch.add(warped, b, out=out_t[part])
    return out


def torch_grid_sample(images: np.ndarray, sampling: np.ndarray, background: np.ndarray, out: np.ndarray,
                      chunk: int = 128) -> object:
    """F.grid_sample on chunks framed by a pixel of background (padding_mode border reads it beyond the edges), its
    grid from one matrix product (F.affine_grid costs as much as the sampling)."""
    n, channels, h, w = images.shape
    theta = torch.from_numpy(normalized_theta(sampling, h, w, frame=1))
    # output pixel (x, y) in grid_sample's coordinates of the h x w output, and 1
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    base = torch.from_numpy(np.stack([(2 * cols.ravel() + 1) / w - 1, (2 * rows.ravel() + 1) / h - 1,
                                      np.ones(h * w)], axis=1).astype(np.float32))
    framed = torch.empty((min(chunk, n), channels, h + 2, w + 2))
    framed[:] = torch.from_numpy(background.astype(np.float32)).reshape(1, -1, 1, 1)
    out_t, source = torch.from_numpy(out), torch.from_numpy(images)
    with torch.no_grad():
        for start in range(0, n, chunk):
            k = min(chunk, n - start)
            framed[:k, :, 1:-1, 1:-1] = source[start:start + k]
            grid = torch.matmul(base, theta[start:start + k].transpose(1, 2)).view(k, h, w, 2)
            out_t[start:start + k] = torch.nn.functional.grid_sample(
                framed[:k], grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out


def scipy_per_image(images: np.ndarray, sampling: np.ndarray, background: np.ndarray, out: np.ndarray) -> object:
    """scipy.ndimage.affine_transform, one call per image and channel (its matrix works in (row, column) order)."""
    swap = np.array([[0, 1], [1, 0]])
    for i, m in enumerate(sampling):
        matrix, offset = swap @ m[:, :2] @ swap, m[::-1, 2]
        for c in range(images.shape[1]):
            scipy.ndimage.affine_transform(images[i, c], matrix, offset, output=out[i, c], order=1,
                                           mode="grid-constant", cval=float(background[c]))
    return out


def scipy_map_coordinates(images: np.ndarray, sampling: np.ndarray, background: np.ndarray, out: np.ndarray,
                          chunk: int = 2048) -> object:
    """scipy.ndimage.map_coordinates on (N, H, W) stacks, one call per chunk and channel (the image index exact)."""
    n, channels, h, w = images.shape
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    for start in range(0, n, chunk):
        m = sampling[start:start + chunk].astype(np.float32)
        k = len(m)
        src_x = m[:, 0, 0, None, None] * xs + m[:, 0, 1, None, None] * ys + m[:, 0, 2, None, None]
        src_y = m[:, 1, 0, None, None] * xs + m[:, 1, 1, None, None] * ys + m[:, 1, 2, None, None]
        index = np.broadcast_to(np.arange(k, dtype=np.float32)[:, None, None], src_x.shape)
        coordinates = np.stack([index, src_y, src_x])
        for c in range(channels):
            scipy.ndimage.map_coordinates(images[start:start + k, c], coordinates, output=out[start:start + k, c],
                                          order=1, mode="grid-constant", cval=float(background[c]))
    return out


def pil_per_image(images: np.ndarray, sampling: np.ndarray, background: np.ndarray, out: np.ndarray) -> object:
    """Pillow's Image.transform (AFFINE, BILINEAR) on float ("F") images framed by a pixel of background, one call
    per image and channel. Pillow samples output pixel (x, y) at a(x + .5) + b(y + .5) + c - .5."""
    n, channels, h, w = images.shape
    framed = np.empty((n, channels, h + 2, w + 2), np.float32)
    framed[...] = background.astype(np.float32).reshape(1, -1, 1, 1)
    framed[:, :, 1:-1, 1:-1] = images
    for i, ((a, b, c), (d, e, f)) in enumerate(sampling):
        coefficients = (a, b, c + 1.5 - (a + b) / 2, d, e, f + 1.5 - (d + e) / 2)  # +1: the frame
        for channel in range(channels):
            image = Image.fromarray(framed[i, channel])
            out[i, channel] = np.asarray(image.transform((w, h), Image.Transform.AFFINE, coefficients,
                                                         Image.Resampling.BILINEAR, fillcolor=float(background[channel])))
    return out


# name: (warp, whether it is timed on --per-image-images only: a Python call per image)
CANDIDATES: dict[str, tuple[Warp, bool]] = {
    "numpy_gather": (numpy_gather, False), "numpy_gather_fresh_output": (numpy_gather_fresh_output, False),
    "torch_grid_sample": (torch_grid_sample, False),
    "torch_affine_grid": (torch_affine_grid, False), "scipy_map_coordinates": (scipy_map_coordinates, False),
    "scipy_per_image": (scipy_per_image, True), "pil_per_image": (pil_per_image, True)}


def import_seconds(statement: str, rounds: int) -> list[float]:
    """Seconds the last `import` in `statement` takes in a fresh interpreter, once per round."""
    *before, last = statement.split("; ")
    code = "; ".join([*before, "import time", "t = time.perf_counter()", last, "print(time.perf_counter() - t)"])
    return [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
            for _ in range(rounds)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--images", type=int, default=54_000)
    parser.add_argument("--per-image-images", type=int, default=5_400,
                        help="the per-image candidates are timed on this many")
    args = parser.parse_args()
    raw = load_dataset("mnist", os.environ.get("LENET_BENCH_DATA_DIR"), download=False)
    data = prepare(raw, input_size=32, normalization="lecun", validation_split=0.1)
    images = data.x_train[:args.images]
    background = np.array(data.background)
    spec = AugmentSpec(translate=2, rotate=15, scale=0.15, squeeze=0.15, shear=0.3)
    sampling = augment.inverse_affine(augment.affine_matrices(
        augment.draw_distortions(len(images), spec, seed=0, epoch=1), *images.shape[2:]))
    print(f"{len(images)} images {images.shape[1:]}, background {background}, {spec!r}; one thread "
          f"(torch.set_num_threads(1), BLAS and OpenMP limited to 1); {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)

    reference = augment.warp_images(images[:2000], sampling[:2000], background)
    buffer = np.empty_like(images)
    buffer[...] = 0  # its pages faulted in once, here
    for name, (warp, _) in CANDIDATES.items():
        buffer[:2000] = np.nan
        written = warp(images[:2000], sampling[:2000], background, buffer[:2000])
        difference = np.abs((written if name.endswith("fresh_output") else buffer[:2000]) - reference).max()
        print(f"{name}: largest difference from numpy_gather on 2000 images {difference:.1e}", flush=True)

    wall: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    cpu: dict[str, list[float]] = {name: [] for name in CANDIDATES}
    for _ in range(args.rounds):
        for name, (warp, per_image) in CANDIDATES.items():
            n = min(args.per_image_images, len(images)) if per_image else len(images)
            start, start_cpu = time.perf_counter(), time.process_time()
            warp(images[:n], sampling[:n], background, buffer[:n])
            wall[name].append(n / (time.perf_counter() - start))
            cpu[name].append(n / (time.process_time() - start_cpu))
    print(f"load average after: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("images/s, median of the rounds, by the wall clock and per second of this process's CPU time:")
    for name in CANDIDATES:
        print(f"{name:>22}: {np.median(wall[name]):>9,.0f} wall {np.median(cpu[name]):>9,.0f} CPU  (rounds, wall: "
              f"{', '.join(f'{r:,.0f}' for r in wall[name])})")
    for name in ("numpy_gather", "numpy_gather_fresh_output"):
        seconds = len(images) / np.median(cpu[name])
        print(f"{name}: {seconds:.2f} CPU-s per epoch of {len(images)} images: "
              + ", ".join(f"{100 * seconds / (len(images) / rate):.0f}% of an epoch trained at {rate:,} images/s"
                          for rate in (10_000, 20_000)))

    alone = import_seconds("import torch", args.rounds)
    after_keras = import_seconds("import tensorflow; import keras; import torch", args.rounds)
    numpy_alone = import_seconds("import numpy", args.rounds)
    print(f"import torch in a fresh interpreter: median {np.median(alone):.2f} s; after tensorflow and keras: "
          f"{np.median(after_keras):.2f} s (import numpy alone: {np.median(numpy_alone):.2f} s)")


if __name__ == "__main__":
    with threadpoolctl.threadpool_limits(limits=1):
        torch.set_num_threads(1)
        main()
