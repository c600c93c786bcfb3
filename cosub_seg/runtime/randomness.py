"""Random numbers as pure functions of the run's seed and of where they are drawn, so that a resumed run replays them.

Saving the generators' states in a checkpoint and restoring them does not make a resume exact under MMEngine: the
validation after a checkpoint, the creation of each data-loader iterator (it draws its workers' base seed) and
``IterBasedTrainLoop``'s fast-forward over the batches already trained (it loads and augments them again) all draw
from the same generators between the save and the next training step, differently in a resumed run; and data-loader
workers keep generators of their own that no checkpoint holds. Instead:

* the training step's randomness (stochastic depth, dropout, mixup in the data preprocessor) comes from the global
  Python / NumPy / torch generators, which :class:`cosub_seg.runtime.ExactResumeHook` seeds before every step from
  ``(seed, step, rank)`` (:func:`seed_everything`);
* a sample's augmentation comes from generators seeded from ``(seed, epoch, position of the draw)`` inside
  :func:`isolated_rng`, see :class:`cosub_seg.runtime.ReproducibleSampler`: it does not depend on the workers,
  their number or their persistence, and does not disturb the global generators.
"""
import random
from contextlib import contextmanager

import numpy as np
import torch

# Domains keep the seeds of training steps and of samples apart even where their other keys coincide.
STEP_DOMAIN = 1
SAMPLE_DOMAIN = 2


def derive_seed(*keys: int) -> int:
    """A 32-bit seed that depends on every key (NumPy's ``SeedSequence`` hashing, so nearby keys give unrelated
    streams). Keys are integers; negative ones are taken modulo 2**64."""
    return int(np.random.SeedSequence([int(k) % 2**64 for k in keys]).generate_state(1, np.uint32)[0])


def seed_everything(seed: int) -> None:
    """Seeds Python's, NumPy's and torch's global generators (the CPU and every CUDA device)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def isolated_rng(seed: int):
    """Runs the block with Python's, NumPy's and torch's CPU generators seeded from ``seed``, then puts their
    previous states back. CUDA generators are left alone (data pipelines run on the CPU)."""
    python_state, numpy_state, torch_state = random.getstate(), np.random.get_state(), torch.get_rng_state()
    random.seed(seed)
    np.random.seed(seed)
    torch.default_generator.manual_seed(seed)
    try:
        yield
    finally:
        random.setstate(python_state)
        np.random.set_state(numpy_state)
        torch.set_rng_state(torch_state)
