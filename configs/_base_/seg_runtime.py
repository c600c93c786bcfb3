# Segmentation runtime: mmseg's, plus our modules (importing cosub_seg also lets MMEngine resume our checkpoints
# with weights_only=True, see cosub_seg/checkpoint.py).
_base_ = ['mmseg::_base_/default_runtime.py']
custom_imports = dict(imports=['cosub_seg'], allow_failed_imports=False)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))  # seconds a collective waits for a dead process
# mmseg's visualiser with the plain image first: --show-dir and SegVisualizationHook draw image | truth | prediction.
visualizer = dict(type='SideBySideSegVisualizer')
