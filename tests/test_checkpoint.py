"""cosub_seg/checkpoint.py: reading a weights file without running code from it (what a training checkpoint holds
besides tensors is admitted for the load only), finding the weights in it, and putting them under timm's names."""
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from mmengine.logging import HistoryBuffer
from safetensors.torch import save_file

from cosub_seg.checkpoint import extract_state_dict, load_checkpoint_file, timm_state_dict
from cosub_seg.errors import ConfigTypeError, DataError, MissingFileError, UnsafeCheckpointError

from helpers import Hostile

NUMPY_DTYPES = ('bool', 'int8', 'int16', 'int32', 'int64', 'uint8', 'uint16', 'uint32', 'uint64', 'float16',
                'float32', 'float64')


@pytest.fixture
def bare_torch():
    """torch's process-wide allow-list emptied for the test (the test process has cosub_seg's installed, as the
    tools do): what loads then is what load_checkpoint_file admits itself. Restored afterwards."""
    saved = torch.serialization.get_safe_globals()
    torch.serialization.clear_safe_globals()
    yield
    torch.serialization.clear_safe_globals()
    torch.serialization.add_safe_globals(saved)


def _numpy_values():
    """An array and a scalar of every dtype a log may hold, with values that use the dtype's range (a negative
    number for signed types, a number above the signed range for unsigned ones)."""
    values = {}
    for name in NUMPY_DTYPES:
        dtype = np.dtype(name)
        if dtype.kind == 'b':
            sample = [True, False, True]
        elif dtype.kind == 'u':
            sample = [0, 1, np.iinfo(dtype).max]
        elif dtype.kind == 'i':
            sample = [np.iinfo(dtype).min, -1, np.iinfo(dtype).max]
        else:
            sample = [-1.5, 0.25, 3.0]
        values[f'array_{name}'] = np.array(sample, dtype=dtype).reshape(3, 1)
        values[f'scalar_{name}'] = dtype.type(sample[-1])
    return values


def test_numpy_arrays_and_scalars_of_every_dtype_and_a_history_buffer_load_without_the_process_allow_list(
        tmp_path, bare_torch):
    """A checkpoint as MMEngine writes it: tensors, a message hub with a HistoryBuffer and NumPy arrays and scalars
    of 12 dtypes. It loads through load_checkpoint_file with torch's allow-list empty, every value equal to what was
    saved, with its dtype; the allow-list is still empty afterwards (nothing is added for the rest of the process),
    and a plain weights-only load of the same file is refused (so the admission above is the function's own)."""
    buffer = HistoryBuffer()
    for value, count in ((1.5, 1), (2.5, 2), (-4.0, 1)):
        buffer.update(value, count)
    numpy_values = _numpy_values()
    weights = {'w': torch.arange(6.0).reshape(2, 3), 'b': torch.tensor([1, 2], dtype=torch.int16)}
    path = tmp_path / 'iter_10.pth'
    torch.save(dict(state_dict=weights, message_hub=dict(log_scalars={'train/loss': buffer}),
                    meta=dict(iter=10, logs=numpy_values)), path)

    loaded = load_checkpoint_file(str(path))

    assert torch.serialization.get_safe_globals() == []
    with pytest.raises(Exception, match='Unsupported global'):
        torch.load(path, weights_only=True)
    for key, tensor in weights.items():
        assert torch.equal(loaded['state_dict'][key], tensor) and loaded['state_dict'][key].dtype == tensor.dtype
    restored = loaded['message_hub']['log_scalars']['train/loss']
    assert type(restored) is HistoryBuffer
    log, counts = restored.data
    np.testing.assert_array_equal(log, [1.5, 2.5, -4.0])
    np.testing.assert_array_equal(counts, [1, 2, 1])
    assert restored.max_length == buffer.max_length
    assert restored.mean() == pytest.approx((1.5 + 2.5 - 4.0) / 3)
    logs = loaded['meta']['logs']
    assert set(logs) == set(numpy_values)
    for key, value in numpy_values.items():
        assert type(logs[key]) is type(value) and logs[key].dtype == value.dtype, key
        np.testing.assert_array_equal(logs[key], value)


def test_a_load_leaves_the_process_allow_list_as_it_was(tmp_path, bare_torch):
    """Whatever torch allowed before the load (nothing, part of the training-state classes, or all of them as
    install() leaves it) it still allows after, and nothing more: torch's safe_globals context removes on exit all
    it was given, so only the classes not allowed already may be given to it."""
    from cosub_seg.checkpoint import training_state_globals
    path = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'message_hub': HistoryBuffer([1.0, 3.0], [1, 1]),
                'meta': {'lr': np.float64(0.5), 'seen': np.array([1, 2], dtype=np.int64)}}, path)
    everything = training_state_globals()
    for before in ([], [HistoryBuffer, np.ndarray], everything):
        torch.serialization.clear_safe_globals()
        torch.serialization.add_safe_globals(before)
        loaded = load_checkpoint_file(str(path))
        assert loaded['message_hub'].mean() == 2.0 and loaded['meta']['lr'] == 0.5
        after = torch.serialization.get_safe_globals()
        assert len(after) == len(before) and set(after) == set(before)


def test_a_file_that_needs_another_class_is_refused_naming_it_and_nothing_runs(tmp_path):
    marker = tmp_path / 'created_by_unpickling'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'meta': Hostile(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError,
                       match=rf'^{path} holds more than tensors and is refused, because loading it could run code '
                             r'\(.*Unsupported global: GLOBAL io\.open.*\)\. Convert it'):
        load_checkpoint_file(str(path))
    assert not marker.exists()


def test_the_environment_variable_that_turns_weights_only_off_does_not_reach_this_load(tmp_path, monkeypatch):
    """TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 makes torch.load unpickle anything unless weights_only=True is passed
    explicitly: load_checkpoint_file passes it, so the file is still refused and its code does not run."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'created_by_unpickling'
    path = tmp_path / 'epoch_9.pth'
    torch.save({'state_dict': {'x': torch.zeros(1)}, 'meta': Hostile(str(marker))}, path)
    with pytest.raises(UnsafeCheckpointError, match='Unsupported global: GLOBAL io.open'):
        load_checkpoint_file(str(path))
    assert not marker.exists()


@pytest.mark.parametrize('damage', ['garbage', 'truncated'])
def test_a_file_that_is_no_checkpoint_is_named_as_unreadable_not_as_unsafe(tmp_path, damage):
    """Bytes torch cannot read (not a pickle; a zip archive cut in half, as an interrupted download leaves it) are
    not a safety refusal: the message says the file is unreadable and to fetch it again, with torch's specific
    reason (the 'Unsupported operand' line of its weights-only reader, or its zip reader's error)."""
    path = tmp_path / 'broken.pth'
    if damage == 'garbage':
        path.write_bytes(b'garbage, not a checkpoint')
        reason = 'Unsupported operand 103'  # 'g' (103) is no pickle opcode torch's weights-only reader knows
    else:
        torch.save({'w': torch.zeros(1000)}, path)
        data = path.read_bytes()
        path.write_bytes(data[:len(data) // 2])
        reason = 'PytorchStreamReader failed reading zip archive: failed finding central directory'
    with pytest.raises(DataError) as ours:
        load_checkpoint_file(str(path))
    assert not isinstance(ours.value, UnsafeCheckpointError)
    assert str(ours.value) == (f'{path} is not a readable checkpoint ({reason}): a truncated download or copy, or not '
                               'a file written by torch.save. Download or copy it again.')


def test_missing_file_and_a_file_that_is_not_a_dict_are_named(tmp_path):
    with pytest.raises(MissingFileError, match=rf'^checkpoint {tmp_path}/none\.pth does not exist$'):
        load_checkpoint_file(str(tmp_path / 'none.pth'))
    torch.save([torch.zeros(2)], tmp_path / 'list.pth')
    with pytest.raises(ConfigTypeError, match=rf'^{tmp_path}/list\.pth holds a list, not a state dict or a checkpoint '
                                              'dict$'):
        load_checkpoint_file(str(tmp_path / 'list.pth'))


def test_map_location_reaches_torch_load_and_safetensors_takes_a_device_name(tmp_path, monkeypatch):
    """map_location='meta' gives meta tensors (torch.load honours it). A .safetensors file is read by safetensors
    (a spy on its load_file records the device it is given and reads on the CPU): a device name, or a torch.device
    as its name (safetensors takes names), is passed on; anything else (a dict, a function) reads on the CPU."""
    import safetensors.torch

    torch.save({'w': torch.ones(2, 2)}, tmp_path / 'w.pth')
    assert load_checkpoint_file(str(tmp_path / 'w.pth'), map_location='meta')['w'].device.type == 'meta'
    tensors = {'w': torch.arange(4.0).reshape(2, 2), 'n': torch.tensor([7], dtype=torch.int64)}
    path = str(tmp_path / 'w.safetensors')
    save_file(tensors, path)
    calls = []
    real = safetensors.torch.load_file

    def spy(filename, device='cpu'):
        calls.append((filename, device))
        return real(filename, device='cpu')

    monkeypatch.setattr(safetensors.torch, 'load_file', spy)
    for location in ('cuda:1', torch.device('cuda:1'), 'cpu', {'cuda:0': 'cpu'}):
        loaded = load_checkpoint_file(path, map_location=location)
        assert set(loaded) == set(tensors)
        assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in tensors.items())
    assert calls == [(path, 'cuda:1'), (path, 'cuda:1'), (path, 'cpu'), (path, 'cpu')]


def test_extract_state_dict_finds_the_weights_of_every_format():
    w, b = torch.ones(2), torch.zeros(3)
    plain = {'w': w, 'b': b}
    assert extract_state_dict({'state_dict': plain, 'meta': {'epoch': 3}, 'ema_state_dict': {'x': b}}) == plain
    assert extract_state_dict({'model': plain, 'epoch': 3}) == plain  # DeiT releases
    assert extract_state_dict({'module': plain}) == plain
    assert extract_state_dict({'state_dict': plain, 'model': {'other': b}}) == plain  # 'state_dict' comes first
    # Non-tensor entries of a plain dict are dropped; a 'state_dict' that is not a dict is not the weights.
    assert extract_state_dict(dict(plain, steps=3, note='x')) == plain
    assert extract_state_dict({'state_dict': 'elsewhere', 'model': plain}) == plain
    assert extract_state_dict({'state_dict': 'elsewhere', **plain}) == plain
    with pytest.raises(DataError, match=r'^no tensors found in checkpoint ckpt\.pth$'):
        extract_state_dict({'state_dict': {'epoch': 3}}, 'ckpt.pth')
    with pytest.raises(DataError, match=r'^no tensors found in checkpoint $'):  # no path given: none named
        extract_state_dict({})


def test_timm_state_dict_strips_wrapper_prefixes_every_key_carries_then_applies_timms_filter():
    """'module.' (DDP) and then 'backbone.' (CosubClassifier) come off when every key has them, not when one key
    lacks them; DeiT III's 'gamma_1' / 'gamma_2' become 'ls1.gamma' / 'ls2.gamma' (timm's filter with
    adapt_layer_scale); the values are the same tensors."""
    model = timm.create_model('deit3_small_patch16_224', num_classes=0, img_size=32, patch_size=8, embed_dim=16,
                              depth=1, num_heads=1)
    own = model.state_dict()
    authors = {k.replace('ls1.gamma', 'gamma_1').replace('ls2.gamma', 'gamma_2'): v.clone() + 1
               for k, v in own.items()}
    assert 'blocks.0.gamma_1' in authors
    wrapped = {f'module.backbone.{k}': v for k, v in authors.items()}
    converted = timm_state_dict(wrapped, model)
    assert set(converted) == set(own)
    torch.testing.assert_close(converted['blocks.0.ls1.gamma'], authors['blocks.0.gamma_1'], rtol=0, atol=0)
    torch.testing.assert_close(converted['blocks.0.attn.qkv.weight'], authors['blocks.0.attn.qkv.weight'], rtol=0,
                               atol=0)
    # A state of LayerScale weights only is renamed too.
    gammas = {k: v for k, v in authors.items() if 'gamma_' in k}
    assert timm_state_dict(gammas, model) == {'blocks.0.ls1.gamma': gammas['blocks.0.gamma_1'],
                                             'blocks.0.ls2.gamma': gammas['blocks.0.gamma_2']}
    # One key without the prefix: nothing is stripped, and timm's filter leaves the unknown names as they are.
    mixed = dict({f'backbone.{k}': v for k, v in own.items()}, extra=torch.zeros(1))
    assert set(timm_state_dict(mixed, model)) == set(mixed)


def test_timm_state_dict_resamples_pits_position_map_bicubically_to_the_models_grid():
    """PiT's filter does not resample its (1, C, H, W) position map: timm_state_dict does, bicubic with
    align_corners=False, to the model's grid; a map of the right size is left as it is (the same tensor, still
    float64: resampling would have made it float32)."""
    model = timm.create_model('pit_ti_224', num_classes=0, img_size=64)
    grid = tuple(model.pos_embed.shape[-2:])
    pos = torch.randn(1, model.pos_embed.shape[1], 4, 5, generator=torch.Generator().manual_seed(0))
    state = dict(model.state_dict(), pos_embed=pos)
    out = timm_state_dict(state, model)
    assert grid != (4, 5) and tuple(out['pos_embed'].shape[-2:]) == grid
    assert set(out) == set(state)  # the other weights stay
    assert all(out[k] is v for k, v in state.items() if k != 'pos_embed')
    expected = F.interpolate(pos, size=grid, mode='bicubic', align_corners=False)
    torch.testing.assert_close(out['pos_embed'], expected, rtol=0, atol=0)
    right_size = pos.new_zeros(model.pos_embed.shape, dtype=torch.float64)
    assert timm_state_dict(dict(state, pos_embed=right_size), model)['pos_embed'] is right_size


# One of each family, tiny; RegNet's timm module has no checkpoint_filter_fn (the state is used as it is).
FAMILIES = {
    'swin_tiny_patch4_window7_224': dict(img_size=56, embed_dim=16, depths=(1, 2, 1, 1), num_heads=(1, 1, 1, 1)),
    'xcit_nano_12_p16_224': dict(img_size=32, depth=2),
    'convnext_atto': {},
    'regnety_002': {},
    'pit_ti_224': dict(img_size=64),
}


@pytest.mark.parametrize('arch', sorted(FAMILIES))
def test_a_ddp_wrapped_timm_state_dict_of_every_family_comes_back_under_the_models_names(arch):
    """The state dict of another instance of the same model, every key under 'module.': the result has exactly
    the model's keys and holds the saved values (timm's filter, where the family has one, changes nothing for a
    state of timm's own format), and the model loads it strictly."""
    torch.manual_seed(0)
    model = timm.create_model(arch, num_classes=0, **FAMILIES[arch])
    torch.manual_seed(1)
    source = timm.create_model(arch, num_classes=0, **FAMILIES[arch]).state_dict()
    converted = timm_state_dict({f'module.{k}': v for k, v in source.items()}, model)
    assert set(converted) == set(model.state_dict())
    for key, value in source.items():
        torch.testing.assert_close(converted[key], value, rtol=0, atol=0)
    model.load_state_dict(converted, strict=True)
