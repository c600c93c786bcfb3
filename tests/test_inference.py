"""cosub_seg/inference/ (Segmenter, the model folder, image reading) and the ONNX export of cosub_seg/convert.py
(``export_onnx``), on the demo segmentor exported once per session (conftest.py's ``demo_segmentor_export``: the
one tests/test_tools_pipeline.py's pipeline run fine-tunes and exports where the session runs that file too, as
`make test` does; else the demo segmentor with random weights): ONNX Runtime's logits against PyTorch's at two input
sizes; ``predict`` against mmseg's ``inference_model`` on the same exported model and image (whole and slide);
``backend_agreement`` against the same comparison made here; the ONNX path imported and run in a process where mmcv,
mmseg, MMEngine, torch and timm cannot be imported; the model folder's checks (missing, changed or foreign files) and
the bad images (truncated, not an image, grey, RGBA, 16-bit). Fast (one ONNX export, ~70 s in all on two cores when
the file runs without the pipeline's tests) + 6 slow (the dynamic export of every backbone family) + 1 gpu (the torch
backend on CUDA)."""
import json
import os
import os.path as osp
import shutil
import subprocess
import textwrap
import warnings

import cv2
import numpy as np
import pytest
import torch

import cosub_seg
from cosub_seg.errors import ConfigError, DataError, MissingFileError
from cosub_seg.inference import ImageConversionWarning, Segmenter, list_images, read_image
from cosub_seg.inference.model_folder import CONFIG_NAME, ONNX_NAME, WEIGHTS_NAME, read_model_folder
from cosub_seg.inference.segmenter import slide_windows

pytest.importorskip('onnxruntime')


def _scene(height, width, seed=0):
    """A smooth colour picture with a few blobs: something a network gives several classes on."""
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(4):
        cv2.circle(image, (int(rng.randint(width)), int(rng.randint(height))), int(rng.randint(6, 20)),
                   tuple(int(c) for c in rng.randint(0, 256, 3)), -1)
    return image


@pytest.fixture(scope='module')
def exported(demo_segmentor_export, tmp_path_factory):
    """The demo segmentor exported (mmseg files + model folder), its model.onnx and PyTorch model (conftest.py's
    ``demo_segmentor_export``: the segmentor tests/test_tools_pipeline.py's pipeline run exports where the session
    runs it too, else random weights exported here), and a JPEG scene."""
    image = str(tmp_path_factory.mktemp('inference') / 'scene.jpg')
    cv2.imwrite(image, _scene(96, 160)[:, :, ::-1])
    return dict(demo_segmentor_export, image=image)


def _torch_logits(model, x):
    with torch.no_grad():
        return model.encode_decode(x, [dict(img_shape=x.shape[2:])]).numpy()


def _assert_same_classes_but_ties(labels, expected, logits, tie=1e-4):
    """``labels`` equals ``expected`` except where the reference logits' two best classes are within ``tie``."""
    top = np.sort(logits, axis=0)
    differ = labels != expected
    assert (top[-1] - top[-2])[differ].max(initial=0) < tie, 'a class differs where it is not a near tie'
    assert differ.mean() < 1e-3


# ---------------------------------------------------------------------------------------------- ONNX vs PyTorch


def test_onnx_logits_equal_pytorch_at_two_input_sizes(exported):
    import onnxruntime as ort
    entry = exported['onnx']
    assert entry['dynamic_size'] and entry['max_abs_diff'] < 1e-4  # the export's own check, recorded
    session = ort.InferenceSession(entry['onnx'], providers=['CPUExecutionProvider'])
    torch.manual_seed(1)
    for shape in [(2, 3, 64, 64), (1, 3, 96, 160)]:  # the crop, and another size and batch
        x = torch.randn(*shape)
        got = session.run(None, {'pixel_values': x.numpy()})[0]
        expected = _torch_logits(exported['model'], x)
        assert got.shape == expected.shape == (shape[0], 11, *shape[2:])
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)
    # The Segmenter's two backends give the same logits of an image (normalisation included).
    image = _scene(80, 112, seed=3)[None]
    onnx = Segmenter.from_pretrained(exported['folder'], backend='onnx').logits(image)
    torch_logits = Segmenter.from_pretrained(exported['folder'], backend='torch').logits(image)
    np.testing.assert_allclose(onnx, torch_logits, rtol=0, atol=1e-4)


def test_exportable_pooling_equals_adaptive_average_pooling():
    from cosub_seg.convert import ExportableAdaptiveAvgPool2d
    x = torch.randn(2, 3, 13, 22, dtype=torch.float64)
    for size in (1, 2, 3, 6, (4, 7)):
        torch.testing.assert_close(ExportableAdaptiveAvgPool2d(size)(x), torch.nn.AdaptiveAvgPool2d(size)(x))


# ---------------------------------------------------------------------------------------------- predict vs mmseg


@pytest.mark.parametrize('mode', ['whole', 'slide'])
def test_predict_equals_mmseg_inference_model(exported, mode):
    from mmseg.apis import inference_model, init_model
    model = init_model(exported['config'], exported['checkpoint'], device='cpu')
    folder = read_model_folder(exported['folder'])
    if mode == 'slide':
        from mmengine.config import ConfigDict
        model.test_cfg = ConfigDict(mode='slide', crop_size=tuple(folder.test_mode['crop_size']),
                              stride=tuple(folder.test_mode['stride']))
    result = inference_model(model, exported['image'])
    expected = result.pred_sem_seg.data[0].numpy()
    reference_logits = result.seg_logits.data.numpy()
    assert expected.shape == (96, 160) and len(np.unique(expected)) > 1

    torch_segmenter = Segmenter.from_pretrained(exported['folder'], backend='torch')
    prediction = torch_segmenter.predict(exported['image'], mode=mode, probabilities=True)
    np.testing.assert_array_equal(prediction.labels, expected)  # the class map, pixel for pixel
    np.testing.assert_allclose(prediction.probabilities, torch.from_numpy(reference_logits).softmax(0).numpy(),
                               atol=1e-6)
    assert prediction.classes == list(model.dataset_meta['classes'])

    onnx_prediction = Segmenter.from_pretrained(exported['folder'], backend='onnx').predict(exported['image'],
                                                                                          mode=mode)
    _assert_same_classes_but_ties(onnx_prediction.labels, expected, reference_logits)
    # The mmseg files themselves (<config>.py + .pth) load too, and give the same map.
    from_pth = Segmenter.from_pretrained(exported['checkpoint']).predict(exported['image'], mode=mode)
    np.testing.assert_array_equal(from_pth.labels, expected)


def test_a_size_pytorch_refuses_is_refused_by_the_onnx_path_too(exported):
    """The ViT's patch embedding asserts multiples of its patch (8); the ONNX graph would floor silently."""
    image = _scene(102, 130)  # larger than the 96x96 windows of slide mode, which then fit it
    assert exported['onnx']['size_multiple'] == [8, 8]
    torch_segmenter = Segmenter.from_pretrained(exported['folder'], backend='torch')
    with pytest.raises(AssertionError, match='divisible by patch size'):  # timm's own check, under ours
        torch_segmenter.backend.run_model(np.zeros((1, 3, 102, 130), np.float32), dict(mode='whole'))
    onnx = Segmenter.from_pretrained(exported['folder'], backend='onnx')
    for segmenter in (torch_segmenter, onnx):
        with pytest.raises(DataError, match="102x130 image cannot run as a whole .* multiples of 8x8 .* mode='slide'"):
            segmenter.predict(image)
    reference = torch_segmenter.logits(image[None], mode='slide')
    np.testing.assert_allclose(onnx.logits(image[None], mode='slide'), reference, atol=1e-4)


def test_a_batch_equals_the_images_one_by_one(exported):
    segmenter = Segmenter.from_pretrained(exported['folder'], backend='onnx')
    images = [_scene(64, 96, seed=s) for s in range(3)] + [_scene(80, 64, seed=9)]
    batch = segmenter.predict(images, batch_size=2)
    assert [p.labels.shape for p in batch] == [(64, 96)] * 3 + [(80, 64)]
    for image, prediction in zip(images, batch):
        alone = segmenter.predict(image)
        np.testing.assert_array_equal(prediction.labels, alone.labels)


def test_tta_averages_the_softmax_of_the_scales(exported):
    segmenter = Segmenter.from_pretrained(exported['folder'], backend='onnx')
    image = _scene(64, 64, seed=5)
    assert segmenter.tta == dict(scales=[0.75, 1.0, 1.25], flip=False)  # the demo config's tta_pipeline
    tta = segmenter.predict(image, tta=True, probabilities=True)
    np.testing.assert_allclose(tta.probabilities.sum(0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(tta.labels, tta.probabilities.argmax(0))
    # Independently: each scale's logits by the torch model, resized back with torch, softmax, averaged.
    model = Segmenter.from_pretrained(exported['folder'], backend='torch')
    expected = 0
    for scale in (0.75, 1.0, 1.25):
        side = int(64 * scale + 0.5)
        scaled = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
        logits = torch.from_numpy(model.logits(scaled[None]))
        logits = torch.nn.functional.interpolate(logits, size=(64, 64), mode='bilinear', align_corners=False)
        expected = expected + logits.softmax(1)[0].numpy() / 3
    np.testing.assert_allclose(tta.probabilities, expected, atol=1e-4)


def test_backend_agreement_equals_an_independent_comparison_of_the_two_models(exported, tmp_path, monkeypatch):
    """backend_agreement (what tools/pipeline.py reports) against the same numbers computed here: the images read
    by OpenCV and normalised with config.json's mean and std, PyTorch's logits from the model's own encode_decode
    (the demo's test mode is whole), ONNX Runtime's from a session of our own, class maps by numpy's argmax. Then
    with ONNX Runtime's logits made to disagree (class 3 raised by 0.05): the disagreement is counted exactly."""
    import onnxruntime as ort
    from cosub_seg.inference import segmenter as segmenter_module
    from cosub_seg.inference.segmenter import backend_agreement, softmax
    paths = []
    for i, (height, width) in enumerate([(96, 160), (64, 64)]):
        paths.append(str(tmp_path / f'scene{i}.png'))
        cv2.imwrite(paths[-1], _scene(height, width, seed=20 + i)[:, :, ::-1])
    pre = read_model_folder(exported['folder']).config['preprocessing']
    mean, std = np.float32(pre['mean']).reshape(1, 3, 1, 1), np.float32(pre['std']).reshape(1, 3, 1, 1)
    session = ort.InferenceSession(exported['onnx']['onnx'], providers=['CPUExecutionProvider'])
    inputs = [(cv2.imread(p)[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) - mean) / std for p in paths]
    expected_logits = [_torch_logits(exported['model'], torch.from_numpy(x)) for x in inputs]
    bump = np.zeros((1, 11, 1, 1), np.float32)
    bump[0, 3] = 0.05

    def independent(raise_class_3):
        onnx_logits = [session.run(None, {'pixel_values': x})[0] + (bump if raise_class_3 else 0) for x in inputs]
        same = [a.argmax(1) == b.argmax(1) for a, b in zip(onnx_logits, expected_logits)]
        return dict(pixel_agreement=sum(int(s.sum()) for s in same) / sum(s.size for s in same),
                    differing_pixels=sum(int((~s).sum()) for s in same), pixels=96 * 160 + 64 * 64,
                    max_abs_diff=max(float(np.abs(a - b).max()) for a, b in zip(onnx_logits, expected_logits)),
                    max_abs_diff_probabilities=max(float(np.abs(softmax(a) - softmax(b)).max())
                                                   for a, b in zip(onnx_logits, expected_logits)))

    found = backend_agreement(exported['folder'], paths)
    assert (found['backends'], found['mode'], found['images']) == (['torch', 'onnx'], 'whole', paths)
    assert [row['pixels'] for row in found['per_image']] == [96 * 160, 64 * 64]
    reference = independent(False)
    assert {k: found[k] for k in ('pixel_agreement', 'differing_pixels', 'pixels')} == {
        k: reference[k] for k in ('pixel_agreement', 'differing_pixels', 'pixels')}
    assert found['pixel_agreement'] >= 0.999 and found['max_abs_diff'] < 1e-4
    # The two PyTorch computations of the logits are not the same calls, so their float32 sums may round apart:
    # 1.9e-6 apart on two threads (equal to 1e-6 on one), against ONNX Runtime's ~1e-5 from PyTorch.
    for key in ('max_abs_diff', 'max_abs_diff_probabilities'):
        assert found[key] == pytest.approx(reference[key], rel=0, abs=5e-6)

    run = segmenter_module.OnnxBackend.run
    monkeypatch.setattr(segmenter_module.OnnxBackend, 'run', lambda self, x: run(self, x) + bump)
    found = backend_agreement(exported['folder'], paths)
    reference = independent(True)
    assert 0 < reference['differing_pixels'] == found['differing_pixels']
    assert found['pixel_agreement'] == reference['pixel_agreement'] < 1
    assert found['max_abs_diff'] == pytest.approx(reference['max_abs_diff'], abs=5e-6)
    assert found['max_abs_diff'] == pytest.approx(0.05, abs=1e-4)
    with pytest.raises(DataError, match='no image'):
        backend_agreement(exported['folder'], [])


def test_both_slide_inferences_visit_the_windows_of_one_function():
    """The ONNX path's windows are the torch path's (tests/test_models_slide.py checks them against mmseg's), from
    the one torch-free function both import."""
    from cosub_seg.models.slide import slide_windows as torch_windows
    from cosub_seg.windows import slide_windows as shared
    assert slide_windows is torch_windows is shared


# ---------------------------------------------------------------------------------------------- without mmcv


BLOCKER = '''
import importlib.abc, sys
BLOCKED = {'mmcv', 'mmseg', 'mmengine', 'torch', 'torchvision', 'timm'}
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in BLOCKED:
            raise ModuleNotFoundError(f'No module named {name!r} (blocked by the test)', name=name)
sys.meta_path.insert(0, Block())
'''


def test_the_onnx_path_imports_and_runs_where_mmcv_cannot_be_imported(exported, tmp_path, python):
    script = BLOCKER + textwrap.dedent(f'''
        try:
            import mmcv  # noqa
            raise SystemExit('mmcv imported')
        except ImportError:
            pass
        import numpy as np
        import cosub_seg
        assert not cosub_seg.HAS_TRAINING_STACK
        from cosub_seg import Segmenter
        segmenter = Segmenter.from_pretrained({exported['folder']!r})  # auto: the folder has model.onnx
        assert segmenter.backend.name == 'onnx'
        np.save({str(tmp_path / 'labels.npy')!r}, segmenter.predict({exported['image']!r}, mode='slide').labels)
        from cosub_seg.cli.segment import main
        main([{exported['folder']!r}, {exported['image']!r}, '--out', {str(tmp_path / 'out')!r}, '--overlay'])
        loaded = sorted(m for m in sys.modules if m.split('.')[0] in BLOCKED)
        assert not loaded, loaded
        print('ok without', sorted(BLOCKED))
    ''')
    run = subprocess.run([python, '-c', script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    assert 'ok without' in run.stdout
    expected = Segmenter.from_pretrained(exported['folder'], backend='onnx').predict(exported['image'], mode='slide')
    np.testing.assert_array_equal(np.load(tmp_path / 'labels.npy'), expected.labels)
    label_file = cv2.imread(str(tmp_path / 'out' / 'labels' / 'scene.png'), cv2.IMREAD_UNCHANGED)
    whole = Segmenter.from_pretrained(exported['folder'], backend='onnx').predict(exported['image'])
    np.testing.assert_array_equal(label_file, whole.labels + 1)  # ADE20k's convention
    assert osp.isfile(tmp_path / 'out' / 'overlays' / 'scene.png')


def test_import_cosub_seg_still_registers_the_training_modules():
    from mmseg.registry import MODELS
    assert cosub_seg.HAS_TRAINING_STACK
    assert MODELS.get('CosubEncoderDecoder') is not None and MODELS.get('TimmSegBackbone') is not None


# ---------------------------------------------------------------------------------------------- the folder


def test_the_model_folder_describes_itself(exported):
    with open(osp.join(exported['folder'], CONFIG_NAME)) as f:
        config = json.load(f)
    assert config['classes'][:2] == ['background', 'digit 0'] and len(config['palette']) == 11
    assert config['architecture'] == dict(type='CosubEncoderDecoder', backbone='deit3_small_patch16_224',
                                          neck='MultiLevelNeck', decode_head='UPerHead')
    assert config['test_mode'] == dict(mode='whole', crop_size=[96, 96], stride=[64, 64])
    assert config['preprocessing']['mean'] == [123.675, 116.28, 103.53]
    assert config['model']['backbone']['init_cfg'] is None
    assert 'SyncBN' not in json.dumps(config['model'])
    assert set(config['files']) == {WEIGHTS_NAME, ONNX_NAME}
    with open(osp.join(exported['folder'], 'README.md')) as f:
        assert f.read().startswith('---\nlibrary_name: cosub_seg\npipeline_tag: image-segmentation\n')
    # The mmseg files stay beside it (the pipeline evaluates them).
    assert osp.isfile(exported['config']) and osp.isfile(exported['checkpoint'])


def test_a_missing_or_mismatched_file_is_named(exported, tmp_path):
    folder = str(tmp_path / 'model')
    shutil.copytree(exported['folder'], folder)
    with open(osp.join(folder, ONNX_NAME), 'ab') as f:
        f.write(b'\0')
    with pytest.raises(DataError, match=f'{folder}/model.onnx does not match .*config.json'):
        Segmenter.from_pretrained(folder, backend='onnx')
    shutil.copy(osp.join(exported['folder'], ONNX_NAME), osp.join(folder, ONNX_NAME))
    Segmenter.from_pretrained(folder, backend='onnx')  # restored: fine
    import os
    os.remove(osp.join(folder, WEIGHTS_NAME))
    with pytest.raises(MissingFileError, match=f'{folder}/model.safetensors does not exist'):
        Segmenter.from_pretrained(folder, backend='torch')
    with open(osp.join(folder, CONFIG_NAME), 'w') as f:
        f.write('{"format": ')
    with pytest.raises(DataError, match=f'{folder}/config.json is not valid JSON'):
        Segmenter.from_pretrained(folder)
    with open(osp.join(folder, CONFIG_NAME), 'w') as f:
        json.dump(dict(architecture='deit3_small_patch16_224', num_classes=10), f)  # a timm backbone folder
    with pytest.raises(ConfigError, match='config.json is not a cosub_seg.segmentor config'):
        Segmenter.from_pretrained(folder)
    os.remove(osp.join(folder, CONFIG_NAME))
    with pytest.raises(MissingFileError, match=f'{folder}/config.json does not exist'):
        Segmenter.from_pretrained(folder)


def test_weights_that_do_not_fit_the_config_are_refused(exported, tmp_path):
    from safetensors.torch import load_file, save_file

    from cosub_seg.inference.model_folder import file_digest
    folder = str(tmp_path / 'model')
    shutil.copytree(exported['folder'], folder)
    weights = osp.join(folder, WEIGHTS_NAME)
    state = load_file(weights)
    state['decode_head.conv_seg.weight'] = state['decode_head.conv_seg.weight'][:5]
    save_file(state, weights)
    with open(osp.join(folder, CONFIG_NAME)) as f:
        config = json.load(f)
    config['files'][WEIGHTS_NAME] = file_digest(weights)  # consistent checksums: only the shapes are wrong
    with open(osp.join(folder, CONFIG_NAME), 'w') as f:
        json.dump(config, f)
    with pytest.raises(ConfigError, match=f'{weights} does not fit .*decode_head.conv_seg.weight'):
        Segmenter.from_pretrained(folder, backend='torch')


def test_a_folder_without_onnx_uses_torch_and_refuses_the_onnx_backend(exported, tmp_path):
    folder = str(tmp_path / 'model')
    shutil.copytree(exported['folder'], folder)
    import os
    os.remove(osp.join(folder, ONNX_NAME))
    with open(osp.join(folder, CONFIG_NAME)) as f:
        config = json.load(f)
    del config['files'][ONNX_NAME]
    with open(osp.join(folder, CONFIG_NAME), 'w') as f:
        json.dump(config, f)
    assert Segmenter.from_pretrained(folder).backend.name == 'torch'
    with pytest.raises(MissingFileError, match='no ONNX export; write it with `python tools/convert_checkpoint.py'):
        Segmenter.from_pretrained(folder, backend='onnx')


# ---------------------------------------------------------------------------------------------- bad images


def test_unreadable_and_truncated_images_are_named(tmp_path):
    path = str(tmp_path / 'cut.jpg')
    ok, data = cv2.imencode('.jpg', _scene(64, 64))
    with open(path, 'wb') as f:
        f.write(data.tobytes()[:len(data) // 2])
    assert cv2.imread(path) is not None  # OpenCV alone decodes it, the missing half grey
    with pytest.raises(DataError, match=f'{path} is corrupt or truncated'):
        read_image(path)
    garbage = str(tmp_path / 'notes.png')
    with open(garbage, 'w') as f:
        f.write('not an image')
    with pytest.raises(DataError, match=f'{garbage} is not an image file'):
        read_image(garbage)
    empty = str(tmp_path / 'empty.png')
    open(empty, 'wb').close()
    with pytest.raises(DataError, match=f'{empty} is empty'):
        read_image(empty)
    (tmp_path / 'nothing').mkdir()
    with pytest.raises(DataError, match='nothing holds no image file'):
        list_images(str(tmp_path / 'nothing'))


def test_grey_rgba_and_16_bit_images_are_converted_as_mmseg_reads_them_with_a_warning(tmp_path):
    rgb = _scene(40, 56)
    cases = {
        'grey.png': cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY),
        'rgba.png': np.dstack([rgb[:, :, ::-1], np.full(rgb.shape[:2], 100, np.uint8)]),
        'deep.png': rgb[:, :, ::-1].astype(np.uint16) * 257 + 3,
    }
    for name, pixels in cases.items():
        path = str(tmp_path / name)
        cv2.imwrite(path, pixels)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            image = read_image(path)
        assert any(issubclass(w.category, ImageConversionWarning) and path in str(w.message) for w in caught), name
        # mmseg's LoadImageFromFile: OpenCV's IMREAD_COLOR, then BGR -> RGB in the model's preprocessor
        np.testing.assert_array_equal(image, cv2.imread(path, cv2.IMREAD_COLOR)[:, :, ::-1])
        assert image.shape == (40, 56, 3) and image.dtype == np.uint8


@pytest.mark.gpu
def test_the_torch_backend_on_cuda_gives_the_cpu_s_class_map(exported):
    image = _scene(96, 160, seed=7)
    cpu = Segmenter.from_pretrained(exported['folder'], backend='torch')
    cuda = Segmenter.from_pretrained(exported['folder'], backend='torch', device='cuda')
    reference = cpu.logits(image[None])
    flags = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # fp32 means fp32
    try:
        np.testing.assert_allclose(cuda.logits(image[None]), reference, atol=1e-4)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = flags
    _assert_same_classes_but_ties(cuda.predict([image, image])[1].labels, cpu.predict(image).labels, reference[0])


# Tiny variants of the six families of configs/seg/ (ANY_SIZE_KWARGS of models/seg_backbone.py makes them take any
# size in PyTorch); UperNet at 32 channels.
FAMILIES = {
    'deit3': dict(arch='deit3_small_patch16_224', img_size=128, model_kwargs=dict(embed_dim=64, depth=6, num_heads=2)),
    'xcit': dict(arch='xcit_nano_12_p16_224', model_kwargs=dict(depth=6)),
    'convnext': dict(arch='convnext_atto'),
    'regnety': dict(arch='regnety_002'),
    'pit': dict(arch='pit_ti_224', img_size=128),
    'swin': dict(arch='swin_tiny_patch4_window7_224', img_size=128,
                 model_kwargs=dict(embed_dim=32, depths=(1, 1, 1, 1), num_heads=(1, 2, 4, 8))),
}


# The demo's ViT is exported by the fast tests; CI adds ConvNeXt (hierarchical, convolutional). The other families
# take 30 s to 4 min each on two cores (Swin the slowest), too long for CI's budget: COSUB_SEG_ONNX_ALL_FAMILIES=1
# runs them (all six passed on 2026-11-27).
CI_FAMILIES = ('convnext',)
ALL_FAMILIES = os.environ.get('COSUB_SEG_ONNX_ALL_FAMILIES') == '1'


@pytest.mark.slow
@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_family_exports_with_dynamic_height_and_width(family, tmp_path):
    """The export of every backbone family keeps height and width dynamic and gives PyTorch's logits at the size it
    was traced at and another."""
    if family not in CI_FAMILIES and not ALL_FAMILIES:
        pytest.skip(f'{family}: 30 s to 4 min of ONNX export; COSUB_SEG_ONNX_ALL_FAMILIES=1 runs it')
    from mmengine.config import ConfigDict
    from mmengine.registry import DefaultScope
    from mmseg.registry import MODELS

    from cosub_seg.convert import _export_and_check
    backbone = dict(type='TimmSegBackbone', **FAMILIES[family])
    with DefaultScope.overwrite_default_scope('mmseg'):
        built = MODELS.build(ConfigDict(backbone)).eval()
    with torch.no_grad():
        channels = [f.shape[1] for f in built(torch.randn(1, 3, 128, 128))]
    cfg = dict(type='CosubEncoderDecoder', data_preprocessor=dict(type='SegDataPreProcessor'), backbone=backbone,
               decode_head=dict(type='UPerHead', in_channels=channels, in_index=list(range(len(channels))),
                                pool_scales=(1, 2, 3, 6), channels=32, num_classes=5, norm_cfg=dict(type='BN'),
                                align_corners=False), test_cfg=dict(mode='whole'))
    if built.is_plain:
        cfg['neck'] = dict(type='MultiLevelNeck', in_channels=channels, out_channels=channels[0],
                           scales=[4, 2, 1, 0.5])
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(ConfigDict(cfg)).eval()
    entry = _export_and_check(model, str(tmp_path / 'model.onnx'), 18, True, [(128, 128), (160, 224)], 1e-4)
    assert entry['dynamic_size'] and entry['max_abs_diff'] < 1e-4
