"""tools/pipeline.py (cli/pipeline.py) end to end on the digits at a tiny budget, slow: both report files, their
numbers, the pictures, the exports, and the last stage (model.onnx, tools/segment.py with ONNX Runtime on the
pictures' scenes, ONNX Runtime vs PyTorch on them; skipped with --no-onnx in the second run)."""
import glob
import json
import os.path as osp

import cv2
import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cosub_seg.cli.pipeline import read_test_metrics
from cosub_seg.registry import MODELS

from helpers import png_size, scalars, own_prediction

SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'  # conftest.py's PIPELINE_SEG_CONFIG
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
REPORT_KEYS = {'headline', 'top1', 'top5', 'top1_at_epoch', 'mIoU', 'aAcc', 'mAcc', 'per_class_iou',
               'confusion_matrix', 'wall_time_s', 'configs', 'checkpoints', 'exports', 'pictures', 'notes',
               'paths_relative_to', 'commands', 'environment', 'setup', 'random_init', 'probes', 'onnx'}


CLASSES = ['background'] + [f'digit {i}' for i in range(10)]


# pipeline_run, the run most tests here check, is a session fixture of conftest.py: tests/test_inference.py takes its
# exported segmentor and model.onnx too, when the session runs both files.


@pytest.mark.slow
def test_report_files_hold_the_expected_keys_and_numbers(pipeline_run):
    report, work_dir = pipeline_run['report'], pipeline_run['work_dir']
    assert set(report) == REPORT_KEYS
    assert set(report['wall_time_s']) == {'pretrain', 'probes', 'finetune', 'export', 'evaluate', 'pictures', 'total',
                                          'finetune_random_init', 'evaluate_random_init', 'onnx'}
    # top-1 is the pretraining's validation at the epoch of the checkpoint handed over (epoch 1 of 1).
    val = [r for r in scalars(osp.join(work_dir, 'pretrain')) if 'accuracy/top1' in r]
    # No absolute paths: files of a work dir outside the repository are relative to the report's folder.
    assert report['paths_relative_to'] == ("the repository root (configs) and this report's folder (the files of "
                                           'the run)')
    assert report['checkpoints']['pretrain'] == osp.join('pretrain', 'epoch_1.pth')
    assert (report['top1'], report['top1_at_epoch']) == (val[-1]['accuracy/top1'], 1)
    assert report['checkpoints']['seg'] == osp.join('seg', 'iter_2.pth')
    assert report['configs']['seg'] == SEG_CONFIG and report['notes'] == []
    assert not [line for line in json.dumps(report, indent=1).splitlines() if '"/' in line]
    # The fine-tuning started from that checkpoint.
    used = Config.fromfile(osp.join(work_dir, report['configs']['seg_as_run']))
    assert used.model.backbone.init_cfg.checkpoint == osp.join(work_dir, report['checkpoints']['pretrain'])
    assert list(report['per_class_iou']) == CLASSES
    ious = np.array(list(report['per_class_iou'].values()), dtype=float)
    assert report['mIoU'] == pytest.approx(np.nanmean(ious), abs=0.01)
    # The confusion matrix counts every labelled pixel of the 4 validation scenes once (0 = unlabeled, ignored),
    # and its IoUs are the reported ones.
    counts = np.array(report['confusion_matrix']['counts'])
    labels = [cv2.imread(p, cv2.IMREAD_UNCHANGED)
              for p in sorted(glob.glob(osp.join(pipeline_run['scenes'], 'annotations/validation/*.png')))]
    assert counts.shape == (11, 11) and len(labels) == 4
    assert counts.sum() == sum(int((label != 0).sum()) for label in labels)
    np.testing.assert_array_equal(counts.sum(axis=1), [sum(int((label == c + 1).sum()) for label in labels)
                                                       for c in range(11)])
    diag = np.diag(counts).astype(float)
    union = counts.sum(0) + counts.sum(1) - diag
    from_matrix = np.divide(diag * 100, union, out=np.full(11, np.nan), where=union > 0)
    np.testing.assert_allclose(from_matrix, ious, atol=0.006)
    # report.md shows the numbers and links every picture.
    with open(osp.join(work_dir, 'report.md')) as f:
        markdown = f.read()
    assert f'mIoU {report["mIoU"]:.2f}' in markdown and f'val top-1 {report["top1"]:.2f} %' in markdown
    pictures = report['pictures']
    for path in [pictures['pretrain_curves'], pictures['finetune_curves'], pictures['finetune_random_init_curves'],
                 pictures['per_class_iou'],
                 pictures['confusion_matrix'], *pictures['overlays']]:
        assert f']({path})' in markdown
    assert 'mIoU' in pipeline_run['stdout'] and 'report.md' in pipeline_run['stdout']
    # The first lines say what was done and what came of it, the gap to random initialisation included.
    random_init = report['random_init']
    eval_random = read_test_metrics(osp.join(work_dir, 'eval_random_init'))
    assert random_init['mIoU'] == eval_random['mIoU']
    assert random_init['gap'] == pytest.approx(report['mIoU'] - random_init['mIoU'], abs=1e-4)
    assert random_init['checkpoint'] == osp.join('seg_random_init', 'iter_2.pth')
    assert Config.fromfile(osp.join(work_dir, random_init['config_as_run'])).model.backbone.init_cfg is None
    assert markdown.splitlines()[2:6] == report['headline']
    assert report['headline'][0].startswith('Pretrained deit3_small_patch16_224 (') and (
        f'validation top-1 {report["top1"]:.2f} %' in report['headline'][0])
    assert report['headline'][1].startswith('Frozen, its avgpool features classify the val images of ')
    assert f'for 2 iterations from that backbone: mIoU {report["mIoU"]:.2f}' in report['headline'][2]
    assert f'reaches mIoU {random_init["mIoU"]:.2f}' in report['headline'][3]
    assert '\n'.join(report['headline']) in pipeline_run['stdout']
    # Commands as run from the repository root: no absolute path (the work dir is outside it: '../'), the
    # interpreter of the repository's .venv by its relative path.
    for command in report['commands']:
        assert not [word for word in command['command'].split() if word.startswith('/') or '=/' in word]


def _weighted_knn_top1(train, train_labels, val, val_labels, k, temperature=0.07):
    """DINO's kNN top-1 in %, computed the plain way: cosine similarities, the k nearest, exp(sim / T) per class."""
    train = torch.nn.functional.normalize(train.double(), dim=1)
    val = torch.nn.functional.normalize(val.double(), dim=1)
    right = 0
    for feature, label in zip(val, val_labels):
        sims = train @ feature
        nearest = sims.argsort(descending=True)[:k]
        votes = torch.zeros(int(train_labels.max()) + 1, dtype=torch.double)
        for j in nearest:
            votes[train_labels[j]] += torch.exp(sims[j] / temperature)
        right += int(votes.argmax() == label)
    return right * 100 / len(val_labels)


@pytest.mark.slow
def test_probes_of_the_run_are_the_knn_and_linear_probe_of_the_checkpoint_handed_over(pipeline_run, digits_root):
    """report.json's probes are those of compare.json, and its kNN top-1 (k = 20) is a brute-force kNN on the class
    tokens of the pretraining checkpoint handed to the fine-tuning, over the pretraining data."""
    from cosub_seg.cli.compare_backbones import split_batches
    report, work_dir = pipeline_run['report'], pipeline_run['work_dir']
    probes = report['probes']
    with open(osp.join(work_dir, 'probes', 'compare.json')) as f:
        compared = json.load(f)
    result = compared['backbones']['pretrained']
    # the demo backbone has no class token: the probes read the average of its patch tokens
    assert probes['features'] == ['avgpool'] and probes['seeds'] == [0] == compared['seeds']
    assert probes['knn_top1'] == {k: pytest.approx(v['top1'], abs=1e-4) for k, v in result['knn'].items()}
    assert probes['linear_top1'] == pytest.approx(result['linear']['runs'][0]['top1'], abs=1e-4)
    assert probes['table'] == osp.join('probes', 'compare.md')
    assert osp.samefile(result['checkpoint'], osp.join(work_dir, report['checkpoints']['pretrain']))
    cfg = Config.fromfile(osp.join(work_dir, report['configs']['pretrain_as_run']))
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        model = MODELS.build(cfg.model).eval()
    model.load_state_dict(torch.load(osp.join(work_dir, report['checkpoints']['pretrain']), map_location='cpu',
                                     weights_only=True)['state_dict'])
    feats = {}
    with torch.no_grad():
        for split in ('train', 'val'):
            batches = list(split_batches(cfg, model, digits_root, split, 256))
            feats[split] = (torch.cat([model.backbone.forward_features(x).mean(dim=1) for x, _ in batches]),
                            torch.cat([y for _, y in batches]))
    # Within one of the 360 val images: after one epoch many votes are near ties, and features computed at another
    # batch size (256 here, 64 there) differ in the last bits.
    n_val = len(feats['val'][1])
    assert n_val == 360
    assert probes['knn_top1']['20'] == pytest.approx(_weighted_knn_top1(*feats['train'], *feats['val'], k=20),
                                                     abs=100 / n_val + 1e-3)
    # Its headline line and its row in report.md.
    with open(osp.join(work_dir, 'report.md')) as f:
        markdown = f.read()
    assert f'k=20 {probes["knn_top1"]["20"]:.2f} %' in report['headline'][1]
    assert f'linear-probe top-1 {probes["linear_top1"]:.2f} %' in report['headline'][1]
    assert '| frozen-backbone probes (`tools/compare_backbones.py`) |' in markdown


@pytest.mark.slow
def test_pictures_are_pngs_of_the_expected_size(pipeline_run):
    pictures, work_dir = pipeline_run['report']['pictures'], pipeline_run['work_dir']
    assert png_size(osp.join(work_dir, pictures['pretrain_curves'])) == (1500, 400)
    assert png_size(osp.join(work_dir, pictures['finetune_curves'])) == (1500, 400)
    assert png_size(osp.join(work_dir, pictures['finetune_random_init_curves'])) == (1500, 400)
    assert png_size(osp.join(work_dir, pictures['per_class_iou'])) == (800, 375)  # 11 classes: 0.25 * 11 + 1 in
    assert png_size(osp.join(work_dir, pictures['confusion_matrix'])) == (900, 800)
    assert len(pictures['overlays']) == 2
    for path in pictures['overlays']:
        # image | truth | prediction | errors of a 96x96 scene at 4x, header and legend (test_visualization.py)
        assert png_size(osp.join(work_dir, path)) == (4 * 384 + 3 * 8, 28 + 384 + 64)


@pytest.mark.slow
def test_onnx_stage_segments_the_pictures_scenes_and_agrees_with_pytorch(pipeline_run):
    """The last stage: model.onnx in the exported model folder, tools/segment.py's label files and overlays of the
    scenes the pictures show, and the agreement of ONNX Runtime with PyTorch on them, in report.json, report.md and
    agreement.json; its two commands recorded."""
    from cosub_seg.inference import Segmenter
    from cosub_seg.inference.model_folder import read_model_folder
    report, work_dir = pipeline_run['report'], pipeline_run['work_dir']
    onnx = report['onnx']
    assert onnx['status'] == 'done' and onnx['mode'] == 'whole'
    assert onnx['pixel_agreement'] >= 0.99 and onnx['max_abs_diff'] < 1e-3
    assert onnx['pixels'] == 2 * 96 * 96 and onnx['export_seconds'] > 0 and onnx['segment_seconds'] > 0
    folder = osp.join(work_dir, 'export', 'segmentor')
    assert onnx['model'] == osp.join('export', 'segmentor', 'model.onnx')
    assert read_model_folder(folder).onnx['dynamic_size'] is True
    # The scenes of the prediction pictures (--num-overlays 2), copied from the validation images.
    names = [osp.splitext(osp.basename(p))[0] for p in report['pictures']['overlays']]
    assert [osp.splitext(osp.basename(p))[0] for p in onnx['images']] == names
    assert [osp.splitext(osp.basename(p))[0] for p in onnx['overlays']] == names
    segmenter = Segmenter.from_pretrained(folder, backend='onnx')
    for image, overlay in zip(onnx['images'], onnx['overlays']):
        name = osp.basename(image)
        with open(osp.join(work_dir, image), 'rb') as copy, \
                open(osp.join(pipeline_run['scenes'], 'images', 'validation', name), 'rb') as original:
            assert copy.read() == original.read()
        assert png_size(osp.join(work_dir, overlay)) == (96, 96)
        labels = cv2.imread(osp.join(work_dir, 'onnx_segment', 'labels', osp.splitext(name)[0] + '.png'),
                            cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(labels, segmenter.predict(osp.join(work_dir, image)).labels + 1)
    with open(osp.join(work_dir, onnx['agreement'])) as f:
        agreement = json.load(f)
    assert agreement['pixel_agreement'] == onnx['pixel_agreement'] and len(agreement['per_image']) == 2
    with open(osp.join(work_dir, 'report.md')) as f:
        markdown = f.read()
    assert '## ONNX Runtime' in markdown and all(f']({path})' in markdown for path in onnx['overlays'])
    stages = {c['stage']: c['command'] for c in report['commands']}
    assert stages['ONNX export'].endswith(' -m cosub_seg.cli.convert_checkpoint onnx '
                                          f'{osp.relpath(folder, ROOT)}')
    assert ' --overlay --backend onnx' in stages['ONNX segmentation']
    assert 'onnx         ONNX Runtime vs PyTorch on 2 validation scene(s)' in pipeline_run['stdout']


@pytest.mark.slow
def test_tensorboard_switch_logs_both_stages(pipeline_run):
    for stage in ('pretrain', 'seg'):
        assert glob.glob(osp.join(pipeline_run['work_dir'], stage, '*', 'vis_data', 'events.out.tfevents.*'))
        assert glob.glob(osp.join(pipeline_run['work_dir'], stage, '*', 'vis_data', 'scalars.json'))


@pytest.mark.slow
def test_exported_backbone_of_the_run_gives_the_same_logits_in_timm(pipeline_run):
    report = pipeline_run['report']
    work_dir = pipeline_run['work_dir']
    cfg = Config.fromfile(osp.join(work_dir, report['configs']['pretrain_as_run']))
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        ours = MODELS.build(cfg.model).eval()
    state = torch.load(osp.join(work_dir, report['checkpoints']['pretrain']), map_location='cpu',
                       weights_only=True)['state_dict']
    ours.load_state_dict(state)
    weights = osp.join(work_dir, report['exports']['backbone']['weights'])
    theirs = timm.create_model('deit3_small_patch16_224', pretrained=True, num_classes=10,
                               **cfg.model.model_kwargs,
                               pretrained_cfg_overlay=dict(file=weights, num_classes=10)).eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(theirs(x), ours(x, mode='tensor'), rtol=0, atol=0)


@pytest.mark.slow
def test_mmseg_inference_api_runs_the_exported_segmentor_of_the_run(pipeline_run):
    """README and report.md hand the segmentor export to mmseg's init_model: inference_model and MMSegInferencer give
    the map the model's own test_step gives (CheckSegAnnotation stayed in the test pipeline, LoadAnnotations not)."""
    from mmseg.apis import MMSegInferencer, inference_model, init_model
    work_dir, exported = pipeline_run['work_dir'], pipeline_run['report']['exports']['segmentor']
    config, checkpoint = osp.join(work_dir, exported['config']), osp.join(work_dir, exported['checkpoint'])
    assert 'work_dir' not in Config.fromfile(config)  # not the training run's
    image = sorted(glob.glob(osp.join(pipeline_run['scenes'], 'images', 'validation', '*.jpg')))[0]
    model = init_model(config, checkpoint, device='cpu')
    expected = own_prediction(model, image)
    prediction = inference_model(model, image).pred_sem_seg.data
    assert prediction.shape == (1, 96, 96) and torch.equal(prediction, expected)
    inferencer = MMSegInferencer(model=config, weights=checkpoint, device='cpu')
    assert torch.equal(inferencer(image, return_datasamples=True).pred_sem_seg.data, expected)


@pytest.mark.slow
def test_a_run_shorter_than_the_logger_interval_still_writes_its_report(short_pipeline_run):
    """max_iters 2 at mmseg's logger interval of 50: no training records, so no fine-tuning curves; the report says
    why and keeps everything else. The run (conftest.py's ``short_pipeline_run``: 8 training and 2 validation
    scenes, 1 overlay, --no-probes, --no-onnx, no logger interval option) goes on beside ``pipeline_run``."""
    work_dir = short_pipeline_run['work_dir']
    proc = short_pipeline_run['result']()
    with open(osp.join(work_dir, 'report.json')) as f:
        report = json.load(f)
    assert set(report) == REPORT_KEYS and report['mIoU'] is not None
    assert report['probes'] is None and 'probes' not in report['wall_time_s'] and len(report['headline']) == 3
    assert report['onnx']['status'] == 'skipped' and 'onnx' not in report['wall_time_s']
    assert not osp.exists(osp.join(work_dir, 'export', 'segmentor', 'model.onnx'))
    assert 'finetune_curves' not in report['pictures'] and 'pretrain_curves' in report['pictures']
    [note] = report['notes']
    assert note == ('no segmentation fine-tuning curves: the run in seg/ logged no training records (loss or lr). A '
                    'run shorter than its logger interval (default_hooks.logger.interval = 50) logs none: give a '
                    'smaller one, e.g. --seg-options default_hooks.logger.interval=1')
    with open(osp.join(work_dir, 'report.md')) as f:
        markdown = f.read()
    assert f'Note: {note}' in markdown and '![pretraining](pictures/pretrain_curves.png)' in markdown
    assert '![fine-tuning]' not in markdown
    assert f'note: {note}' in proc.stdout
