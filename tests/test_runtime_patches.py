"""cosub_seg/runtime/patches.py: a bare ``import cosub_seg`` changes nothing in torch or MMEngine; ``install()`` makes
exactly the documented process-wide changes, once; loading a checkpoint does not undo them. With them in force a
pickle that runs code is still refused, also by MMEngine's loader with torch's unsafe switch set, and a
HistoryBuffer pickles as its data only."""
import copy
import ctypes
import gc
import json
import subprocess
import sys
import textwrap

import pytest
import torch
from mmengine.logging.history_buffer import HistoryBuffer

from helpers import Hostile

# Run in a fresh interpreter: the test session itself is installed (conftest.py).
PROBE = textwrap.dedent('''
    import copyreg, json, sys, warnings
    import torch, mmengine.runner, mmseg.models, timm  # what cosub_seg imports, so that only its own effect counts
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader
    from torch.multiprocessing.reductions import StorageWeakRef

    def state():
        return dict(safe_globals=sorted(map(str, torch.serialization.get_safe_globals())),
                    loader=f"{CheckpointLoader._schemes[''].__module__}.{CheckpointLoader._schemes[''].__name__}",
                    reduction=str(copyreg.dispatch_table.get(HistoryBuffer)),
                    filters=len(warnings.filters), weak_ref_copy='__deepcopy__' in vars(StorageWeakRef))

    before = state()
    import cosub_seg
    after_import = state()
    from cosub_seg import runtime
    after_runtime_import = state()
    runtime.install()
    installed = state()
    runtime.install()
    again = state()
    json.dump(dict(before=before, after_import=after_import, after_runtime_import=after_runtime_import,
                   installed=installed, again=again), sys.stdout)
''')


def test_import_changes_nothing_and_install_changes_what_it_documents():
    out = subprocess.run([sys.executable, '-c', PROBE], capture_output=True, text=True, check=True).stdout
    states = json.loads(out)
    before = states['before']
    assert states['after_import'] == before
    assert states['after_runtime_import'] == before  # importing the runtime registers hooks, nothing else
    installed = states['installed']
    assert before['loader'] == 'mmengine.runner.checkpoint.load_from_local'
    assert installed['loader'] == 'cosub_seg.runtime.patches.load_from_local_weights_only'
    from cosub_seg.checkpoint import training_state_globals
    added = set(installed['safe_globals']) - set(before['safe_globals'])
    assert added == set(map(str, training_state_globals()))
    assert "<class 'mmengine.logging.history_buffer.HistoryBuffer'>" in added and "<class 'numpy.ndarray'>" in added
    assert before['reduction'] == 'None' and '_reduce_history_buffer' in installed['reduction']
    from cosub_seg.known_warnings import KNOWN_WARNINGS
    assert installed['filters'] == before['filters'] + len(KNOWN_WARNINGS)
    assert not before['weak_ref_copy'] and installed['weak_ref_copy']
    assert states['again'] == installed  # idempotent


def _weak_count(cdata):
    """A StorageImpl's weak reference count, read from its memory: c10::intrusive_ptr_target keeps the strong count
    in the low and the weak count in the high 32 bits of one 64-bit word after the vtable pointer (torch >= 2.9)."""
    return ctypes.c_uint64.from_address(cdata + 8).value >> 32


def test_copies_of_a_storage_weak_ref_hold_no_reference_of_their_own():
    """A StorageWeakRef copied (alone, or as the key of a dictionary copied deeply, as a deep copy of a fake tensor
    copies its mode's) takes no weak reference, so the copies must not free one: the count, read from the
    StorageImpl, is the same after the copies are gone as before the copies were made. Without the installed patch
    each copy freed the one reference again (the count went below where it started; in the test session, once the
    storage was gone, that write landed in freed memory)."""
    from torch.multiprocessing.reductions import StorageWeakRef
    storage = torch.zeros(4).untyped_storage()
    holder = StorageWeakRef(storage)
    strong = ctypes.c_uint64.from_address(holder.cdata + 8).value & 0xFFFFFFFF
    if strong != torch._C._storage_Use_Count(holder.cdata):
        pytest.skip('this torch lays out StorageImpl refcounts differently from what _weak_count reads')
    start = _weak_count(holder.cdata)
    ref = StorageWeakRef(storage)
    assert _weak_count(ref.cdata) == start + 1
    copies = [copy.copy(ref), copy.deepcopy(ref), *copy.deepcopy({ref: 'constant'})]
    assert all(c is ref for c in copies)
    del copies, ref
    gc.collect()
    assert _weak_count(holder.cdata) == start


def test_loading_a_checkpoint_keeps_the_installed_allow_list(tmp_path):
    """torch's ``safe_globals`` context removes on exit what it was given, even classes allowed before it; our loads
    must not take HistoryBuffer off the allow-list that install() put it on (resuming would then fail)."""
    from cosub_seg.checkpoint import load_checkpoint_file
    assert HistoryBuffer in torch.serialization.get_safe_globals()  # conftest installed the runtime
    path = tmp_path / 'ckpt.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'message_hub': HistoryBuffer([1.0, 2.0], [1, 1])}, path)
    loaded = load_checkpoint_file(str(path))
    assert loaded['message_hub'].mean() == 1.5
    assert HistoryBuffer in torch.serialization.get_safe_globals()
    # And a plain weights-only load of the same file still works in this process.
    assert torch.load(path, weights_only=True)['message_hub'].current() == 2.0


def test_history_buffer_pickles_as_its_data_only(tmp_path):
    """After install(), a HistoryBuffer that has been used (its __dict__ then holds bound statistics methods) pickles
    to HistoryBuffer(log, count, max_length), which weights-only loading accepts and which holds the same data."""
    buffer = HistoryBuffer(max_length=5)
    for value in (1.0, 4.0, 7.0):
        buffer.update(value)
    buffer.statistics('mean')  # caches a bound method in the instance
    path = tmp_path / 'hub.pth'
    torch.save(buffer, path)
    loaded = torch.load(path, weights_only=True)
    assert loaded.data[0].tolist() == [1.0, 4.0, 7.0] and loaded.max_length == 5 and loaded.mean() == 4.0


def test_the_allow_list_still_refuses_a_pickle_that_runs_code(tmp_path):
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save(dict(state_dict={}, meta=Hostile(str(marker))), path)
    with pytest.raises(Exception, match='Unsupported global|weights_only'):
        torch.load(path, map_location='cpu')  # torch's default, weights_only=True, with our allow-list in force
    assert not marker.exists()


def test_history_buffer_pickles_its_data_only():
    import pickle
    from mmengine.logging import HistoryBuffer
    buffer = HistoryBuffer()
    buffer.update(1.5)
    buffer.update(2.5, count=2)
    buffer.mean()  # statistics methods must not end up in the pickle
    restored = pickle.loads(pickle.dumps(buffer))
    assert b'getattr' not in pickle.dumps(buffer)
    assert restored.max_length == buffer.max_length
    assert [list(a) for a in restored.data] == [list(a) for a in buffer.data]


def test_hostile_checkpoints_are_refused_by_mmengine_loading_even_with_the_unsafe_switch(tmp_path, monkeypatch):
    """MMEngine's load_checkpoint serves load_from, resume and init_cfg=dict(type='Pretrained'); torch's
    TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 would make its plain torch.load run the payload."""
    from mmengine.runner.checkpoint import _load_checkpoint
    from cosub_seg.models import CosubClassifier
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    path = str(tmp_path / 'hostile.pth')
    torch.save({'state_dict': {}, 'meta': Hostile(str(marker))}, path)
    with pytest.raises(RuntimeError, match='holds more than tensors and is refused'):
        _load_checkpoint(path)
    model = CosubClassifier(arch='deit3_small_patch16_224', num_classes=10, num_submodels=1,
                            model_kwargs=dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2),
                            init_cfg=dict(type='Pretrained', checkpoint=path))
    with pytest.raises(RuntimeError, match='holds more than tensors and is refused'):
        model.init_weights()
    assert not marker.exists()
