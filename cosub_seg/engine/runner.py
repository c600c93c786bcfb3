"""``CosubRunner``: MMEngine's Runner, resuming its own checkpoints under ``weights_only=True``."""
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from ..checkpoint import training_state_globals


@RUNNERS.register_module()
class CosubRunner(Runner):
    """MMEngine's Runner whose ``resume`` allow-lists the classes our training checkpoints hold.

    MMEngine's resume fails on torch >= 2.6 with "Unsupported global: ...HistoryBuffer"; the common fix, turning
    ``weights_only`` off, lets a checkpoint run code. Here only resuming gets the allow-list; loading weights from
    elsewhere (``load_from``, ``init_cfg``) stays tensors-only. Registered in MMEngine's root registry so that any
    tool that builds ``runner_type`` from a config (ours, and upstream mmseg's) uses it.
    """

    def resume(self, filename: str, *args, **kwargs) -> None:
        with training_state_globals():
            super().resume(filename, *args, **kwargs)
