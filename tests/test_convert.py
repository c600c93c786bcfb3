"""cosub_seg/convert.py (and its tool, cli/convert_checkpoint.py): weights in and out: timm safetensors export,
DeiT III / timm import, segmentor export for mmseg's init_model; exported files have the permissions of a new file
and the tool prints no progress bar off a terminal."""
import json
import os
import os.path as osp
import subprocess

import numpy as np
import pytest
import timm
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from safetensors.torch import load_file

import cosub_seg  # noqa: F401
from cosub_seg.convert import export_backbone, export_segmentor, import_weights
from cosub_seg.registry import MODELS

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PRETRAIN_CONFIG = osp.join(ROOT, 'configs/pretrain/cosub_deit3-tiny_digits.py')
SEG_CONFIG = osp.join(ROOT, 'configs/seg/upernet_cosub-deit3-tiny_digitscenes.py')
# the digits config's model_kwargs
TINY = dict(img_size=32, patch_size=8, embed_dim=128, depth=6, num_heads=4, init_values=0.1, class_token=False,
            global_pool='avg')


def _classifier(seed=0):
    torch.manual_seed(seed)
    with DefaultScope.overwrite_default_scope('cosub_seg'):
        return MODELS.build(Config.fromfile(PRETRAIN_CONFIG).model).eval()


def test_exported_backbone_gives_the_same_logits_in_timm(tmp_path):
    model = _classifier()
    ckpt = tmp_path / 'epoch_1.pth'  # the layout MMEngine's CheckpointHook writes, without an EMA
    torch.save(dict(meta=dict(epoch=1), state_dict=model.state_dict(), message_hub={}), ckpt)
    paths = export_backbone(PRETRAIN_CONFIG, str(ckpt), str(tmp_path / 'out'))
    assert paths['weights_kind'] == 'trained'
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        ours = model(x, mode='tensor')
        # The form of the issue: the architecture, the same kwargs and the file.
        overlay = timm.create_model('deit3_small_patch16_224', pretrained=True, num_classes=10, **TINY,
                                    pretrained_cfg_overlay=dict(file=paths['weights'], num_classes=10)).eval()
        torch.testing.assert_close(overlay(x), ours, rtol=0, atol=0)
        # timm's own folder format: config.json carries the architecture and its arguments.
        local = timm.create_model(f'local-dir:{tmp_path / "out"}', pretrained=True).eval()
        torch.testing.assert_close(local(x), ours, rtol=0, atol=0)
    config = json.loads((tmp_path / 'out' / 'config.json').read_text())
    assert config['architecture'] == 'deit3_small_patch16_224' and config['num_classes'] == 10
    assert config['pretrained_cfg']['tag'] == 'cosub_seg'
    assert not any(k.startswith('backbone.') for k in load_file(paths['weights']))


def test_ema_weights_are_exported_unless_raw_weights_are_asked_for(tmp_path):
    ema, raw = _classifier(seed=0), _classifier(seed=1)
    # What MMEngine's EMAHook saves: the EMA in state_dict, the trained weights as 'module.<name>' beside it.
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=ema.state_dict(), ema_state_dict=dict(
        steps=torch.tensor(1), **{f'module.{k}': v for k, v in raw.state_dict().items()})), ckpt)
    got_ema = export_backbone(PRETRAIN_CONFIG, str(ckpt), str(tmp_path / 'ema'))
    got_raw = export_backbone(PRETRAIN_CONFIG, str(ckpt), str(tmp_path / 'raw'), raw_weights=True)
    assert (got_ema['weights_kind'], got_raw['weights_kind']) == ('ema', 'raw')
    key = 'blocks.3.attn.qkv.weight'
    torch.testing.assert_close(load_file(got_ema['weights'])[key], ema.backbone.state_dict()[key])
    torch.testing.assert_close(load_file(got_raw['weights'])[key], raw.backbone.state_dict()[key])


def deit3_release(depth=2, dim=64, patch=16, img=64, num_classes=1000):
    """A state dict under the names of the authors' models_v2.py (vit_models + Layer_scale_init_Block), written
    out here rather than derived from timm: LayerScale is ``gamma_1`` / ``gamma_2`` and the position embedding
    covers the patches only (the class token is added after it)."""
    shapes = {'cls_token': (1, 1, dim), 'pos_embed': (1, (img // patch) ** 2, dim),
              'patch_embed.proj.weight': (dim, 3, patch, patch), 'patch_embed.proj.bias': (dim,)}
    for i in range(depth):
        shapes.update({
            f'blocks.{i}.norm1.weight': (dim,), f'blocks.{i}.norm1.bias': (dim,),
            f'blocks.{i}.attn.qkv.weight': (3 * dim, dim), f'blocks.{i}.attn.qkv.bias': (3 * dim,),
            f'blocks.{i}.attn.proj.weight': (dim, dim), f'blocks.{i}.attn.proj.bias': (dim,),
            f'blocks.{i}.norm2.weight': (dim,), f'blocks.{i}.norm2.bias': (dim,),
            f'blocks.{i}.mlp.fc1.weight': (4 * dim, dim), f'blocks.{i}.mlp.fc1.bias': (4 * dim,),
            f'blocks.{i}.mlp.fc2.weight': (dim, 4 * dim), f'blocks.{i}.mlp.fc2.bias': (dim,),
            f'blocks.{i}.gamma_1': (dim,), f'blocks.{i}.gamma_2': (dim,),
        })
    shapes.update({'norm.weight': (dim,), 'norm.bias': (dim,), 'head.weight': (num_classes, dim),
                   'head.bias': (num_classes,)})
    generator = torch.Generator().manual_seed(0)
    return {k: torch.randn(shape, generator=generator) for k, shape in shapes.items()}


DEIT3_KWARGS = dict(img_size=64, embed_dim=64, depth=2, num_heads=2)


def test_deit3_release_maps_every_key_onto_timm(tmp_path):
    authors = deit3_release()
    path = tmp_path / 'deit_3_small_224_1k.pth'
    torch.save({'model': authors}, path)  # the authors' files hold {'model': state_dict}
    paths = import_weights(str(path), 'deit3_small_patch16_224', str(tmp_path / 'out'), model_kwargs=DEIT3_KWARGS)
    out = load_file(paths['weights'])
    renamed = {k.replace('gamma_1', 'ls1.gamma').replace('gamma_2', 'ls2.gamma'): v for k, v in authors.items()}
    assert set(out) == set(renamed)  # nothing lost, nothing invented
    for key, value in renamed.items():
        torch.testing.assert_close(out[key], value, rtol=0, atol=0)
    # The result is what timm builds for that architecture: it loads strictly.
    model = timm.create_model('deit3_small_patch16_224', num_classes=1000, **DEIT3_KWARGS)
    model.load_state_dict(out, strict=True)


def test_import_names_what_does_not_map(tmp_path):
    authors = deit3_release()
    extra = dict(authors, **{'blocks.0.attn.rel_pos': torch.zeros(3)})
    torch.save({'model': extra}, tmp_path / 'extra.pth')
    with pytest.raises(ValueError, match=r'no place in the model: \[.blocks\.0\.attn\.rel_pos.\]'):
        import_weights(str(tmp_path / 'extra.pth'), 'deit3_small_patch16_224', str(tmp_path / 'a'),
                       model_kwargs=DEIT3_KWARGS)
    torch.save({'model': {k: v for k, v in authors.items() if k != 'blocks.1.gamma_2'}}, tmp_path / 'short.pth')
    with pytest.raises(ValueError, match=r'not in the file: \[.blocks\.1\.ls2\.gamma.\]'):
        import_weights(str(tmp_path / 'short.pth'), 'deit3_small_patch16_224', str(tmp_path / 'b'),
                       model_kwargs=DEIT3_KWARGS)
    torch.save({'model': authors}, tmp_path / 'release.pth')
    expected = r'release\.pth does not fit .* shapes differ: .*blocks\.0\.attn\.proj\.weight: \(64, 64\) in the file, '
    with pytest.raises(ValueError, match=expected + r'\(32, 32\) in the model'):
        import_weights(str(tmp_path / 'release.pth'), 'deit3_small_patch16_224', str(tmp_path / 'c'),
                       model_kwargs=dict(DEIT3_KWARGS, embed_dim=32))


def test_plain_timm_state_dict_and_safetensors_import(tmp_path):
    from safetensors.torch import save_file
    source = timm.create_model('convnext_atto', num_classes=7).eval()
    torch.save(source.state_dict(), tmp_path / 'convnext.pth')
    save_file(source.state_dict(), str(tmp_path / 'convnext.safetensors'))
    x = torch.randn(1, 3, 64, 64)
    for name in ('convnext.pth', 'convnext.safetensors'):
        paths = import_weights(str(tmp_path / name), 'convnext_atto', str(tmp_path / name.replace('.', '_')))
        model = timm.create_model(f'local-dir:{osp.dirname(paths["weights"])}', pretrained=True).eval()
        with torch.no_grad():
            torch.testing.assert_close(model(x), source(x), rtol=0, atol=0)


def test_exported_segmentor_loads_with_mmseg_init_model(tmp_path, python):
    from mmseg.apis import init_model
    from mmseg.registry import MODELS as SEG_MODELS

    cfg = Config.fromfile(SEG_CONFIG)
    cfg.model.backbone.init_cfg = None
    torch.manual_seed(0)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = SEG_MODELS.build(cfg.model).eval()
    classes = ['background'] + [f'digit {i}' for i in range(10)]
    ckpt = tmp_path / 'iter_2.pth'
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=dict(classes=tuple(classes),
                                                                                 palette=[[0, 0, 0]] * 11))), ckpt)
    paths = export_segmentor(SEG_CONFIG, str(ckpt), str(tmp_path / 'export'))
    exported = Config.fromfile(paths['config'])
    assert exported.model.backbone.init_cfg is None  # no pretraining file needed
    # The checkpoint holds plain data only: a process without cosub_seg's allow-list loads it with weights_only.
    probe = subprocess.run([python, '-c',
                            'import sys, torch; c = torch.load(sys.argv[1], weights_only=True); '
                            'print(sorted(c), c["meta"]["dataset_meta"]["classes"][1])', paths['checkpoint']],
                           capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert "['meta', 'state_dict'] digit 0" in probe.stdout
    loaded = init_model(paths['config'], paths['checkpoint'], device='cpu')
    assert list(loaded.dataset_meta['classes']) == classes
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, mode='tensor'), model(x, mode='tensor'))
    np.testing.assert_array_equal(sorted(loaded.state_dict()), sorted(model.state_dict()))


def test_raw_weights_need_an_ema_and_a_pretraining_config(tmp_path):
    ckpt = tmp_path / 'epoch_1.pth'
    torch.save(dict(state_dict=_classifier().state_dict()), ckpt)
    with pytest.raises(ValueError, match='kept no EMA'):
        export_backbone(PRETRAIN_CONFIG, str(ckpt), str(tmp_path / 'out'), raw_weights=True)
    with pytest.raises(ValueError, match='not a pretraining config'):
        export_backbone(SEG_CONFIG, str(ckpt), str(tmp_path / 'out'))


def test_exported_weights_have_the_permissions_of_a_new_file_and_no_progress_bar_off_a_terminal(tmp_path, capsys):
    import timm
    from cosub_seg.cli.convert_checkpoint import main
    model = timm.create_model('deit3_small_patch16_224', img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2,
                              num_classes=10)
    source = str(tmp_path / 'weights.pth')
    torch.save(model.state_dict(), source)
    main(['import', source, str(tmp_path / 'timm'), '--arch', 'deit3_small_patch16_224', '--model-kwargs',
          'img_size=32', 'patch_size=8', 'embed_dim=32', 'depth=2', 'num_heads=2'])
    out = capsys.readouterr().out
    assert out.count('\n') == 1 and out.startswith(f'every tensor of {source} maps onto deit3_small_patch16_224')
    umask = os.umask(0)
    os.umask(umask)
    for name in ('model.safetensors', 'config.json'):
        assert os.stat(tmp_path / 'timm' / name).st_mode & 0o777 == 0o666 & ~umask, name  # safetensors wrote 0600


@pytest.mark.slow
def test_onnx_command_static_graph_runs_in_slide_mode(tmp_path, capsys):
    """``convert_checkpoint.py onnx --static CONFIG CHECKPOINT OUT``: the folder first, then a graph for the crop
    size only, which the Segmenter runs in slide mode (padding crops where the image is smaller than the crop)."""
    from cosub_seg.cli.convert_checkpoint import main
    from cosub_seg.inference import Segmenter
    from helpers import export_demo_segmentor

    checkpoint = export_demo_segmentor(str(tmp_path / 'model'))['checkpoint']
    paths = main(['onnx', '--static', SEG_CONFIG, checkpoint, str(tmp_path / 'folder')])
    assert 'inputs only (slide inference around it)' in capsys.readouterr().out
    assert paths['dynamic_size'] is False and paths['static_size'] == [96, 96]
    with open(tmp_path / 'folder' / 'config.json') as f:
        assert json.load(f)['files']['model.onnx']['static_size'] == [96, 96]
    onnx = Segmenter.from_pretrained(str(tmp_path / 'folder'), backend='onnx')
    reference = Segmenter.from_pretrained(str(tmp_path / 'folder'), backend='torch')
    image = np.random.RandomState(0).randint(0, 256, (96, 160, 3), dtype=np.uint8)
    with pytest.warns(UserWarning, match='exported for 96x96 inputs only'):
        got = onnx.logits(image[None])  # whole mode asked: slides
    np.testing.assert_allclose(got, reference.logits(image[None], mode='slide'), atol=1e-4)
    small = onnx.predict(image[:40, :48])
    assert small.labels.shape == (40, 48)
