r"""Move weights in and out: timm safetensors for backbones, mmseg init_model files and a self-describing model
folder for segmentors, ONNX for ONNX Runtime.

Examples:
    # a pretrained backbone (EMA weights when the run kept an EMA) -> timm folder (model.safetensors + config.json)
    python tools/convert_checkpoint.py backbone configs/pretrain/cosub_deit3-tiny_digits.py \
        work_dirs/demo/pretrain/epoch_15.pth exported/cosub_deit3-tiny
    #   then: timm.create_model('local-dir:exported/cosub_deit3-tiny', pretrained=True)
    # a fine-tuned segmentor -> config + weights-only checkpoint for mmseg.apis.init_model / mmseg's test.py, and
    # the model folder (config.json + model.safetensors + README.md) for cosub_seg.Segmenter / tools/segment.py
    python tools/convert_checkpoint.py segmentor configs/seg/upernet_cosub-deit3-tiny_digitscenes.py \
        work_dirs/demo/seg/iter_300.pth exported/upernet
    # that folder's segmentor -> exported/upernet/model.onnx (checked against PyTorch with ONNX Runtime)
    python tools/convert_checkpoint.py onnx exported/upernet
    #   (or in one go: ... onnx CONFIG CHECKPOINT exported/upernet)
    # the authors' DeiT III (or cosub) release, or a plain timm state dict -> checked timm folder
    python tools/convert_checkpoint.py import deit_3_small_224_21k.pth exported/deit3-small \
        --arch deit3_small_patch16_224
"""
import argparse

from mmengine.config import DictAction

from cosub_seg.convert import export_backbone, export_onnx, export_segmentor, import_weights
from cosub_seg.cli import tool
from cosub_seg.errors import DEBUG_HELP, ConfigError


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--debug', action='store_true', help=DEBUG_HELP)
    sub = parser.add_subparsers(dest='command', required=True)
    backbone = sub.add_parser('backbone', help='a tools/pretrain.py checkpoint -> timm model.safetensors')
    backbone.add_argument('config', help='the pretraining config of the run')
    backbone.add_argument('checkpoint', help='a checkpoint of that run')
    backbone.add_argument('out_dir', help='folder for model.safetensors and config.json')
    backbone.add_argument('--raw-weights', action='store_true',
                          help='export the trained weights instead of their EMA (when the run kept one)')
    segmentor = sub.add_parser('segmentor', help='a tools/train_seg.py checkpoint -> mmseg init_model files')
    segmentor.add_argument('config', help='the segmentation config of the run')
    segmentor.add_argument('checkpoint', help='a checkpoint of that run')
    segmentor.add_argument('out_dir', help='folder for <config name>.py and <config name>.pth, config.json and '
                           'model.safetensors')
    onnx = sub.add_parser('onnx', help='a model folder (or CONFIG CHECKPOINT OUT_DIR) -> model.onnx')
    onnx.add_argument('paths', nargs='+', metavar='FOLDER | CONFIG CHECKPOINT OUT_DIR',
                      help='a model folder written by the segmentor command, or the segmentor command\'s arguments '
                      '(the folder is written first)')
    onnx.add_argument('--opset', type=int, default=18, help='ONNX opset (default 18)')
    onnx.add_argument('--static', action='store_true',
                      help='export for the crop size only (default: any height and width where the export allows)')
    imported = sub.add_parser('import', help='a DeiT III release or a timm state dict -> timm model.safetensors')
    imported.add_argument('checkpoint', help="the file ({'model': ...}, a state dict, or .safetensors)")
    imported.add_argument('out_dir', help='folder for model.safetensors and config.json')
    imported.add_argument('--arch', required=True, help='timm model name, e.g. deit3_base_patch16_224')
    imported.add_argument('--model-kwargs', nargs='+', action=DictAction, default={},
                          help='further timm.create_model arguments, e.g. img_size=384')
    imported.add_argument('--num-classes', type=int, help="classifier outputs (default: the file's head)")
    return parser.parse_args(argv)


@tool
def main(argv=None):
    args = parse_args(argv)
    if args.command == 'backbone':
        paths = export_backbone(args.config, args.checkpoint, args.out_dir, raw_weights=args.raw_weights)
        print(f'wrote {paths["weights"]} ({paths["weights_kind"]} weights) and {paths["config"]}; '
              f"load with timm.create_model('local-dir:{args.out_dir}', pretrained=True)")
    elif args.command == 'segmentor':
        paths = export_segmentor(args.config, args.checkpoint, args.out_dir)
        print(f'wrote {paths["config"]} and {paths["checkpoint"]}; load with '
              f'mmseg.apis.init_model({paths["config"]!r}, {paths["checkpoint"]!r}); and the model folder '
              f'{paths["model_config"]} + {paths["weights"]} for cosub_seg.Segmenter.from_pretrained('
              f'{paths["folder"]!r})')
    elif args.command == 'onnx':
        if len(args.paths) not in (1, 3):
            raise ConfigError(f'onnx takes a model folder or CONFIG CHECKPOINT OUT_DIR, got {len(args.paths)} '
                              f'paths: {args.paths}')
        folder = args.paths[0]
        if len(args.paths) == 3:
            folder = export_segmentor(*args.paths)['folder']
        paths = export_onnx(folder, opset=args.opset, dynamic=not args.static)
        size = ('any height and width' if paths['dynamic_size'] else
                f'{paths["static_size"][0]}x{paths["static_size"][1]} inputs only (slide inference around it)')
        note = f'; dynamic size failed: {paths["dynamic_size_error"]}' if paths.get('dynamic_size_error') else ''
        print(f'wrote {paths["onnx"]} ({size}{note}) in {paths["export_seconds"]:.1f} s (export and checks); ONNX '
              f'Runtime vs PyTorch logits: max abs difference '
              f'{paths["max_abs_diff"]:.1e} at {paths["checked_sizes"]}; run it with '
              f'`python tools/segment.py {folder} IMAGE` or cosub_seg.Segmenter.from_pretrained({folder!r})')
    else:
        paths = import_weights(args.checkpoint, args.arch, args.out_dir, model_kwargs=dict(args.model_kwargs),
                               num_classes=args.num_classes)
        print(f'every tensor of {args.checkpoint} maps onto {args.arch}: wrote {paths["weights"]} and '
              f'{paths["config"]}')
    return paths


if __name__ == '__main__':
    main()
