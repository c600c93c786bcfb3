"""Pretrain a timm backbone on an ImageNet-style dataset with submodel co-training (cosub).

Examples:
    cosub-pretrain configs/pretrain/cosub_deit3-tiny_digits.py          # or: python tools/pretrain.py ...
    cosub-pretrain configs/pretrain/cosub_deit3-small_in1k.py --amp --cfg-options model.num_submodels=1
    bash tools/dist_pretrain.sh configs/pretrain/cosub_deit3-base_in1k.py 8
"""
import argparse

from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from cosub_seg.engine import teardown_distributed
from cosub_seg.engine.launch import add_train_args, config_from_args


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cfg = config_from_args(add_train_args(parser).parse_args(argv))
    runner = RUNNERS.build(cfg) if 'runner_type' in cfg else Runner.from_cfg(cfg)
    runner.train()
    teardown_distributed()


if __name__ == '__main__':
    main()
