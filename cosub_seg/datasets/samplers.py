"""Repeated augmentation (Hoffer et al. 2020; Berman et al. 2019) as DeiT uses it."""
import math
from typing import Iterator, Optional

import torch
from mmengine.dist import get_dist_info, sync_random_seed
from torch.utils.data import Dataset, Sampler

from ..errors import ConfigError
from ..registry import DATA_SAMPLERS


@DATA_SAMPLERS.register_module()
class RepeatAugSampler(Sampler):
    """Shows each image ``num_repeats`` times per epoch, spread over the processes, each copy augmented anew.

    As in DeiT's ``RASampler``, the shuffled indices are repeated, padded to divide evenly, and dealt to the ranks;
    an epoch then keeps the first ``len(dataset) // world_size`` indices of each rank (rounded down to a multiple of
    ``selected_round``), so an epoch has as many steps as without repetition.

    Args:
        dataset: the dataset.
        shuffle: shuffle each epoch.
        num_repeats: copies of each index.
        selected_round: round the per-epoch sample count down to a multiple of this (DeiT: 256; 0 to not round).
        seed: shared random seed; None draws one and syncs it across ranks.
    """

    def __init__(self,
                 dataset: Dataset,
                 shuffle: bool = True,
                 num_repeats: int = 3,
                 selected_round: int = 256,
                 seed: Optional[int] = None):
        if num_repeats < 1:
            raise ConfigError(f'num_repeats must be >= 1, got {num_repeats}')
        self.rank, self.world_size = get_dist_info()
        self.dataset = dataset
        self.shuffle = shuffle
        self.num_repeats = num_repeats
        self.seed = sync_random_seed() if seed is None else seed
        self.epoch = 0
        self.num_samples = math.ceil(len(dataset) * num_repeats / self.world_size)
        self.total_size = self.num_samples * self.world_size
        if selected_round and len(dataset) >= selected_round:
            selected = len(dataset) // selected_round * selected_round // self.world_size
        else:
            selected = math.ceil(len(dataset) / self.world_size)
        self.num_selected_samples = selected

    def __iter__(self) -> Iterator[int]:
        if self.shuffle:
            generator = torch.Generator().manual_seed(self.seed + self.epoch)
            indices = torch.randperm(len(self.dataset), generator=generator).tolist()
        else:
            indices = list(range(len(self.dataset)))
        indices = [i for i in indices for _ in range(self.num_repeats)]
        indices += indices[:self.total_size - len(indices)]
        return iter(indices[self.rank:self.total_size:self.world_size][:self.num_selected_samples])

    def __len__(self) -> int:
        return self.num_selected_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
