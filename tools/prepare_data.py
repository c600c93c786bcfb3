"""Prepare datasets.

    python tools/prepare_data.py digits [--out data/digits] [--size 32] [--scenes-out data/digit_scenes]
    python tools/prepare_data.py ade20k [--root data/ade/ADEChallengeData2016]
    python tools/prepare_data.py {cityscapes,coco_stuff164k} [--root data/<name>] [--convert [--workers N]]
    python tools/prepare_data.py pascal_context [--root data/VOCdevkit/VOC2010]
    python tools/prepare_data.py imagenet21k [--root data/imagenet21k] [--unpack]
    python tools/prepare_data.py {cifar10,cifar100,flowers102,stanford_cars,inat2018,inat2019} [--root data/<name>]
"""
import argparse
import time

from cosub_seg.datasets.ade20k import check_ade20k_layout
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.datasets.digits import write_digits
from cosub_seg.datasets.imagenet21k import count_synsets, unpack_class_tars
from cosub_seg.datasets.seg_sets import SEG_SETS, prepare_seg_set
from cosub_seg.datasets.transfer import DEFAULT_ROOTS, TRANSFER_CHECKS, check_transfer_layout
from cosub_seg.errors import DEBUG_HELP, cli_main


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    sub = parser.add_subparsers(dest='dataset', required=True)
    digits = sub.add_parser('digits', help="scikit-learn's handwritten digits as an ImageNet-style folder")
    digits.add_argument('--out', default='data/digits', help='output folder (default: data/digits)')
    digits.add_argument('--size', type=int, default=32, help='image side in pixels (default: 32)')
    digits.add_argument('--scenes-out', default='data/digit_scenes',
                        help='output folder of the segmentation scenes (default: data/digit_scenes)')
    ade = sub.add_parser('ade20k', help='check an ADEChallengeData2016 folder: layout, counts, image/label pairs')
    ade.add_argument('--root', default='data/ade/ADEChallengeData2016', help='the ADEChallengeData2016 folder')
    in21k = sub.add_parser('imagenet21k', help='check (and with --unpack, unpack) an ImageNet-21k synset folder')
    in21k.add_argument('--root', default='data/imagenet21k', help='the folder of synsets (default: data/imagenet21k)')
    in21k.add_argument('--unpack', action='store_true',
                       help='unpack the <wnid>.tar archives of the winter21 / fall11 release into <wnid>/ folders')
    for name, (title, _) in TRANSFER_CHECKS.items():  # classification transfer sets: official layout and counts
        check = sub.add_parser(name, help=f'check a {title} download: layout, images per split, classes')
        check.add_argument('--root', default=DEFAULT_ROOTS[name], help=f'its folder (default: {DEFAULT_ROOTS[name]})')
    for name, entry in SEG_SETS.items():  # more segmentation sets (cosub_seg/datasets/seg_sets.py)
        seg = sub.add_parser(name, help=entry['help'])
        seg.add_argument('--root', default=entry['root'], help=f'its folder (default: {entry["root"]})')
        if entry['convert'] is not None:
            seg.add_argument('--convert', action='store_true',
                             help="first write the *_labelTrainIds.png mmseg reads next to the release's label maps")
            seg.add_argument('--workers', type=int, default=1, help='processes converting (default: 1)')
    args = parser.parse_args(argv)

    start = time.time()
    if args.dataset == 'digits':
        counts = write_digits(args.out, size=args.size, progress=True)
        print(f'wrote {counts["train"]} train and {counts["val"]} val digits to {args.out}')
        scenes = write_digit_scenes(args.scenes_out, progress=True)
        print(f'wrote {scenes["training"]} training and {scenes["validation"]} validation digit scenes to '
              f'{args.scenes_out} in {time.time() - start:.1f}s')
    elif args.dataset == 'imagenet21k':
        if args.unpack:
            print(f'unpacked {unpack_class_tars(args.root, progress=True)} synset archives in {args.root}')
        counts = count_synsets(args.root)
        if counts['archives']:
            print(f'{args.root} still holds {counts["archives"]} synset archives (<wnid>.tar): run with --unpack')
        print(f'{args.root}: {counts["synsets"]:,} synset folders, {counts["images"]:,} images (winter21: 19,167 '
              'synsets, fall11: 21,841; configs/_base_/datasets/imagenet21k_3aug_src.py sets the count)')
    elif args.dataset == 'ade20k':
        counts = check_ade20k_layout(args.root)
        print(f'{args.root}: {counts["training"]} training and {counts["validation"]} validation image/annotation '
              'pairs, as ADE20k should have')
    elif args.dataset in TRANSFER_CHECKS:
        print(check_transfer_layout(args.dataset, args.root))
    elif args.dataset in SEG_SETS:
        print(prepare_seg_set(args.dataset, args.root, convert=getattr(args, 'convert', False),
                              workers=getattr(args, 'workers', 1)))


if __name__ == '__main__':
    main()
