"""The command-line tools, importable so that installing the package gives them as console scripts.

``cosub-pretrain``, ``cosub-train-seg``, ``cosub-test-seg``, ``cosub-pipeline``, ``cosub-convert-checkpoint``,
``cosub-analyze-model``, ``cosub-segment`` (see pyproject.toml) call the ``main`` of the module of the same name
here; ``tools/*.py`` are thin wrappers around the same functions, so ``python tools/train_seg.py ...`` and the
``tools/dist_*.sh`` / ``tools/slurm_*.sh`` launchers keep working from a checkout.
"""
import functools

from ..errors import cli_main


def tool(main):
    """Decorates a tool's ``main(argv=None)``: it first makes the process-wide changes a run needs
    (:func:`cosub_seg.runtime.install`), and a user error is printed as one line (:func:`cosub_seg.errors.cli_main`)."""

    @functools.wraps(main)
    def run(argv=None):
        from ..runtime import install
        install()
        return main(argv)

    return cli_main(run)


def inference_tool(main):
    """:func:`tool` for a tool that also runs without the training stack (``pip install 'cosub_seg[infer]'``, no
    mmcv): :func:`cosub_seg.runtime.install` is called where MMEngine and mmseg import, and skipped where they do
    not (nothing of theirs runs then)."""

    @functools.wraps(main)
    def run(argv=None):
        try:
            from ..runtime import install
        except ImportError as err:
            from .. import _missing_training_stack
            if not _missing_training_stack(err):
                raise
        else:
            install()
        return main(argv)

    return cli_main(run)


__all__ = ['tool', 'inference_tool']
