# Segmentation runtime: mmseg's, plus our modules and run-time changes.
_base_ = ['mmseg::_base_/default_runtime.py']
# Our modules, and the process-wide changes a run needs (cosub_seg/runtime/patches.py: weights-only loading
# everywhere, also in mmseg's own tools; see ARCHITECTURE.md).
custom_imports = dict(imports=['cosub_seg', 'cosub_seg.runtime.installed'], allow_failed_imports=False)
randomness = dict(seed=0)
env_cfg = dict(dist_cfg=dict(backend='nccl', timeout=1800))  # seconds a collective waits for a dead process
# mmseg's visualiser with the plain image first: --show-dir and SegVisualizationHook draw image | truth | prediction.
visualizer = dict(type='SideBySideSegVisualizer')
