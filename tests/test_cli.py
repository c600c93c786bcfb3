"""Console scripts and the TensorBoard switch."""
import importlib
import importlib.util
import os.path as osp

import pytest
from mmengine.config import Config

from cosub_seg.runtime.launch import enable_tensorboard

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_console_scripts_point_at_the_package_mains():
    tomllib = pytest.importorskip('tomllib')  # Python >= 3.11
    with open(osp.join(ROOT, 'pyproject.toml'), 'rb') as f:
        scripts = tomllib.load(f)['project']['scripts']
    assert {'cosub-pretrain', 'cosub-train-seg', 'cosub-test-seg', 'cosub-pipeline'} <= set(scripts)
    for name, target in scripts.items():
        module, function = target.split(':')
        assert callable(getattr(importlib.import_module(module), function)), name
        # tools/<name>.py is a wrapper of the same main, so checkouts and the dist/slurm launchers keep working.
        wrapper = osp.join(ROOT, 'tools', module.rsplit('.', 1)[-1] + '.py')
        with open(wrapper) as f:
            assert f'from {module} import main' in f.read(), wrapper


def test_tensorboard_switch_adds_the_backend_once():
    cfg = Config(dict(visualizer=dict(type='Visualizer', vis_backends=[dict(type='LocalVisBackend')])))
    enable_tensorboard(cfg)
    enable_tensorboard(cfg)
    assert [b['type'] for b in cfg.visualizer.vis_backends] == ['LocalVisBackend', 'TensorboardVisBackend']


def test_tensorboard_switch_without_the_package_says_what_to_install(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name, *a: None if name == 'tensorboard' else real(name))
    cfg = Config(dict(visualizer=dict(type='Visualizer', vis_backends=[])))
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'cosub_seg\[tensorboard\]'"):
        enable_tensorboard(cfg)
