"""tools/dist_launch.sh, tools/slurm_launch.sh, tools/find_python.sh: the launchers as the README writes them,
`bash tools/dist_pretrain.sh CONFIG 2` with no PYTHON and no activated environment, run the tools with the
project's Python (`python` on PATH may have no torch); the 2-process run is slow."""
import math
import os
import os.path as osp
import subprocess

import pytest

from helpers import digits_options, scalars

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def fake_python_first(tmp_path):
    """The environment of a shell without PYTHON or an activated environment, whose `python` and `python3` have no
    torch (as on this machine: pyenv's shims)."""
    fake = tmp_path / 'bin'
    fake.mkdir()
    for name in ('python', 'python3'):
        (fake / name).write_text("#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n")
        (fake / name).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'VIRTUAL_ENV', 'CONDA_PREFIX')}
    env['PATH'] = f'{fake}{os.pathsep}{env["PATH"]}'
    return env


def test_one_node_meets_on_loopback_and_several_nodes_need_MASTER_ADDR(tmp_path):
    """torchrun's arguments as dist_launch.sh builds them (PYTHON is a script that prints them): on one node a
    MASTER_ADDR left in the shell is not read (CI once ran where it named an unreachable head node and every
    torchrun waited 15 minutes); with NNODES > 1 it is required and passed on."""
    echo = tmp_path / 'echo_python'
    echo.write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    echo.chmod(0o755)

    def launch(**env):
        return subprocess.run(['bash', 'tools/dist_launch.sh', '2', 'tools/pretrain.py', 'CONFIG'], cwd=ROOT,
                              env=dict(os.environ, PYTHON=str(echo), **env), capture_output=True, text=True)

    one = launch(MASTER_ADDR='head-node.invalid', PORT='29999')
    assert one.returncode == 0, one.stderr
    assert one.stdout.split() == ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
                                  '--master_addr=127.0.0.1', '--master_port=29999', '--nproc_per_node=2',
                                  'tools/pretrain.py', 'CONFIG', '--launcher', 'pytorch']
    two = launch(NNODES='2', NODE_RANK='1', MASTER_ADDR='10.0.0.1')
    assert two.returncode == 0, two.stderr
    assert {'--nnodes=2', '--node_rank=1', '--master_addr=10.0.0.1', '--master_port=29500'} <= set(two.stdout.split())
    missing = launch(NNODES='2')
    assert missing.returncode != 0 and missing.stdout == ''
    assert 'NNODES=2 needs MASTER_ADDR' in missing.stderr


def test_the_launchers_find_the_projects_python_without_PYTHON(tmp_path):
    """`python` on PATH without torch (as on this machine outside the venv): the launcher takes .venv/bin/python."""
    env = fake_python_first(tmp_path)
    found = subprocess.run(['bash', 'tools/find_python.sh'], cwd=ROOT, env=env, capture_output=True, text=True)
    venv = osp.join(ROOT, '.venv', 'bin', 'python')
    if not osp.exists(venv):
        pytest.skip('no .venv: the project was installed another way')
    assert (found.returncode, found.stdout.strip()) == (0, venv)
    chosen = subprocess.run(['bash', 'tools/find_python.sh'], cwd=ROOT, env=dict(env, PYTHON='/opt/py/bin/python'),
                            capture_output=True, text=True)
    assert chosen.stdout.strip() == '/opt/py/bin/python'  # PYTHON still wins
    for launcher in ('tools/dist_launch.sh', 'tools/slurm_launch.sh'):
        with open(osp.join(ROOT, launcher)) as f:
            text = f.read()
        assert 'PYTHON=$(bash tools/find_python.sh)' in text and '${PYTHON:-python}' not in text


@pytest.mark.slow
def test_the_readme_dist_pretrain_line_runs_without_PYTHON(digits_root, tmp_path):
    if not osp.exists(osp.join(ROOT, '.venv', 'bin', 'python')):
        pytest.skip('no .venv: the project was installed another way')
    work_dir = str(tmp_path / 'dist')
    # A MASTER_ADDR this machine cannot reach, as a cluster shell may leave behind: one node does not read it.
    env = dict(fake_python_first(tmp_path), PORT='29541', MASTER_ADDR='head-node.invalid')
    proc = subprocess.run(['bash', 'tools/dist_pretrain.sh', 'configs/pretrain/cosub_deit3-tiny_digits.py', '2',
                           '--work-dir', work_dir, '--cfg-options',
                           *digits_options(digits_root, epochs=1, per_epoch_images=16)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    train = [r for r in scalars(work_dir) if 'loss' in r]
    # 16 images over 2 processes with a batch of 4 each: 2 iterations.
    assert [r['iter'] for r in train] == [1, 2] and all(math.isfinite(r['loss']) for r in train)
    assert osp.isfile(osp.join(work_dir, 'epoch_1.pth'))
