r"""One command from a pretraining config to a segmentation report: pretraining -> hand-off -> fine-tuning ->
export -> evaluation -> pictures -> report.md + report.json (`make demo` runs it on the digits).

Examples:
    python tools/pipeline.py configs/pretrain/cosub_deit3-tiny_digits.py \
        configs/seg/upernet_cosub-deit3-tiny_digitscenes.py --work-dir work_dirs/demo
    python tools/pipeline.py PRETRAIN_CONFIG SEG_CONFIG --tensorboard \
        --pretrain-options train_cfg.max_epochs=5 --seg-options train_cfg.max_iters=500
    python tools/pipeline.py PRETRAIN_CONFIG SEG_CONFIG --compare-random-init   # + the gain over random weights

report.md opens with what was done and what it means (top-1, mIoU and its weakest class, the gap to random
initialisation when measured); its commands and paths are relative to the repository root.

The code is cosub_seg/cli/pipeline.py (installed as the console script ``cosub-pipeline``).
"""
from cosub_seg.cli.pipeline import main

if __name__ == '__main__':
    main()
