"""The offline install and the one-call GPU check, on the CPU with no network (docs/gpu.md):
tools/wheelhouse.py (the manifest, its size limit, the check of a wheelhouse against it, the closure of the
requirements for the target's Python), tools/make_wheelhouse.sh, tools/install_offline.sh and `WHEELHOUSE=DIR make
install` (refusing an incomplete wheelhouse, naming the file), tools/install_mmcv.sh (the cache key of a CPU-ops
build), tools/gpu_check.sh without CUDA (it validates the wheelhouse, then refuses, having run nothing). Fake
wheelhouses stand in for real ones: nothing is downloaded or built.

Also what justifies building mmcv with its CPU ops only for a GPU run: our UperNet path (a training step fed by the
config's own pipeline, sliding-window inference) calls no compiled mmcv op, counted at mmcv._ext itself, and every
shipped segmentation config is made of the modules and transforms that run exercises. Fast.
"""
import collections
import copy
import glob
import hashlib
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import zipfile

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.optim import build_optim_wrapper
from mmengine.registry import DefaultScope

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.runtime.launch import use_bn_without_gpu

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
_spec = importlib.util.spec_from_file_location('wheelhouse', osp.join(ROOT, 'tools', 'wheelhouse.py'))
wheelhouse = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheelhouse)

HERE = f'{sys.version_info.major}.{sys.version_info.minor}'
NO_CUDA_MESSAGE = (
    f'gpu_check: error: CUDA is not available to {sys.executable} (torch {torch.__version__}, built with CUDA '
    f'{torch.version.cuda}; torch.cuda.is_available() is False, CUDA_VISIBLE_DEVICES=): the GPU check runs the GPU '
    'tests and benchmarks and needs a CUDA GPU. Nothing was installed or run.')


def fake_wheel(directory, name, version, requires=(), size=0):
    """A minimal wheel: a .dist-info/METADATA with Name, Version and Requires-Dist, padded to ``size`` bytes."""
    path = osp.join(directory, f'{name.replace("-", "_")}-{version}-py3-none-any.whl')
    metadata = f'Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n' + ''.join(
        f'Requires-Dist: {r}\n' for r in requires)
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr(f'{name.replace("-", "_")}-{version}.dist-info/METADATA', metadata)
        if size:
            archive.writestr('padding', b'\0' * size)
    return path


@pytest.fixture
def house(tmp_path):
    """A complete fake wheelhouse for this Python: two wheels, the build tools, a fake mmcv sdist, MANIFEST.txt."""
    directory = tmp_path / 'house'
    directory.mkdir()
    fake_wheel(directory, 'demo-pkg', '1.0', ['demo-dep>=2'])
    fake_wheel(directory, 'demo-dep', '2.1')
    fake_wheel(directory, 'setuptools', '80.10.2')
    fake_wheel(directory, 'pip', '26.3')
    (directory / 'mmcv-2.1.0.tar.gz').write_bytes(b'not really an sdist')
    result = run([sys.executable, 'tools/wheelhouse.py', 'manifest', str(directory), '--python-version', HERE])
    assert result.returncode == 0, result.stderr
    return directory


def run(args, env=None, timeout=300):
    return subprocess.run(args, cwd=ROOT, env=dict(os.environ, **(env or {})), capture_output=True, text=True,
                          timeout=timeout)


def sha(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------------------------------------- the manifest


def test_manifest_lists_name_version_sha256_size_and_role(house):
    header, entries = wheelhouse.read_manifest(str(house))
    assert header['python'] == [HERE]
    demo = house / 'demo_pkg-1.0-py3-none-any.whl'
    assert entries == sorted([
        ('demo_dep-2.1-py3-none-any.whl', 'demo-dep', '2.1', sha(house / 'demo_dep-2.1-py3-none-any.whl'),
         (house / 'demo_dep-2.1-py3-none-any.whl').stat().st_size, 'install'),
        ('demo_pkg-1.0-py3-none-any.whl', 'demo-pkg', '1.0', sha(demo), demo.stat().st_size, 'install'),
        ('mmcv-2.1.0.tar.gz', 'mmcv', '2.1.0', sha(house / 'mmcv-2.1.0.tar.gz'), 19, 'sdist'),
        ('pip-26.3-py3-none-any.whl', 'pip', '26.3', sha(house / 'pip-26.3-py3-none-any.whl'),
         (house / 'pip-26.3-py3-none-any.whl').stat().st_size, 'tool'),
        ('setuptools-80.10.2-py3-none-any.whl', 'setuptools', '80.10.2',
         sha(house / 'setuptools-80.10.2-py3-none-any.whl'),
         (house / 'setuptools-80.10.2-py3-none-any.whl').stat().st_size, 'tool'),
    ])
    # Only the stack's wheels are pip-installed; the sdist is built, the tools are not installed.
    assert wheelhouse.install_list(str(house)) == [str(house / 'demo_dep-2.1-py3-none-any.whl'), str(demo)]
    assert wheelhouse.tool_path(str(house), 'setuptools') == str(house / 'setuptools-80.10.2-py3-none-any.whl')


def test_file_names_give_name_and_version():
    assert wheelhouse.parse_filename('mmsegmentation-1.2.2-py3-none-any.whl') == ('mmsegmentation', '1.2.2')
    assert wheelhouse.parse_filename(
        'wcwidth-0.9.4-cp310-abi3-manylinux2014_x86_64.manylinux_2_17_x86_64.whl') == ('wcwidth', '0.9.4')
    assert wheelhouse.parse_filename('python_dateutil-2.9.0-1-py2.py3-none-any.whl') == ('python-dateutil', '2.9.0')
    assert wheelhouse.parse_filename('mmcv-2.1.0.tar.gz') == ('mmcv', '2.1.0')
    with pytest.raises(wheelhouse.WheelhouseError, match='^notes.txt is neither a wheel nor an sdist$'):
        wheelhouse.parse_filename('notes.txt')


def test_a_wheelhouse_over_64_mib_is_refused_and_gets_no_manifest(tmp_path):
    directory = tmp_path / 'big'
    directory.mkdir()
    fake_wheel(directory, 'small', '1.0')
    with open(directory / 'big-1.0.tar.gz', 'wb') as f:
        f.truncate(64 * 2**20)  # exactly the limit; the small wheel and the manifest push it over
    total = sum(p.stat().st_size for p in directory.iterdir())
    result = run([sys.executable, 'tools/wheelhouse.py', 'manifest', str(directory)])
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f'error: the wheelhouse {directory} holds 64.0 MiB (')
    assert lines[0].endswith(' bytes), over the 64 MiB that can be carried to the target: MANIFEST.txt not written')
    counted = int(lines[0].split('(')[1].split(' ')[0])
    assert 300 < counted - total < 2000  # the files and the manifest's own text
    assert not (directory / 'MANIFEST.txt').exists()
    # Without the big file it fits; the printed total includes the manifest.
    (directory / 'big-1.0.tar.gz').unlink()
    result = run([sys.executable, 'tools/wheelhouse.py', 'manifest', str(directory)])
    assert result.returncode == 0, result.stderr
    size = (directory / 'small-1.0-py3-none-any.whl').stat().st_size + (directory / 'MANIFEST.txt').stat().st_size
    assert result.stdout == f'total: 0.0 MiB ({size} bytes, MANIFEST.txt included) in 1 files\n'


def test_the_limit_is_a_parameter_of_the_manifest(tmp_path):
    fake_wheel(tmp_path, 'padded', '1.0', size=3 * 2**20)
    with pytest.raises(wheelhouse.WheelhouseError, match=r'holds 3\.0 MiB \(\d+ bytes\), over the 2 MiB that'):
        wheelhouse.write_manifest(str(tmp_path), limit_mib=2)
    entries, total = wheelhouse.write_manifest(str(tmp_path), limit_mib=4)
    assert [entry[1:3] for entry in entries] == [('padded', '1.0')]
    assert total == entries[0][4] + (tmp_path / 'MANIFEST.txt').stat().st_size


# ---------------------------------------------------------------------------------------------- the closure


def test_closure_follows_markers_the_target_and_versions(tmp_path):
    fake_wheel(tmp_path, 'top', '1.0', ['needs-me>=2', 'tomli>=1.1; python_version < "3.11"', 'opencv-python>=3',
                                       'numpy', 'torch>=2.4', 'sphinx; extra == "docs"'])
    found = wheelhouse.collected(str(tmp_path))
    assert wheelhouse.closure_problems(found, '3.12') == [
        'top 1.0 needs needs-me>=2, which the wheelhouse lacks and the target is not expected to have']
    assert wheelhouse.closure_problems(found, '3.10') == [
        'top 1.0 needs needs-me>=2, which the wheelhouse lacks and the target is not expected to have',
        'top 1.0 needs tomli>=1.1; python_version < "3.11", which the wheelhouse lacks and the target is not '
        'expected to have']
    fake_wheel(tmp_path, 'needs-me', '1.5')
    assert wheelhouse.closure_problems(wheelhouse.collected(str(tmp_path)), '3.12') == [
        'top 1.0 needs needs-me>=2, the wheelhouse has needs-me 1.5']
    os.remove(tmp_path / 'needs_me-1.5-py3-none-any.whl')
    fake_wheel(tmp_path, 'needs-me', '2.0')
    found = wheelhouse.collected(str(tmp_path))
    assert wheelhouse.closure_problems(found, '3.12', roots=['timm<1.1', 'mmengine']) == [
        'the stack needs mmengine, which the wheelhouse lacks and the target is not expected to have']
    # What the target must have, for the manifest's `# expects:` lines: opencv-python is met by -headless too.
    assert wheelhouse.expected_requirements(found, '3.12', ['timm<1.1,>=1.0.15']) == [
        'numpy', 'opencv-python-headless|opencv-python|opencv-contrib-python-headless|opencv-contrib-python >=3',
        'timm <1.1,>=1.0.15', 'torch >=2.4']


def test_the_mmcv_sdist_requirements_are_read_from_its_egg_info(tmp_path):
    import tarfile
    requires = b'addict\nmmengine>=0.3.0\nopencv-python>=3\n\n[:sys_platform == "win32"]\nregex\n\n[all]\nlmdb\n'
    source = tmp_path / 'requires.txt'
    source.write_bytes(requires)
    with tarfile.open(tmp_path / 'mmcv-2.1.0.tar.gz', 'w:gz') as archive:
        archive.add(source, 'mmcv-2.1.0/mmcv.egg-info/requires.txt')
    assert wheelhouse.sdist_requirements(str(tmp_path / 'mmcv-2.1.0.tar.gz')) == [
        'addict', 'mmengine>=0.3.0', 'opencv-python>=3', 'regex; sys_platform == "win32"']


def test_the_project_requirements_come_from_pyproject():
    requirements = wheelhouse.project_requirements()
    assert 'mmsegmentation==1.2.2' in requirements and 'ftfy' in requirements and 'pytest>=8' in requirements


def test_docs_list_what_is_expected_on_the_target():
    with open(osp.join(ROOT, 'docs', 'gpu.md')) as f:
        docs = f.read()
    section = docs[docs.index('Expected on the target'):]
    section = section[:section.index('\n\n', section.index('\n\n') + 2)]
    listed = {word.strip('`,.;:()') for word in section.split() if word.startswith('`')}
    assert listed >= set(wheelhouse.EXPECTED_ON_TARGET) | set(wheelhouse.PROVIDED)


# ---------------------------------------------------------------------------------------------- make_wheelhouse.sh


def test_make_wheelhouse_needs_a_folder_and_refuses_a_foreign_one(tmp_path):
    result = run(['bash', 'tools/make_wheelhouse.sh'])
    assert result.returncode == 2
    assert result.stderr == ('usage: tools/make_wheelhouse.sh DIR [--python-version 3.12] [--glibc 2.35] '
                             '[--add REQ ...]\n')
    (tmp_path / 'notes.txt').write_text('mine')
    result = run(['bash', 'tools/make_wheelhouse.sh', str(tmp_path)])
    assert result.returncode == 1
    assert result.stderr == (f'error: {tmp_path} holds files that are not in a MANIFEST.txt of a wheelhouse '
                             '(notes.txt): give an empty or new folder\n')
    assert (tmp_path / 'notes.txt').read_text() == 'mine'


# ---------------------------------------------------------------------------------------------- install_offline.sh


def incomplete_message(house, problem):
    return (f'error: the wheelhouse {house} is incomplete: {problem}. Copy it again, or remake it with '
            'tools/make_wheelhouse.sh\n')


@pytest.mark.parametrize('how', ['script', 'make'])
def test_install_refuses_a_wheelhouse_with_a_file_missing(house, how):
    (house / 'demo_dep-2.1-py3-none-any.whl').unlink()
    if how == 'script':
        result = run(['bash', 'tools/install_offline.sh', str(house), sys.executable])
    else:
        result = run(['make', '--no-print-directory', 'install', f'WHEELHOUSE={house}'],
                     env=dict(PYTHON=sys.executable))
    assert result.returncode != 0
    assert incomplete_message(house, 'demo_dep-2.1-py3-none-any.whl is missing') in result.stderr
    assert result.stdout.splitlines()[-1] == f'== offline install from {house} into {sys.executable}'


def test_install_refuses_corrupt_files_naming_each(house):
    wheel = house / 'demo_pkg-1.0-py3-none-any.whl'
    good = sha(wheel)
    data = bytearray(wheel.read_bytes())
    data[-1] ^= 1  # same size, other bytes
    wheel.write_bytes(bytes(data))
    (house / 'mmcv-2.1.0.tar.gz').write_bytes(b'truncated')
    result = run(['bash', 'tools/install_offline.sh', str(house), sys.executable])
    assert result.returncode == 1
    assert result.stderr == incomplete_message(
        house, f'demo_pkg-1.0-py3-none-any.whl is corrupt (sha256 {sha(wheel)}, MANIFEST.txt says {good}); '
        'mmcv-2.1.0.tar.gz is corrupt (9 bytes, MANIFEST.txt says 19)')


def test_install_refuses_a_folder_without_manifest_and_another_python(house, tmp_path):
    result = run(['bash', 'tools/install_offline.sh', str(tmp_path), sys.executable])
    assert result.returncode == 1
    assert result.stderr == (f'error: {tmp_path}/MANIFEST.txt not found: {tmp_path} is not a wheelhouse made by '
                             'tools/make_wheelhouse.sh (or its making was refused)\n')
    text = (house / 'MANIFEST.txt').read_text().replace(f'# python: {HERE}\n', '# python: 3.9\n')
    (house / 'MANIFEST.txt').write_text(text)
    result = run(['bash', 'tools/install_offline.sh', '--check-only', str(house), sys.executable])
    assert result.returncode == 1
    assert result.stderr == (f'error: the wheelhouse {house} was made for Python 3.9, this is Python {HERE} '
                             f'({sys.executable}): remake it with tools/make_wheelhouse.sh DIR --python-version '
                             f'{HERE}\n')


def test_install_refuses_a_target_without_what_the_wheelhouse_expects(house):
    text = (house / 'MANIFEST.txt').read_text().replace(
        '# file\t', '# expects: numpy\n# expects: no-such-package-here >=1\n# file\t')
    (house / 'MANIFEST.txt').write_text(text)
    result = run(['bash', 'tools/install_offline.sh', '--check-only', str(house), sys.executable])
    assert result.returncode == 1
    assert result.stderr == (f'error: {sys.executable} lacks no-such-package-here, which the wheelhouse does not '
                             'carry (it expects them on the target): install them, or remake the wheelhouse with '
                             'tools/make_wheelhouse.sh DIR --add no-such-package-here ...\n')


def test_a_complete_wheelhouse_passes_the_check(house):
    result = run(['bash', 'tools/install_offline.sh', '--check-only', str(house), sys.executable])
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f'== offline install from {house} into {sys.executable}',
        f'wheelhouse {house}: 5 files, all present and matching MANIFEST.txt',
        f'{sys.executable} (Python {sys.version.split()[0]}) has what the wheelhouse expects',
        f'wheelhouse {house} can be installed into {sys.executable} (checked only, nothing installed)',
    ]


# ---------------------------------------------------------------------------------------------- install_mmcv.sh


def test_a_cpu_ops_build_is_keyed_cpu_even_where_cuda_is_forced(tmp_path):
    """COSUB_MMCV_OPS=cpu hides the GPU from the build and keys the cached wheel 'cpu', so a CPU-ops wheel built
    on a CUDA machine is never taken for a CUDA one. (mmcv is installed here: nothing is built.)"""
    report = tmp_path / 'mmcv.json'
    result = run(['bash', 'tools/install_mmcv.sh', sys.executable],
                 env=dict(COSUB_MMCV_OPS='cpu', FORCE_CUDA='1', COSUB_MMCV_REPORT=str(report)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == 'mmcv 2.1.0 with compiled ops is already installed\n'
    assert json.loads(report.read_text()) == dict(
        variant=f'torch{torch.__version__.split("+")[0]}-cpu', ops='cpu', built=False, build_seconds=None, wheel=None,
        source='installed', max_jobs=2)
    result = run(['bash', 'tools/install_mmcv.sh', sys.executable], env=dict(COSUB_MMCV_OPS='gpu'))
    assert result.returncode == 2
    assert result.stderr == 'error: COSUB_MMCV_OPS=gpu: expected auto, cpu or cuda\n'


# ---------------------------------------------------------------------------------------------- gpu_check.sh


def test_gpu_check_validates_the_wheelhouse_then_refuses_without_cuda(house, tmp_path):
    out = tmp_path / 'out'
    result = run(['bash', 'tools/gpu_check.sh', str(out)],
                 env=dict(WHEELHOUSE=str(house), PYTHON=sys.executable, CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert f'wheelhouse {house}: 5 files, all present and matching MANIFEST.txt' in lines
    assert NO_CUDA_MESSAGE in lines
    assert lines.index(NO_CUDA_MESSAGE) > lines.index(f'wheelhouse {house}: 5 files, all present and matching '
                                                      'MANIFEST.txt')
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['ok'] is False
    assert [(s['name'], s['status']) for s in summary['steps']] == [
        ('python', 'passed'), ('wheelhouse', 'passed'), ('cuda', 'failed')]
    assert summary['device']['cuda_available'] is False
    assert summary['device']['torch'] == torch.__version__
    assert summary['wheelhouse'] == str(house)
    assert NO_CUDA_MESSAGE in (out / 'gpu_check.log').read_text()
    assert sorted(p.name for p in out.iterdir()) == ['device.json', 'gpu_check.log', 'summary.json']


def test_gpu_check_stops_at_an_incomplete_wheelhouse_before_cuda(house, tmp_path):
    (house / 'pip-26.3-py3-none-any.whl').unlink()
    out = tmp_path / 'out'
    result = run(['bash', 'tools/gpu_check.sh', str(out)],
                 env=dict(WHEELHOUSE=str(house), PYTHON=sys.executable, CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 1
    assert incomplete_message(house, 'pip-26.3-py3-none-any.whl is missing').strip() in result.stdout
    summary = json.loads((out / 'summary.json').read_text())
    assert [(s['name'], s['status']) for s in summary['steps']] == [('python', 'passed'), ('wheelhouse', 'failed')]
    assert summary['device'] is None and not (out / 'device.json').exists()


def test_gpu_check_refuses_an_unknown_step_before_running_anything(tmp_path):
    out = tmp_path / 'out'
    result = run(['bash', 'tools/gpu_check.sh', str(out)],
                 env=dict(GPU_CHECK_STEPS='gpu_bench gpu_test', PYTHON=sys.executable, CUDA_VISIBLE_DEVICES=''))
    assert result.returncode == 2
    assert result.stderr.strip() == ("gpu_check: error: GPU_CHECK_STEPS=gpu_bench gpu_test: unknown step 'gpu_test'; "
                                     'the steps are gpu_tests and gpu_bench')
    assert sorted(p.name for p in out.iterdir()) == ['gpu_check.log']


# ---------------------------------------------------------------------------------------------- mmcv ops at run time


SEG_CONFIG = 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py'
ADE_CONFIG = 'configs/seg/upernet_cosub-deit3-base_ade20k-512x512.py'


@pytest.fixture
def ext_calls(monkeypatch):
    """Counts the calls of every function of mmcv's compiled extension, mmcv._ext: each mmcv op reaches its kernel
    as an attribute of that module (mmcv.utils.ext_loader.load_ext returns the module itself)."""
    import mmcv._ext as ext
    calls = collections.Counter()
    names = [name for name in dir(ext) if not name.startswith('__') and callable(getattr(ext, name))]
    assert len(names) > 50  # nms, roi_align, deform_conv..., whatever the build has
    for name in names:
        def counting(*args, _function=getattr(ext, name), _name=name, **kwargs):
            calls[_name] += 1
            return _function(*args, **kwargs)
        monkeypatch.setattr(ext, name, counting)
    return calls


def test_the_counter_sees_a_compiled_op(ext_calls):
    from mmcv.ops import nms
    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 10., 10.], [20., 20., 30., 30.]])
    _, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert keep.tolist() == [0, 2]
    assert dict(ext_calls) == {'nms': 1}


def write_scene(directory, name, size, num_classes):
    """An image (JPEG) and its annotation (PNG, 0 = unlabelled) as the datasets lay them out."""
    rng = np.random.default_rng(0)
    image = osp.join(directory, f'{name}.jpg')
    annotation = osp.join(directory, f'{name}.png')
    cv2.imwrite(image, rng.integers(0, 256, (*size, 3), dtype=np.uint8))
    cv2.imwrite(annotation, rng.integers(0, num_classes + 1, size, dtype=np.uint8))
    return dict(img_path=image, seg_map_path=annotation, reduce_zero_label=True, seg_fields=[])


def model_types(node):
    if isinstance(node, dict):
        return ({node['type']} if isinstance(node.get('type'), str) else set()) | {
            t for key, value in node.items() if key != 'init_cfg' for t in model_types(value)}
    if isinstance(node, (list, tuple)):
        return {t for value in node for t in model_types(value)}
    return set()


def pipeline_types(cfg):
    return {t['type'] for key in ('train_pipeline', 'test_pipeline') for t in cfg.get(key, [])}


def test_our_upernet_calls_no_compiled_mmcv_op(ext_calls, tmp_path):
    """One training step of the digits UperNet fed by its own training pipeline, then sliding-window inference
    through its test pipeline; the ADE20k configs' pipelines on a scene too. No mmcv._ext function is called, so a
    GPU run needs none of mmcv's CUDA ops: the CPU-ops build is enough (docs/gpu.md)."""
    cfg = Config.fromfile(osp.join(ROOT, SEG_CONFIG))
    cfg.model.backbone.init_cfg = None
    cfg.model.test_cfg = dict(mode='slide', crop_size=(64, 64), stride=(40, 40), crop_batch_size=2)
    use_bn_without_gpu(cfg.model)
    from mmseg.registry import MODELS
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model)
        model.init_weights()
        wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        train, test = Compose(cfg.train_pipeline), Compose(cfg.test_pipeline)
        ade = Config.fromfile(osp.join(ROOT, ADE_CONFIG))
        ade_train, ade_test = Compose(ade.train_pipeline), Compose(ade.test_pipeline)
    scene = write_scene(str(tmp_path), 'scene', (128, 128), 11)
    samples = [train(copy.deepcopy(scene)) for _ in range(2)]  # a pipeline changes its input
    torch.manual_seed(0)
    model.train()
    log = model.train_step(dict(inputs=[s['inputs'] for s in samples],
                                data_samples=[s['data_samples'] for s in samples]), wrapper)
    assert torch.isfinite(log['decode.loss_ce'])
    model.eval()
    tall = write_scene(str(tmp_path), 'tall', (96, 128), 11)
    sample = test(copy.deepcopy(tall))
    with torch.no_grad():
        [result] = model.test_step(dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']]))
    assert tuple(result.pred_sem_seg.data.shape) == (1, 96, 128)
    ade_scene = write_scene(str(tmp_path), 'ade', (120, 160), 150)
    channels, height, width = ade_train(copy.deepcopy(ade_scene))['inputs'].shape
    assert channels == 3 and height <= 512 and width <= 512  # a random rescale, then a crop of at most 512x512
    assert ade_test(copy.deepcopy(ade_scene))['inputs'].shape[1:] == (512, 683)  # Resize (2048, 512), keep ratio
    assert dict(ext_calls) == {}


def test_every_seg_config_is_made_of_what_that_run_exercised():
    """The modules and transforms of every shipped segmentation config (the backbone arch aside: timm calls no mmcv
    op) are among those the run above exercised, so its finding holds for all of them."""
    exercised_model = model_types(Config.fromfile(osp.join(ROOT, SEG_CONFIG)).model) | {'SyncBN', 'BN'}
    exercised_data = pipeline_types(Config.fromfile(osp.join(ROOT, SEG_CONFIG))) | pipeline_types(
        Config.fromfile(osp.join(ROOT, ADE_CONFIG)))
    assert exercised_model == {'CosubEncoderDecoder', 'SegDataPreProcessor', 'TimmSegBackbone', 'MultiLevelNeck',
                               'UPerHead', 'FCNHead', 'CrossEntropyLoss', 'SyncBN', 'BN'}
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', 'seg', '*.py'))):
        cfg = Config.fromfile(path)
        assert model_types(cfg.model) <= exercised_model, path
        assert pipeline_types(cfg) <= exercised_data, path
