import os
import shutil
import sys
import tempfile

import pytest
import torch

from cosub_seg.runtime import install

# The tests run in a process prepared as the tools prepare theirs (cosub_seg/runtime/patches.py); what a bare
# `import cosub_seg` leaves untouched is checked in a fresh process (tests/test_runtime_patches.py).
install()

# Variables a cluster shell or an outer launcher may leave behind (a MASTER_ADDR this machine cannot reach makes every
# torchrun test wait 15 minutes for the store). The tests and the tools they start must see the machine as a new
# user's shell does; a test that needs one of these sets it itself.
LAUNCH_VARIABLES = ('MASTER_ADDR', 'MASTER_PORT', 'RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'LOCAL_WORLD_SIZE', 'GROUP_RANK',
                    'ROLE_RANK', 'NODE_RANK', 'NNODES', 'PORT')
for _name in list(os.environ):
    if _name in LAUNCH_VARIABLES or _name.startswith(('SLURM_', 'TORCHELASTIC_', 'PET_')):
        del os.environ[_name]


@pytest.fixture(autouse=True)
def _environment_as_it_was():
    """Every test ends with os.environ as it began: code under test may write it (the slurm set-up writes RANK and
    MASTER_ADDR, prepare_run LOCAL_RANK and CUBLAS_WORKSPACE_CONFIG). monkeypatch.delenv of a variable that is not
    set records nothing to undo, so such writes leaked: test_runtime_dist.py's MASTER_ADDR=node07 reached every later
    torchrun test, which waited 15 minutes for a store on a host CI could not reach."""
    saved = dict(os.environ)
    yield
    if os.environ != saved:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(autouse=True)
def _torch_threads_as_they_were():
    """Every test ends with torch's thread count as it began: the benchmarks' main() set it for their timing
    (bench/common.py's --threads, bench/inference.py, bench/data_loading.py), and the tests after them ran on one
    thread, each one differently depending on which benchmark test had run last."""
    threads = torch.get_num_threads()
    yield
    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope='session')
def digits_root(tmp_path_factory):
    """The digits dataset written once per test session by the same code as `tools/prepare_data.py digits`."""
    from cosub_seg.datasets.digits import write_digits

    root = tmp_path_factory.mktemp('digits')
    write_digits(str(root))
    return str(root)


@pytest.fixture(scope='session')
def python():
    return sys.executable


def _will_run(session, fixture):
    """Whether a test of this session that is not skipped by a mark uses ``fixture``."""
    return any(fixture in getattr(item, 'fixturenames', ()) and not item.get_closest_marker('skip')
               for item in session.items)


# tools/pipeline.py as tests/test_tools_pipeline.py runs it: the digits pretraining and the digit-scenes fine-tuning.
PIPELINE_PRETRAIN_CONFIG = 'configs/pretrain/cosub_deit3-tiny_digits.py'
PIPELINE_SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'


@pytest.fixture(scope='session')
def short_pipeline_run(digits_root, tmp_path_factory, python):
    """tools/pipeline.py with fine-tuning shorter than mmseg's logger interval (test_tools_pipeline.py's
    test_a_run_shorter_than_the_logger_interval_still_writes_its_report): 8 training and 2 validation scenes,
    2 iterations, 1 overlay, --no-probes, --no-onnx. Started in the background (``pipeline_run`` starts it first, so
    that its stages, one process each and mostly on one core, overlap with the long run's on a two-core machine);
    ``result()`` waits for it, checks its exit status as ``run_tool`` does and returns the finished process."""
    import subprocess

    from cosub_seg.datasets.digit_scenes import write_digit_scenes
    from helpers import ROOT as REPO, digits_options, seg_options

    root = tmp_path_factory.mktemp('short_pipeline')
    scenes, work_dir = str(root / 'scenes'), str(root / 'short')
    write_digit_scenes(scenes, num_train=8, num_val=2)
    options = [o for o in seg_options(scenes, iters=2) if not o.startswith('default_hooks.logger')]
    args = [python, 'tools/pipeline.py', PIPELINE_PRETRAIN_CONFIG, PIPELINE_SEG_CONFIG, '--work-dir', work_dir,
            '--num-overlays', '1', '--no-probes', '--no-onnx',
            '--pretrain-options', *digits_options(digits_root, epochs=1), '--seg-options', *options]
    # Its output goes to files: a pipe nobody reads until the test runs would stop it once full.
    with open(root / 'stdout.txt', 'w') as stdout, open(root / 'stderr.txt', 'w') as stderr:
        proc = subprocess.Popen(args, cwd=REPO, stdout=stdout, stderr=stderr, text=True)
    finished = []

    def result(timeout=900):
        if not finished:
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                raise
            out, err = (open(root / name).read() for name in ('stdout.txt', 'stderr.txt'))
            finished.append(subprocess.CompletedProcess(args, proc.returncode, out, err))
        done = finished[0]
        if done.returncode != 0:
            raise AssertionError(f'{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}')
        return done

    yield dict(work_dir=work_dir, scenes=scenes, result=result)
    if proc.poll() is None:  # its test did not run to the end: stop it
        proc.kill()
        proc.wait()


@pytest.fixture(scope='session')
def pipeline_run(request, digits_root, tmp_path_factory, python):
    """tools/pipeline.py end to end on the digits at a tiny budget (2 iterations of fine-tuning on 16 digit scenes,
    4 validation scenes, 2 overlays, the random-initialisation comparison, TensorBoard, the ONNX stage), once per
    session (~2.5 min on two cores): tests/test_tools_pipeline.py checks it, and tests/test_inference.py takes its
    exported model folder and model.onnx when the session runs both (``demo_segmentor_export``). Where the session
    runs ``short_pipeline_run`` too, that run is started first and goes on beside this one."""
    import json

    from cosub_seg.datasets.digit_scenes import write_digit_scenes
    from helpers import digits_options, run_tool, seg_options

    if _will_run(request.session, 'short_pipeline_run'):
        request.getfixturevalue('short_pipeline_run')
    scenes = str(tmp_path_factory.mktemp('scenes'))
    write_digit_scenes(scenes, num_train=16, num_val=4)
    work_dir = str(tmp_path_factory.mktemp('pipeline'))
    proc = run_tool([python, 'tools/pipeline.py', PIPELINE_PRETRAIN_CONFIG, PIPELINE_SEG_CONFIG,
                     '--work-dir', work_dir, '--tensorboard', '--num-overlays', '2', '--compare-random-init',
                     '--pretrain-options', *digits_options(digits_root, epochs=1),
                     '--seg-options', *seg_options(scenes, iters=2)])
    with open(os.path.join(work_dir, 'report.json')) as f:
        report = json.load(f)
    return dict(work_dir=work_dir, scenes=scenes, report=report, stdout=proc.stdout)


@pytest.fixture(scope='session')
def demo_segmentor_export(request, tmp_path_factory):
    """The demo segmentor (configs/seg/upernet_cosub-deit3-tiny_digitscenes.py) exported: its mmseg files
    (``config``, ``checkpoint``), its model folder (``folder``) with model.onnx (``onnx``: export_onnx's entry), and
    ``model``, the PyTorch model of the mmseg files (eval mode), for tests/test_inference.py.

    One ONNX export per session: where the session also runs the pipeline's tests (``make test``), this is the
    segmentor ``pipeline_run`` fine-tuned and exported, model.onnx written by the pipeline's ONNX stage with
    ``export_onnx``'s defaults (``model`` then loaded from the mmseg files by mmseg's ``init_model``); otherwise
    (``make test-fast``, tests/test_inference.py alone) the demo segmentor with random weights and non-trivial
    batch-norm statistics (``helpers.export_demo_segmentor``), exported here by ``export_onnx`` (~40 s on two
    cores)."""
    from cosub_seg.convert import export_onnx
    from cosub_seg.inference.model_folder import CONFIG_NAME, ONNX_NAME, read_model_folder
    from helpers import export_demo_segmentor

    if not _will_run(request.session, 'pipeline_run'):
        paths = export_demo_segmentor(str(tmp_path_factory.mktemp('demo_segmentor')))
        paths['onnx'] = export_onnx(paths['folder'])
        return paths
    from mmseg.apis import init_model

    run = request.getfixturevalue('pipeline_run')
    exports = run['report']['exports']['segmentor']
    paths = {key: os.path.join(run['work_dir'], exports[key]) for key in ('config', 'checkpoint', 'folder')}
    assert run['report']['onnx']['status'] == 'done', run['report']['onnx']
    info = read_model_folder(paths['folder'])
    paths['onnx'] = dict(onnx=info.file(ONNX_NAME), model_config=os.path.join(info.path, CONFIG_NAME),
                         **info.config['files'][ONNX_NAME])
    paths['model'] = init_model(paths['config'], paths['checkpoint'], device='cpu').eval()
    return paths


NO_CUDA = 'needs CUDA: torch.cuda.is_available() is False'


def pytest_collection_modifyitems(config, items):
    """Tests marked ``gpu`` are skipped, with the reason, where there is no CUDA device: a CPU machine reports them
    as skipped (`pytest -m gpu`), never as passed."""
    if torch.cuda.is_available():
        return
    for item in items:
        if item.get_closest_marker('gpu'):
            item.add_marker(pytest.mark.skip(reason=NO_CUDA))


# Measured peak of the test files on disk during `make test` (the slow recipe tests save full-size checkpoints,
# DeiT III-L's is ~5 GB with EMA and AdamW state, plus its best-accuracy copy): 12.1 GB. The check runs before any
# test, so a disk that is too full fails in a second with the reason instead of with ENOSPC minutes later.
SLOW_TESTS_DISK_GB = 13


def pytest_collection_finish(session):
    if session.config.option.collectonly:
        return
    if not any(item.get_closest_marker('slow') and not item.get_closest_marker('skip') for item in session.items):
        return  # no slow test will run (GPU tests skipped without CUDA do not write)
    base = os.path.abspath(session.config.option.basetemp or tempfile.gettempdir())
    while not os.path.exists(base):
        base = os.path.dirname(base)
    free_gb = shutil.disk_usage(base).free / 1e9
    if free_gb < SLOW_TESTS_DISK_GB:
        pytest.exit(f'the slow tests write up to {SLOW_TESTS_DISK_GB} GB under {base}, but only {free_gb:.1f} GB '
                    'is free there: free some space, point --basetemp at a larger disk, or run `make test-fast` '
                    '(no slow tests)', returncode=1)
