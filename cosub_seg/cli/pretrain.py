"""Pretrain a timm backbone on an ImageNet-style dataset with submodel co-training (cosub).

Examples:
    cosub-pretrain configs/pretrain/cosub_deit3-tiny_digits.py          # or: python tools/pretrain.py ...
    cosub-pretrain configs/pretrain/cosub_deit3-small_in1k.py --amp --cfg-options model.num_submodels=1
    bash tools/dist_pretrain.sh configs/pretrain/cosub_deit3-base_in1k.py 8
"""
import argparse

from cosub_seg.datasets import check_split_configs
from cosub_seg.engine import teardown_distributed
from cosub_seg.engine.console import build_runner
from cosub_seg.engine.launch import add_train_args, config_from_args
from cosub_seg.errors import cli_main


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cfg = config_from_args(add_train_args(parser).parse_args(argv))
    check_split_configs(cfg, splits=('val', ))  # before anything is built
    runner = build_runner(cfg)
    runner.train()
    teardown_distributed()


if __name__ == '__main__':
    main()
