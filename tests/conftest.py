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
