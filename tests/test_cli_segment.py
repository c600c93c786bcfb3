"""cosub_seg/cli/segment.py (tools/segment.py) on the demo segmentor with random weights (its model folder, the
torch backend; the ONNX backend runs the same tool in tests/test_inference.py): a folder holding one corrupt image
(and one of a size the model refuses) gets every other result written and the bad files named, the label files read
back by mmseg's LoadAnnotations (reduce_zero_label, our datasets' reading) give the prediction, the overlays are the
blend of image and palette; an empty folder and a missing input are one-line errors; a video gives one label file
per segmented frame and an overlay video. Fast (~15 s)."""
import os
import os.path as osp

import cv2
import numpy as np
import pytest

from cosub_seg.cli.segment import main
from cosub_seg.inference import Segmenter

from helpers import export_demo_segmentor


@pytest.fixture(scope='module')
def model_folder(tmp_path_factory):
    return export_demo_segmentor(str(tmp_path_factory.mktemp('segment')))['folder']


def _picture(height, width, seed):
    rng = np.random.RandomState(seed)
    small = rng.randint(0, 256, (height // 16 + 1, width // 16 + 1, 3)).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _read_back_labels(path):
    """A label file as our datasets read it: mmseg's LoadAnnotations with reduce_zero_label (0 -> 255, i -> i - 1)."""
    from mmseg.datasets.transforms import LoadAnnotations
    loaded = LoadAnnotations(reduce_zero_label=True)(dict(seg_map_path=path, reduce_zero_label=True, seg_fields=[]))
    return loaded['gt_seg_map']


def test_a_folder_with_a_corrupt_image_gets_every_other_result_and_the_bad_file_named(model_folder, tmp_path,
                                                                                      capsys):
    images = tmp_path / 'images'
    (images / 'a' / 'b').mkdir(parents=True)
    pictures = {'a/one.jpg': _picture(64, 96, 0), 'a/b/two.png': _picture(80, 64, 1), 'three.png': _picture(64, 64, 2)}
    for name, rgb in pictures.items():
        cv2.imwrite(str(images / name), rgb[:, :, ::-1])
    ok, data = cv2.imencode('.jpg', _picture(64, 64, 3))
    broken = images / 'a' / 'broken.jpg'
    broken.write_bytes(data.tobytes()[:len(data) // 3])
    odd = images / 'odd.png'  # 70x90: not a multiple of the ViT's patch (8), which whole-image inference refuses
    cv2.imwrite(str(odd), _picture(70, 90, 4))
    out = tmp_path / 'out'
    with pytest.raises(SystemExit) as exit_info:
        main([model_folder, str(images), '--out', str(out), '--overlay', '--batch-size', '2'])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err
    assert f'skipped {broken}' in err and f'skipped {odd}: a 70x90 image cannot run as a whole' in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f'ValueError: 2 of 5 images could not be read or segmented and were skipped (every other '
                           f'result was written): {broken} (')
    assert f'; {odd} (DataError: a 70x90 image' in last
    segmenter = Segmenter.from_pretrained(model_folder, backend='torch')
    palette = np.asarray(segmenter.palette, np.float32)
    for name, rgb in pictures.items():
        stem = osp.splitext(name)[0] + '.png'
        labels = segmenter.predict(str(images / name)).labels
        np.testing.assert_array_equal(_read_back_labels(str(out / 'labels' / stem)), labels)
        overlay = cv2.imread(str(out / 'overlays' / stem))[:, :, ::-1]
        decoded = cv2.imread(str(images / name))[:, :, ::-1].astype(np.float32)
        expected = np.floor(0.5 * decoded + 0.5 * palette[labels] + 0.5)
        assert np.abs(overlay - expected).max() <= 1  # float rounding of the blend
    assert not (out / 'labels' / 'a' / 'broken.png').exists()
    assert sorted(osp.relpath(osp.join(d, f), out / 'labels') for d, _, fs in os.walk(out / 'labels') for f in fs) == \
        ['a/b/two.png', 'a/one.png', 'three.png']


def test_an_empty_folder_and_a_missing_input_are_one_line_errors(model_folder, tmp_path, capsys):
    (tmp_path / 'empty' / 'sub').mkdir(parents=True)
    (tmp_path / 'empty' / 'sub' / 'notes.txt').write_text('no pictures here')
    with pytest.raises(SystemExit):
        main([model_folder, str(tmp_path / 'empty'), '--out', str(tmp_path / 'out')])
    assert capsys.readouterr().err.strip() == (
        f'ValueError: {tmp_path / "empty"} holds no image file (looked recursively for .jpg, .jpeg, .png, .bmp, '
        '.tif, .tiff, .webp)')
    with pytest.raises(SystemExit):
        main([model_folder, str(tmp_path / 'nowhere.jpg')])
    assert 'nowhere.jpg does not exist' in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([str(tmp_path / 'empty'), str(tmp_path / 'empty')])
    assert capsys.readouterr().err.startswith(f'FileNotFoundError: {tmp_path / "empty" / "config.json"} does not exist')


def test_one_image_with_tta(model_folder, tmp_path):
    path = str(tmp_path / 'grey.png')
    cv2.imwrite(path, cv2.cvtColor(_picture(64, 64, 4), cv2.COLOR_RGB2GRAY))
    result = main([model_folder, path, '--out', str(tmp_path / 'out'), '--tta'])
    assert result['written'] == 1 and result['kind'] == 'image'
    expected = Segmenter.from_pretrained(model_folder, backend='torch').predict(path, tta=True).labels
    np.testing.assert_array_equal(_read_back_labels(str(tmp_path / 'out' / 'labels' / 'grey.png')), expected)


def test_a_video_gives_a_label_file_per_segmented_frame_and_an_overlay_video(model_folder, tmp_path):
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 10, (96, 64))
    if not writer.isOpened():
        pytest.skip('this OpenCV writes no mp4v video')
    for i in range(5):
        writer.write(_picture(64, 96, 10 + i)[:, :, ::-1])
    writer.release()
    out = tmp_path / 'out'
    result = main([model_folder, video, '--out', str(out), '--overlay', '--every', '2', '--batch-size', '2'])
    assert result['kind'] == 'video' and result['written'] == 3
    # The frames as OpenCV decodes them, segmented one by one.
    capture = cv2.VideoCapture(video)
    frames = [capture.read()[1][:, :, ::-1] for _ in range(5)]
    segmenter = Segmenter.from_pretrained(model_folder, backend='torch')
    assert sorted(os.listdir(out / 'labels' / 'clip')) == ['frame_000000.png', 'frame_000002.png', 'frame_000004.png']
    for i in (0, 2, 4):
        np.testing.assert_array_equal(_read_back_labels(str(out / 'labels' / 'clip' / f'frame_{i:06d}.png')),
                                      segmenter.predict(np.ascontiguousarray(frames[i])).labels)
    overlay = cv2.VideoCapture(str(out / 'overlays' / 'clip.mp4'))
    assert int(overlay.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
