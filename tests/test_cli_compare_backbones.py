"""tools/compare_backbones.py (cosub_seg/cli/compare_backbones.py) on two tiny checkpoints and the digits: it writes
the table (markdown and JSON, the same numbers), and the chart (one 4 x 4 inch panel per probe at 100 dpi, read back);
a checkpoint without its config and a wrong number of names are refused with what to do."""
import json
import os.path as osp

import cv2
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from cosub_seg.cli.compare_backbones import main

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py')


def tiny_checkpoint(path, seed, with_config=True):
    from cosub_seg.registry import MODELS
    cfg = Config.fromfile(CONFIG)
    cfg.model.model_kwargs.update(embed_dim=32, depth=1, num_heads=2)
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        model = MODELS.build(cfg.model)
    checkpoint = dict(state_dict=model.state_dict())
    if with_config:
        checkpoint['meta'] = dict(cfg=cfg.pretty_text)
    torch.save(checkpoint, path)
    return str(path)


def test_compare_backbones_writes_the_table_and_the_chart(digits_root, tmp_path):
    a, b = tiny_checkpoint(tmp_path / 'a.pth', 0), tiny_checkpoint(tmp_path / 'b.pth', 1)
    out = tmp_path / 'out'
    main([a, b, '--names', 'first', 'second', '--data', digits_root, '--ks', '5', '10', '--seeds', '0', '1',
          '--epochs', '2', '--out-dir', str(out)])
    data = json.loads((out / 'compare.json').read_text())
    assert list(data['backbones']) == ['first', 'second'] and data['seeds'] == [0, 1]
    rows = (out / 'compare.md').read_text().splitlines()
    assert rows[2] == '| backbone | kNN k=5 top-1 | kNN k=10 top-1 | linear top-1 |'
    for name, row in zip(('first', 'second'), rows[4:6]):
        result = data['backbones'][name]
        # the demo backbone pools its patch tokens (no class token): the tool takes their average
        assert result['features'] == ['avgpool'] and result['train_images'] == 1437 and result['val_images'] == 360
        top1 = [r['top1'] for r in result['linear']['runs']]
        assert result['linear']['top1_mean'] == pytest.approx(sum(top1) / 2)
        assert row == (f"| {name} | {result['knn']['5']['top1']:.2f} | {result['knn']['10']['top1']:.2f} | "
                       f"{result['linear']['top1_mean']:.2f} ± {result['linear']['top1_std']:.2f} |")
        assert 0 <= result['knn']['5']['top1'] <= 100
    chart = cv2.imread(str(out / 'compare.png'))
    assert chart.shape == (400, 3 * 400, 3)  # three panels of 4 x 4 inches at 100 dpi


def test_compare_backbones_refuses_what_it_cannot_use(digits_root, tmp_path, capsys):
    bare = tiny_checkpoint(tmp_path / 'bare.pth', 0, with_config=False)
    with pytest.raises(SystemExit) as exc:
        main([bare, '--data', digits_root, '--out-dir', str(tmp_path / 'out')])
    assert exc.value.code == 1
    assert f'{bare} holds no config (it was not written by tools/pretrain.py): pass the pretraining config that ' \
           'built it with --config' in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main([bare, bare, '--names', 'one', '--data', digits_root])
    assert exc.value.code == 2
    assert '--names: 1 names for 2 checkpoints' in capsys.readouterr().err


def test_segmentation_probes_of_same_named_checkpoints_get_their_own_work_dirs(digits_root, tmp_path, monkeypatch,
                                                                                capsys):
    """epoch_25.pth of two runs: refused without --names (the table could not tell them apart); with them, each
    segmentation probe runs in out/seg/<name>, and the table takes each one's mIoU."""
    from cosub_seg.cli import compare_backbones
    (tmp_path / 'k2').mkdir()
    (tmp_path / 'k1').mkdir()
    a = tiny_checkpoint(tmp_path / 'k2' / 'epoch_25.pth', 0)
    b = tiny_checkpoint(tmp_path / 'k1' / 'epoch_25.pth', 1)
    with pytest.raises(SystemExit) as exc:
        main([a, b, '--data', digits_root, '--out-dir', str(tmp_path / 'refused')])
    assert exc.value.code == 1
    assert 'two checkpoints would share a name in the table (epoch_25, epoch_25): give each its own with --names' \
        in capsys.readouterr().err
    runs = []

    def seg_probe(seg_config, checkpoint, work_dir, options):
        runs.append((checkpoint, work_dir))
        return 10.0 * len(runs)

    monkeypatch.setattr(compare_backbones, 'seg_probe', seg_probe)
    out = tmp_path / 'out'
    main([a, b, '--names', 'cosub k=2', 'plain', '--data', digits_root, '--ks', '5', '--seeds', '0', '--epochs', '1',
          '--seg-config', 'configs/probe/linear-seg_deit3-tiny_digitscenes.py', '--out-dir', str(out)])
    assert runs == [(a, str(out / 'seg' / 'cosub_k_2')), (b, str(out / 'seg' / 'plain'))]
    data = json.loads((out / 'compare.json').read_text())
    assert [data['backbones'][n]['linear_seg_miou'] for n in ('cosub k=2', 'plain')] == [10.0, 20.0]
    assert (out / 'compare.md').read_text().splitlines()[2].endswith('| linear-seg mIoU |')


def test_groups_give_the_mean_and_sample_std_over_their_checkpoints(digits_root, tmp_path):
    """Three checkpoints in two groups: each group's row is the mean and sample standard deviation (n - 1) of its
    members' values, worked out here from the per-checkpoint results."""
    paths = [tiny_checkpoint(tmp_path / f'{i}.pth', i) for i in range(3)]
    out = tmp_path / 'out'
    main([*paths, '--names', 'a0', 'a1', 'b0', '--groups', 'a', 'a', 'b', '--data', digits_root, '--ks', '5',
          '--seeds', '0', '--epochs', '1', '--out-dir', str(out)])
    data = json.loads((out / 'compare.json').read_text())
    knn = [data['backbones'][n]['knn']['5']['top1'] for n in ('a0', 'a1', 'b0')]
    mean = (knn[0] + knn[1]) / 2
    std = (((knn[0] - mean) ** 2 + (knn[1] - mean) ** 2) / 1) ** 0.5
    assert data['groups']['a']['kNN k=5 top-1'] == pytest.approx(dict(mean=mean, std=std, n=2))
    assert data['groups']['b']['kNN k=5 top-1'] == pytest.approx(dict(mean=knn[2], std=0.0, n=1))
    linear = data['backbones']['b0']['linear']['top1_mean']
    assert data['groups']['b']['linear top-1']['mean'] == pytest.approx(linear)
    lines = (out / 'compare.md').read_text().splitlines()
    assert '| group | checkpoints | kNN k=5 top-1 | linear top-1 |' in lines
    assert f'| a | 2 | {mean:.2f} ± {std:.2f} | ' in '\n'.join(lines)
