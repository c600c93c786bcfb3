"""tools/pretrain.py --resume across versions, slow: a checkpoint written by the code before the runtime/ restructure
and the ``stochastic_depth`` config entry (commit 63d8002) resumes with today's code and ends bit-identical to a run
of today's code that never stopped: state-dict keys, the training state and the random streams are unchanged."""
import io
import os.path as osp
import subprocess
import tarfile

import pytest
import torch

from cosub_seg.checkpoint import load_checkpoint_file

from helpers import digits_options, run_tool

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
OLD_COMMIT = '63d800212ddb78fdb6c31613e906abb913add412'
CONFIG = 'configs/pretrain/cosub_deit3-tiny_digits.py'


def old_checkout(dest) -> str:
    """The files of OLD_COMMIT (package, configs, tools), taken from the repository's history."""
    try:
        archive = subprocess.run(['git', '-C', ROOT, 'archive', OLD_COMMIT, 'cosub_seg', 'configs', 'tools'],
                                 capture_output=True, check=True).stdout
    except (subprocess.CalledProcessError, FileNotFoundError) as err:
        pytest.skip(f'needs the git history holding commit {OLD_COMMIT} (a full clone): {err}')
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter='data')
    return str(dest)


@pytest.mark.slow
def test_a_checkpoint_of_the_old_code_resumes_exactly(digits_root, tmp_path, python):
    old = old_checkout(tmp_path / 'old')
    resumed, straight = str(tmp_path / 'resumed'), str(tmp_path / 'straight')
    # Epoch 1 with the old code (PYTHONPATH puts its package before the installed one), then epoch 2 with today's.
    run_tool([python, 'tools/pretrain.py', CONFIG, '--work-dir', resumed, '--cfg-options',
              *digits_options(digits_root, epochs=1)], cwd=old, env=dict(PYTHONPATH=old))
    # Today's code continues with the recipe the checkpoint was written with: the old checkout's config (the demo
    # recipe has changed since, issue 13).
    old_config = osp.join(old, CONFIG)
    proc = run_tool([python, 'tools/pretrain.py', old_config, '--work-dir', resumed, '--resume', '--cfg-options',
                     *digits_options(digits_root, epochs=2)])
    assert 'resumed epoch: 1, iter: 2' in proc.stdout + proc.stderr
    run_tool([python, 'tools/pretrain.py', old_config, '--work-dir', straight, '--cfg-options',
              *digits_options(digits_root, epochs=2)])
    a = load_checkpoint_file(osp.join(resumed, 'epoch_2.pth'))
    b = load_checkpoint_file(osp.join(straight, 'epoch_2.pth'))
    assert a['meta']['iter'] == b['meta']['iter'] == 4
    assert a.keys() == b.keys() and 'state_dict' in a
    for key in [k for k in a if k.endswith('state_dict')]:  # weights, and the EMA's where the config keeps one
        assert a[key].keys() == b[key].keys()
        for name in a[key]:
            assert torch.equal(a[key][name], b[key][name]), (key, name)
    moments = [(i, k) for i, state in a['optimizer']['state'].items() for k, v in state.items() if torch.is_tensor(v)]
    assert moments
    for i, k in moments:
        assert torch.equal(a['optimizer']['state'][i][k], b['optimizer']['state'][i][k]), (i, k)
