"""Evaluate a segmentor checkpoint: prints aAcc / mIoU / mAcc and the per-class IoU table, with a progress bar.

Examples:
    cosub-test-seg configs/seg/upernet_cosub-deit3-tiny_digitscenes.py CHECKPOINT
    cosub-test-seg CONFIG CHECKPOINT --tta --out results/ --show-dir vis/ --confusion-matrix
    bash tools/dist_test_seg.sh CONFIG CHECKPOINT 8 --tta
"""
import argparse
import os.path as osp

from mmengine.config import DictAction

from cosub_seg.cli import tool
from cosub_seg.errors import DEBUG_HELP, ConfigKeyError, MissingFileError
from cosub_seg.runtime import build_runner, check_split_configs, teardown_distributed
from cosub_seg.runtime.launch import load_config, prepare_run


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='where the evaluation log goes (default: work_dirs/<config name>)')
    parser.add_argument('--tta', action='store_true',
                        help="test-time augmentation as the config's tta_pipeline gives it: several scales, plus "
                        'flips where it has them (ADE20k configs: 0.5-1.75 + flip; digits: 0.75-1.25, no flip)')
    parser.add_argument('--out', help="write the predicted label maps (PNG) to this folder, in the annotations' "
                        'convention: with reduce_zero_label (ADE20k, digit scenes) class k is saved as k + 1')
    parser.add_argument('--show-dir', help='write a picture per image to this folder: image | ground truth | '
                        'prediction | errors, at least 384 px a panel, with a legend of the classes')
    parser.add_argument('--confusion-matrix', action='store_true',
                        help='also count the pixel confusion matrix (written to the JSON log of the run)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm'], default='none', help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    return parser.parse_args(argv)


@tool
def main(argv=None):
    args = parse_args(argv)
    if not osp.isfile(args.checkpoint):
        raise MissingFileError(f'checkpoint file {args.checkpoint} does not exist')
    cfg = load_config(args.config, args.cfg_options, args.work_dir)
    cfg.load_from = args.checkpoint
    if args.tta:
        if 'tta_pipeline' not in cfg or 'tta_model' not in cfg:
            raise ConfigKeyError(f'--tta needs tta_pipeline and tta_model in {args.config}')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model
    if args.out:
        cfg.test_evaluator['output_dir'] = args.out
    if args.confusion_matrix:
        evaluators = cfg.test_evaluator if isinstance(cfg.test_evaluator, (list, tuple)) else [cfg.test_evaluator]
        ignore_index = evaluators[0].get('ignore_index', 255)
        cfg.test_evaluator = [*evaluators, dict(type='ConfusionMatrixMetric', ignore_index=ignore_index)]
        if cfg.get('log_processor', {}).get('type', 'LogProcessor') == 'LogProcessor':
            # The matrix goes to the JSON log; the console and the text log get its shape.
            cfg.log_processor = dict(cfg.get('log_processor', {}), type='CompactLogProcessor')
    if args.show_dir:
        hook = cfg.default_hooks.get('visualization')
        if hook is None:
            raise ConfigKeyError(
                f'--show-dir needs default_hooks.visualization (PredictionVisualizationHook) in {args.config}')
        hook.update(draw=True, interval=1)
        cfg.visualizer['save_dir'] = args.show_dir
    cfg.custom_hooks = [*cfg.get('custom_hooks', []), dict(type='ProgressBarHook')]
    check_split_configs(cfg, splits=('test', ))  # before anything is built
    prepare_run(cfg, args.launcher, args.local_rank)
    runner = build_runner(cfg)
    metrics = runner.test()
    if runner.rank == 0:
        print('  '.join(f'{key}: {metrics[key]:.2f}' for key in ('aAcc', 'mIoU', 'mAcc') if key in metrics))
    teardown_distributed()  # a distributed run exits here
    return metrics


if __name__ == '__main__':
    main()
