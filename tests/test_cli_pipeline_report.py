"""cosub_seg/cli/pipeline_report.py: the pipeline's report structure, its JSON keys, its headline and the lines of
its Markdown, on values written in the test (the ONNX section from its JSON: done, failed, skipped); and the report
cli/pipeline.py writes with its stages replaced by fakes (no machine path in it or in the commands it prints; the
ONNX stage's two commands, --no-onnx, a failing ONNX export that leaves the report whole and exits with status 1).
The pipeline's end-to-end run is in the slow pipeline tests."""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import textwrap

import pytest

from cosub_seg.cli.pipeline_report import (Checkpoints, Configs, ConfusionMatrix, OnnxCheck, PipelineReport, Probes,
                                           RandomInit, Setup)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def report(**changes):
    fields = dict(
        top1=93.6111, top5=99.4, top1_at_epoch=25, mIoU=41.236, aAcc=90.0, mAcc=50.5,
        per_class_iou={'background': 95.0, 'digit 0': 12.345},
        confusion_matrix=ConfusionMatrix(classes=['background', 'digit 0'], counts=[[9, 1], [2, 3]]),
        wall_time_s=dict(pretrain=140.4, finetune=484.0, export=1.2, evaluate=13.0, pictures=2.3, total=650.0),
        configs=Configs('configs/pretrain/p.py', 'pretrain/p.py', 'configs/seg/s.py', 'seg/s.py', [], ['a=1']),
        checkpoints=Checkpoints('pretrain/epoch_25.pth', 'last', 'seg/iter_2000.pth'),
        exports=dict(backbone=dict(weights='export/backbone/model.safetensors', config='export/backbone/config.json',
                                   weights_kind='EMA'),
                     segmentor=dict(config='export/segmentor/s.py', checkpoint='export/segmentor/s.pth')),
        paths_relative_to='the repository root',
        pictures=dict(per_class_iou='pictures/per_class_iou.png', overlays=['pictures/overlays/a.png']),
        commands=[dict(stage='pretraining', command='python -m cosub_seg.cli.pretrain p.py')],
        environment=dict(python='3.11.7', torch='2.14.1'),
    )
    fields.update(changes)
    return PipelineReport(**fields)


def test_json_has_the_report_keys_and_the_nested_values():
    data = json.loads(json.dumps(report().to_json()))
    assert set(data) == {'headline', 'top1', 'top5', 'top1_at_epoch', 'mIoU', 'aAcc', 'mAcc', 'per_class_iou',
                         'confusion_matrix', 'wall_time_s', 'configs', 'checkpoints', 'exports', 'pictures', 'notes',
                         'paths_relative_to', 'commands', 'environment', 'setup', 'random_init', 'probes', 'onnx'}
    assert data['confusion_matrix'] == dict(classes=['background', 'digit 0'], counts=[[9, 1], [2, 3]],
                                            rows='ground truth', columns='prediction')
    assert data['checkpoints'] == dict(pretrain='pretrain/epoch_25.pth', pretrain_choice='last',
                                       seg='seg/iter_2000.pth')
    assert data['configs']['seg_options'] == ['a=1'] and data['notes'] == []


def test_markdown_states_the_numbers_to_two_decimals_and_links_what_was_drawn():
    lines = report().markdown().splitlines()
    assert ('| pretraining (cosub) | `configs/pretrain/p.py` | val top-1 93.61 %, top-5 99.40 % (epoch 25) | 140 s |'
            in lines)
    assert '| evaluation of the exported segmentor | | mIoU 41.24, mAcc 50.50, aAcc 90.00 | 13 s |' in lines
    assert '| export, pictures | | | 4 s |' in lines  # 1.2 + 2.3 s
    assert '| digit 0 | 12.35 |' in lines and '![a.png](pictures/overlays/a.png)' in lines
    assert not any(line.startswith('![pretraining]') or line == '## Confusion matrix' for line in lines)  # not drawn
    note = 'no cosub pretraining curves: the run logged no training records'
    with_note = report(notes=[note], top1=None).markdown().splitlines()
    assert f'Note: {note}' in with_note
    assert any(line.startswith('| pretraining (cosub) |') and 'val top-1 - %' in line for line in with_note)


def test_summary_names_the_report_and_the_totals():
    text = report().summary('work_dirs/demo')
    assert 'report       work_dirs/demo/report.md (pictures in work_dirs/demo/pictures/)' in text
    assert 'per-class IoU: background 95.0, digit 0 12.3' in text and 'total        650 s' in text


def test_headline_says_what_was_done_and_what_it_means():
    setup = Setup(backbone='deit3_small_patch16_224 (depth=6)', submodels=2, pretrain_data='ImageFolderDataset '
                  '(data/digits)', pretrain_length='25 epochs', segmentor='UperNet',
                  seg_data='DigitScenesDataset (data/digit_scenes)', seg_length='2000 iterations',
                  eval_split='validation')
    assert report(setup=setup).headline() == [
        'Pretrained deit3_small_patch16_224 (depth=6) with cosub (k=2) on ImageFolderDataset (data/digits) for 25 '
        'epochs: validation top-1 93.61 % (epoch 25, the checkpoint handed over).',
        'Fine-tuned UperNet on DigitScenesDataset (data/digit_scenes) for 2000 iterations from that backbone: mIoU '
        '41.24 on the validation images (weakest class digit 0: 12.35 IoU).',
        'Not compared with random initialisation (--compare-random-init measures what pretraining adds; it doubles '
        'the fine-tuning time).']
    random_init = RandomInit(mIoU=30.0, aAcc=80.0, mAcc=40.0, per_class_iou={'background': 90.0, 'digit 0': 2.0},
                             gap=11.236, config_as_run='seg_random_init/s.py',
                             checkpoint='seg_random_init/iter_2000.pth')
    measured = report(setup=setup, random_init=random_init)
    assert measured.headline()[2] == ('From random initialisation the same fine-tuning reaches mIoU 30.00: '
                                      'pretraining adds +11.24 mIoU.')
    lines = measured.markdown().splitlines()
    assert lines[:5] == ['# cosub_seg pipeline report', '', *measured.headline()[:3]]
    assert '| digit 0 | 12.35 | 2.00 | +10.35 |' in lines
    assert any(line.startswith('| fine-tuning and evaluation from random initialisation |') and
               'mIoU 30.00 (pretraining: +11.24)' in line for line in lines)
    assert measured.summary('work_dirs/demo').splitlines()[2:5] == measured.headline()
    assert json.loads(json.dumps(measured.to_json()))['random_init']['gap'] == 11.236
    worse = RandomInit(**dict(random_init.__dict__, gap=-1.5))
    assert report(random_init=worse).headline()[2].endswith(': pretraining costs 1.50 mIoU.')
    # Without the setup (configs unreadable): general words, the same numbers.
    assert report().headline()[0] == ('Pretrained the backbone with cosub: validation top-1 93.61 % (epoch 25, the '
                                      'checkpoint handed over).')


def test_probes_get_a_headline_line_a_table_row_and_a_summary_line():
    probes = Probes(data='data/digits', features=['cls'], knn_top1={'10': 94.7222, '20': 94.4444, '100': 93.8889},
                    linear_top1=95.0, linear_top1_std=0.0, seeds=[0], table='work_dirs/demo/probes/compare.md')
    measured = report(probes=probes, wall_time_s=dict(report().wall_time_s, probes=12.6))
    words = 'kNN top-1 k=10 94.72 %, k=20 94.44 %, k=100 93.89 %; linear-probe top-1 95.00 %'
    assert measured.headline()[1] == f'Frozen, its cls features classify the val images of data/digits at {words}.'
    assert measured.headline()[0] == report().headline()[0] and measured.headline()[2:] == report().headline()[1:]
    lines = measured.markdown().splitlines()
    assert f'| frozen-backbone probes (`tools/compare_backbones.py`) | | {words} | 13 s |' in lines
    assert ('- frozen-backbone probes: `work_dirs/demo/probes/compare.md` (and compare.json, compare.png beside it)'
            in lines)
    assert f'probes       {words}   (13 s)' in measured.summary('work_dirs/demo').splitlines()
    three = Probes(**dict(probes.__dict__, seeds=[0, 1, 2], linear_top1=94.5))
    assert three.words().endswith('linear-probe top-1 94.50 % (mean of seeds 0, 1, 2)')
    assert json.loads(json.dumps(measured.to_json()))['probes']['knn_top1']['20'] == 94.4444
    assert not any('frozen-backbone probes' in line for line in report().markdown().splitlines())


# The ONNX section as report.json holds it (what cli/pipeline.py's onnx_stage gives).
ONNX_DONE = {
    'status': 'done', 'reason': None, 'failed_stage': None, 'retry': None,
    'model': 'work_dirs/demo/export/segmentor/model.onnx',
    'images': ['work_dirs/demo/onnx_segment/scenes/0000.jpg', 'work_dirs/demo/onnx_segment/scenes/0099.jpg'],
    'overlays': ['onnx_segment/overlays/0000.png', 'onnx_segment/overlays/0099.png'], 'mode': 'whole',
    'pixel_agreement': 0.99993896484375, 'differing_pixels': 2, 'pixels': 32768, 'max_abs_diff': 2.384185791015625e-06,
    'max_abs_diff_probabilities': 3.5762786865234375e-07, 'agreement': 'work_dirs/demo/onnx_segment/agreement.json',
    'export_seconds': 52.4, 'segment_seconds': 6.1, 'agreement_seconds': 3.2}


def test_onnx_section_shows_the_overlays_and_the_agreement_from_its_json():
    onnx = OnnxCheck(**json.loads(json.dumps(ONNX_DONE)))
    measured = report(onnx=onnx, wall_time_s=dict(report().wall_time_s, onnx=61.7))
    assert json.loads(json.dumps(measured.to_json()))['onnx'] == ONNX_DONE
    lines = measured.markdown().splitlines()
    section = lines[lines.index('## ONNX Runtime'):lines.index('## Files')]
    assert section[2] == ('`work_dirs/demo/export/segmentor/model.onnx`, written by `tools/convert_checkpoint.py '
                          'onnx` (52 s), segmented 2 validation scene(s) with `tools/segment.py` on ONNX Runtime '
                          '(6 s): the scenes of the predictions above, drawn as the tool draws them (the class colours '
                          'blended into the image).')
    assert section[4] == ("Against PyTorch (the same model folder through the Segmenter's torch backend, whole "
                          'inference, image by image): the class of 99.99 % of the pixels is the same (2 of 32768 '
                          'differ); the logits differ by at most 2.4e-06, the probabilities by at most 3.6e-07 (per '
                          'image: `work_dirs/demo/onnx_segment/agreement.json`).')
    assert section[6:8] == ['![0000.png](onnx_segment/overlays/0000.png)',
                            '![0099.png](onnx_segment/overlays/0099.png)']
    words = 'ONNX Runtime vs PyTorch on 2 validation scene(s): pixel agreement 99.99 %, logits within 2.4e-06'
    assert f'| ONNX export, `tools/segment.py` with ONNX Runtime | | {words} | 62 s |' in lines
    assert f'onnx         {words}   (62 s)' in measured.summary('work_dirs/demo').splitlines()
    assert measured.headline() == report().headline()  # not a headline result
    # Without the stage's result (a report built elsewhere): no section, no row, no summary line.
    assert not any('ONNX' in line for line in report().markdown().splitlines() + report().summary('w').splitlines())


def test_onnx_section_says_what_failed_and_how_to_rerun_it_or_that_it_was_skipped():
    retry = '.venv/bin/python -m cosub_seg.cli.convert_checkpoint onnx work_dirs/demo/export/segmentor'
    failed = OnnxCheck(status='failed', failed_stage='ONNX export', retry=retry, export_seconds=4.2,
                       reason="exit code 1: ModuleNotFoundError: No module named 'onnxscript'",
                       model='work_dirs/demo/export/segmentor/model.onnx')
    lines = report(onnx=failed).markdown().splitlines()
    section = lines[lines.index('## ONNX Runtime'):lines.index('## Files')]
    assert section[2:5] == [
        "The ONNX export step failed: exit code 1: ModuleNotFoundError: No module named 'onnxscript'", '',
        f'Everything above is complete: only this last stage is missing. Rerun the step by hand: `{retry}`']
    assert not any(line.startswith('![') for line in section)
    assert ("onnx         failed at the ONNX export step: exit code 1: ModuleNotFoundError: No module named "
            "'onnxscript'") in report(onnx=failed).summary('work_dirs/demo').splitlines()
    skipped = report(onnx=OnnxCheck(status='skipped', reason='--no-onnx'))
    lines = skipped.markdown().splitlines()
    assert lines[lines.index('## ONNX Runtime') + 2] == ('Skipped (--no-onnx): no model.onnx was written and nothing '
                                                         'ran through ONNX Runtime.')
    assert 'onnx         skipped (--no-onnx)' in skipped.summary('work_dirs/demo').splitlines()
    assert json.loads(json.dumps(skipped.to_json()))['onnx']['status'] == 'skipped'


# ---------------------------------------------------------------------------------------------- the report written


PRETRAIN_CONFIG = 'configs/pretrain/cosub_deit3-tiny_digits.py'
SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
ABSOLUTE = re.compile(r'''(?:^|[\s`'"=(\[,:])/''')  # a path from the root: '/' at the start of a word


def _fake_stages(monkeypatch, ran, onnx_error=None):
    """The pipeline's stages without training: each 'process' writes what the real one leaves for the pipeline (the
    config as run, MMEngine's last_checkpoint with an absolute path, scalars.json, the evaluation's JSON, model.onnx,
    tools/segment.py's overlays); exports, pictures, the validation scenes and the ONNX vs PyTorch agreement return
    what the real ones do. ``onnx_error``: the ONNX export fails with this last line on stderr."""
    from mmengine.config import Config, DictAction
    from cosub_seg import convert
    from cosub_seg.cli import pipeline
    from cosub_seg.inference import segmenter

    def run(command, **kwargs):
        module, args = command[2], command[3:]
        ran.append(command)
        if module == 'cosub_seg.cli.convert_checkpoint':
            assert args[-2] == 'onnx' and kwargs['stderr'] == subprocess.PIPE
            if onnx_error:
                return subprocess.CompletedProcess(command, 1, stderr=f'Traceback (most recent call last):\n  ...\n'
                                                   f'{onnx_error}\n')
            open(osp.join(args[-1], 'model.onnx'), 'wb').close()
            return subprocess.CompletedProcess(command, 0, stderr='')
        if module == 'cosub_seg.cli.segment':
            out = args[args.index('--out') + 1]
            for name in os.listdir(args[1]):
                os.makedirs(osp.join(out, 'overlays'), exist_ok=True)
                open(osp.join(out, 'overlays', osp.splitext(name)[0] + '.png'), 'wb').close()
            return subprocess.CompletedProcess(command, 0, stderr=None)
        if module == 'cosub_seg.cli.compare_backbones':
            out_dir = args[args.index('--out-dir') + 1]
            os.makedirs(out_dir)
            with open(osp.join(out_dir, 'compare.json'), 'w') as f:
                json.dump(dict(seeds=[0], backbones=dict(pretrained=dict(
                    features=['cls'], knn={'10': dict(top1=90.0), '20': dict(top1=91.25), '100': dict(top1=80.0)},
                    linear=dict(top1_mean=92.5, top1_std=0.0)))), f)
            return subprocess.CompletedProcess(command, 0)
        work_dir = args[args.index('--work-dir') + 1]
        os.makedirs(osp.join(work_dir, '20260101_000000', 'vis_data'), exist_ok=True)
        if module in ('cosub_seg.cli.pretrain', 'cosub_seg.cli.train_seg'):
            parser = argparse.ArgumentParser()
            parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={})
            cfg = Config.fromfile(args[0])
            cfg.merge_from_dict(parser.parse_known_args(args[1:])[0].cfg_options)
            cfg.dump(osp.join(work_dir, osp.basename(args[0])))
            name = 'epoch_25.pth' if module.endswith('pretrain') else 'iter_2000.pth'
            open(osp.join(work_dir, name), 'wb').close()
            with open(osp.join(work_dir, 'last_checkpoint'), 'w') as f:
                f.write(osp.abspath(osp.join(work_dir, name)))  # as MMEngine writes it
            records = ([{'loss': 1.0, 'lr': 0.1, 'iter': 1, 'step': 1}, {'accuracy/top1': 93.5, 'step': 25}]
                       if module.endswith('pretrain') else [{'loss': 1.0, 'lr': 0.1, 'iter': 1, 'step': 1}])
        else:
            random = 'random' in work_dir
            metrics = {'aAcc': 90.0, 'mIoU': 30.0 if random else 41.5, 'mAcc': 50.0, 'IoU.background': 95.0,
                       'IoU.digit 0': 5.0 if random else 12.0}
            if '--confusion-matrix' in args:
                metrics['confusion_matrix'] = [[9, 1], [2, 3]]
            with open(osp.join(work_dir, '20260101_000000', '20260101_000000.json'), 'w') as f:
                json.dump(metrics, f)
            records = []
        with open(osp.join(work_dir, '20260101_000000', 'vis_data', 'scalars.json'), 'w') as f:
            f.writelines(json.dumps(r) + '\n' for r in records)
        return subprocess.CompletedProcess(command, 0)

    def export_backbone(config, checkpoint, out_dir):
        return dict(weights=osp.join(out_dir, 'model.safetensors'), config=osp.join(out_dir, 'config.json'),
                    weights_kind='EMA')

    def export_segmentor(config, checkpoint, out_dir):
        name = osp.splitext(osp.basename(config))[0]
        os.makedirs(out_dir, exist_ok=True)
        return dict(config=osp.join(out_dir, f'{name}.py'), checkpoint=osp.join(out_dir, f'{name}.pth'),
                    folder=out_dir)

    def validation_scenes(config, num_images):
        assert config.endswith('export/segmentor/upernet_cosub-deit3-tiny_digitscenes.py') and num_images == 4
        folder = osp.abspath(osp.join('data', 'scenes', 'images', 'validation'))
        os.makedirs(folder, exist_ok=True)
        for name in ('a.jpg', 'b.jpg'):
            open(osp.join(folder, name), 'wb').close()
        return [osp.join(folder, 'a.jpg'), osp.join(folder, 'b.jpg')]

    def backend_agreement(model, images):
        assert osp.isfile(osp.join(model, 'model.onnx')) and not osp.isabs(model)
        rows = [dict(image=path, max_abs_diff=1e-6, max_abs_diff_probabilities=1e-7, pixel_agreement=1.0,
                     pixels=16384, differing_pixels=0) for path in images]
        return dict(backends=['torch', 'onnx'], mode='whole', images=list(images), pixels=16384 * len(images),
                    differing_pixels=0, pixel_agreement=1.0, max_abs_diff=1e-6, max_abs_diff_probabilities=1e-7,
                    per_image=rows)

    def draw_pictures(dirs, metrics, segmentor, num_overlays, notes, random_init=False):
        out = dirs['pictures']
        return dict(per_class_iou=osp.join(out, 'per_class_iou.png'), overlays=[osp.join(out, 'overlays', 'a.png')])

    monkeypatch.setattr(pipeline.subprocess, 'run', run)
    # The stages the pipeline runs in its own process (probes, evaluation) through the same fake.
    monkeypatch.setattr(pipeline, '_run_main', lambda module, args: run([sys.executable, '-m', module, *args])
                        .returncode)
    monkeypatch.setattr(convert, 'export_backbone', export_backbone)
    monkeypatch.setattr(convert, 'export_segmentor', export_segmentor)
    monkeypatch.setattr(pipeline, 'draw_pictures', draw_pictures)
    monkeypatch.setattr(pipeline, 'validation_scenes', validation_scenes)
    monkeypatch.setattr(segmenter, 'backend_agreement', backend_agreement)


def _strings(value):
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield value


def test_report_of_a_work_dir_under_the_repository_holds_no_machine_path(tmp_path, monkeypatch, capsys):
    """The pipeline run from a repository root (here a temporary one: its configs/ a link to ours) with every path
    given absolute, and MMEngine's absolute last_checkpoint: report.md, report.json and the printed commands name
    every file relative to the root, and the interpreter as .venv/bin/python. The stages are fakes
    (_fake_stages); the hand-off and the random-initialisation stage are what they would run."""
    from cosub_seg.cli import pipeline
    root = tmp_path / 'repo'
    root.mkdir()
    (root / 'configs').symlink_to(osp.join(ROOT, 'configs'))
    monkeypatch.chdir(root)
    monkeypatch.setattr(sys, 'executable', str(root / '.venv' / 'bin' / 'python'))
    ran = []
    _fake_stages(monkeypatch, ran)
    work_dir = root / 'work_dirs' / 'run'
    scenes = root / 'data' / 'scenes'
    for split in ('train', 'val'):  # the pretraining data as an ImageNet-style folder: the probes run on it
        (root / 'data' / 'digits' / split).mkdir(parents=True)
    pipeline.main([str(root / PRETRAIN_CONFIG), str(root / SEG_CONFIG), '--work-dir', str(work_dir),
                   '--compare-random-init', '--seg-options', f'train_dataloader.dataset.dataset.data_root={scenes}',
                   '--pretrain-options', 'train_cfg.max_epochs=25'])
    printed = capsys.readouterr().out
    markdown = (work_dir / 'report.md').read_text()
    data = json.loads((work_dir / 'report.json').read_text())
    for text in (markdown, json.dumps(data), printed):
        assert str(tmp_path) not in text and not ABSOLUTE.search(text), ABSOLUTE.search(text)
    assert not [s for s in _strings(data) if s.startswith('/')]
    # The commands as printed and reported: run from the root, paths relative to it.
    python = '.venv/bin/python'
    seg = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
    expected = [
        dict(stage='pretraining', command=f'{python} -m cosub_seg.cli.pretrain {PRETRAIN_CONFIG} --work-dir '
             'work_dirs/run/pretrain --cfg-options train_cfg.max_epochs=25'),
        dict(stage='frozen-backbone probes', command=f'{python} -m cosub_seg.cli.compare_backbones '
             'work_dirs/run/pretrain/epoch_25.pth --config work_dirs/run/pretrain/cosub_deit3-tiny_digits.py '
             '--names pretrained --data data/digits --seeds 0 --out-dir work_dirs/run/probes'),
        dict(stage='fine-tuning', command=f'{python} -m cosub_seg.cli.train_seg {seg} --work-dir work_dirs/run/seg '
             '--cfg-options train_dataloader.dataset.dataset.data_root=data/scenes '
             'model.backbone.init_cfg.type=Pretrained '
             'model.backbone.init_cfg.checkpoint=work_dirs/run/pretrain/epoch_25.pth'),
        dict(stage='evaluation', command=f'{python} -m cosub_seg.cli.test_seg '
             'work_dirs/run/export/segmentor/upernet_cosub-deit3-tiny_digitscenes.py '
             'work_dirs/run/export/segmentor/upernet_cosub-deit3-tiny_digitscenes.pth --work-dir work_dirs/run/eval '
             '--confusion-matrix'),
        dict(stage='fine-tuning from random initialisation', command=f'{python} -m cosub_seg.cli.train_seg {seg} '
             '--work-dir work_dirs/run/seg_random_init --cfg-options '
             'train_dataloader.dataset.dataset.data_root=data/scenes model.backbone.init_cfg=None'),
        dict(stage='evaluation from random initialisation', command=f'{python} -m cosub_seg.cli.test_seg '
             'work_dirs/run/seg_random_init/upernet_cosub-deit3-tiny_digitscenes.py '
             'work_dirs/run/seg_random_init/iter_2000.pth --work-dir work_dirs/run/eval_random_init'),
        dict(stage='ONNX export', command=f'{python} -m cosub_seg.cli.convert_checkpoint onnx '
             'work_dirs/run/export/segmentor'),
        dict(stage='ONNX segmentation', command=f'{python} -m cosub_seg.cli.segment work_dirs/run/export/segmentor '
             'work_dirs/run/onnx_segment/scenes --out work_dirs/run/onnx_segment --overlay --backend onnx'),
    ]
    assert data['commands'] == expected
    for command in expected:
        assert f'== {command["stage"]}: {command["command"]}\n' in printed
        assert f'- {command["stage"]}: `{command["command"]}`' in markdown.splitlines()
    # What ran: the same arguments, except the absolute paths the user gave; the hand-off is relative to the root
    # (the config as run keeps no machine path).
    assert ran[1][3] == 'work_dirs/run/pretrain/epoch_25.pth'  # probed: the checkpoint handed over
    assert ran[2][-1] == 'model.backbone.init_cfg.checkpoint=work_dirs/run/pretrain/epoch_25.pth'
    assert ran[4][-1] == 'model.backbone.init_cfg=None' and ran[5][4] == 'work_dirs/run/seg_random_init/iter_2000.pth'
    from mmengine.config import Config
    random_as_run = Config.fromfile(str(work_dir / 'seg_random_init' / osp.basename(SEG_CONFIG)))
    assert random_as_run.model.backbone.init_cfg is None  # MMEngine reads the option as None: random weights
    assert data['paths_relative_to'] == 'the repository root'
    assert data['checkpoints'] == dict(pretrain='work_dirs/run/pretrain/epoch_25.pth', pretrain_choice='last',
                                       seg='work_dirs/run/seg/iter_2000.pth')
    assert data['configs']['pretrain'] == PRETRAIN_CONFIG and data['configs']['seg_options'] == [
        'train_dataloader.dataset.dataset.data_root=data/scenes']
    assert data['pictures'] == dict(per_class_iou='pictures/per_class_iou.png', overlays=['pictures/overlays/a.png'])
    # The first lines say what was done and what came of it: top-1, mIoU and its weakest class, the gap.
    assert data['random_init']['mIoU'] == 30.0 and data['random_init']['gap'] == 11.5
    assert data['random_init']['checkpoint'] == 'work_dirs/run/seg_random_init/iter_2000.pth'
    headline = [
        # (the model_kwargs in the order of the config as run: MMEngine dumps it sorted)
        'Pretrained deit3_small_patch16_224 (class_token=False, depth=6, embed_dim=128, global_pool=avg, img_size=32, '
        'init_values=0.1, num_heads=4, patch_size=8) with '
        'cosub (k=2) on ImageFolderDataset (data/digits) for 25 epochs: validation top-1 93.50 % (epoch 25, the '
        'checkpoint handed over).',
        'Frozen, its cls features classify the val images of data/digits at kNN top-1 k=10 90.00 %, k=20 91.25 %, '
        'k=100 80.00 %; linear-probe top-1 92.50 %.',
        'Fine-tuned UperNet on DigitScenesDataset (data/scenes) for 300 iterations from that backbone: mIoU 41.50 '
        'on the validation images (weakest class digit 0: 12.00 IoU).',
        'From random initialisation the same fine-tuning reaches mIoU 30.00: pretraining adds +11.50 mIoU.']
    assert data['headline'] == headline
    assert markdown.splitlines()[:6] == ['# cosub_seg pipeline report', '', *headline]
    assert data['probes']['table'] == 'work_dirs/run/probes/compare.md' and data['notes'] == []
    assert '\n'.join(headline) in printed and 'report       work_dirs/run/report.md' in printed
    # The ONNX stage: the pictures' scenes copied for tools/segment.py, its overlays linked, the agreement written.
    onnx = data['onnx']
    assert onnx['status'] == 'done' and onnx['model'] == 'work_dirs/run/export/segmentor/model.onnx'
    assert onnx['images'] == ['work_dirs/run/onnx_segment/scenes/a.jpg', 'work_dirs/run/onnx_segment/scenes/b.jpg']
    assert all((root / path).is_file() for path in onnx['images'])
    assert onnx['overlays'] == ['onnx_segment/overlays/a.png', 'onnx_segment/overlays/b.png']
    assert (onnx['pixel_agreement'], onnx['max_abs_diff'], onnx['pixels']) == (1.0, 1e-6, 32768)
    assert onnx['export_seconds'] >= 0 and onnx['segment_seconds'] >= 0 and 'onnx' in data['wall_time_s']
    agreement = json.loads((root / onnx['agreement']).read_text())
    assert agreement['model'] == 'work_dirs/run/export/segmentor/model.onnx'
    assert [row['image'] for row in agreement['per_image']] == onnx['images']
    assert '![a.png](onnx_segment/overlays/a.png)' in markdown.splitlines()
    assert '== ONNX export: ' in printed and 'onnx         ONNX Runtime vs PyTorch on 2 validation scene(s)' in printed


@pytest.mark.parametrize('case', ['no-onnx', 'export fails'])
def test_the_onnx_stage_skipped_or_failing_leaves_the_rest_of_the_report(case, tmp_path, monkeypatch, capsys):
    """--no-onnx runs no ONNX command and says so; a failing ONNX export (here onnxscript missing, announced when
    the pipeline starts) is reported with its error and the command to rerun it, the rest of the report written,
    then the pipeline exits with status 1 as for a failed stage."""
    from cosub_seg.cli import pipeline
    monkeypatch.chdir(tmp_path)
    (tmp_path / 'configs').symlink_to(osp.join(ROOT, 'configs'))
    ran = []
    error = "ModuleNotFoundError: No module named 'onnxscript'"
    _fake_stages(monkeypatch, ran, onnx_error=error if case == 'export fails' else None)
    monkeypatch.setattr(pipeline, 'missing_onnx_packages', lambda: ['onnxscript'])
    argv = [PRETRAIN_CONFIG, SEG_CONFIG, '--work-dir', 'work_dirs/run', '--no-probes']
    if case == 'no-onnx':
        pipeline.main(argv + ['--no-onnx'])
    else:
        with pytest.raises(SystemExit) as exit_info:
            pipeline.main(argv)
        assert str(exit_info.value.code).startswith(
            f"the ONNX export step of the last stage failed (exit code 1: {error}); work_dirs/run/report.md and "
            'report.json are complete otherwise; rerun it by hand: ')
    printed = capsys.readouterr()
    data = json.loads((tmp_path / 'work_dirs' / 'run' / 'report.json').read_text())
    markdown = (tmp_path / 'work_dirs' / 'run' / 'report.md').read_text().splitlines()
    assert data['mIoU'] == 41.5 and data['pictures']['overlays'] == ['pictures/overlays/a.png']  # the rest, whole
    stages = [c['stage'] for c in data['commands']]
    if case == 'no-onnx':
        assert stages == ['pretraining', 'fine-tuning', 'evaluation'] and len(ran) == 3
        assert data['onnx'] == dict(OnnxCheck(status='skipped', reason='--no-onnx').__dict__)
        assert 'onnxscript' not in printed.out and 'onnx' not in data['wall_time_s']
        assert 'Skipped (--no-onnx): no model.onnx was written and nothing ran through ONNX Runtime.' in markdown
        return
    retry = '.venv/bin/python -m cosub_seg.cli.convert_checkpoint onnx work_dirs/run/export/segmentor'
    retry = retry.replace('.venv/bin/python', pipeline.interpreter())
    assert stages == ['pretraining', 'fine-tuning', 'evaluation', 'ONNX export']
    assert printed.out.startswith('note: onnxscript cannot be imported: the last stage (the ONNX export) will fail')
    assert {k: data['onnx'][k] for k in ('status', 'failed_stage', 'reason', 'retry', 'overlays')} == dict(
        status='failed', failed_stage='ONNX export', reason=f'exit code 1: {error}', retry=retry, overlays=[])
    assert f'The ONNX export step failed: exit code 1: {error}' in markdown
    assert f'{error}\n' in printed.err  # the stage's stderr, passed on
    assert (f'onnx         failed at the ONNX export step: exit code 1: {error}   '
            f'({data["wall_time_s"]["onnx"]:.0f} s)') in printed.out.splitlines()


def test_a_stage_in_the_pipelines_process_exits_as_its_own_process_would(tmp_path, monkeypatch, capsys):
    """_run_main (probes and evaluation): 0 when main returns; a tool's SystemExit code (its one-line error exits 1)
    or 1 for an exit with a message, which is printed; environment variables and torch's thread count set by the
    tool are put back; a bug's exception propagates with its traceback."""
    import torch

    from cosub_seg.cli import pipeline
    (tmp_path / 'fake_stage_tool.py').write_text(textwrap.dedent('''
        import os, torch
        def main(argv):
            os.environ['OMP_NUM_THREADS'] = '1'
            os.environ.pop('FAKE_STAGE_KEEP', None)
            torch.set_num_threads(1)
            if argv[0] == 'ok':
                return
            if argv[0] == 'bug':
                raise ZeroDivisionError('a bug')
            raise SystemExit(int(argv[0]) if argv[0].isdigit() else argv[0])
    '''))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv('OMP_NUM_THREADS', raising=False)
    monkeypatch.setenv('FAKE_STAGE_KEEP', 'yes')
    threads = torch.get_num_threads()
    for argv, code in ((['ok'], 0), (['0'], 0), (['1'], 1), (['2'], 2), (['bad input: fix it'], 1)):
        assert pipeline._run_main('fake_stage_tool', argv) == code
        assert 'OMP_NUM_THREADS' not in os.environ and os.environ['FAKE_STAGE_KEEP'] == 'yes'
        assert torch.get_num_threads() == threads
    assert capsys.readouterr().err == 'bad input: fix it\n'
    with pytest.raises(ZeroDivisionError, match='a bug'):
        pipeline._run_main('fake_stage_tool', ['bug'])
    assert os.environ['FAKE_STAGE_KEEP'] == 'yes' and torch.get_num_threads() == threads
    commands = []
    with pytest.raises(SystemExit, match=r'^the probes stage failed \(exit code 2\)'):
        pipeline.run_stage('probes', 'fake_stage_tool', ['2'], commands, in_process=True)
    assert commands == [dict(stage='probes', command=pipeline.stage_command('fake_stage_tool', ['2']))]


def test_commands_of_a_python_outside_the_repository_say_python(tmp_path, monkeypatch):
    from cosub_seg.cli import pipeline
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, 'executable', '/usr/bin/python3.11')
    assert pipeline.stage_command('cosub_seg.cli.test_seg', [str(tmp_path / 'a.py'), 'k=/x/y', '--flag']) == (
        f'python -m cosub_seg.cli.test_seg a.py k={osp.relpath("/x/y")} --flag')
    monkeypatch.setattr(sys, 'executable', str(tmp_path / 'env' / 'bin' / 'python'))
    assert pipeline.interpreter() == 'env/bin/python'
