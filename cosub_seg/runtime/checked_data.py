"""Training data that fails early and clearly on bad input, and whose augmentation a resumed run replays exactly.

* :class:`CheckedDataset` wraps a training dataset (any MMEngine / mmseg dataset). Before training it checks that
  the data folders exist, that the dataset is not empty and that every image and annotation file it lists is there;
  while training it names the file behind any sample that fails to load or transform, and either stops
  (``on_bad_sample='raise'``, the default) or skips it, replacing it with a random other sample (chosen from the
  draw's seed, so a resumed run replaces it the same way) and reporting it to
  :class:`cosub_seg.runtime.SkippedSampleLogHook`, which counts skips in the log (``on_bad_sample='skip'``).
* :class:`ReproducibleSampler` wraps any sampler (``DefaultSampler``, ``InfiniteSampler``, ``RepeatAugSampler``...)
  and gives each draw a seed from ``(seed, epoch, position of the draw in the global order)``; the dataset runs the
  sample's pipeline with generators seeded from it (:func:`cosub_seg.runtime.randomness.isolated_rng`). Augmentation
  then depends neither on the data-loader workers nor on the number of processes (with ``k`` processes, position
  ``p`` of rank ``r`` is global position ``p * k + r``, the order MMEngine's samplers deal indices in), and
  :class:`cosub_seg.runtime.ExactResumeHook` can start it in the middle of an epoch after a resume.

Both wrappers are registered in MMEngine's root registries, so configs of either scope (``cosub_seg``, ``mmseg``)
use them::

    train_dataloader = dict(
        sampler=dict(type='ReproducibleSampler', sampler=dict(type='InfiniteSampler', shuffle=True)),
        dataset=dict(type='CheckedDataset', on_bad_sample='raise', dataset=dict(type='ADE20KDataset', ...)))
"""
import os.path as osp
from contextlib import nullcontext
from typing import Iterator, List, NamedTuple, Optional, Union

import numpy as np
from mmengine.dist import get_dist_info, sync_random_seed
from mmengine.logging import print_log
from mmengine.registry import DATA_SAMPLERS, DATASETS
from torch.utils.data import Sampler

from ..errors import ConfigError, ConfigTypeError, DataError, MissingFileError, UserError
from .preemption import shield_data_worker
from .randomness import SAMPLE_DOMAIN, derive_seed, isolated_rng

FILE_KEYS = ('img_path', 'seg_map_path')
# Metainfo key under which a data sample carries the bad samples skipped to produce it (SkippedSampleLogHook logs
# them), and the message-hub key of their count.
SKIPPED_SAMPLES_KEY = 'skipped_bad_samples'
STAND_IN_DOMAIN = 3  # keeps the seeds of stand-ins apart from those of steps and samples (randomness.py: 1, 2)


class BadSampleError(UserError, RuntimeError):
    """A training sample could not be loaded or transformed; the message names its files."""


class Draw(NamedTuple):
    """What :class:`ReproducibleSampler` yields: a dataset index, the seed of this draw's augmentation, and whether
    it is a placeholder for a batch that ``IterBasedTrainLoop`` skips after a resume (nothing is loaded)."""
    index: int
    seed: int
    placeholder: bool = False


def _describe(dataset, index: int) -> str:
    try:
        info = dataset.get_data_info(index)
    except Exception:  # noqa: BLE001  the description must not hide the original error
        return f'index {index}'
    files = [f'{key}={info[key]}' for key in FILE_KEYS if isinstance(info.get(key), str)]
    return f'index {index}, ' + ', '.join(files) if files else f'index {index}'


@DATASETS.register_module()
class CheckedDataset:
    """A training dataset that fails early, names the file behind any bad sample, and may skip bad samples.

    Args:
        dataset: the dataset or its config.
        on_bad_sample: 'raise' stops training at the first sample that fails to load or transform, naming its files;
            'skip' replaces it with a random other sample of the dataset and reports it for the log. The stand-in
            is drawn from the draw's seed, so a resumed run makes the same choice, and being random it gets past a
            run of consecutive bad files (what a truncated copy or extraction leaves).
        check_files: check before training that every file the dataset lists exists (one ``stat`` per file).
        **dataset_options: settings of the wrapped dataset given to the wrapper, as mmseg's tools do with
            ``--cfg-options train_dataloader.dataset.data_root=...``: merged into ``dataset`` (MMEngine's merge, list
            indices included, so ``pipeline.1.size=...`` works too). Our tools move such options one level down
            before they reach the config.
        max_failures_in_a_row: with 'skip', stop when this many attempts for one draw fail in a row (the sample and
            its random stand-ins): with a fraction f of bad files that happens with probability f ** n, so it
            means a broken pipeline or folder, not a few bad files.
    """

    def __init__(self, dataset: Union[dict, object], on_bad_sample: str = 'raise', check_files: bool = True,
                 max_failures_in_a_row: int = 10, **dataset_options):
        if dataset_options:
            dataset = _forward(dataset, dataset_options)
        if on_bad_sample not in ('raise', 'skip'):
            raise ConfigError(f'on_bad_sample must be "raise" or "skip", got {on_bad_sample!r}')
        if max_failures_in_a_row < 1:
            raise ConfigError(f'max_failures_in_a_row must be >= 1, got {max_failures_in_a_row}')
        self.on_bad_sample = on_bad_sample
        self.max_failures_in_a_row = max_failures_in_a_row
        if isinstance(dataset, dict):
            _check_folders(dataset)
            # Lazily, so that an empty dataset reaches the check below: MMEngine's full_init fails on one with
            # "need at least one array to concatenate".
            dataset = DATASETS.build(dict(dataset, lazy_init=True))
        self.dataset = dataset
        if hasattr(dataset, 'full_init'):
            try:
                dataset.full_init()
            except ValueError:
                if hasattr(dataset, 'load_data_list') and not dataset.load_data_list():
                    self._raise_empty()
                raise
        if len(dataset) == 0:
            self._raise_empty()
        self._check_files(check_files)

    def _raise_empty(self):
        root = getattr(self.dataset, 'data_root', None)
        prefix = getattr(self.dataset, 'data_prefix', None)
        raise DataError(f'{type(self.dataset).__name__} (data_root={root}, data_prefix={prefix}) holds no samples: '
                        'its folders are empty or their files do not have the names and suffixes it reads (e.g. '
                        'img_suffix, seg_map_suffix); see data/README.md for the layouts') from None

    def _check_files(self, check_files: bool) -> None:
        name = type(self.dataset).__name__
        if not check_files or not hasattr(self.dataset, 'get_data_info'):
            return
        missing = []
        for index in range(len(self.dataset)):
            info = self.dataset.get_data_info(index)
            missing += [info[key] for key in FILE_KEYS if isinstance(info.get(key), str) and not osp.isfile(info[key])]
        if missing:
            raise MissingFileError(
                f'{len(missing)} file(s) that {name} lists do not exist, e.g. {", ".join(missing[:3])}: every image '
                'needs its file and, for segmentation, an annotation of the same name in the annotation folder. '
                'Restore them or remove the images without annotations.')

    @property
    def metainfo(self) -> dict:
        return self.dataset.metainfo

    def get_data_info(self, index: int) -> dict:
        return self.dataset.get_data_info(index)

    def full_init(self) -> None:
        """The wrapped dataset is fully initialised in the constructor."""

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key):
        shield_data_worker()  # a worker outlives a preemption signal until the main process has saved
        if isinstance(key, Draw):
            if key.placeholder:
                return None
            index, seed = key.index, key.seed
        else:
            index, seed = int(key), None
        skipped: List[str] = []
        tried = set()
        for attempt in range(self.max_failures_in_a_row):
            # Attempt 0 uses the draw's seed itself; a replacement sample gets a seed of its own.
            attempt_seed = seed if attempt == 0 or seed is None else derive_seed(seed, attempt)
            try:
                with isolated_rng(attempt_seed) if attempt_seed is not None else nullcontext():
                    data = self.dataset[index]
            except Exception as err:  # noqa: BLE001  whatever breaks a sample is reported with its files
                culprit = _describe(self.dataset, index)
                reason = f'{type(err).__name__}: {err}'.strip()
                if self.on_bad_sample == 'raise':
                    raise BadSampleError(
                        f'training sample {culprit} cannot be used ({reason}). Fix or remove the file, or set '
                        'on_bad_sample="skip" on the CheckedDataset (train_dataloader.dataset.on_bad_sample) to '
                        'skip bad samples and count them in the log.') from err
                skipped.append(f'{culprit} ({reason})')
                tried.add(index)
                index = self._stand_in(key, attempt, tried)
                continue
            if skipped:
                _report_skips(data, skipped)
            return data
        raise BadSampleError(f'{len(skipped)} training samples in a row failed (a sample and its random stand-ins), '
                             'which points at the pipeline or the data folder rather than at single bad files. The '
                             f'last one: {skipped[-1]}')

    def _stand_in(self, key, attempt: int, tried: set) -> int:
        """A random index of a sample not tried yet for this draw, from the draw's seed (or, for a plain index, from
        the index) and the attempt: the same draw gets the same stand-ins in any process and after a resume."""
        base = key.seed if isinstance(key, Draw) else int(key)
        rng = np.random.default_rng(derive_seed(STAND_IN_DOMAIN, base, attempt))
        size = len(self.dataset)
        for _ in range(64):  # rejection sampling; on a tiny dataset with every index tried, any index will do
            index = int(rng.integers(size))
            if index not in tried:
                return index
        return index


def _forward(dataset: Union[dict, object], options: dict) -> dict:
    """``dataset`` (a config) with ``options`` merged in, as ``merge_from_dict`` would have at the right level."""
    if not isinstance(dataset, dict):
        raise ConfigTypeError(f'CheckedDataset got dataset settings {sorted(options)} but wraps a built '
                              f'{type(dataset).__name__}: set them on the dataset itself')
    from mmengine.config import Config
    print_log(f'CheckedDataset: {", ".join(sorted(options))} set on the {dataset.get("type", "dataset")} it wraps',
              logger='current')
    return Config._merge_a_into_b(dict(options), dict(dataset), allow_list_keys=True)


def _report_skips(data, skipped: List[str]) -> None:
    samples = data.get('data_samples') if isinstance(data, dict) else None
    if samples is not None and hasattr(samples, 'set_metainfo'):
        samples.set_metainfo({SKIPPED_SAMPLES_KEY: skipped})


def _check_folders(cfg: dict) -> None:
    """The folders and annotation file a dataset config names must exist (BaseDataset's data_root / data_prefix /
    ann_file convention); checked before building it, so the error can name the config keys."""
    name = cfg.get('type', 'dataset')
    root = cfg.get('data_root') or ''
    prefix = cfg.get('data_prefix') or {}
    if isinstance(prefix, str):
        prefix = dict(img_path=prefix)
    hint = 'put the data there or correct data_root / data_prefix (see data/README.md for the layouts)'
    if root and not osp.isdir(root):
        raise MissingFileError(f'{name}: data_root {root} is not a folder: {hint}')
    for key, folder in prefix.items():
        path = osp.join(root, folder) if folder else root
        if isinstance(folder, str) and not osp.isdir(path):
            raise MissingFileError(f'{name}: folder {path} (data_root={root!r} + data_prefix.{key}={folder!r}) does '
                                   f'not exist: {hint}')
    ann_file = cfg.get('ann_file') or ''
    if ann_file:
        path = osp.join(root, ann_file) if not osp.isabs(ann_file) else ann_file
        if not osp.exists(path):
            raise MissingFileError(f'{name}: ann_file {path} does not exist: {hint}')


@DATA_SAMPLERS.register_module()
class ReproducibleSampler(Sampler):
    """Any sampler whose draws carry their own augmentation seed, and which can resume in the middle of an epoch.

    Args:
        dataset: a :class:`CheckedDataset` (it understands the :class:`Draw` this sampler yields).
        sampler: the sampler or its config; built with the same ``dataset`` and ``seed``.
        seed: the run's seed (MMEngine passes ``randomness.seed``); None draws one and shares it across processes.
    """

    def __init__(self, dataset, sampler: Union[dict, Sampler], seed: Optional[int] = None):
        if not isinstance(dataset, CheckedDataset):
            raise ConfigTypeError('ReproducibleSampler needs train_dataloader.dataset to be a CheckedDataset (which '
                                  f'applies the seeds it draws), got {type(dataset).__name__}')
        self.seed = sync_random_seed() if seed is None else seed
        if isinstance(sampler, dict):
            sampler = DATA_SAMPLERS.build(sampler, default_args=dict(dataset=dataset, seed=self.seed))
        self.sampler = sampler
        self.rank, self.world_size = get_dist_info()
        self.epoch = 0
        self._drop = 0
        self._drawn = 0  # draws yielded since construction: the position in IterBasedTrainLoop's stream
        self._placeholders_until = 0

    def __iter__(self) -> Iterator[Draw]:
        drop, self._drop = self._drop, 0
        for position, index in enumerate(self.sampler):
            if position < drop:
                continue
            seed = derive_seed(SAMPLE_DOMAIN, self.seed, self.epoch, position * self.world_size + self.rank)
            placeholder = self._drawn < self._placeholders_until
            self._drawn += 1
            yield Draw(int(index), seed, placeholder)

    def __len__(self) -> int:
        return len(self.sampler)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch
        if hasattr(self.sampler, 'set_epoch'):
            self.sampler.set_epoch(epoch)

    def resume_within_epoch(self, draws: int) -> None:
        """The next pass leaves out its first ``draws`` draws (already trained on before the checkpoint)."""
        self._drop = draws

    def fast_forward(self, draws: int) -> None:
        """The first ``draws`` draws of the stream are placeholders that load nothing: after a resume
        ``IterBasedTrainLoop`` fetches the batches it trained on before the checkpoint again and throws them away,
        which would otherwise decode every image. (Draws its loader prefetched before this call stay real; they are
        thrown away all the same.)"""
        self._placeholders_until = draws
