"""Fine-tune a segmentor (UperNet on a cosub-pretrained backbone) with MMSegmentation.

Examples:
    cosub-train-seg configs/seg/upernet_cosub-deit3-tiny_digitscenes.py   # or: python tools/train_seg.py ...
    cosub-train-seg configs/seg/upernet_cosub-convnext-base_ade20k-512x512.py --amp --tensorboard
    bash tools/dist_train_seg.sh configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py 8
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
