"""cosub_seg/datasets/ink.py: the scenes' way of drawing digits, and the pretraining augmentation that repaints
digits that way (RandomInkOnGround)."""
import random

import numpy as np
import pytest

from cosub_seg.datasets.ink import LUMA, RandomInkOnGround, contrasting_colour, ink_coverage, paint, smooth_ground
from cosub_seg.errors import ConfigError


def luminance(rgb):
    return np.asarray(rgb, np.float64) @ np.array([0.299, 0.587, 0.114])


def test_luma_weights_are_bt601():
    assert LUMA.tolist() == pytest.approx([0.299, 0.587, 0.114])


def test_ink_coverage_is_the_contrast_stretch():
    gray = np.array([0.0, 0.25, 0.45, 0.65, 1.0])
    # (g - 0.25) / 0.4, clipped to [0, 1]
    assert ink_coverage(gray).tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 1.0])


def test_paint_is_alpha_compositing():
    ground = np.full((2, 2, 3), 100.0, np.float32)
    ink = np.array([[0.0, 1.0], [0.5, 0.25]], np.float32)
    out = paint(ground, ink, np.array([200.0, 0.0, 40.0], np.float32))
    assert out[0, 0].tolist() == [100, 100, 100]
    assert out[0, 1].tolist() == [200, 0, 40]
    assert out[1, 0].tolist() == pytest.approx([150, 50, 70])
    assert out[1, 1].tolist() == pytest.approx([125, 75, 85])


def test_the_ink_is_always_on_the_other_side_of_mid_grey_from_its_ground():
    rng = np.random.RandomState(0)
    light_ground = 0
    for _ in range(400):
        ground = smooth_ground(rng, 16)
        assert ground.shape == (16, 16, 3) and ground.min() >= 0 and ground.max() <= 255
        colour = contrasting_colour(rng, ground)
        ground_luma = luminance(ground.reshape(-1, 3).mean(0))
        if ground_luma > 128:
            light_ground += 1
            assert luminance(colour) < 100  # dark ink on a light ground
        else:
            assert luminance(colour) > 156  # light ink on a dark ground
    # both polarities, about equally often (binomial sd for 400 draws: 10)
    assert 150 < light_ground < 250


def test_prob_zero_leaves_the_image_alone_and_bad_arguments_are_refused():
    img = np.random.RandomState(1).randint(0, 255, (32, 32, 3), dtype=np.uint8)
    out = RandomInkOnGround(prob=0.0).transform(dict(img=img.copy()))['img']
    assert np.array_equal(out, img)
    with pytest.raises(ConfigError, match='prob'):
        RandomInkOnGround(prob=1.5)
    with pytest.raises(ConfigError, match='scale'):
        RandomInkOnGround(scale=(0.0, 1.0))
    with pytest.raises(ConfigError, match='scale'):
        RandomInkOnGround(scale=(0.9, 0.5))


def test_a_digit_is_repainted_in_one_contrasting_colour_over_a_smooth_ground():
    """Without zoom, full-ink pixels all get the one ink colour, which stands out from the ground around it (the
    side of mid-grey is checked on contrasting_colour above)."""
    digit = np.zeros((32, 32, 3), np.uint8)
    digit[8:24, 12:20] = 255  # full ink
    transform = RandomInkOnGround(prob=1.0, scale=(1.0, 1.0))
    for seed in range(20):
        random.seed(seed)
        out = transform.transform(dict(img=digit.copy()))['img'][..., ::-1].astype(np.float64)  # BGR -> RGB
        stroke = out[8:24, 12:20].reshape(-1, 3)
        assert np.ptp(stroke, axis=0).max() == 0, 'the ink is one colour'
        ground = np.delete(out.reshape(32, -1, 3), np.s_[12:20], axis=1)  # columns without ink
        ink_luma, ground_luma = luminance(stroke[0]), luminance(ground.reshape(-1, 3).mean(0))
        assert abs(ink_luma - ground_luma) > 20, 'the ink stands out from its ground'


def test_the_zoom_out_shrinks_the_digit_to_the_drawn_scale_at_a_random_place():
    white = np.full((32, 32, 3), 255, np.uint8)  # ink everywhere
    transform = RandomInkOnGround(prob=1.0, scale=(0.5, 0.5))
    corners = set()
    for seed in range(10):
        random.seed(seed)
        out = transform.transform(dict(img=white.copy()))['img']
        colours, counts = np.unique(out.reshape(-1, 3), axis=0, return_counts=True)
        ink = np.all(out == colours[counts.argmax()], axis=2)
        rows, cols = np.nonzero(ink)
        assert ink.sum() == 16 * 16 and np.ptp(rows) == 15 and np.ptp(cols) == 15, 'a 16 x 16 square of ink'
        corners.add((rows.min(), cols.min()))
    assert len(corners) > 5, 'placed at random'
