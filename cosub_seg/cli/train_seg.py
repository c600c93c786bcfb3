"""Fine-tune a segmentor (UperNet on a cosub-pretrained backbone) with MMSegmentation.

Examples:
    cosub-train-seg configs/seg/upernet_cosub-deit3-tiny_digitscenes.py   # or: python tools/train_seg.py ...
    cosub-train-seg configs/seg/upernet_cosub-convnext-base_ade20k-512x512.py --amp --tensorboard
    bash tools/dist_train_seg.sh configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py 8
"""
import argparse

from cosub_seg.datasets import check_split_configs
from cosub_seg.engine import teardown_distributed
from cosub_seg.engine.console import build_runner
from cosub_seg.engine.launch import add_train_args, config_from_args
from cosub_seg.errors import cli_main
from cosub_seg.models.seg_backbone import check_pretrained_checkpoint


@cli_main
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cfg = config_from_args(add_train_args(parser).parse_args(argv))
    check_pretrained_checkpoint(cfg.model)  # before anything is built
    check_split_configs(cfg, splits=('val', ))
    runner = build_runner(cfg)
    runner.train()
    teardown_distributed()


if __name__ == '__main__':
    main()
