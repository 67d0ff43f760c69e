"""data.augment: random planar affine distortions of the training images, the same on every backend.

Beside `epoch_batches`, and for the same reason: what a backend trains on in an epoch is drawn here, framework-free,
from the run's seed and the epoch, so every backend sees the same distorted images and a resumed run goes on with
the stream it left. Only the training images pass through here, never validation or test.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from lenet_bench.spec.schema import AugmentSpec

_STREAM = 0xA116E  # this generator's own stream beside epoch_batches' (0xBA7C4) and sdlm's sample (0x4E55)
_KEEP_STREAM = 0x0216  # which images an epoch leaves as they are (AugmentSpec.probability below 1)


@dataclass(frozen=True)
class Distortions:
    """One random affine distortion per image, each field an (N,) float64 array."""

    shift_x: np.ndarray  # pixels, to the right
    shift_y: np.ndarray  # pixels, down
    degrees: np.ndarray  # rotation, counter-clockwise as the image is shown (rows down)
    scale: np.ndarray  # both axes multiplied by it
    squeeze: np.ndarray  # x multiplied by it, y divided by it
    shear: np.ndarray  # x += shear * y (y from the centre, down)


def draw_distortions(n: int, augment: AugmentSpec, seed: int, epoch: int) -> Distortions:
    """Each image's distortion in `epoch`, uniform within the spec's ranges.

    All six numbers are drawn for every image whatever the ranges, so that a range changed (or left at 0) does not
    change what the others draw; image by image, so that the first images of a larger set draw the same. With
    `augment.probability` below 1, each image is left as it is (the identity) with the rest of that chance."""
    u = np.random.default_rng([seed, epoch, _STREAM]).uniform(-1.0, 1.0, size=(n, 6)).T
    if augment.probability < 1:
        # Which images stay as they are comes from a stream of its own: the distortions drawn do not depend on it.
        kept = np.random.default_rng([seed, epoch, _KEEP_STREAM]).uniform(size=n) >= augment.probability
        u[:, kept] = 0.0  # the identity: no shift, rotation or shear, scale and squeeze 1
    return Distortions(shift_x=augment.translate * u[0], shift_y=augment.translate * u[1],
                       degrees=augment.rotate * u[2], scale=1.0 + augment.scale * u[3],
                       squeeze=1.0 + augment.squeeze * u[4], shear=augment.shear * u[5])


def affine_matrices(distortions: Distortions, height: int, width: int) -> np.ndarray:
    """(N, 2, 3) float64 maps taking a pixel's (x, y, 1) in an image to where it lands in its distorted image.

    Pixel (column x, row y) sits at (x, y); shear, then squeeze and scale, then rotation act about the image's
    centre ((width - 1) / 2, (height - 1) / 2), then the shift moves the result."""
    d = distortions
    angle = np.deg2rad(d.degrees)
    cos, sin = np.cos(angle), np.sin(angle)
    sx, sy = d.scale * d.squeeze, d.scale / d.squeeze
    # rotation [[cos, sin], [-sin, cos]] (counter-clockwise on screen, rows down) @ diag(sx, sy) @ [[1, shear], [0, 1]]
    linear = np.empty((len(angle), 2, 2))
    linear[:, 0, 0], linear[:, 0, 1] = cos * sx, cos * sx * d.shear + sin * sy
    linear[:, 1, 0], linear[:, 1, 1] = -sin * sx, -sin * sx * d.shear + cos * sy
    centre = np.array([(width - 1) / 2, (height - 1) / 2])
    offset = centre + np.stack([d.shift_x, d.shift_y], axis=1) - linear @ centre
    return np.concatenate([linear, offset[:, :, None]], axis=2)


def inverse_affine(matrices: np.ndarray) -> np.ndarray:
    """(N, 2, 3) maps the other way: from a pixel of the distorted image to where it is sampled in the original."""
    linear = np.linalg.inv(matrices[:, :, :2])
    return np.concatenate([linear, -(linear @ matrices[:, :, 2:])], axis=2)


def warp_images(images: np.ndarray, sampling: np.ndarray, background: Sequence[float] | np.ndarray,
                chunk: int = 64, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) float32 images resampled bilinearly: output pixel (x, y) of image i is image i at
    `sampling[i] @ (x, y, 1)`; points outside the image take the channel's `background`. Written into `out` if
    given.

    Each chunk is framed with background (1 pixel before, 2 after) and its sample points clamped into the frame,
    so that a point outside reads only background; interpolation as a + (b - a) * t, so that an integer point, or
    one among background only, gives its pixel's value exactly. Chunks of 64 images keep the temporaries in cache."""
    n, channels, height, width = images.shape
    fill = np.broadcast_to(np.asarray(background, np.float32).reshape(-1), (channels,))
    if out is None:
        out = np.empty(images.shape, np.float32)
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    grid = np.stack([cols.ravel(), rows.ravel(), np.ones(height * width, np.float32)])  # (3, H*W)
    framed_width, plane = width + 3, (height + 3) * (width + 3)
    framed = np.empty((min(chunk, n), channels, height + 3, framed_width), np.float32)
    framed[...] = fill[None, :, None, None]
    flat = framed.reshape(-1)
    in_frame = sampling.astype(np.float32)
    in_frame[:, :, 2] += 1  # the frame's first row and column
    for start in range(0, n, chunk):
        k = min(chunk, n - start)
        framed[:k, :, 1:height + 1, 1:width + 1] = images[start:start + k]
        # one matrix product gives every point's (x, y) in the framed source
        xy = (in_frame[start:start + k].reshape(2 * k, 3) @ grid).reshape(k, 2, height * width)
        x, y = xy[:, 0], xy[:, 1]
        np.clip(x, 0, width + 1, out=x)  # scalar bounds: numpy's clip is 3x slower with an array of them
        np.clip(y, 0, height + 1, out=y)
        corner = np.floor(xy)
        xy -= corner  # the fractions
        index = corner[:, 1] * framed_width
        index += corner[:, 0]
        index += (np.arange(k, dtype=np.float32) * (channels * plane))[:, None]
        top_left = index.astype(np.int32).astype(np.intp)  # float32 -> int64 directly takes 2x as long
        for c in range(channels):
            # the four neighbours, each a `take` from the frame shifted by a view: no index arithmetic
            at = flat[c * plane:]
            top, top_right = at.take(top_left), at[1:].take(top_left)
            bottom, bottom_right = at[framed_width:].take(top_left), at[framed_width + 1:].take(top_left)
            top_right -= top
            top_right *= x
            top += top_right
            bottom_right -= bottom
            bottom_right *= x
            bottom += bottom_right
            bottom -= top
            bottom *= y
            top += bottom
            out[start:start + k, c] = top.reshape(k, height, width)
    return out


def distorted_images(images: np.ndarray, augment: AugmentSpec, seed: int, epoch: int, *,
                     background: float | Sequence[float] | np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(N, C, H, W) float32: each training image under its own random distortion of `epoch`, in a new array or in
    `out` (one buffer kept for every epoch spares the page faults of a new one, as long as the warp on MNIST).

    `background` (one value, or one per channel) is what the normalization made of a raw 0 pixel, the padding's
    value (`PreparedData.background`): points from outside the image take it, not 0. Labels are untouched."""
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W); received shape {images.shape}")
    _, channels, height, width = images.shape
    fill = np.asarray(background, np.float32).reshape(-1)
    if fill.size not in (1, channels):
        raise ValueError(f"background needs one value or one per channel ({channels}); received {fill.size}")
    if out is not None and (out.shape != images.shape or out.dtype != np.float32 or not out.flags.c_contiguous
                            or np.shares_memory(out, images)):
        raise ValueError(f"out must be a C-contiguous float32 array of the images' shape {images.shape}, apart from "
                         f"them; received {out.dtype} {out.shape}")
    matrices = affine_matrices(draw_distortions(len(images), augment, seed, epoch), height, width)
    return warp_images(np.asarray(images, np.float32), inverse_affine(matrices), fill, out=out)


class EpochImages:
    """A run's distorted training images, epoch by epoch: the next epoch's are warped in a thread while this
    one trains (numpy's gathers and arithmetic release the GIL), into the other of two buffers. `images(epoch)`
    waits for them if they are not ready; `waited` adds up those waits, the augmentation's cost that training
    did not hide. The distortions depend on (seed, epoch) only, so a resumed run gets the stream it left."""

    def __init__(self, images: np.ndarray, augment: AugmentSpec, seed: int,
                 background: float | Sequence[float] | np.ndarray):
        self._source, self._augment, self._seed, self._background = images, augment, seed, background
        self._buffers = [np.empty_like(images, dtype=np.float32) for _ in range(2)]
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="augment")
        self._pending: dict[int, Future[np.ndarray]] = {}
        self.waited = 0.0

    def _start(self, epoch: int) -> None:
        if epoch not in self._pending:
            out = self._buffers[epoch % 2]
            self._pending[epoch] = self._pool.submit(distorted_images, self._source, self._augment, self._seed, epoch,
                                                     background=self._background, out=out)

    def images(self, epoch: int, last_epoch: int) -> np.ndarray:
        """Epoch `epoch`'s images (valid until epoch + 2 is asked for), the next epoch's started behind them."""
        started = time.perf_counter()
        self._start(epoch)
        ready = self._pending.pop(epoch).result()
        self.waited += time.perf_counter() - started
        if epoch < last_epoch:
            self._start(epoch + 1)
        return ready

    def close(self) -> None:
        for pending in self._pending.values():
            pending.cancel()
        self._pool.shutdown(wait=True)


def epoch_images(augment: AugmentSpec | None, images: np.ndarray, seed: int,
                 background: float | Sequence[float] | np.ndarray) -> EpochImages | None:
    """The run's distorted training images, or None when its spec asks for none."""
    return EpochImages(images, augment, seed, background) if augment is not None else None
