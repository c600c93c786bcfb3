r"""One command from a pretraining config to a segmentation report.

pretraining -> the checkpoint handed to the segmentation config -> fine-tuning -> export (timm safetensors for the
backbone, mmseg init_model files for the segmentor) -> evaluation of the exported segmentor -> pictures ->
report.md + report.json. Each training or evaluation stage runs as its own process, the same command a user would
type (printed before it starts), so a failed stage can be rerun by hand.

Examples:
    cosub-pipeline configs/pretrain/cosub_deit3-tiny_digits.py configs/seg/upernet_cosub-deit3-tiny_digitscenes.py
    python tools/pipeline.py PRETRAIN_CONFIG SEG_CONFIG --work-dir work_dirs/run1 --tensorboard \
        --pretrain-options train_cfg.max_epochs=5 --seg-options train_cfg.max_iters=500

What WORK_DIR holds afterwards:
    pretrain/  seg/        the two training runs (logs, scalars.json, checkpoints, the configs as run)
    export/backbone/       model.safetensors + config.json: timm.create_model('local-dir:...', pretrained=True)
    export/segmentor/      <seg config>.py + .pth: mmseg.apis.init_model(config, checkpoint)
    eval/                  the evaluation log (metrics and confusion matrix in its JSON)
    pictures/              training curves, per-class IoU, confusion matrix, overlays/ (image | truth | prediction)
    report.md  report.json
"""
import argparse
import glob
import json
import os
import os.path as osp
import platform
import re
import shlex
import subprocess
import sys
import time
from typing import Dict, List, Optional

from cosub_seg.cli import tool
from cosub_seg.cli.pipeline_report import Checkpoints, Configs, ConfusionMatrix, PipelineReport
from cosub_seg.errors import DEBUG_HELP, MissingFileError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('pretrain_config', help='pretraining config (configs/pretrain/...)')
    parser.add_argument('seg_config', help='segmentation config (configs/seg/...)')
    parser.add_argument('--work-dir', help='where everything goes (default: work_dirs/pipeline_<seg config name>)')
    parser.add_argument('--pretrain-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='--cfg-options of the pretraining, e.g. train_cfg.max_epochs=5')
    parser.add_argument('--seg-options', nargs='+', default=[], metavar='KEY=VALUE',
                        help='--cfg-options of the fine-tuning (the evaluation uses the config as trained)')
    parser.add_argument('--use-best', action='store_true',
                        help="hand over the pretraining's best checkpoint (by val top-1) instead of its last")
    parser.add_argument('--amp', action='store_true', help='mixed precision in both training stages')
    parser.add_argument('--tensorboard', action='store_true', help='also log both training stages to TensorBoard')
    parser.add_argument('--num-overlays', type=int, default=4, help='validation images drawn (default: 4)')
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP + ' (passed on to every stage)')
    return parser.parse_args(argv)


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.abspath(path), osp.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def relative(path: str, work_dir: Optional[str] = None) -> str:
    """``path`` for the report: relative to the current directory (the repository root, where the tools run) when
    it lies inside it, else relative to ``work_dir`` (the report's folder) when inside that, else as given."""
    if _inside(path, os.curdir):
        return osp.relpath(path)
    if work_dir is not None and _inside(path, work_dir):
        return osp.relpath(path, work_dir)
    return path


def run_stage(name: str, module: str, args: List[str], commands: list) -> float:
    """Runs ``python -m <module> <args>`` with this interpreter, its output going to the console; returns the
    wall time in seconds. A failure stops the pipeline naming the stage."""
    command = [sys.executable, '-m', module, *args]
    commands.append(dict(stage=name, command=shlex.join([relative(sys.executable), *command[1:]])))
    print(f'\n== {name}: {shlex.join(command)}', flush=True)
    start = time.time()
    result = subprocess.run(command)
    if result.returncode != 0:
        raise SystemExit(f'the {name} stage failed (exit code {result.returncode}); its output is above, and the '
                         'command to rerun it by hand is printed before it')
    return time.time() - start


def last_checkpoint(work_dir: str) -> str:
    """The checkpoint MMEngine's ``last_checkpoint`` file of the run names."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        raise MissingFileError(f'{path} is missing: the run in {work_dir} saved no checkpoint')
    with open(path) as f:
        return f.read().strip()


def best_checkpoint(work_dir: str) -> str:
    """The ``best_*.pth`` that MMEngine's CheckpointHook (``save_best``) keeps."""
    found = sorted(glob.glob(osp.join(work_dir, 'best_*.pth')), key=osp.getmtime)
    if not found:
        raise MissingFileError(f'no best_*.pth in {work_dir}: the config keeps no best checkpoint '
                               '(default_hooks.checkpoint.save_best); run without --use-best')
    return found[-1]


def checkpoint_step(path: str) -> Optional[int]:
    """The epoch or iteration in an MMEngine checkpoint name (``epoch_25.pth``, ``best_..._iter_800.pth``)."""
    match = re.search(r'(?:epoch|iter)_(\d+)\.pth$', osp.basename(path))
    return int(match.group(1)) if match else None


def validation_at(records: List[dict], step: Optional[int], key: str) -> Optional[dict]:
    """The validation record of ``key`` taken at ``step`` (epoch of epoch-based runs), else the last one."""
    found = [r for r in records if key in r and 'loss' not in r]
    exact = [r for r in found if r.get('step') == step]
    return (exact or found or [None])[-1]


def read_test_metrics(eval_dir: str) -> dict:
    """The metrics MMEngine's LoggerHook wrote to ``<eval_dir>/<timestamp>/<timestamp>.json`` after testing."""
    found = sorted(glob.glob(osp.join(eval_dir, '*', '*.json')), key=osp.getmtime)
    if not found:
        raise MissingFileError(f'no <timestamp>/<timestamp>.json under {eval_dir}: the evaluation wrote no metrics')
    with open(found[-1]) as f:
        return json.load(f)


def environment() -> Dict[str, str]:
    import mmengine
    import mmseg
    import timm
    import torch
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f'CPU ({os.cpu_count()} cores)'
    return dict(python=platform.python_version(), torch=torch.__version__, timm=timm.__version__,
                mmengine=mmengine.__version__, mmseg=mmseg.__version__, device=device)


@tool
def main(argv=None):
    args = parse_args(argv)
    seg_name = osp.splitext(osp.basename(args.seg_config))[0]
    work_dir = args.work_dir or osp.join('work_dirs', f'pipeline_{seg_name}')
    dirs = {name: osp.join(work_dir, name) for name in ('pretrain', 'seg', 'eval', 'export', 'pictures')}
    for path, what in ((args.pretrain_config, 'pretraining config'), (args.seg_config, 'segmentation config')):
        if not osp.isfile(path):
            raise MissingFileError(f'{what} {path} does not exist')
    debug = ['--debug'] if args.debug else []
    train_flags = [*(['--amp'] if args.amp else []), *(['--tensorboard'] if args.tensorboard else []), *debug]
    times, commands = {}, []
    start = time.time()

    # 1. Pretraining.
    times['pretrain'] = run_stage('pretraining', 'cosub_seg.cli.pretrain', [
        args.pretrain_config, '--work-dir', dirs['pretrain'], *train_flags,
        *(['--cfg-options', *args.pretrain_options] if args.pretrain_options else [])], commands)
    pretrained = best_checkpoint(dirs['pretrain']) if args.use_best else last_checkpoint(dirs['pretrain'])

    # 2. Fine-tuning from that checkpoint (the hand-off comes last: it wins over --seg-options).
    handoff = ['model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={pretrained}']
    times['finetune'] = run_stage('fine-tuning', 'cosub_seg.cli.train_seg', [
        args.seg_config, '--work-dir', dirs['seg'], *train_flags,
        '--cfg-options', *args.seg_options, *handoff], commands)
    finetuned = last_checkpoint(dirs['seg'])

    # 3. Export, from the configs as the runs dumped them (command-line options included).
    from cosub_seg.convert import export_backbone, export_segmentor
    pretrain_used = osp.join(dirs['pretrain'], osp.basename(args.pretrain_config))
    seg_used = osp.join(dirs['seg'], osp.basename(args.seg_config))
    print('\n== export', flush=True)
    tick = time.time()
    backbone = export_backbone(pretrain_used, pretrained, osp.join(dirs['export'], 'backbone'))
    segmentor = export_segmentor(seg_used, finetuned, osp.join(dirs['export'], 'segmentor'))
    times['export'] = time.time() - tick

    # 4. Evaluation of the exported segmentor: the numbers belong to the files a user takes away.
    times['evaluate'] = run_stage('evaluation', 'cosub_seg.cli.test_seg', [
        segmentor['config'], segmentor['checkpoint'], '--work-dir', dirs['eval'], '--confusion-matrix', *debug],
        commands)
    metrics = read_test_metrics(dirs['eval'])

    # 5. Pictures.
    print('\n== pictures', flush=True)
    tick = time.time()
    notes: List[str] = []
    pictures = draw_pictures(dirs, metrics, segmentor, args.num_overlays, notes)
    times['pictures'] = time.time() - tick
    times['total'] = time.time() - start

    # 6. Report.
    def rel(path):
        return relative(path, work_dir)

    from cosub_seg.visualization import read_scalars
    pretrain_records = read_scalars(dirs['pretrain'])
    top1 = validation_at(pretrain_records, checkpoint_step(pretrained), 'accuracy/top1')
    classes = [k[len('IoU.'):] for k in metrics if k.startswith('IoU.')]
    report = PipelineReport(
        top1=top1.get('accuracy/top1') if top1 else None,
        top5=top1.get('accuracy/top5') if top1 else None,
        top1_at_epoch=top1.get('step') if top1 else None,
        mIoU=metrics.get('mIoU'), aAcc=metrics.get('aAcc'), mAcc=metrics.get('mAcc'),
        per_class_iou={name: metrics[f'IoU.{name}'] for name in classes},
        confusion_matrix=ConfusionMatrix(classes=classes, counts=metrics.get('confusion_matrix')),
        wall_time_s={k: round(v, 1) for k, v in times.items()},
        # Paths relative to the repository root (where the pipeline ran), or to the report's folder for a work dir
        # outside it (see relative()); pictures relative to the report, for its links.
        configs=Configs(pretrain=rel(args.pretrain_config), pretrain_as_run=rel(pretrain_used),
                        seg=rel(args.seg_config), seg_as_run=rel(seg_used),
                        pretrain_options=args.pretrain_options, seg_options=args.seg_options),
        checkpoints=Checkpoints(pretrain=rel(pretrained), pretrain_choice='best' if args.use_best else 'last',
                                seg=rel(finetuned)),
        exports=dict(backbone={k: rel(v) if k != 'weights_kind' else v for k, v in backbone.items()},
                     segmentor={k: rel(v) for k, v in segmentor.items()}),
        paths_relative_to='the repository root' if _inside(work_dir, os.curdir) else
        "the repository root (configs) and this report's folder (the files of the run)",
        pictures={k: ([osp.relpath(p, work_dir) for p in v] if isinstance(v, list) else osp.relpath(v, work_dir))
                  for k, v in pictures.items()},
        notes=notes,
        commands=commands,
        environment=environment(),
    )
    with open(osp.join(work_dir, 'report.json'), 'w') as f:
        json.dump(report.to_json(), f, indent=2)
    with open(osp.join(work_dir, 'report.md'), 'w') as f:
        f.write(report.markdown())
    print(report.summary(work_dir))
    return report


def draw_curves(run_dir: str, out_file: str, title: str, options_flag: str, notes: List[str]) -> Optional[str]:
    """The training curves of the run in ``run_dir``, or None with a note saying why there are none: a run shorter
    than its logger interval logs no training records."""
    from cosub_seg.errors import DataError
    from cosub_seg.visualization import plot_training_curves, read_scalars
    try:
        return plot_training_curves(read_scalars(run_dir), out_file, title=title)
    except (DataError, MissingFileError):
        interval = _logger_interval(run_dir)
        notes.append(f'no {title} curves: the run in {osp.basename(run_dir)}/ logged no training records (loss or '
                     f'lr). A run shorter than its logger interval (default_hooks.logger.interval = {interval}) logs '
                     f'none: give a smaller one, e.g. {options_flag} default_hooks.logger.interval=1')
        print(f'note: {notes[-1]}', flush=True)
        return None


def _logger_interval(run_dir: str):
    from mmengine.config import Config
    found = glob.glob(osp.join(run_dir, '*.py'))
    try:
        return Config.fromfile(found[0]).default_hooks.logger.interval if found else '?'
    except Exception:  # noqa: BLE001  only for the note
        return '?'


def draw_pictures(dirs: dict, metrics: dict, segmentor: dict, num_overlays: int, notes: List[str]) -> dict:
    """Training curves of both runs, per-class IoU, confusion matrix and ``num_overlays`` prediction overlays of
    the exported segmentor on the validation images; returns the paths. A picture that cannot be drawn is left out,
    with the reason in ``notes``."""
    from mmseg.apis import init_model
    from mmseg.registry import DATASETS as SEG_DATASETS
    from mmengine.registry import DefaultScope

    from cosub_seg.visualization import draw_predictions, plot_confusion_matrix, plot_per_class_iou
    out = dirs['pictures']
    os.makedirs(out, exist_ok=True)
    pictures = {}
    for key, run, title, flag in (('pretrain_curves', 'pretrain', 'cosub pretraining', '--pretrain-options'),
                                  ('finetune_curves', 'seg', 'segmentation fine-tuning', '--seg-options')):
        path = draw_curves(dirs[run], osp.join(out, f'{key}.png'), title, flag, notes)
        if path is not None:
            pictures[key] = path
    per_class = {k[len('IoU.'):]: v for k, v in metrics.items() if k.startswith('IoU.')}
    pictures['per_class_iou'] = plot_per_class_iou(per_class, osp.join(out, 'per_class_iou.png'),
                                                   title=f'per-class IoU (mIoU {metrics["mIoU"]:.2f})')
    if metrics.get('confusion_matrix') is not None:
        pictures['confusion_matrix'] = plot_confusion_matrix(metrics['confusion_matrix'], list(per_class),
                                                             osp.join(out, 'confusion_matrix.png'))
    model = init_model(segmentor['config'], segmentor['checkpoint'], device='cpu')
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = SEG_DATASETS.build(model.cfg.test_dataloader.dataset)
    pictures['overlays'] = draw_predictions(model, dataset, osp.join(out, 'overlays'), num_overlays)
    return pictures


if __name__ == '__main__':
    main()
