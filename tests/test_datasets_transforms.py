"""cosub_seg/datasets/transforms.py and datasets/seg_transforms.py: the pretraining transforms (crops, resize,
solarize, colour jitter, Gaussian blur) against their formulas, with the random draws replayed from the seed;
CheckSegAnnotation where no annotation is loaded (inference). CheckSegAnnotation inside a training set is in
test_runtime_checked_data.py."""
import random

import cv2
import numpy as np
import pytest

from cosub_seg.datasets import CheckSegAnnotation, ColorJitter, RandomCrop, RandomResizedCrop, ResizeShortSide, Solarize


def test_random_resized_crop_size_and_content():
    random.seed(0)
    img = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (50, 1, 3))  # value = column index
    out = RandomResizedCrop(size=(20, 30), scale=(1.0, 1.0), ratio=(2.0, 2.0))(dict(img=img))
    assert out['img'].shape == (20, 30, 3)
    # scale 1 and ratio 2 on a 50x100 image is the whole image: columns still increase left to right.
    assert out['img'][0, 0, 0] < 10 and out['img'][0, -1, 0] > 90


def test_resize_short_side_keeps_aspect():
    out = ResizeShortSide(size=32)(dict(img=np.zeros((64, 128, 3), np.uint8)))
    assert out['img'].shape == (32, 64, 3)


def test_random_crop_with_reflect_padding():
    random.seed(1)
    img = np.arange(16, dtype=np.uint8).reshape(4, 4, 1).repeat(3, axis=2)
    out = RandomCrop(size=4, padding=2)(dict(img=img))['img']
    padded = np.pad(img, ((2, 2), (2, 2), (0, 0)), mode='reflect')
    assert any((padded[t:t + 4, l:l + 4] == out).all() for t in range(5) for l in range(5))  # noqa: E741


def test_solarize_inverts_bright_pixels():
    img = np.array([[[0, 127, 128]], [[200, 255, 10]]], np.uint8)
    out = Solarize(thr=128)(dict(img=img))['img']
    np.testing.assert_array_equal(out, [[[0, 127, 127]], [[55, 0, 10]]])


def _gray(img):
    """BT.601 luma of a BGR image, rounded to uint8 (what cv2's BGR2GRAY gives)."""
    b, g, r = (img[..., i].astype(np.float64) for i in range(3))
    return np.floor(0.114 * b + 0.587 * g + 0.299 * r + 0.5)


def _jitter_by_hand(img, op, factor):
    """torchvision's definitions, as mmcv's cv2 backend computes them on uint8 images: brightness blends with
    black and truncates, contrast blends with the (rounded) mean grey level and truncates, saturation blends with
    the grey image and rounds."""
    x = img.astype(np.float64)
    if op == 'brightness':
        return np.floor(np.clip(factor * x, 0, 255))
    if op == 'contrast':
        return np.floor(np.clip(factor * x + (1 - factor) * np.floor(_gray(img).mean() + 0.5), 0, 255))
    return np.clip(np.floor(factor * x + (1 - factor) * _gray(img)[..., None] + 0.5), 0, 255)


JITTER_OPS = ('brightness', 'contrast', 'saturation')  # the order of ColorJitter's list before its shuffle


def _replayed_draws(seed, strengths):
    """The order and the factors ColorJitter draws after random.seed(seed): a shuffle of its three operations,
    then one uniform factor in [1 - s, 1 + s] per operation with a strength, in the shuffled order."""
    random.seed(seed)
    order = list(JITTER_OPS)
    random.shuffle(order)
    return [(op, random.uniform(1 - strengths[op], 1 + strengths[op])) for op in order if strengths[op] > 0]


@pytest.mark.parametrize('op', JITTER_OPS)
def test_color_jitter_applies_the_drawn_factor(op):
    """One operation at a time, against its formula (_jitter_by_hand) with the factor replayed from the seed. The
    tolerance of one grey level covers float32 (cv2) against float64 (here) at a truncation boundary."""
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    strengths = {name: (0.4 if name == op else 0.0) for name in JITTER_OPS}
    [(drawn, factor)] = _replayed_draws(7, strengths)
    assert drawn == op and abs(factor - 1) > 0.05  # the seed draws a factor that changes the image
    random.seed(7)
    out = ColorJitter(**strengths)(dict(img=img.copy()))['img']
    assert out.dtype == np.uint8 and out.shape == img.shape
    expected = _jitter_by_hand(img, op, factor)
    assert np.abs(out.astype(np.float64) - expected).max() <= 1
    # A wrong factor (the other end of the range) is far from it: the check above has teeth.
    assert np.abs(_jitter_by_hand(img, op, 2 - factor) - expected).max() > 20


def test_color_jitter_applies_all_three_in_the_drawn_order():
    """The three operations in the shuffled order with their replayed factors, composed by hand (grey levels
    rounded as the uint8 pipeline rounds them after each step); one level of tolerance per step."""
    img = np.random.default_rng(1).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    strengths = dict(brightness=0.4, contrast=0.3, saturation=0.5)
    for seed in range(3):
        expected = img
        for op, factor in _replayed_draws(seed, strengths):
            expected = _jitter_by_hand(expected, op, factor).astype(np.uint8)
        random.seed(seed)
        out = ColorJitter(**strengths)(dict(img=img.copy()))['img']
        assert np.abs(out.astype(np.float64) - expected).max() <= 3, seed


def _gaussian_blur_by_hand(img, sigma, radius):
    """Separable convolution with exp(-d^2 / (2 sigma^2)) / sum over d in [-radius, radius], borders mirrored
    without repeating the edge pixel (cv2's default BORDER_REFLECT_101, numpy's 'reflect')."""
    d = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-d ** 2 / (2 * sigma ** 2))
    kernel /= kernel.sum()
    x = np.pad(img.astype(np.float64), ((radius, radius), (radius, radius), (0, 0)), mode='reflect')
    h, w = img.shape[:2]
    rows = sum(k * x[:, i:i + w] for i, k in enumerate(kernel))
    return sum(k * rows[i:i + h] for i, k in enumerate(kernel))


def _cv2_radius(sigma, sigmas_per_side):
    """cv2's kernel size for ksize=(0, 0): cvRound(sigma * sigmas_per_side * 2 + 1) | 1 (4 sigmas for float images,
    3 for uint8), as a radius."""
    return (int(round(sigma * sigmas_per_side * 2 + 1)) | 1) // 2


def test_gaussian_blur_is_the_gaussian_kernel_of_the_drawn_sigma():
    """GaussianBlur against the convolution worked here, with sigma replayed from the seed. cv2 sizes the kernel
    from sigma (ksize=(0, 0)): 4 sigmas a side for float images, 3 for uint8, which blur with
    fixed-point weights: one grey level from the rounded reference."""
    from cosub_seg.datasets import GaussianBlur
    rng = np.random.default_rng(0)
    img = rng.uniform(0, 255, (20, 24, 3)).astype(np.float32)
    random.seed(3)
    sigma = random.uniform(0.5, 2.0)
    random.seed(3)
    out = GaussianBlur(sigma=(0.5, 2.0))(dict(img=img.copy()))['img']
    np.testing.assert_allclose(out, _gaussian_blur_by_hand(img, sigma, _cv2_radius(sigma, 4)), rtol=0, atol=1e-3)
    assert np.abs(_gaussian_blur_by_hand(img, 2 * sigma, _cv2_radius(2 * sigma, 4)) - out).max() > 1  # sigma matters
    img8 = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
    out8 = GaussianBlur(sigma=(1.3, 1.3))(dict(img=img8.copy()))['img']
    assert out8.dtype == np.uint8
    radius = _cv2_radius(1.3, 3)
    assert np.abs(out8.astype(int) - np.rint(_gaussian_blur_by_hand(img8, 1.3, radius))).max() <= 1
    # The kernel size rule, exactly: cv2 with that size given explicitly is the same image.
    np.testing.assert_array_equal(out8, cv2.GaussianBlur(img8, (2 * radius + 1, 2 * radius + 1), 1.3, sigmaY=1.3))


def test_annotation_check_passes_images_without_annotation_and_keeps_checking_named_ones():
    check = CheckSegAnnotation(num_classes=11)
    inference = dict(img_path='scene.jpg', img=np.zeros((4, 4, 3), np.uint8), ori_shape=(4, 4))
    assert check(inference) is inference  # nothing to check: what inference_model and MMSegInferencer give it
    with pytest.raises(KeyError, match='found no gt_seg_map for ann/scene.png: put it after LoadAnnotations'):
        check(dict(inference, seg_map_path='ann/scene.png'))  # named but not loaded: the pipeline is wrong
    with pytest.raises(ValueError, match=r'holds label values \[11\] outside \[0, 11\)'):
        check(dict(inference, seg_map_path='ann/scene.png', gt_seg_map=np.full((4, 4), 11, np.uint8)))


def test_timm_rand_augment_is_timms_randaugment_on_the_bgr_image():
    """The same draws give the same picture as timm's RandAugment built the way timm's create_transform builds it for
    DeiT III's --aa rand-m9-mstd0.5-inc1 at 64 px (translations 45 % of the size, mean-pixel fill, bicubic)."""
    from PIL import Image
    from timm.data.auto_augment import rand_augment_transform
    from timm.data.transforms import str_to_pil_interp

    from cosub_seg.datasets.transforms import TimmRandAugment
    from cosub_seg.errors import ConfigError
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    reference = rand_augment_transform('rand-m9-mstd0.5-inc1', dict(
        translate_const=int(64 * 0.45), img_mean=(124, 116, 104), interpolation=str_to_pil_interp('bicubic')))
    ours = TimmRandAugment('rand-m9-mstd0.5-inc1', img_size=64)
    changed = 0
    for seed in range(16):
        random.seed(seed)
        np.random.seed(seed)
        out = ours.transform(dict(img=bgr.copy()))['img']
        random.seed(seed)
        np.random.seed(seed)
        expected = np.asarray(reference(Image.fromarray(bgr[..., ::-1].copy())))[..., ::-1]
        assert out.shape == (64, 64, 3) and out.dtype == np.uint8
        np.testing.assert_array_equal(out, expected)
        changed += int(not np.array_equal(out, bgr))
    assert changed >= 8  # each of the two operations applies with probability 0.5 (timm's default)
    with pytest.raises(ConfigError, match="starting with 'rand'"):
        TimmRandAugment('augmix-m5')
