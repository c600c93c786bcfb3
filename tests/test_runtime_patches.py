"""cosub_seg/runtime/patches.py: a bare ``import cosub_seg`` changes nothing in torch or MMEngine; ``install()`` makes
exactly the documented process-wide changes, once; and loading a checkpoint does not undo them."""
import json
import subprocess
import sys
import textwrap

import torch
from mmengine.logging.history_buffer import HistoryBuffer

# Run in a fresh interpreter: the test session itself is installed (conftest.py).
PROBE = textwrap.dedent('''
    import copyreg, json, sys, warnings
    import torch, mmengine.runner, mmseg.models, timm  # what cosub_seg imports, so that only its own effect counts
    from mmengine.logging.history_buffer import HistoryBuffer
    from mmengine.runner.checkpoint import CheckpointLoader

    def state():
        return dict(safe_globals=sorted(map(str, torch.serialization.get_safe_globals())),
                    loader=f"{CheckpointLoader._schemes[''].__module__}.{CheckpointLoader._schemes[''].__name__}",
                    reduction=str(copyreg.dispatch_table.get(HistoryBuffer)),
                    filters=len(warnings.filters))

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
    assert states['again'] == installed  # idempotent


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
