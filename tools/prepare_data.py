"""Prepare datasets.

    python tools/prepare_data.py digits [--out data/digits] [--size 32]
"""
import argparse
import time

from cosub_seg.datasets.digits import write_digits


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest='dataset', required=True)
    digits = sub.add_parser('digits', help="scikit-learn's handwritten digits as an ImageNet-style folder")
    digits.add_argument('--out', default='data/digits', help='output folder (default: data/digits)')
    digits.add_argument('--size', type=int, default=32, help='image side in pixels (default: 32)')
    args = parser.parse_args(argv)

    start = time.time()
    if args.dataset == 'digits':
        counts = write_digits(args.out, size=args.size)
        print(f'wrote {counts["train"]} train and {counts["val"]} val digits to {args.out} '
              f'in {time.time() - start:.1f}s')


if __name__ == '__main__':
    main()
