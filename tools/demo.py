"""The embedded default, end to end on 2 CPU cores: digits -> cosub pretraining -> UperNet fine-tuning on digit
scenes -> mIoU, then a short report.

    python tools/demo.py [--work-dir work_dirs/demo] [--pretrain-config ...] [--seg-config ...]
"""
import argparse
import glob
import json
import os.path as osp
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def run(step: str, args: list) -> float:
    print(f'== {step}: {" ".join(args)}', flush=True)
    start = time.time()
    result = subprocess.run([sys.executable, *args], cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f'{step} failed (exit code {result.returncode}); its log is above')
    return time.time() - start


def last_record(work_dir: str, key: str) -> dict:
    """The last record holding ``key`` in the run's scalars.json (MMEngine's LocalVisBackend)."""
    files = sorted(glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')))
    records = []
    for path in files:
        with open(path) as f:
            records += [json.loads(line) for line in f if line.strip()]
    found = [r for r in records if key in r]
    if not found:
        raise SystemExit(f'no "{key}" in the logs of {work_dir}')
    return found[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--pretrain-config', default='configs/pretrain/cosub_deit3-tiny_digits.py')
    parser.add_argument('--seg-config', default='configs/seg/upernet_cosub-deit3-tiny_digitscenes.py')
    args = parser.parse_args(argv)
    pretrain_dir, seg_dir = osp.join(args.work_dir, 'pretrain'), osp.join(args.work_dir, 'seg')

    times = dict(prepare=run('prepare data', ['tools/prepare_data.py', 'digits']))
    times['pretrain'] = run('cosub pretraining',
                            ['tools/pretrain.py', args.pretrain_config, '--work-dir', pretrain_dir])
    with open(osp.join(pretrain_dir, 'last_checkpoint')) as f:
        checkpoint = f.read().strip()
    times['fine-tune'] = run('UperNet fine-tuning', [
        'tools/train_seg.py', args.seg_config, '--work-dir', seg_dir,
        '--cfg-options', f'model.backbone.init_cfg.checkpoint={checkpoint}'])

    top1 = last_record(pretrain_dir, 'accuracy/top1')['accuracy/top1']
    seg = last_record(seg_dir, 'mIoU')
    with open(osp.join(seg_dir, 'last_checkpoint')) as f:
        seg_checkpoint = f.read().strip()
    print('\n== cosub_seg demo report')
    print(f'pretraining  {args.pretrain_config}: digits val top-1 {top1:.2f}%   ({times["pretrain"]:.0f} s)')
    print(f'fine-tuning  {args.seg_config}: digit_scenes val mIoU {seg["mIoU"]:.2f}, aAcc {seg["aAcc"]:.2f}, '
          f'mAcc {seg["mAcc"]:.2f}   ({times["fine-tune"]:.0f} s)')
    print('per-class IoU: ' + ', '.join(f'{k[4:]} {v:.1f}' for k, v in seg.items() if k.startswith('IoU.')))
    print(f'checkpoints  {checkpoint}\n             {seg_checkpoint}')
    print(f'logs         {pretrain_dir}/*/  {seg_dir}/*/')


if __name__ == '__main__':
    main()
