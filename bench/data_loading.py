"""How many images per second one CPU worker prepares, for the pretraining and the ADE20k training pipelines.

A GPU trains only as fast as its data loader feeds it: this measures the training pipelines of the recipes, so that
workers per GPU = the GPU's images/s (bench/cosub_step.py, bench/seg_vs_mmseg.py) / the per-worker rate here.

* ``pretrain``: the train dataloader of configs/pretrain/cosub_deit3-small_in1k.py (ImageNet folders; random-resized
  crop to 224, flip, 3-Augment, colour jitter; repeated-augmentation sampler; batch 64 per GPU);
* ``seg``: the train dataloader of configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py (mmseg's ADE20k pipeline:
  resize to the 2048x512 scale x 0.5-2.0, 512x512 crop, flip, photometric distortion, annotation check; batch 2).

The data are synthetic files in the official layouts, written to a temporary folder (``--root`` keeps them):
ImageNet ``train/<wnid>/<wnid>_<n>.JPEG``, 500x375 JPEGs (ImageNet's typical size); ADE20k
``ADEChallengeData2016/images/training/ADE_train_<n>.jpg`` 683x512 with ``annotations/training/ADE_train_<n>.png``
(labels 0-150). The images are smooth random fields with noise, which JPEG compresses to about the size of a photo
(~80 KB at 500x375).

Each dataloader is built by MMEngine's Runner from the config (CheckedDataset, ReproducibleSampler, collate), with
``num_workers`` set per measurement: 0 (this process: its CPU time per image, the rate of one worker that has a core
to itself, robust to other load) and each ``--workers`` count (wall time of ``--batches`` batches after the first,
which starts the workers). OpenCV runs single-threaded in each worker, as MMEngine's runs set it.

    python bench/data_loading.py [--pipelines pretrain seg] [--workers 1 N] [--batches 4 32] [--images 512 96]
        [--root DIR] [--out FILE]

Writes bench/results/data_loading.json (or ``--out``): a row per pipeline and worker count with ``img_s`` and
``img_s_per_worker``.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
import tempfile
import time

import cv2
import numpy as np
import torch
from mmengine.registry import DefaultScope
from mmengine.runner import Runner
from mmengine.utils.dl_utils import set_multi_processing

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)
from bench.common import cpu_model, print_table, write_json  # noqa: E402
import cosub_seg  # noqa: E402,F401  (registers the modules)
from cosub_seg.runtime.launch import load_config  # noqa: E402

CONFIGS = {'pretrain': osp.join(ROOT, 'configs/pretrain/cosub_deit3-small_in1k.py'),
           'seg': osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py')}
IMAGENET_SIZE = (500, 375)  # width, height
ADE_SIZE = (683, 512)
NUM_WNIDS = 4


def photo_like(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A smooth random colour field (a few blurred blobs) plus mild noise: JPEG sizes near a photo's."""
    small = rng.integers(0, 256, (height // 25 + 1, width // 25 + 1, 3), dtype=np.uint8)
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
    noise = rng.integers(-20, 21, image.shape, dtype=np.int16)
    return np.clip(image + noise, 0, 255).astype(np.uint8)


def write_imagenet(root: str, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for i in range(count):
        wnid = f'n{1440764 + i % NUM_WNIDS:08d}'
        folder = osp.join(root, 'train', wnid)
        os.makedirs(folder, exist_ok=True)
        cv2.imwrite(osp.join(folder, f'{wnid}_{i}.JPEG'), photo_like(rng, *IMAGENET_SIZE),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])


def write_ade20k(root: str, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    base = osp.join(root, 'ADEChallengeData2016')
    for split in ('images', 'annotations'):
        os.makedirs(osp.join(base, split, 'training'), exist_ok=True)
    width, height = ADE_SIZE
    for i in range(count):
        name = f'ADE_train_{i + 1:08d}'
        cv2.imwrite(osp.join(base, 'images', 'training', name + '.jpg'), photo_like(rng, width, height),
                    [cv2.IMWRITE_JPEG_QUALITY, 90])
        blocks = rng.integers(0, 151, (height // 64 + 1, width // 64 + 1), dtype=np.uint8)
        labels = cv2.resize(blocks, (width, height), interpolation=cv2.INTER_NEAREST)
        cv2.imwrite(osp.join(base, 'annotations', 'training', name + '.png'), labels)


def build_loader(pipeline: str, data_root: str, workers: int, batch_size: int):
    options = {'train_dataloader.dataset.data_root': data_root, 'train_dataloader.num_workers': workers,
               'train_dataloader.persistent_workers': False, 'train_dataloader.batch_size': batch_size}
    cfg = load_config(CONFIGS[pipeline], options)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        loader = Runner.build_dataloader(cfg.train_dataloader, seed=0)
    return loader, cfg.train_dataloader.batch_size


def measure(pipeline: str, data_root: str, workers: int, batches: int, batch_size: int) -> dict:
    loader, batch_size = build_loader(pipeline, data_root, workers, batch_size)
    it = iter(loader)
    now = time.process_time if workers == 0 else time.perf_counter
    next(it)  # starts the workers; not timed
    start = now()
    images = 0
    for _ in range(batches):
        images += len(next(it)['inputs'])
    elapsed = now() - start
    del it
    rate = images / elapsed
    return dict(pipeline=pipeline, workers=workers, clock='cpu (this process)' if workers == 0 else 'wall',
                batch=batch_size, images=images, seconds=elapsed, img_s=rate, img_s_per_worker=rate / max(workers, 1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--pipelines', nargs='+', choices=sorted(CONFIGS), default=['pretrain', 'seg'])
    parser.add_argument('--workers', nargs='+', type=int, default=None,
                        help='worker counts to measure besides 0 (default: 1 and the number of cores)')
    parser.add_argument('--batches', nargs=2, type=int, default=[4, 32], metavar=('PRETRAIN', 'SEG'),
                        help='batches timed per measurement, after the first')
    parser.add_argument('--images', nargs=2, type=int, default=[512, 96], metavar=('PRETRAIN', 'SEG'),
                        help='synthetic images to write (the pretraining sampler needs at least 256)')
    parser.add_argument('--batch-size', nargs=2, type=int, default=[64, 2], metavar=('PRETRAIN', 'SEG'),
                        help="images per batch (the configs' per-GPU batches: 64 and 2)")
    parser.add_argument('--root', default=None, help='write the synthetic data here and keep it (default: a '
                        'temporary folder, removed afterwards)')
    parser.add_argument('--out', default=None, help='JSON to write (default: bench/results/data_loading.json)')
    args = parser.parse_args(argv)
    workers = sorted(set([0] + (args.workers or [1, os.cpu_count() or 1])))
    # The pretraining sampler (repeated augmentation, DeiT's) yields a multiple of 256 samples per epoch.
    if 'pretrain' in args.pipelines and (args.batches[0] + 1) * args.batch_size[0] > args.images[0] // 256 * 256:
        parser.error(f'--images {args.images[0]}: the pretraining sampler yields {args.images[0] // 256 * 256} '
                     f'samples per epoch, fewer than the {(args.batches[0] + 1) * args.batch_size[0]} needed')
    set_multi_processing(mp_start_method='fork', opencv_num_threads=0)  # as MMEngine's runs (env_cfg.mp_cfg)
    torch.set_num_threads(1)
    root = args.root or tempfile.mkdtemp(prefix='cosub_data_loading_')
    rows = []
    try:
        for pipeline in args.pipelines:
            index = ('pretrain', 'seg').index(pipeline)
            start = time.perf_counter()
            if pipeline == 'pretrain':
                data_root = osp.join(root, 'imagenet')
                if not osp.isdir(osp.join(data_root, 'train')):
                    write_imagenet(data_root, args.images[0])
            else:
                data_root = osp.join(root, 'ade', 'ADEChallengeData2016')
                if not osp.isdir(data_root):
                    write_ade20k(osp.join(root, 'ade'), args.images[1])
            print(f'{pipeline}: synthetic data in {data_root} ({time.perf_counter() - start:.1f} s)', flush=True)
            for n in workers:
                rows.append(measure(pipeline, data_root, n, args.batches[index], args.batch_size[index]))
                print(rows[-1], flush=True)
    finally:
        if args.root is None:
            shutil.rmtree(root, ignore_errors=True)
    print_table(rows, ['pipeline', 'workers', 'clock', 'batch', 'images', 'seconds', 'img_s', 'img_s_per_worker'],
                f'training data pipelines, {cpu_model()} ({os.cpu_count()} cores); workers 0 = this process, '
                'CPU time')
    write_json('data_loading', rows, dict(device='cpu', imagenet_size=list(IMAGENET_SIZE), ade_size=list(ADE_SIZE)),
               args.out)


if __name__ == '__main__':
    main()
