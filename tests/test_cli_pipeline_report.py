"""cosub_seg/cli/pipeline_report.py: the pipeline's report structure, its JSON keys and the lines of its Markdown,
on values written in the test (the pipeline's end-to-end run is in the slow pipeline tests)."""
import json

from cosub_seg.cli.pipeline_report import Checkpoints, Configs, ConfusionMatrix, PipelineReport


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
    assert set(data) == {'top1', 'top5', 'top1_at_epoch', 'mIoU', 'aAcc', 'mAcc', 'per_class_iou', 'confusion_matrix',
                         'wall_time_s', 'configs', 'checkpoints', 'exports', 'pictures', 'notes', 'paths_relative_to',
                         'commands', 'environment'}
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
