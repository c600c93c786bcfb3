r"""Move weights in and out: timm safetensors for backbones, mmseg init_model files and a self-describing model
folder for segmentors, ONNX for ONNX Runtime.

Examples:
    # a pretrained backbone (EMA weights when the run kept an EMA) -> timm folder (model.safetensors + config.json)
    python tools/convert_checkpoint.py backbone configs/pretrain/cosub_deit3-tiny_digits.py \
        work_dirs/demo/pretrain/epoch_15.pth exported/cosub_deit3-tiny
    # a fine-tuned segmentor -> config + weights-only checkpoint for mmseg.apis.init_model / mmseg's test.py
    python tools/convert_checkpoint.py segmentor configs/seg/upernet_cosub-deit3-tiny_digitscenes.py \
        work_dirs/demo/seg/iter_300.pth exported/upernet
    # that folder's segmentor -> exported/upernet/model.onnx, checked against PyTorch with ONNX Runtime
    python tools/convert_checkpoint.py onnx exported/upernet
    # the authors' DeiT III (or cosub) release, or a plain timm state dict -> checked timm folder
    python tools/convert_checkpoint.py import deit_3_small_224_21k.pth exported/deit3-small \
        --arch deit3_small_patch16_224

The code is cosub_seg/cli/convert_checkpoint.py (installed as the console script ``cosub-convert-checkpoint``).
"""
from cosub_seg.cli.convert_checkpoint import main

if __name__ == '__main__':
    main()
