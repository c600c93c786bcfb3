"""cosub_seg/runtime/dist.py: slurm's variables become torch's (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR from
scontrol, MASTER_PORT) and variables already set are kept. The 2-process runs are in test_tools_pretrain.py,
test_tools_faults.py and test_tools_launchers.py (slow)."""
import os




SLURM_ENV = dict(SLURM_PROCID='5', SLURM_NTASKS='8', SLURM_LOCALID='1', SLURM_NODELIST='node[07-08]')


def test_slurm_variables_become_torch_env_variables(tmp_path, monkeypatch):
    """slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID become RANK / WORLD_SIZE / LOCAL_RANK, MASTER_ADDR is
    the first host of ``scontrol show hostnames $SLURM_NODELIST`` (a fake scontrol on PATH that records its
    arguments) and MASTER_PORT 29500; variables already set are kept."""
    from cosub_seg.runtime.dist import _slurm_env_to_torch_env
    calls = tmp_path / 'calls'
    scontrol = tmp_path / 'scontrol'
    scontrol.write_text(f'#!/bin/sh\necho "$@" >> {calls}\nprintf "node07\\nnode08\\n"\n')
    scontrol.chmod(0o755)
    monkeypatch.setenv('PATH', f'{tmp_path}:{os.environ["PATH"]}')
    for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT'):
        monkeypatch.delenv(key, raising=False)
    for key, value in SLURM_ENV.items():
        monkeypatch.setenv(key, value)
    _slurm_env_to_torch_env()
    got = {key: os.environ[key] for key in ('RANK', 'WORLD_SIZE', 'LOCAL_RANK', 'MASTER_ADDR', 'MASTER_PORT')}
    assert got == dict(RANK=SLURM_ENV['SLURM_PROCID'], WORLD_SIZE=SLURM_ENV['SLURM_NTASKS'],
                       LOCAL_RANK=SLURM_ENV['SLURM_LOCALID'], MASTER_ADDR='node07', MASTER_PORT='29500')
    assert calls.read_text() == 'show hostnames node[07-08]\n'
    # Set by the user (or torchrun): kept; scontrol is not asked when MASTER_ADDR is known.
    monkeypatch.setenv('RANK', '2')
    monkeypatch.setenv('MASTER_ADDR', '10.0.0.1')
    monkeypatch.setenv('MASTER_PORT', '1234')
    _slurm_env_to_torch_env()
    assert (os.environ['RANK'], os.environ['MASTER_ADDR'], os.environ['MASTER_PORT']) == ('2', '10.0.0.1', '1234')
    assert calls.read_text() == 'show hostnames node[07-08]\n'
