"""Inference throughput on the CPU: PyTorch eager (fp32), PyTorch bf16 (autocast) and ONNX Runtime, side by side.

For each model, random weights (seed 0, batch-norm statistics made non-trivial) go through the real export
(``export_segmentor``: the model folder; ``export_onnx``: model.onnx, dynamic height and width), then
:class:`cosub_seg.inference.Segmenter` runs the same batch of images on the three paths, timed round-robin in one
process (bench/common.py), whole-image inference, normalisation included:

* ``demo``: UperNet + the tiny DeiT III of the demo (configs/seg/upernet_cosub-deit3-tiny_digitscenes.py) on
  128x128 digit scenes (data/digit_scenes validation images when prepared, else synthetic pictures);
* ``deit3-small``: UperNet + DeiT III-S (configs/seg/upernet_cosub-deit3-small_ade20k-512x512.py, 150 classes) at
  512x512.

Agreement with PyTorch fp32: the largest absolute difference of the logits and the fraction of pixels whose class
is the same.

    python bench/inference.py [--models demo deit3-small] [--batch 1] [--repeats 5] [--threads N] [--out FILE]

Writes bench/results/inference.json (or ``--out``): one row per model and path, with ``img_s``, ``speedup_vs_eager``,
``max_abs_diff``, ``pixel_agreement``, the ONNX export time, the machine and the versions.
"""
import argparse
import glob
import os.path as osp
import sys
import tempfile

import cv2
import numpy as np
import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
import cosub_seg  # noqa: E402,F401  (registers the modules)
from bench.common import (add_timing_args, device_name, print_table, time_round_robin, write_json)  # noqa: E402
from cosub_seg.convert import export_onnx, export_segmentor  # noqa: E402
from cosub_seg.inference import Segmenter  # noqa: E402

MODELS = {
    'demo': ('configs/seg/upernet_cosub-deit3-tiny_digitscenes.py', (128, 128)),
    'deit3-small': ('configs/seg/upernet_cosub-deit3-small_ade20k-512x512.py', (512, 512)),
}
PATHS = ('eager_fp32', 'eager_bf16', 'onnxruntime')


def export(config: str, out_dir: str) -> dict:
    """Random weights through the real exports: the model folder and its model.onnx."""
    cfg = Config.fromfile(osp.join(ROOT, config))
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    from mmseg.registry import MODELS as SEG_MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(cfg.model).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
    checkpoint = osp.join(out_dir, 'iter.pth')
    torch.save(dict(state_dict=model.state_dict(), meta={}), checkpoint)
    folder = export_segmentor(osp.join(ROOT, config), checkpoint, osp.join(out_dir, 'model'))['folder']
    return export_onnx(folder, check_sizes=[])


def images(size, count: int) -> np.ndarray:
    """(count, H, W, 3) uint8 RGB: digit scenes (resized when needed) if prepared, else smooth random pictures."""
    files = sorted(glob.glob(osp.join(ROOT, 'data', 'digit_scenes', 'images', 'validation', '*.jpg')))[:count]
    if len(files) == count:
        pictures = [cv2.imread(f)[:, :, ::-1] for f in files]
        return np.stack([cv2.resize(p, size[::-1]) if p.shape[:2] != tuple(size) else p for p in pictures])
    rng = np.random.RandomState(0)
    small = rng.randint(0, 256, (count, size[0] // 16, size[1] // 16, 3)).astype(np.uint8)
    return np.stack([cv2.resize(s, size[::-1], interpolation=cv2.INTER_CUBIC) for s in small])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--models', nargs='+', choices=sorted(MODELS), default=['demo', 'deit3-small'])
    parser.add_argument('--batch', type=int, default=1, help='images per call')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--out', default=None, help='JSON to write (default: bench/results/inference.json)')
    add_timing_args(parser)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    timing = f'{args.clock} clock, {threads} thread(s) (torch and ONNX Runtime)'
    rows = []
    for name in args.models:
        config, size = MODELS[name]
        with tempfile.TemporaryDirectory() as tmp:
            onnx = export(config, tmp)
            folder = osp.dirname(onnx['onnx'])
            segmenters = {
                'eager_fp32': Segmenter.from_pretrained(folder, backend='torch'),
                'eager_bf16': Segmenter.from_pretrained(folder, backend='torch', precision='bf16'),
                'onnxruntime': Segmenter.from_pretrained(folder, backend='onnx', threads=threads),
            }
            batch = images(size, args.batch)
            outputs = {}

            def call(path):
                def run():
                    outputs[path] = segmenters[path].logits(batch, mode='whole')
                return run
            times = time_round_robin({p: call(p) for p in PATHS}, repeats=args.repeats, warmup=1,
                                     clock=args.clock)
        reference = outputs['eager_fp32']
        classes = reference.argmax(1)
        for path in PATHS:
            rows.append(dict(
                model=name, size=f'{size[0]}x{size[1]}', path=path, batch=args.batch,
                img_s=round(args.batch / times[path], 4),
                speedup_vs_eager=round(times['eager_fp32'] / times[path], 3),
                max_abs_diff=float(np.abs(outputs[path] - reference).max()),
                pixel_agreement=float((outputs[path].argmax(1) == classes).mean()),
                onnx_dynamic_size=onnx['dynamic_size'], onnx_export_s=onnx['export_seconds']))
            print(rows[-1], flush=True)
    print_table(rows, ['model', 'size', 'path', 'img_s', 'speedup_vs_eager', 'max_abs_diff', 'pixel_agreement'],
                f'inference on the CPU ({device_name(torch.device("cpu"))}), batch {args.batch}, random weights, '
                f'{timing}')
    write_json('inference', rows, dict(timing=timing, repeats=args.repeats, device='cpu'), args.out)
    return rows


if __name__ == '__main__':
    main()
