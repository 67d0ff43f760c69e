"""data.augment's distortions (lenet_bench.training.augment) on real MNIST digits: drawn per (seed, epoch), inside
their ranges, with the geometry their matrices say, bilinear, and the normalization's background outside."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage

from lenet_bench.data import prepare
from lenet_bench.spec.schema import AugmentSpec
from lenet_bench.training.augment import (
    Distortions,
    affine_matrices,
    distorted_images,
    draw_distortions,
    inverse_affine,
    warp_images,
)

STRONG = AugmentSpec(translate=3, rotate=20, scale=0.2, squeeze=0.15, shear=0.3)


@pytest.fixture(scope="module")
def digits(mnist_raw):
    """200 MNIST training digits, 32x32 with LeCun's normalization: background -0.1, not 0."""
    return prepare(mnist_raw, input_size=32, normalization="lecun", validation_split=0.0, subset=200)


def only(n: int, **fields: float) -> Distortions:
    """The same distortion for n images: identity but for `fields`."""
    identity = {"shift_x": 0.0, "shift_y": 0.0, "degrees": 0.0, "scale": 1.0, "squeeze": 1.0, "shear": 0.0}
    return Distortions(**{name: np.full(n, fields.get(name, value)) for name, value in identity.items()})


def warped(images: np.ndarray, distortions: Distortions, background) -> np.ndarray:
    return warp_images(images, inverse_affine(affine_matrices(distortions, *images.shape[2:])), background)


def test_background_is_the_padding_value_of_every_normalization(mnist_raw):
    for normalization in ("unit", "standardize", "centered", "lecun"):
        data = prepare(mnist_raw, input_size=32, normalization=normalization, validation_split=0.0, subset=50)
        padding = data.x_train[:, 0, :2, :]  # the two rows of padding above every digit
        assert np.all(padding == np.float32(data.background[0])), normalization
    assert data.background[0] == pytest.approx(-0.1)


def test_same_seed_and_epoch_give_the_same_images_on_every_call(digits):
    first = distorted_images(digits.x_train, STRONG, seed=3, epoch=2, background=digits.background)
    distorted_images(digits.x_train, STRONG, seed=3, epoch=1, background=digits.background)  # no state carried
    again = distorted_images(digits.x_train, STRONG, seed=3, epoch=2, background=digits.background)
    assert np.array_equal(first, again)
    # image by image: the first images of a larger set are distorted the same (a subset run sees the same stream)
    head = distorted_images(digits.x_train[:50], STRONG, seed=3, epoch=2, background=digits.background)
    assert np.array_equal(head, first[:50])


def test_other_epochs_and_seeds_differ(digits):
    base = distorted_images(digits.x_train, STRONG, seed=0, epoch=1, background=digits.background)
    for seed, epoch in ((0, 2), (1, 1)):
        other = distorted_images(digits.x_train, STRONG, seed=seed, epoch=epoch, background=digits.background)
        changed = np.abs(other - base).reshape(len(base), -1).max(axis=1) > 0.1
        assert changed.mean() > 0.9, (seed, epoch)


def test_zero_ranges_return_the_images_exactly(digits):
    images = digits.x_train
    out = distorted_images(images, AugmentSpec(), seed=0, epoch=1, background=digits.background)
    assert out is not images and out.dtype == np.float32 and out.shape == images.shape
    assert np.array_equal(out, images)


def test_an_integer_shift_moves_a_digit_by_exactly_that_many_pixels(digits):
    images, background = digits.x_train[:20], np.float32(digits.background[0])
    out = warped(images, only(len(images), shift_x=3.0, shift_y=-2.0), background)
    # right by 3, up by 2: out[y, x] = in[y + 2, x - 3]
    assert np.array_equal(out[:, :, :-2, 3:], images[:, :, 2:, :-3])
    assert np.all(out[:, :, :, :3] == background) and np.all(out[:, :, -2:, :] == background)


def test_a_quarter_turn_is_numpys_rot90_counter_clockwise(digits):
    images = digits.x_train[:20]
    out = warped(images, only(len(images), degrees=90.0), digits.background)
    np.testing.assert_allclose(out, np.rot90(images, 1, axes=(2, 3)), atol=1e-5)


def centre_of_mass(images: np.ndarray, background: float) -> np.ndarray:
    """(N, 2): each image's ink-weighted (x, y)."""
    ink = images[:, 0] - background
    rows, cols = np.mgrid[0:ink.shape[1], 0:ink.shape[2]]
    total = ink.sum(axis=(1, 2))
    return np.stack([(ink * cols).sum(axis=(1, 2)) / total, (ink * rows).sum(axis=(1, 2)) / total], axis=1)


def test_a_rotation_turns_the_centre_of_mass_about_the_image_centre(digits):
    images, background = digits.x_train[:100], digits.background[0]
    spec = AugmentSpec(rotate=30)
    out = distorted_images(images, spec, seed=5, epoch=1, background=background)
    degrees = draw_distortions(len(images), spec, seed=5, epoch=1).degrees
    centre = np.array([15.5, 15.5])
    before, after = centre_of_mass(images, background), centre_of_mass(out, background)
    angle = np.deg2rad(degrees)
    offset = before - centre
    # counter-clockwise on screen, rows down: (x, y) -> (x cos + y sin, -x sin + y cos)
    expected = centre + np.stack([offset[:, 0] * np.cos(angle) + offset[:, 1] * np.sin(angle),
                                  -offset[:, 0] * np.sin(angle) + offset[:, 1] * np.cos(angle)], axis=1)
    assert np.abs(after - expected).max() < 0.15  # bilinear blurring moves it a little, not more
    assert np.abs(after - centre).max() < 2.5  # MNIST centres each digit's mass; rotation keeps it there
    changed = np.abs(out - images).reshape(len(out), -1).max(axis=1)
    assert np.all(changed[np.abs(degrees) > 2] > 0.1)  # every image turned by more than 2 degrees changed


def test_drawn_parameters_fill_their_ranges_and_no_more():
    spec = AugmentSpec(translate=3, rotate=10, scale=0.2, squeeze=0.1, shear=0.3)
    d = draw_distortions(5000, spec, seed=0, epoch=1)
    for values, low, high in ((d.shift_x, -3, 3), (d.shift_y, -3, 3), (d.degrees, -10, 10), (d.scale, 0.8, 1.2),
                              (d.squeeze, 0.9, 1.1), (d.shear, -0.3, 0.3)):
        assert values.shape == (5000,)
        assert low <= values.min() < low + 0.02 * (high - low) and high - 0.02 * (high - low) < values.max() <= high
    assert np.corrcoef(d.shift_x, d.shift_y)[0, 1] < 0.1  # x and y shifts drawn apart
    # a range left at 0 leaves the others' draws as they were
    other = draw_distortions(5000, AugmentSpec(translate=3, rotate=10), seed=0, epoch=1)
    assert np.array_equal(other.degrees, d.degrees) and np.array_equal(other.shift_y, d.shift_y)
    assert np.all(other.scale == 1.0) and np.all(other.shear == 0.0)


def test_a_probability_below_one_leaves_that_share_of_images_as_they_are_and_the_others_as_drawn(digits):
    """The 1998 paper's originals beside its distorted copies: with probability p each image is distorted in an
    epoch, as it would be at p = 1; the others are the images themselves, to the bit."""
    images, background = digits.x_train, digits.background
    some = AugmentSpec(translate=3, rotate=20, scale=0.2, squeeze=0.15, shear=0.3, probability=0.7)
    d, every = draw_distortions(5000, some, seed=3, epoch=2), draw_distortions(5000, STRONG, seed=3, epoch=2)
    kept = (d.shift_x == 0) & (d.degrees == 0) & (d.scale == 1) & (d.squeeze == 1) & (d.shear == 0)
    assert 0.27 < kept.mean() < 0.33  # 5,000 draws: the share within 4 standard errors of 0.3
    for name in ("shift_x", "shift_y", "degrees", "scale", "squeeze", "shear"):
        assert np.array_equal(getattr(d, name)[~kept], getattr(every, name)[~kept])
    assert not np.array_equal(kept, draw_distortions(5000, some, seed=3, epoch=3).shift_x == 0)  # anew each epoch
    out = distorted_images(images, some, seed=3, epoch=2, background=background)
    left = draw_distortions(len(images), some, seed=3, epoch=2).shift_x == 0
    assert left.any() and (~left).any()
    assert np.array_equal(out[left], images[left])
    assert np.all(np.abs(out[~left] - images[~left]).reshape((~left).sum(), -1).max(axis=1) > 0.1)


def test_matrices_follow_their_parameters():
    d = draw_distortions(500, STRONG, seed=1, epoch=4)
    matrices = affine_matrices(d, 32, 32)
    centre = np.array([15.5, 15.5, 1.0])
    # the centre lands shifted; shear, squeeze and rotation keep areas, scale multiplies them by its square
    np.testing.assert_allclose(matrices @ centre, np.stack([15.5 + d.shift_x, 15.5 + d.shift_y], axis=1),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(matrices[:, :, :2]), d.scale ** 2, rtol=1e-12)
    # a horizontal shear alone moves a point below the centre right by shear times its distance down
    sheared = affine_matrices(only(1, shear=0.25), 32, 32)[0]
    np.testing.assert_allclose(sheared @ [15.5, 19.5, 1.0], [16.5, 19.5], atol=1e-12)
    back = inverse_affine(matrices)
    point = np.array([3.0, 27.0, 1.0])
    np.testing.assert_allclose(np.einsum("nij,nj->ni", back, np.concatenate(
        [matrices @ point, np.ones((500, 1))], axis=1)), np.tile(point[:2], (500, 1)), atol=1e-9)


def test_bilinear_as_scipy_with_the_background_beyond_the_edges(digits):
    images = digits.x_train[:40]
    background = float(digits.background[0])
    d = draw_distortions(len(images), AugmentSpec(translate=8, rotate=180, scale=0.5, squeeze=0.3, shear=1.0), 7, 1)
    sampling = inverse_affine(affine_matrices(d, 32, 32))
    ours = warp_images(images, sampling, background)
    swap = np.array([[0, 1], [1, 0]])  # scipy's matrices work in (row, column) order
    for i in range(len(images)):
        theirs = scipy.ndimage.affine_transform(images[i, 0].astype(np.float64), swap @ sampling[i, :, :2] @ swap,
                                                sampling[i, ::-1, 2], order=1, mode="grid-constant",
                                                cval=background)
        np.testing.assert_allclose(ours[i, 0], theirs, atol=1e-5)


def test_points_from_outside_take_the_background_not_zero(mnist_raw):
    data = prepare(mnist_raw, input_size=28, normalization="standardize", validation_split=0.0, subset=30)
    background = np.float32(data.background[0])
    assert background < -0.3  # standardize: far from 0, and no padding at 28x28
    out = warped(data.x_train, only(30, shift_x=-8.0, scale=0.6), data.background)
    # shrunk to 0.6 about the centre, then 8 pixels left: the right half comes from outside the image
    assert np.all(out[:, :, :, 19:] == background)
    assert np.all(out[:, :, :2, :] == background) and np.all(out[:, :, -2:, :] == background)


def test_channels_each_warped_alike_with_their_own_background(digits):
    # three different digits as the three channels of colour images
    images = np.concatenate([digits.x_train[0:30], digits.x_train[30:60], digits.x_train[60:90]], axis=1)
    background = [-0.1, 0.5, 2.0]
    shifted = images + (np.array(background, np.float32) + 0.1)[None, :, None, None]
    out = distorted_images(shifted, STRONG, seed=2, epoch=3, background=background)
    assert out.shape == (30, 3, 32, 32) and out.dtype == np.float32
    d = draw_distortions(30, STRONG, seed=2, epoch=3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, c:c + 1], warped(shifted[:, c:c + 1], d, background[c]))


def test_images_keep_their_order_and_the_input_is_left_alone(digits):
    images = digits.x_train[:100]
    before = images.copy()
    out = distorted_images(images, STRONG, seed=0, epoch=1, background=digits.background)
    assert np.array_equal(images, before)
    # image i comes out as image i under distortion i, in every chunk: the labels (never passed in) still fit
    d = draw_distortions(100, STRONG, seed=0, epoch=1)
    for i in (0, 1, 63, 64, 99):
        alone = Distortions(**{name: values[i:i + 1] for name, values in vars(d).items()})
        np.testing.assert_allclose(out[i:i + 1], warped(images[i:i + 1], alone, digits.background), atol=1e-5)
        assert np.abs(out[i] - out[i - 1]).max() > 0.5  # and it is not its neighbour's


def test_into_a_kept_buffer_as_into_a_new_array(digits):
    images = digits.x_train[:100]
    buffer = np.full_like(images, np.nan)
    written = distorted_images(images, STRONG, seed=4, epoch=2, background=digits.background, out=buffer)
    assert written is buffer
    assert np.array_equal(buffer, distorted_images(images, STRONG, seed=4, epoch=2, background=digits.background))
    for bad in (images, np.empty((99, 1, 32, 32), np.float32), np.empty(images.shape, np.float64)):
        with pytest.raises(ValueError, match="out must be a C-contiguous float32 array"):
            distorted_images(images, STRONG, seed=4, epoch=2, background=digits.background, out=bad)


def test_a_background_per_channel_must_fit_the_channels(digits):
    with pytest.raises(ValueError, match=r"one per channel \(1\); received 3"):
        distorted_images(digits.x_train[:2], STRONG, seed=0, epoch=1, background=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        distorted_images(digits.x_train[:2, 0], STRONG, seed=0, epoch=1, background=0.0)
