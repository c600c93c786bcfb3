"""cosub_seg/runtime/checkpointing.py: atomic writes; retention that deletes an old checkpoint only after the new one
is complete (SafeCheckpointHook on a toy run); the resume scan (find_resumable_checkpoint) takes the newest complete
checkpoint whatever last_checkpoint says and never runs a hostile file."""
import os
import os.path as osp
import stat

import pytest
import torch

import cosub_seg  # noqa: F401  (registers the modules)
from cosub_seg.runtime import AtomicLocalBackend, atomic_write, find_resumable_checkpoint

from helpers import Hostile, toy_runner


def test_atomic_write_replaces_whole_files_and_keeps_the_umask(tmp_path):
    path = tmp_path / 'sub' / 'file.bin'
    atomic_write(str(path), b'first')
    atomic_write(str(path), b'second version')
    assert path.read_bytes() == b'second version'
    assert os.listdir(path.parent) == ['file.bin']  # no temporary file left
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_a_failed_atomic_write_leaves_the_old_file(tmp_path):
    path = tmp_path / 'file.bin'
    atomic_write(str(path), b'good')
    with pytest.raises(TypeError):
        atomic_write(str(path), object())  # fails inside the write
    assert path.read_bytes() == b'good'
    assert os.listdir(tmp_path) == ['file.bin']


class RecordingBackend(AtomicLocalBackend):
    events = []

    def put(self, obj, filepath):
        super().put(obj, filepath)
        self.events.append(('put', osp.basename(filepath)))

    def remove(self, filepath):
        self.events.append(('remove', osp.basename(filepath)))
        super().remove(filepath)


def test_retention_deletes_an_old_checkpoint_only_after_the_new_one_is_complete(tmp_path):
    from mmengine.fileio import register_backend
    register_backend('recording_atomic', RecordingBackend, force=True)
    RecordingBackend.events.clear()
    runner = toy_runner(tmp_path, hooks=dict(checkpoint=dict(
        type='SafeCheckpointHook', interval=1, max_keep_ckpts=1, backend_args=dict(backend='recording_atomic'))))
    runner.train()
    checkpoints = [e for e in RecordingBackend.events if e[1].startswith('epoch_')]
    # MMEngine's CheckpointHook removes epoch_1 before writing epoch_2; this order keeps one complete file at all times.
    assert checkpoints == [('put', 'epoch_1.pth'), ('put', 'epoch_2.pth'), ('remove', 'epoch_1.pth'),
                           ('put', 'epoch_3.pth'), ('remove', 'epoch_2.pth')]
    assert sorted(f for f in os.listdir(runner.work_dir) if f.endswith('.pth')) == ['epoch_3.pth']
    with open(osp.join(runner.work_dir, 'last_checkpoint')) as f:
        assert f.read() == osp.join(runner.work_dir, 'epoch_3.pth')


def test_the_newest_complete_checkpoint_is_resumed_whatever_last_checkpoint_says(tmp_path):
    def save(name, iteration):
        torch.save({'meta': {'iter': iteration}, 'state_dict': {'w': torch.zeros(1000)}}, tmp_path / name)
    save('epoch_1.pth', 4)
    save('iter_6.pth', 6)
    save('epoch_2.pth', 8)
    data = (tmp_path / 'epoch_2.pth').read_bytes()
    (tmp_path / 'epoch_3.pth').write_bytes(data[:len(data) // 2])  # a save cut short by a writer without atomicity
    (tmp_path / 'last_checkpoint').write_text(str(tmp_path / 'epoch_3.pth'))
    save('best_accuracy_epoch_9.pth', 99)  # no optimiser state: never resumed
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    (tmp_path / 'last_checkpoint').write_text('')  # torn while being written
    assert find_resumable_checkpoint(str(tmp_path)) == str(tmp_path / 'epoch_2.pth')
    assert find_resumable_checkpoint(str(tmp_path / 'empty')) is None


@pytest.mark.parametrize('legacy', [False, True], ids=['zip', 'legacy'])
def test_the_resume_scan_never_runs_a_hostile_checkpoint(tmp_path, monkeypatch, legacy):
    """--resume auto loads every epoch_*/iter_*.pth of the work dir to rank them. A hostile epoch_9.pth (its pickle
    opens a marker file for writing when unpickled without weights_only) next to a legit epoch_2.pth, with torch's
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (which turns every torch.load that does not pass weights_only into an unsafe
    one): the payload never runs and epoch_2.pth is chosen. A zip file reaches _training_iteration's torch.load; a
    legacy (non-zip) file is read by is_complete_checkpoint's torch.load first."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    torch.save({'meta': {'iter': 8}, 'state_dict': {'w': torch.zeros(3)}}, work_dir / 'epoch_2.pth')
    # The hostile file claims the newest iteration: were it loaded, it would also be the one chosen.
    torch.save({'meta': {'iter': 99}, 'state_dict': {}, 'payload': Hostile(str(marker))}, work_dir / 'epoch_9.pth',
               _use_new_zipfile_serialization=not legacy)
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'epoch_9.pth'))
    assert find_resumable_checkpoint(str(work_dir)) == str(work_dir / 'epoch_2.pth')
    assert not marker.exists()
