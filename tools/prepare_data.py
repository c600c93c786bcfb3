"""Prepare datasets.

    python tools/prepare_data.py digits [--out data/digits] [--size 32] [--scenes-out data/digit_scenes]
    python tools/prepare_data.py ade20k [--root data/ade/ADEChallengeData2016]
"""
import argparse
import time

from cosub_seg.datasets.ade20k import check_ade20k_layout
from cosub_seg.datasets.digit_scenes import write_digit_scenes
from cosub_seg.datasets.digits import write_digits
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
    args = parser.parse_args(argv)

    start = time.time()
    if args.dataset == 'digits':
        counts = write_digits(args.out, size=args.size, progress=True)
        print(f'wrote {counts["train"]} train and {counts["val"]} val digits to {args.out}')
        scenes = write_digit_scenes(args.scenes_out, progress=True)
        print(f'wrote {scenes["training"]} training and {scenes["validation"]} validation digit scenes to '
              f'{args.scenes_out} in {time.time() - start:.1f}s')
    elif args.dataset == 'ade20k':
        counts = check_ade20k_layout(args.root)
        print(f'{args.root}: {counts["training"]} training and {counts["validation"]} validation image/annotation '
              'pairs, as ADE20k should have')


if __name__ == '__main__':
    main()
