"""bench/ (issue 12, item 3): each GPU benchmark's main() at a tiny size on the CPU: argument handling, the table,
the JSON's keys (the machine and versions included), and that every ratio it reports is the ratio of the raw figures
it reports; bench/gpu_bench.sh refuses to run without CUDA; bench/inference.py's three paths on the demo model (slow:
an ONNX export). Fast, but for one memory probe and the inference benchmark (slow)."""
import json
import os.path as osp
import subprocess
import sys

import pytest

from helpers import ROOT

sys.path.insert(0, ROOT)
from bench import cosub_step, data_loading, seg_checkpointing, seg_vs_mmseg, slide_inference  # noqa: E402

ENVIRONMENT = {'gpu', 'cpu', 'torch', 'cuda', 'cudnn', 'python', 'date'}


def read(path):
    with open(path) as f:
        rows = json.load(f)
    assert rows and all(ENVIRONMENT <= row.keys() for row in rows)
    assert all(row['gpu'] is None and row['cpu'] and row['torch'] for row in rows)  # measured on this CPU
    return rows


def ratio(a, b):
    """a / b as the JSON can hold it: ratios are rounded to 3 decimals (up to 5e-4 off) and the figures they come
    from to 4, which moves a ratio of small figures by up to ~1e-3 of itself. A ratio of other figures (another
    variant, inverted) is off by far more."""
    return pytest.approx(a / b, rel=1e-3, abs=6e-4)


def test_cosub_step_reports_every_variant_and_ratios_of_its_figures(tmp_path, capsys):
    out = str(tmp_path / 'cosub.json')
    cosub_step.main(['--models', 'test_vit', '--img-size', '32', '--batch', '2', '--rates', '0.45', '--repeats', '1',
                     '--variants', 'ours_fixed', '--threads', '1', '--no-memory', '--device', 'cpu', '--out', out])
    [row] = read(out)
    variants = ['plain', 'reference', 'ours', 'ours_fixed']  # the first three always, for the ratios and targets
    assert row['variants'] == variants and row['model'] == 'test_vit' and row['batch'] == 2
    for v in variants:
        assert row[f'{v}_img_s'] == ratio(2, row[f'{v}_s'])
        assert row[f'{v}_mfu'] is None  # no bf16 peak for a CPU
    assert row['speedup_vs_reference'] == ratio(row['reference_s'], row['ours_s'])
    assert row['cost_vs_plain'] == ratio(row['ours_s'], row['plain_s'])
    assert row['reference_vs_plain'] == ratio(row['reference_s'], row['plain_s'])
    assert row['ours_fixed_speedup_vs_reference'] == ratio(row['reference_s'], row['ours_fixed_s'])
    assert row['ours_fixed_cost_vs_plain'] == ratio(row['ours_fixed_s'], row['plain_s'])
    assert 0 < row['branch_share'] < 1 and row['gflops_per_image'] > 0
    table = capsys.readouterr().out
    assert 'cosub training step' in table and 'ours_fixed' in table and 'n/a' in table


def test_model_flop_utilisation_uses_the_work_each_variant_computes():
    assert cosub_step.peak_bf16_flops('NVIDIA H100 80GB HBM3') == 989e12
    assert cosub_step.peak_bf16_flops('NVIDIA H200') == 989e12
    assert cosub_step.peak_bf16_flops('NVIDIA H100 PCIe') == 756e12
    assert cosub_step.peak_bf16_flops('Intel(R) Xeon(R) CPU') is None
    assert cosub_step.executed_passes('plain', 0.45, 64, 0.9) == 1
    assert cosub_step.executed_passes('reference', 0.45, 64, 0.9) == 2
    # Skipping: the branches (90 % of the work) run on the kept rows: 1 - p of them, or round(128 * 0.55) = 70 of
    # the 128 rows of a doubled batch of 64 with 'fixed' sampling.
    assert cosub_step.executed_passes('ours', 0.45, 64, 0.9) == pytest.approx(2 * (0.1 + 0.9 * 0.55))
    assert cosub_step.executed_passes('ours_fixed_compiled', 0.45, 64, 0.9) == pytest.approx(2 * (0.1 + 0.9 * 70 / 128))


def test_seg_vs_mmseg_builds_both_configs_and_reports_time_ratios(tmp_path, capsys):
    out = str(tmp_path / 'seg.json')
    seg_vs_mmseg.main(['--tiny', '--size', '64', '--repeats', '1', '--threads', '1', '--no-memory', '--device', 'cpu',
                       '--out', out])
    rows = read(out)
    assert [row['precision'] for row in rows] == ['fp32', 'amp (bfloat16)']
    for row in rows:
        assert row['time_ratio'] == ratio(row['ours_s'], row['mmseg_s'])
        assert row['tiny'] is True and row['batch'] == 2 and row['size'] == 64
        assert row['mmseg_config'].endswith('vit_deit-b16_mln_upernet_8xb2-160k_ade20k-512x512.py')
    assert 'UperNet ViT-B training step' in capsys.readouterr().out


def test_seg_vs_mmseg_builds_the_real_models_with_150_classes():
    """The two configs as they are: mmseg's VisionTransformer against our TimmSegBackbone, the same heads."""
    import torch
    ours, _ = seg_vs_mmseg.build('ours', 64, 'fp32', None, torch.device('cpu'), tiny=False)
    theirs, _ = seg_vs_mmseg.build('mmseg', 64, 'fp32', None, torch.device('cpu'), tiny=False)
    assert type(ours.backbone).__name__ == 'TimmSegBackbone' and type(theirs.backbone).__name__ == 'VisionTransformer'
    assert type(ours.decode_head) is type(theirs.decode_head) and type(ours.neck) is type(theirs.neck)
    assert ours.decode_head.num_classes == theirs.decode_head.num_classes == 150
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert count(ours.decode_head) == count(theirs.decode_head)
    assert count(ours.backbone) == pytest.approx(count(theirs.backbone), rel=0.01)  # ViT-B, 86 M either way


@pytest.mark.slow
def test_seg_vs_mmseg_memory_ratio_is_the_ratio_of_the_peaks(tmp_path):
    out = str(tmp_path / 'seg.json')
    seg_vs_mmseg.main(['--tiny', '--size', '64', '--repeats', '1', '--threads', '1', '--precisions', 'fp32',
                       '--device', 'cpu', '--out', out])
    [row] = read(out)
    assert row['ours_peak_bytes'] > 0 and row['mmseg_peak_bytes'] > 0
    assert row['memory_ratio'] == ratio(row['ours_peak_bytes'], row['mmseg_peak_bytes'])


def test_seg_checkpointing_switches_checkpointing_and_compute_and_reports_ratios_to_plain(tmp_path, capsys):
    """bench/seg_checkpointing.py (issue 16) on the tiny model: each variant is built with its checkpointing and
    stochastic-depth compute, the ADE20k config's settings are kept, and the ratios are those of the step times."""
    out = str(tmp_path / 'ckpt.json')
    seg_checkpointing.main(['--tiny', '--crop', '64', '--repeats', '1', '--threads', '1', '--no-memory', '--device',
                            'cpu', '--out', out])
    rows = read(out)
    assert [(r['variant'], r['grad_checkpointing'], r['head_checkpointing'], r['compute']) for r in rows] == [
        ('plain', False, False, 'skip'), ('ckpt', True, False, 'skip'), ('mask_ckpt', True, False, 'mask'),
        ('ckpt_head', True, True, 'skip')]
    times = {row['variant']: row['step_s'] for row in rows}
    for row in rows:
        assert row['time_vs_plain'] == ratio(row['step_s'], times['plain'])
        assert row['time_vs_ckpt'] == ratio(row['step_s'], times['ckpt'])
        assert row['batch'] == 2 and row['crop'] == 64 and row['tiny'] is True and 'peak_mb' not in row
        assert (row['num_submodels'], row['drop_rate'], row['sampling']) == (1, 0.2, 'bernoulli')  # the config's
    assert 'UperNet ViT-B fine-tuning step (tiny model)' in capsys.readouterr().out
    import torch
    from types import SimpleNamespace
    from cosub_seg.models.checkpointing import head_units
    args = SimpleNamespace(batch=2, crop=64, tiny=True)
    for variant, checkpointed, compute in (('plain', False, 'skip'), ('mask_ckpt', True, 'mask')):
        model, _, data = seg_checkpointing.build(variant, args, torch.device('cpu'))
        block = model.backbone.model.blocks[-1]
        assert type(block).__name__.startswith('Checkpointed') == checkpointed
        assert block.drop_path1.skip == (compute == 'skip')
        assert model.data_preprocessor.size == (64, 64) and data['inputs'][0].shape == (3, 64, 64)
        assert not any(type(u).__name__.startswith('Checkpointed') for u in head_units(model.decode_head))
    model, _, _ = seg_checkpointing.build('ckpt_head', args, torch.device('cpu'))
    units = head_units(model.decode_head) + head_units(model.auxiliary_head)
    assert units and all(type(u).__name__ == 'CheckpointedConvModule' for u in units)
    with pytest.raises(SystemExit):
        seg_checkpointing.main(['--batch', '1', '--no-memory'])


def test_slide_inference_reports_speedups_of_its_rates(tmp_path):
    out = str(tmp_path / 'slide.json')
    slide_inference.main(['--sizes', '64x96', '--channels', '16', '--repeats', '1', '--trials', '1', '--threads', '1',
                          '--device', 'cpu', '--out', out])
    [row] = read(out)
    assert row['windows'] == 1 and row['max_abs_diff'] <= 1e-4
    assert row['speedup_vs_mmseg'] == ratio(row['batched_img_s'], row['mmseg_img_s'])


def test_data_loading_rates_of_both_pipelines(tmp_path):
    out = str(tmp_path / 'data.json')
    data_loading.main(['--workers', '1', '--batches', '1', '2', '--batch-size', '8', '2', '--images', '256', '8',
                       '--root', str(tmp_path / 'data'), '--out', out])
    rows = read(out)
    assert [(r['pipeline'], r['workers']) for r in rows] == [('pretrain', 0), ('pretrain', 1), ('seg', 0), ('seg', 1)]
    for row in rows:
        assert row['images'] == (8 if row['pipeline'] == 'pretrain' else 4)
        assert row['img_s'] == ratio(row['images'], row['seconds'])
        assert row['img_s_per_worker'] == row['img_s']  # 0 workers: this process, one worker's rate
    # The synthetic data follow the official layouts.
    assert len(glob_count(tmp_path / 'data' / 'imagenet' / 'train', '*/*.JPEG')) == 256
    ade = tmp_path / 'data' / 'ade' / 'ADEChallengeData2016'
    assert len(glob_count(ade / 'images' / 'training', '*.jpg')) == len(glob_count(ade / 'annotations' / 'training',
                                                                                   '*.png')) == 8


def glob_count(folder, pattern):
    return sorted(folder.glob(pattern))


def test_gpu_bench_refuses_without_cuda(tmp_path):
    """Without CUDA the script says so and exits non-zero (tools/gpu_check.sh relies on it), running nothing."""
    proc = subprocess.run(['bash', osp.join(ROOT, 'bench', 'gpu_bench.sh'), str(tmp_path / 'out')],
                          capture_output=True, text=True, env={'PATH': '/usr/bin:/bin', 'PYTHON': sys.executable,
                                                               'CUDA_VISIBLE_DEVICES': ''})
    assert proc.returncode == 1
    assert 'no CUDA device (torch.cuda.is_available() is False' in proc.stderr
    assert not list((tmp_path / 'out').iterdir())


def test_digits_diagnosis_labels_a_scene_patch_with_the_digit_covering_over_half_of_it(tmp_path):
    """bench/digits_diagnosis.py probe-scenes: one 16 x 16 scene, four 8 x 8 patches, labelled by hand."""
    import cv2
    import numpy as np

    from bench import digits_diagnosis
    ann = np.ones((16, 16), np.uint8)  # background
    ann[0:8, 0:8] = 2 + 7  # patch (0, 0): all digit 7
    ann[0:5, 8:16] = 2 + 3  # patch (0, 1): 40 of 64 pixels digit 3
    ann[8:12, 0:8] = 2 + 5  # patch (1, 0): exactly half digit 5, not over half
    ann[8:16, 8:16] = 0  # patch (1, 1): unlabeled
    ann[8:16, 8:12] = 2 + 1  # ... half of it digit 1
    ann[8:16, 12:13] = 2 + 1  # ... now 40 of 64
    for split in ('training', 'validation'):
        (tmp_path / 'images' / split).mkdir(parents=True)
        (tmp_path / 'annotations' / split).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / 'images' / split / 's.jpg'), np.full((16, 16, 3), 128, np.uint8))
        cv2.imwrite(str(tmp_path / 'annotations' / split / 's.png'), ann)
    model = digits_diagnosis.load_classifier(osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py'), 'none')
    feats, labels = digits_diagnosis.scene_features(model, str(tmp_path), 'training')
    # patches in row-major order: (0, 0) -> 7, (0, 1) -> 3, (1, 0) -> none, (1, 1) -> 1
    assert labels.tolist() == [7, 3, 1]
    assert len(feats) == 6 and all(f.shape == (3, 128) for f in feats)  # 6 blocks, 128 wide, the kept patches
    with pytest.raises(SystemExit, match='no scenes under'):
        digits_diagnosis.scene_features(model, str(tmp_path / 'missing'), 'training')
    # A hierarchical network (stride 32: the scene grows to 32 x 32, the new patches background): its 4 stages
    # resampled to stride 8, one row per labelled patch, each stage's width.
    big = np.ones((32, 32), np.uint8)
    big[:16, :16] = ann
    for split in ('training', 'validation'):
        cv2.imwrite(str(tmp_path / 'images' / split / 's.jpg'), np.full((32, 32, 3), 128, np.uint8))
        cv2.imwrite(str(tmp_path / 'annotations' / split / 's.png'), big)
    config = tmp_path / 'convnext_digits.py'
    config.write_text(f"_base_ = [{osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py')!r}]\n"
                      "model = dict(arch='convnext_atto', model_kwargs=dict(_delete_=True))\n")
    model = digits_diagnosis.load_classifier(str(config), 'none')
    feats, labels = digits_diagnosis.scene_features(model, str(tmp_path), 'training')
    assert labels.tolist() == [7, 3, 1]
    assert [f.shape for f in feats] == [(3, 40), (3, 80), (3, 160), (3, 320)]


@pytest.mark.slow
def test_inference_reports_the_three_paths_and_their_agreement(tmp_path):
    from bench import inference
    out = str(tmp_path / 'inference.json')
    inference.main(['--models', 'demo', '--repeats', '1', '--threads', '1', '--out', out])
    rows = read(out)
    assert [row['path'] for row in rows] == ['eager_fp32', 'eager_bf16', 'onnxruntime']
    eager = rows[0]
    assert eager['max_abs_diff'] == 0 and eager['pixel_agreement'] == 1
    for row in rows:
        assert row['speedup_vs_eager'] == ratio(row['img_s'], eager['img_s'])
    assert rows[2]['max_abs_diff'] <= 1e-4 and rows[2]['pixel_agreement'] >= 0.999 and rows[2]['onnx_dynamic_size']


@pytest.mark.slow
def test_fsdp_memory_reports_each_process_holding_half_of_ddps_state(tmp_path, capsys):
    """bench/fsdp_memory.py on a tiny ViT: two real 2-process jobs. DDP's weights equal the model's parameter count
    x 4 bytes (worked out here from the model), AdamW's moments twice that; each FSDP process holds half of it."""
    from bench import fsdp_memory
    from cosub_seg.models.classifier import CosubClassifier
    out = tmp_path / 'fsdp.json'
    fsdp_memory.main(['--arch', 'vit_tiny_patch16_224', '--batch', '1', '--steps', '1', '--out', str(out)])
    rows = {row['variant']: row for row in read(out)}
    assert sorted(rows) == ['ddp rank 0', 'ddp rank 1', 'fsdp rank 0', 'fsdp rank 1']
    model = CosubClassifier('vit_tiny_patch16_224', num_classes=1000, stochastic_depth=dict(rate=0.1))
    numel = sum(p.numel() for p in model.parameters())
    mib = numel * 4 / 2**20
    for rank in (0, 1):
        ddp, fsdp = rows[f'ddp rank {rank}'], rows[f'fsdp rank {rank}']
        assert ddp['params_MiB'] == round(mib) and ddp['grads_MiB'] == round(mib)
        assert ddp['optimizer_MiB'] == round(2 * mib)
        assert abs(fsdp['params_MiB'] - mib / 2) <= 1 and abs(fsdp['optimizer_MiB'] - mib) <= 1
        assert fsdp['held_vs_ddp'] == pytest.approx(0.5, abs=0.02) and ddp['held_vs_ddp'] == pytest.approx(1, abs=1e-3)
    assert 'held_vs_ddp' in capsys.readouterr().out
