"""The command-line tools, importable so that installing the package gives them as console scripts.

``cosub-pretrain``, ``cosub-train-seg``, ``cosub-test-seg``, ``cosub-pipeline``, ``cosub-convert-checkpoint`` and
``cosub-analyze-model`` (see pyproject.toml) call the ``main`` of the module of the same name here; ``tools/*.py``
are thin wrappers around the same functions, so ``python tools/train_seg.py ...`` and the ``tools/dist_*.sh`` /
``tools/slurm_*.sh`` launchers keep working from a checkout.
"""
