"""cosub_seg/models/slide.py: batched sliding-window inference gives mmseg's logits; the chunk tuner picks the
fastest measured chunk and halves it when memory runs out."""
import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.registry import DefaultScope
from mmseg.models.segmentors import EncoderDecoder
from mmseg.registry import MODELS

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.models.slide import ChunkTuner, slide_inference, slide_windows, tuned_slide_inference


@pytest.mark.parametrize('size,expected', [
    ((512, 683), 2),     # ADE20k's test scale: one row, two columns
    ((896, 1195), 12),   # the 1.75x TTA scale: 3 x 4
    ((300, 400), 1),     # smaller than the crop: one clipped window
])
def test_windows_follow_mmseg_grid(size, expected):
    windows = slide_windows(*size, crop=(512, 512), stride=(341, 341))
    assert len(windows) == expected
    for y1, y2, x1, x2 in windows:
        assert y2 - y1 == min(512, size[0]) and x2 - x1 == min(512, size[1])
        assert 0 <= y1 and y2 <= size[0] and 0 <= x1 and x2 <= size[1]
    # every pixel is covered, the last window ends at the border
    assert max(w[1] for w in windows) == size[0] and max(w[3] for w in windows) == size[1]


def test_accumulation_matches_a_direct_average():
    """With an identity 'network', every pixel's logit is the mean of the crops covering it: the input itself."""
    x = torch.randn(2, 3, 37, 50, dtype=torch.float64)
    for chunk in (1, 2, 5):
        out = slide_inference(x, lambda crops: crops, 3, crop_size=(16, 16), stride=(10, 12), chunk=chunk)
        torch.testing.assert_close(out, x)


def build_segmentor(crop_batch_size):
    cfg = dict(
        type='CosubEncoderDecoder',
        num_submodels=1,
        data_preprocessor=dict(type='SegDataPreProcessor', mean=[0, 0, 0], std=[1, 1, 1]),
        backbone=dict(type='TimmSegBackbone', arch='convnext_atto'),
        decode_head=dict(type='UPerHead', in_channels=[40, 80, 160, 320], in_index=[0, 1, 2, 3],
                         pool_scales=(1, 2, 3, 6), channels=16, num_classes=5, norm_cfg=dict(type='BN'),
                         align_corners=False),
        test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(40, 40), crop_batch_size=crop_batch_size),
    )
    with DefaultScope.overwrite_default_scope('mmseg'):
        return MODELS.build(ConfigDict(cfg))  # as a config file gives it


@pytest.mark.parametrize('crop_batch_size', [2, 3, 'auto'])
def test_batched_slide_inference_equals_mmseg(crop_batch_size):
    torch.manual_seed(0)
    model = build_segmentor(crop_batch_size).eval()
    x = torch.randn(2, 3, 100, 150)  # 3 x 4 windows of 64 at stride 40
    metas = [dict(ori_shape=(100, 150), img_shape=(100, 150), pad_shape=(100, 150)) for _ in range(2)]
    with torch.no_grad():
        reference = EncoderDecoder.slide_inference(model, x, [dict(m) for m in metas])
        for _ in range(4 if crop_batch_size == 'auto' else 1):  # 'auto' tries several chunks on the way
            ours = model.slide_inference(x, [dict(m) for m in metas])
            assert (ours - reference).abs().max() <= 1e-5
    assert reference.shape == (2, 5, 100, 150)


def test_crop_batch_size_one_is_mmseg_itself_and_bad_values_are_refused():
    model = build_segmentor(1).eval()
    x = torch.randn(1, 3, 70, 70)
    metas = [dict(ori_shape=(70, 70), img_shape=(70, 70))]
    with torch.no_grad():
        torch.testing.assert_close(model.slide_inference(x, metas), EncoderDecoder.slide_inference(model, x, metas),
                                   rtol=0, atol=0)
    model.test_cfg['crop_batch_size'] = 0
    with pytest.raises(ValueError, match='crop_batch_size'):
        model.slide_inference(x, metas)


def test_tuner_tries_every_candidate_then_keeps_the_fastest():
    tuner = ChunkTuner(candidates=(1, 2, 4), trials=2)
    per_crop = {1: 1.0, 2: 0.6, 4: 0.8}  # seconds per crop of each chunk
    used = []
    for _ in range(6):
        chunk = tuner.next_chunk(num_windows=12)
        used.append(chunk)
        tuner.record(chunk, per_crop[chunk] * 12, crops=12)
    assert sorted(used) == [1, 1, 2, 2, 4, 4]
    assert tuner.choice == 2
    assert tuner.next_chunk(12) == 2 and tuner.next_chunk(1) == 1  # capped by the windows an image has


def test_tuner_only_tries_what_the_images_allow():
    tuner = ChunkTuner(candidates=(1, 2, 4, 8), trials=1)
    for chunk_time in ((1, 2.0), (2, 1.0)):
        chunk = tuner.next_chunk(num_windows=2)
        tuner.record(chunk, chunk_time[1] * 2, crops=2)
    assert tuner.choice == 2  # 4 and 8 cannot be measured on two-window images and are not chosen


def test_out_of_memory_halves_the_chunk():
    tuner = ChunkTuner(candidates=(1, 2, 4), trials=1)
    x = torch.randn(1, 3, 40, 100)
    calls = []

    def predict(crops):
        calls.append(crops.shape[0])
        if crops.shape[0] > 2:
            raise torch.cuda.OutOfMemoryError('simulated')
        return crops[:, :2]

    for _ in range(3):
        out = tuned_slide_inference(tuner, x, predict, 2, crop_size=(40, 40), stride=(20, 20))
        torch.testing.assert_close(out, x[:, :2])
    assert 4 in tuner.failed and tuner.choice in (1, 2)
    assert max(calls) == 4 and calls.count(4) == 1  # tried once, never again
