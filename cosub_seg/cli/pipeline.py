r"""One command from a pretraining config to a segmentation report.

pretraining -> frozen-backbone probes of it (kNN, linear) -> the checkpoint handed to the segmentation config ->
fine-tuning -> export (timm safetensors for the backbone, mmseg init_model files and the model folder for the
segmentor) -> evaluation of the exported segmentor -> pictures -> ONNX: model.onnx of the exported segmentor,
tools/segment.py with ONNX Runtime on the validation scenes of the pictures, and ONNX Runtime's agreement with PyTorch
on them -> report.md + report.json. Each stage is the same command a user would type (printed before it starts, its
paths relative to the repository root, where the pipeline runs), so a failed stage can be rerun by hand. The training,
export-to-ONNX and segmentation stages run as their own processes; the short ones (probes, evaluation) run that
command's main() in the pipeline's process, which has the libraries imported already (a new process would spend
about 8 s on 2 CPU cores importing them again).

A failed stage stops the pipeline (exit status 1) naming it, except the ONNX stage, the last one: where it fails
(onnxscript missing, an export the graph checks refuse) report.md and report.json are written all the same, their
ONNX section giving the failing step, its error and the command that reruns it, and then the pipeline exits with
status 1. --no-onnx skips the stage (about 50 s for the demo on 2 CPU cores, most of it the export).

With --compare-random-init the fine-tuning runs a second time with the same config and options but a randomly
initialised backbone (model.backbone.init_cfg=None), is evaluated the same way, and the report gives both mIoUs and
what pretraining adds. It doubles the fine-tuning time, so it is off by default.

Examples:
    cosub-pipeline configs/pretrain/cosub_deit3-tiny_digits.py configs/seg/upernet_cosub-deit3-tiny_digitscenes.py
    python tools/pipeline.py PRETRAIN_CONFIG SEG_CONFIG --work-dir work_dirs/run1 --tensorboard \
        --pretrain-options train_cfg.max_epochs=5 --seg-options train_cfg.max_iters=500 --compare-random-init

What WORK_DIR holds afterwards:
    pretrain/  seg/        the two training runs (logs, scalars.json, checkpoints, the configs as run)
    probes/                compare.md / compare.json / compare.png of tools/compare_backbones.py on the pretrained
                           backbone (kNN k = 10, 20, 100 and the linear probe, one seed), unless --no-probes
    export/backbone/       model.safetensors + config.json: timm.create_model('local-dir:...', pretrained=True)
    export/segmentor/      <seg config>.py + .pth: mmseg.apis.init_model(config, checkpoint); the model folder
                           (config.json, model.safetensors, model.onnx): cosub_seg.Segmenter, tools/segment.py
    eval/                  the evaluation log (metrics and confusion matrix in its JSON)
    seg_random_init/  eval_random_init/   with --compare-random-init: the fine-tuning from random weights, its
                           evaluation
    pictures/              training curves (validation at every evaluation), per-class IoU, confusion matrix,
                           overlays/ (image | truth | prediction | errors, at least 384 px a panel, class legend)
    onnx_segment/          scenes/ (copies of the pictures' validation scenes), labels/ and overlays/ of
                           tools/segment.py on them with model.onnx, agreement.json (ONNX Runtime vs PyTorch), unless
                           --no-onnx
    report.md  report.json its first lines say what was done and what came of it: the backbone's top-1, the mIoU
                           and its weakest class, and what pretraining adds over random initialisation if measured
"""
import argparse
import glob
import importlib.util
import json
import os
import os.path as osp
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from cosub_seg.cli import tool
from cosub_seg.cli.pipeline_report import (Checkpoints, Configs, ConfusionMatrix, OnnxCheck, PipelineReport,
                                           RandomInit, Setup)
from cosub_seg.errors import DEBUG_HELP, MissingFileError, one_line


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
    parser.add_argument('--compare-random-init', action='store_true',
                        help='also fine-tune from a randomly initialised backbone (same config and options, '
                        'model.backbone.init_cfg=None; WORK_DIR/seg_random_init), evaluate it the same way and '
                        'report what pretraining adds. Doubles the fine-tuning time')
    parser.add_argument('--probe-data', metavar='DIR',
                        help='ImageNet-style folder (train/, val/ class folders) for the frozen-backbone probes of the '
                        'pretrained backbone (kNN and linear probe, tools/compare_backbones.py; WORK_DIR/probes). '
                        "Default: the pretraining data, when it is such a folder")
    parser.add_argument('--no-probes', action='store_true', help='skip the frozen-backbone probes')
    parser.add_argument('--no-onnx', action='store_true',
                        help='skip the last stage (about 50 s for the demo on 2 CPU cores): model.onnx of the exported '
                        'segmentor (tools/convert_checkpoint.py onnx), tools/segment.py with ONNX Runtime on the '
                        "pictures' validation scenes (WORK_DIR/onnx_segment) and its agreement with PyTorch")
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP + ' (passed on to every stage)')
    return parser.parse_args(argv)


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.abspath(path), osp.abspath(folder)
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def relative(path: str, work_dir: Optional[str] = None) -> str:
    """``path`` for the report: relative to the current directory (the repository root, where the tools run) when
    it lies inside it, else relative to ``work_dir`` (the report's folder) when inside that, else relative to the
    current directory all the same (never a machine's absolute path)."""
    if _inside(path, os.curdir):
        return osp.relpath(path)
    if work_dir is not None and _inside(path, work_dir):
        return osp.relpath(path, work_dir)
    return osp.relpath(path)


def for_run(path: str) -> str:
    """A path to hand to a stage: relative to the repository root when inside it (MMEngine makes work dirs
    absolute, so ``last_checkpoint`` names an absolute path; the configs as run then keep machine paths out), else
    absolute."""
    return osp.relpath(path) if _inside(path, os.curdir) else osp.abspath(path)


def shown_argument(argument: str) -> str:
    """A stage's argument as the printed command gives it: an absolute path, alone or as the value of a
    ``KEY=VALUE`` option, relative to the repository root (where the command is to be run)."""
    if osp.isabs(argument):
        return osp.relpath(argument)
    key, sep, value = argument.partition('=')
    if sep and osp.isabs(value):
        return f'{key}={osp.relpath(value)}'
    return argument


def interpreter() -> str:
    """The Python to show in commands: ``.venv/bin/python`` (this interpreter relative to the repository root) when
    it lies inside it, else plain ``python``."""
    return osp.relpath(sys.executable) if _inside(sys.executable, os.curdir) else 'python'


def stage_command(module: str, args: List[str]) -> str:
    """The command of a stage as printed and reported: to be run from the repository root, no machine path."""
    return shlex.join([interpreter(), '-m', module, *map(shown_argument, args)])


def run_stage(name: str, module: str, args: List[str], commands: list, in_process: bool = False) -> float:
    """Runs ``python -m <module> <args>`` with this interpreter, its output going to the console; returns the
    wall time in seconds. The command is printed first and kept in ``commands`` as :func:`stage_command` gives it.
    A failure stops the pipeline naming the stage.

    ``in_process``: the tool's ``main(args)`` runs in this process instead, for the short stages (probes,
    evaluation), which would otherwise spend about as long importing torch, MMEngine, mmseg and timm again (about
    8 s on 2 CPU cores) as working. The environment variables and torch's thread count are put back afterwards
    (MMEngine's runner sets OMP_NUM_THREADS and the like for the processes started after it). Training stages keep
    their own process."""
    shown = stage_command(module, args)
    commands.append(dict(stage=name, command=shown))
    print(f'\n== {name}: {shown}', flush=True)
    start = time.time()
    if in_process:
        code = _run_main(module, args)
    else:
        code = subprocess.run([sys.executable, '-m', module, *args]).returncode
    if code != 0:
        raise SystemExit(f'the {name} stage failed (exit code {code}); its output is above, and the '
                         'command to rerun it by hand is printed before it')
    return time.time() - start


def _run_main(module: str, args: List[str]) -> int:
    """``importlib.import_module(module).main(args)`` as ``python -m`` would exit: 0, or the SystemExit's code (a
    tool's one-line error is printed by the tool, and exits 1). Other exceptions propagate (a bug, with its
    traceback)."""
    import importlib

    import torch
    environ, threads = dict(os.environ), torch.get_num_threads()
    try:
        importlib.import_module(module).main(list(args))
        return 0
    except SystemExit as err:
        if err.code is None or isinstance(err.code, int):
            return err.code or 0
        print(err.code, file=sys.stderr, flush=True)
        return 1
    finally:
        sys.stdout.flush()
        if dict(os.environ) != environ:
            os.environ.clear()
            os.environ.update(environ)
        torch.set_num_threads(threads)


def run_optional_stage(name: str, module: str, args: List[str], commands: list) -> Tuple[float, Optional[str]]:
    """:func:`run_stage` for a stage whose failure must not stop the pipeline: returns the wall time and None, or
    what went wrong (the exit code and the last line of the stage's stderr, where our tools print their one-line
    error). Its stderr is captured for that and printed when the stage ends; its stdout goes to the console as
    it comes."""
    shown = stage_command(module, args)
    commands.append(dict(stage=name, command=shown))
    print(f'\n== {name}: {shown}', flush=True)
    start = time.time()
    result = subprocess.run([sys.executable, '-m', module, *args], stderr=subprocess.PIPE, text=True)
    seconds = time.time() - start
    err = result.stderr or ''
    if err:
        sys.stdout.flush()
        sys.stderr.write(err)
        sys.stderr.flush()
    if result.returncode == 0:
        return seconds, None
    last = [line.strip() for line in err.splitlines() if line.strip()]
    return seconds, f'exit code {result.returncode}' + (f': {last[-1][:500]}' if last else '')


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


def probe_folder(pretrain_config: str, notes: List[str]) -> Optional[str]:
    """The pretraining data's folder when it holds ``train/`` and ``val/`` class folders (what the probes read);
    else None, with a note saying how to probe."""
    from mmengine.config import Config
    dataset = Config.fromfile(pretrain_config).train_dataloader.dataset
    while isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    root = dataset.get('data_root')
    if root and all(osp.isdir(osp.join(root, split)) for split in ('train', 'val')):
        return relative(root)
    notes.append(f'probes: not run, the pretraining data ({root or dataset.get("type")}) is not a folder with train/ '
                 'and val/ class folders; --probe-data DIR names one')
    return None


def probe_device() -> List[str]:
    import torch
    return ['--device', 'cuda'] if torch.cuda.is_available() else []


def read_probes(out_dir: str, data: str, work_dir: str):
    """The :class:`Probes` of ``compare.json``, written by the probe stage in ``out_dir``."""
    from cosub_seg.cli.pipeline_report import Probes
    path = osp.join(out_dir, 'compare.json')
    if not osp.isfile(path):
        raise MissingFileError(f'{path} is missing: the probe stage wrote no results')
    with open(path) as f:
        found = json.load(f)
    (result,) = found['backbones'].values()
    return Probes(data=relative(data), features=result['features'],
                  knn_top1={k: round(v['top1'], 4) for k, v in result['knn'].items()},
                  linear_top1=round(result['linear']['top1_mean'], 4),
                  linear_top1_std=round(result['linear']['top1_std'], 4), seeds=found['seeds'],
                  table=relative(osp.join(out_dir, 'compare.md'), work_dir))


def read_test_metrics(eval_dir: str) -> dict:
    """The metrics MMEngine's LoggerHook wrote to ``<eval_dir>/<timestamp>/<timestamp>.json`` after testing."""
    found = sorted(glob.glob(osp.join(eval_dir, '*', '*.json')), key=osp.getmtime)
    if not found:
        raise MissingFileError(f'no <timestamp>/<timestamp>.json under {eval_dir}: the evaluation wrote no metrics')
    with open(found[-1]) as f:
        return json.load(f)


ONNX_PACKAGES = ('onnx', 'onnxscript', 'onnxruntime')  # torch's dynamo exporter, its checks, the Segmenter


def missing_onnx_packages() -> List[str]:
    return [name for name in ONNX_PACKAGES if importlib.util.find_spec(name) is None]


def validation_scenes(config: str, num_images: int) -> List[str]:
    """The image files of the ``num_images`` scenes :func:`draw_pictures` draws: the test split of ``config`` (the
    exported segmentor's), at the same spread indices."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS as SEG_DATASETS

    from cosub_seg.visualization.seg_visualizer import spread_indices
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = SEG_DATASETS.build(Config.fromfile(config).test_dataloader.dataset)
    return [dataset.get_data_info(i)['img_path'] for i in spread_indices(len(dataset), num_images)]


def onnx_stage(folder: str, config: str, out_dir: str, num_images: int, work_dir: str, commands: list,
               debug: List[str]) -> OnnxCheck:
    """The pipeline's last stage, each step a process where a user would run one: ``model.onnx`` in the model
    folder ``folder`` (``tools/convert_checkpoint.py onnx``), ``tools/segment.py`` with ONNX Runtime on copies of
    the validation scenes of the pictures (``out_dir/scenes``; labels/ and overlays/ beside them), then ONNX
    Runtime vs PyTorch on those scenes (:func:`~cosub_seg.inference.segmenter.backend_agreement`,
    ``out_dir/agreement.json``). A failed step ends the stage: the returned :class:`OnnxCheck` says which, why and
    how to rerun it."""
    def rel(path):
        return relative(path, work_dir)

    model = osp.join(folder, 'model.onnx')
    shutil.rmtree(out_dir, ignore_errors=True)  # a rerun's work dir: no label file or overlay of another run

    def failed(stage: str, reason: str, retry: Optional[str], **done) -> OnnxCheck:
        print(f'\n== the {stage} step failed: {reason}; the report is written without it', flush=True)
        return OnnxCheck(status='failed', failed_stage=stage, reason=reason, retry=retry, model=rel(model), **done)

    export_seconds, problem = run_optional_stage('ONNX export', 'cosub_seg.cli.convert_checkpoint', [
        *debug, 'onnx', for_run(folder)], commands)
    print(f'== ONNX export: {export_seconds:.1f} s', flush=True)
    export_seconds = round(export_seconds, 1)
    if problem:
        return failed('ONNX export', problem, commands[-1]['command'], export_seconds=export_seconds)

    scenes_dir = osp.join(out_dir, 'scenes')
    os.makedirs(scenes_dir)
    scenes = []
    try:
        for path in validation_scenes(config, num_images):
            scenes.append(osp.join(scenes_dir, osp.basename(path)))
            shutil.copyfile(path, scenes[-1])
    except Exception as err:  # noqa: BLE001  the report keeps the rest; --debug shows the traceback
        if debug:
            raise
        return failed('scene selection', one_line(err), None, export_seconds=export_seconds)
    segment_seconds, problem = run_optional_stage('ONNX segmentation', 'cosub_seg.cli.segment', [
        for_run(folder), for_run(scenes_dir), '--out', for_run(out_dir), '--overlay', '--backend', 'onnx', *debug],
        commands)
    print(f'== ONNX segmentation: {segment_seconds:.1f} s', flush=True)
    segment_seconds = round(segment_seconds, 1)
    done = dict(export_seconds=export_seconds, segment_seconds=segment_seconds, images=[rel(p) for p in scenes])
    if problem:
        return failed('ONNX segmentation', problem, commands[-1]['command'], **done)
    overlays = [osp.join(out_dir, 'overlays', osp.splitext(osp.basename(p))[0] + '.png') for p in scenes]

    print(f'\n== ONNX Runtime vs PyTorch on the {len(scenes)} scene(s)', flush=True)
    tick = time.time()
    try:
        from cosub_seg.inference.segmenter import backend_agreement
        found = backend_agreement(for_run(folder), [for_run(p) for p in scenes])
    except Exception as err:  # noqa: BLE001  the report keeps the rest; --debug shows the traceback
        if debug:
            raise
        return failed('agreement', one_line(err), None, **done)
    agreement_seconds = round(time.time() - tick, 1)
    found['images'] = [rel(p) for p in found['images']]
    for row in found['per_image']:
        row['image'] = rel(row['image'])
    found.update(model=rel(model), seconds=agreement_seconds)
    agreement = osp.join(out_dir, 'agreement.json')
    with open(agreement, 'w') as f:
        json.dump(found, f, indent=2)
    print(f'pixel agreement {100 * found["pixel_agreement"]:.2f} % ({found["differing_pixels"]} of '
          f'{found["pixels"]} pixels differ), logits within {found["max_abs_diff"]:.1e}, probabilities within '
          f'{found["max_abs_diff_probabilities"]:.1e}; wrote {rel(agreement)} ({agreement_seconds:.1f} s)', flush=True)
    return OnnxCheck(status='done', model=rel(model), overlays=[osp.relpath(p, work_dir) for p in overlays],
                     mode=found['mode'], pixel_agreement=found['pixel_agreement'],
                     differing_pixels=found['differing_pixels'], pixels=found['pixels'],
                     max_abs_diff=found['max_abs_diff'],
                     max_abs_diff_probabilities=found['max_abs_diff_probabilities'], agreement=rel(agreement),
                     agreement_seconds=agreement_seconds, **done)


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
    names = ('pretrain', 'probes', 'seg', 'eval', 'export', 'pictures', 'seg_random_init', 'eval_random_init',
             'onnx_segment')
    dirs = {name: osp.join(work_dir, name) for name in names}
    for path, what in ((args.pretrain_config, 'pretraining config'), (args.seg_config, 'segmentation config')):
        if not osp.isfile(path):
            raise MissingFileError(f'{what} {path} does not exist')
    debug = ['--debug'] if args.debug else []
    missing = [] if args.no_onnx else missing_onnx_packages()
    if missing:
        print(f'note: {", ".join(missing)} cannot be imported: the last stage (the ONNX export) will fail; the report '
              "is written all the same. Install them (pip install 'cosub_seg[test]') or pass --no-onnx", flush=True)
    train_flags = [*(['--amp'] if args.amp else []), *(['--tensorboard'] if args.tensorboard else []), *debug]
    times, commands = {}, []
    start = time.time()

    # 1. Pretraining.
    times['pretrain'] = run_stage('pretraining', 'cosub_seg.cli.pretrain', [
        args.pretrain_config, '--work-dir', dirs['pretrain'], *train_flags,
        *(['--cfg-options', *args.pretrain_options] if args.pretrain_options else [])], commands)
    pretrained = best_checkpoint(dirs['pretrain']) if args.use_best else last_checkpoint(dirs['pretrain'])
    pretrain_used = osp.join(dirs['pretrain'], osp.basename(args.pretrain_config))
    seg_used = osp.join(dirs['seg'], osp.basename(args.seg_config))

    # 1b. Frozen-backbone probes of that checkpoint (kNN, linear): what the features are worth before any fine-tuning.
    probes, notes = None, []
    probe_data = None if args.no_probes else (args.probe_data or probe_folder(pretrain_used, notes))
    if probe_data is not None:
        times['probes'] = run_stage('frozen-backbone probes', 'cosub_seg.cli.compare_backbones', [
            for_run(pretrained), '--config', for_run(pretrain_used), '--names', 'pretrained',
            '--data', probe_data, '--seeds', '0', '--out-dir', dirs['probes'], *probe_device(), *debug], commands,
            in_process=True)
        probes = read_probes(dirs['probes'], probe_data, work_dir)

    # 2. Fine-tuning from that checkpoint (the hand-off comes last: it wins over --seg-options).
    handoff = ['model.backbone.init_cfg.type=Pretrained', f'model.backbone.init_cfg.checkpoint={for_run(pretrained)}']
    times['finetune'] = run_stage('fine-tuning', 'cosub_seg.cli.train_seg', [
        args.seg_config, '--work-dir', dirs['seg'], *train_flags,
        '--cfg-options', *args.seg_options, *handoff], commands)
    finetuned = last_checkpoint(dirs['seg'])

    # 3. Export, from the configs as the runs dumped them (command-line options included).
    from cosub_seg.convert import export_backbone, export_segmentor
    print('\n== export', flush=True)
    tick = time.time()
    backbone = export_backbone(pretrain_used, pretrained, osp.join(dirs['export'], 'backbone'))
    segmentor = export_segmentor(seg_used, finetuned, osp.join(dirs['export'], 'segmentor'))
    times['export'] = time.time() - tick

    # 4. Evaluation of the exported segmentor: the numbers belong to the files a user takes away.
    times['evaluate'] = run_stage('evaluation', 'cosub_seg.cli.test_seg', [
        segmentor['config'], segmentor['checkpoint'], '--work-dir', dirs['eval'], '--confusion-matrix', *debug],
        commands, in_process=True)
    metrics = read_test_metrics(dirs['eval'])

    # 4b. The same fine-tuning from random weights, evaluated by the same tool on the same split: the gap is what
    # pretraining adds.
    random_init = None
    if args.compare_random_init:
        times['finetune_random_init'] = run_stage(
            'fine-tuning from random initialisation', 'cosub_seg.cli.train_seg', [
                args.seg_config, '--work-dir', dirs['seg_random_init'], *train_flags,
                '--cfg-options', *args.seg_options, 'model.backbone.init_cfg=None'], commands)
        random_checkpoint = last_checkpoint(dirs['seg_random_init'])
        random_used = osp.join(dirs['seg_random_init'], osp.basename(args.seg_config))
        times['evaluate_random_init'] = run_stage('evaluation from random initialisation', 'cosub_seg.cli.test_seg', [
            random_used, for_run(random_checkpoint), '--work-dir', dirs['eval_random_init'], *debug], commands,
            in_process=True)
        random_metrics = read_test_metrics(dirs['eval_random_init'])
        gap = (metrics['mIoU'] - random_metrics['mIoU']
               if metrics.get('mIoU') is not None and random_metrics.get('mIoU') is not None else None)
        random_init = RandomInit(
            mIoU=random_metrics.get('mIoU'), aAcc=random_metrics.get('aAcc'), mAcc=random_metrics.get('mAcc'),
            per_class_iou={k[len('IoU.'):]: v for k, v in random_metrics.items() if k.startswith('IoU.')},
            gap=None if gap is None else round(gap, 4),
            config_as_run=relative(random_used, work_dir), checkpoint=relative(random_checkpoint, work_dir))

    # 5. Pictures.
    print('\n== pictures', flush=True)
    tick = time.time()
    pictures = draw_pictures(dirs, metrics, segmentor, args.num_overlays, notes,
                             random_init=args.compare_random_init)
    times['pictures'] = time.time() - tick

    # 5b. The exported segmentor through ONNX Runtime: model.onnx, tools/segment.py on the pictures' scenes, the
    # agreement with PyTorch. The last stage: where it fails, the report is written all the same.
    if args.no_onnx or args.num_overlays < 1:
        onnx = OnnxCheck(status='skipped', reason='--no-onnx' if args.no_onnx else '--num-overlays 0: no scene')
    else:
        tick = time.time()
        onnx = onnx_stage(osp.join(dirs['export'], 'segmentor'), segmentor['config'], dirs['onnx_segment'],
                          args.num_overlays, work_dir, commands, debug)
        times['onnx'] = time.time() - tick
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
                        pretrain_options=[shown_argument(o) for o in args.pretrain_options],
                        seg_options=[shown_argument(o) for o in args.seg_options]),
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
        setup=describe_setup(pretrain_used, seg_used),
        random_init=random_init,
        probes=probes,
        onnx=onnx,
    )
    with open(osp.join(work_dir, 'report.json'), 'w') as f:
        json.dump(report.to_json(), f, indent=2)
    with open(osp.join(work_dir, 'report.md'), 'w') as f:
        f.write(report.markdown())
    print(report.summary(relative(work_dir)))
    if onnx.status == 'failed':
        retry = f'; rerun it by hand: {onnx.retry}' if onnx.retry else ''
        raise SystemExit(f'the {onnx.failed_stage} step of the last stage failed ({onnx.reason}); '
                         f'{relative(osp.join(work_dir, "report.md"))} and report.json are complete otherwise{retry}')
    return report


def _dataset_words(dataset: dict) -> str:
    """'<type> (<data_root>)' of a dataloader's dataset, through wrappers (CheckedDataset, RepeatDataset)."""
    while isinstance(dataset.get('dataset'), dict):
        dataset = dataset['dataset']
    root = dataset.get('data_root')
    kind = dataset.get('type', 'a dataset')
    return f'{kind} ({relative(root)})' if root else str(kind)


def _length_words(train_cfg: dict) -> str:
    if train_cfg.get('max_epochs') is not None and train_cfg.get('by_epoch', True):
        return f'{train_cfg["max_epochs"]} epochs'
    return f'{train_cfg.get("max_iters", "?")} iterations'


SEGMENTOR_NAMES = {'UPerHead': 'UperNet', 'FCNHead': 'FCN', 'ASPPHead': 'DeepLabV3', 'SegformerHead': 'SegFormer'}


def describe_setup(pretrain_config: str, seg_config: str) -> Optional[Setup]:
    """The :class:`Setup` of the report's headline from the configs as the runs dumped them; None (with the
    headline in general words) where they cannot be read."""
    from mmengine.config import Config
    try:
        pre, seg = Config.fromfile(pretrain_config), Config.fromfile(seg_config)
        model = pre.model
        kwargs = dict(model.get('model_kwargs') or {})
        arch = model.get('arch', model.get('type', 'the backbone'))
        backbone = f'{arch} ({", ".join(f"{k}={v}" for k, v in kwargs.items())})' if kwargs else str(arch)
        head = seg.model.get('decode_head', {}).get('type', 'the segmentor')
        test_dataset = seg.test_dataloader.dataset
        while isinstance(test_dataset.get('dataset'), dict):
            test_dataset = test_dataset['dataset']
        prefix = test_dataset.get('data_prefix', {})
        cosub = model.get('type') == 'CosubClassifier'
        return Setup(backbone=backbone, submodels=model.get('num_submodels', 2) if cosub else None,
                     pretrain_data=_dataset_words(pre.train_dataloader.dataset),
                     pretrain_length=_length_words(pre.train_cfg),
                     segmentor=SEGMENTOR_NAMES.get(head, head),
                     seg_data=_dataset_words(seg.train_dataloader.dataset),
                     seg_length=_length_words(seg.train_cfg),
                     eval_split=osp.basename(prefix['img_path'].rstrip('/'))
                     if isinstance(prefix, dict) and prefix.get('img_path') else None)
    except Exception as err:  # noqa: BLE001  the headline falls back to general words
        print(f'note: the report describes the runs in general words: {pretrain_config} or {seg_config} could not '
              f'be read ({err})', flush=True)
        return None


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


def draw_pictures(dirs: dict, metrics: dict, segmentor: dict, num_overlays: int, notes: List[str],
                  random_init: bool = False) -> dict:
    """Training curves of both runs (and of the fine-tuning from random initialisation when ``random_init``),
    per-class IoU, confusion matrix and ``num_overlays`` prediction pictures of the exported segmentor on the
    validation images; returns the paths. A picture that cannot be drawn is left out, with the reason in
    ``notes``."""
    from mmseg.apis import init_model
    from mmseg.registry import DATASETS as SEG_DATASETS
    from mmengine.registry import DefaultScope

    from cosub_seg.visualization import draw_predictions, plot_confusion_matrix, plot_per_class_iou
    out = dirs['pictures']
    os.makedirs(out, exist_ok=True)
    pictures = {}
    curves = [('pretrain_curves', 'pretrain', 'cosub pretraining', '--pretrain-options'),
              ('finetune_curves', 'seg', 'segmentation fine-tuning', '--seg-options')]
    if random_init:
        curves.append(('finetune_random_init_curves', 'seg_random_init',
                       'segmentation fine-tuning from random initialisation', '--seg-options'))
    for key, run, title, flag in curves:
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
