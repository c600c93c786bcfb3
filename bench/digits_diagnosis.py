"""What a digits backbone knows, for issue 13 (why the demo shows no transfer): not a speed benchmark, the
measurements behind docs/benchmarks.md#why-the-demo-showed-no-transfer-and-the-fix-issue-13.

    read          top-1 of the classifier on the val digits rendered as pretrained, inverted, on scene grounds
                  (light and dark ink, cosub_seg/datasets/ink.py) and at other sizes in the 32-pixel view
    probe-digits  a linear probe (scikit-learn's logistic regression) of each block's patch tokens for the digit
                  under them: train digits -> val digits on a black 64-pixel canvas, centred on the patch grid
                  (--mode centre), at a random offset (offset) or a random size of 28-48 pixels (size)
    probe-scenes  the same probe on the digit scenes (a patch is labelled with the digit covering over half of it)
For a hierarchical network (e.g. ``arch='convnext_atto'``) the probe reads each stage's output resampled to stride 8.

Examples (after `make demo` or `python tools/pretrain.py CONFIG --work-dir DIR`):
    .venv/bin/python bench/digits_diagnosis.py read configs/pretrain/cosub_deit3-tiny_digits.py \
        work_dirs/demo/pretrain/epoch_15.pth
    .venv/bin/python bench/digits_diagnosis.py probe-scenes DIR/<config>.py DIR/epoch_15.pth --scenes data/digit_scenes
Pass ``none`` as the checkpoint for a randomly initialised network.
"""
import argparse
import glob
import os.path as osp

import cv2
import numpy as np
import torch

MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)
PATCH = 8


def load_classifier(config: str, checkpoint: str):
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    import cosub_seg.runtime
    from cosub_seg.registry import MODELS
    cosub_seg.runtime.install()
    cfg = Config.fromfile(config)
    if 'deit' in cfg.model.arch or 'vit' in cfg.model.arch:
        cfg.model.model_kwargs['dynamic_img_size'] = True  # any input size (position embeddings interpolated)
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        model = MODELS.build(cfg.model)
    if checkpoint != 'none':
        model.load_state_dict(torch.load(checkpoint, map_location='cpu', weights_only=True)['state_dict'])
    return model.eval()


def to_input(rgb: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(((rgb.astype(np.float32) - MEAN) / STD).transpose(0, 3, 1, 2).copy())


def block_maps(model, rgb: np.ndarray):
    """A ViT's blocks' patch tokens as (N, C, H / 8, W / 8) maps, without the final norm (what the UperNet reads);
    for a hierarchical network (ConvNeXt, ...) each stage's output, resampled (bilinear) to stride 8."""
    net = model.backbone
    with torch.no_grad():
        if hasattr(net, 'blocks'):
            return net.forward_intermediates(to_input(rgb), indices=list(range(len(net.blocks))),
                                             intermediates_only=True, norm=False)
        size = (rgb.shape[1] // PATCH, rgb.shape[2] // PATCH)
        return [torch.nn.functional.interpolate(m, size=size, mode='bilinear', align_corners=False)
                for m in net.forward_intermediates(to_input(rgb), intermediates_only=True)]


def probe(train_feats, y_train, val_feats, y_val):
    from sklearn.linear_model import LogisticRegression
    accuracies = []
    for a, v in zip(train_feats, val_feats):
        mu, sd = a.mean(0), a.std(0) + 1e-6
        clf = LogisticRegression(max_iter=300).fit((a - mu) / sd, y_train)
        accuracies.append(round(100 * clf.score((v - mu) / sd, y_val), 1))
    return accuracies


def read(model, split):
    from cosub_seg.datasets.digit_scenes import _ink
    from cosub_seg.datasets.digits import digit_to_rgb
    from cosub_seg.datasets.ink import LUMA, contrasting_colour, paint, smooth_ground
    val, images, labels = split['val'], split['images'], split['labels'][split['val']]

    def top1(rgbs):
        with torch.no_grad():
            return round(100 * float((model.backbone(to_input(np.stack(rgbs))).argmax(-1).numpy() == labels).mean()), 2)

    rng = np.random.RandomState(0)
    plain = [digit_to_rgb(images[i], 32) for i in val]
    rows = [('as pretrained, light on black', top1(plain)), ('inverted', top1([255 - p for p in plain]))]
    rendered = {True: [], False: []}
    for i in val:
        for light in (True, False):
            while True:  # a ground of the wanted brightness: the ink contrasts with it
                ground = smooth_ground(rng, 32)
                if (float(ground.reshape(-1, 3).mean(0) @ LUMA) <= 128) == light:
                    break
            rgb = paint(ground, _ink(images[i], 32), contrasting_colour(rng, ground))
            rendered[light].append(np.clip(np.rint(rgb), 0, 255).astype(np.uint8))
    rows += [('scene ground, light ink', top1(rendered[True])), ('scene ground, dark ink', top1(rendered[False]))]
    for side in (20, 24, 40, 48):
        views = []
        for i in val:
            digit = digit_to_rgb(images[i], side)
            if side < 32:
                view = np.zeros((32, 32, 3), np.uint8)
                o = (32 - side) // 2
                view[o:o + side, o:o + side] = digit
            else:
                o = (side - 32) // 2
                view = digit[o:o + 32, o:o + 32]
            views.append(view)
        rows.append((f'{side}-pixel digit in the 32-pixel view', top1(views)))
    return rows


def digit_features(model, split, indices, mode, rng, canvas=64):
    """Patch tokens of the 2 x 2 patches at each digit's centre, the digit placed on a black canvas."""
    from cosub_seg.datasets.digits import digit_to_rgb
    views, centres = [], []
    for i in indices:
        side = rng.randint(28, 49) if mode == 'size' else 32
        top, left = (rng.randint(0, canvas - side + 1, size=2) if mode in ('offset', 'size')
                     else [(canvas - side) // 2] * 2)
        view = np.zeros((canvas, canvas, 3), np.uint8)
        view[top:top + side, left:left + side] = digit_to_rgb(split['images'][i], side)
        views.append(view)
        centres.append(((top + side // 2) // PATCH - 1, (left + side // 2) // PATCH - 1))
    maps = block_maps(model, np.stack(views))
    feats = [np.concatenate([m[n, :, r:r + 2, c:c + 2].permute(1, 2, 0).reshape(-1, m.shape[1]).numpy()
                             for n, (r, c) in enumerate(centres)]) for m in maps]
    return feats, np.repeat(split['labels'][indices], 4)


def scene_features(model, scenes: str, split: str):
    files = sorted(glob.glob(osp.join(scenes, 'images', split, '*.jpg')))
    if not files:
        raise SystemExit(f'no scenes under {osp.join(scenes, "images", split)}: run tools/prepare_data.py digits')
    images = np.stack([cv2.imread(f)[..., ::-1] for f in files])
    annotations = np.stack([cv2.imread(f.replace(f'{osp.sep}images{osp.sep}', f'{osp.sep}annotations{osp.sep}')
                                       .replace('.jpg', '.png'), cv2.IMREAD_GRAYSCALE) for f in files])
    n, h, w = annotations.shape
    blocks = annotations.reshape(n, h // PATCH, PATCH, w // PATCH, PATCH).transpose(0, 1, 3, 2, 4)
    blocks = blocks.reshape(n, h // PATCH, w // PATCH, PATCH * PATCH)
    labels = np.full(blocks.shape[:3], -1)
    for digit in range(10):  # annotation 2 + d is digit d; a patch counts when one digit covers over half of it
        labels[(blocks == 2 + digit).sum(-1) > PATCH * PATCH / 2] = digit
    keep = labels.reshape(-1) >= 0
    feats = []
    for start in range(0, n, 100):
        maps = block_maps(model, images[start:start + 100])
        feats.append([m.permute(0, 2, 3, 1).reshape(-1, m.shape[1]).numpy() for m in maps])
    feats = [np.concatenate(per_block) for per_block in zip(*feats)]
    return [f[keep] for f in feats], labels.reshape(-1)[keep]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=['read', 'probe-digits', 'probe-scenes'])
    parser.add_argument('config', help='the pretraining config as run (DIR/<config>.py)')
    parser.add_argument('checkpoint', help="the pretraining checkpoint, or 'none' for random weights")
    parser.add_argument('--mode', choices=['centre', 'offset', 'size'], default='centre')
    parser.add_argument('--scenes', default='data/digit_scenes')
    parser.add_argument('--threads', type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from cosub_seg.datasets.digits import load_digit_split
    model = load_classifier(args.config, args.checkpoint)
    if args.what == 'read':
        for name, value in read(model, load_digit_split()):
            print(f'{name:40s} {value:6.2f}')
        return
    if args.what == 'probe-digits':
        split, rng = load_digit_split(), np.random.RandomState(0)
        train = digit_features(model, split, split['train'], args.mode, rng)
        val = digit_features(model, split, split['val'], args.mode, rng)
    else:
        train = scene_features(model, args.scenes, 'training')
        val = scene_features(model, args.scenes, 'validation')
    print(f'{args.what} ({args.mode if args.what == "probe-digits" else args.scenes}): {len(train[1])} train / '
          f'{len(val[1])} val patches; val accuracy of the linear probe per block: {probe(*train, *val)}')


if __name__ == '__main__':
    main()
