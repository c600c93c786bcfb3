"""The validation and test splits, checked before the first training (or test) step as the training split is.

The training split is a :class:`~cosub_seg.runtime.CheckedDataset`: its folders, its size and every file it lists
are checked when it is built, and a sample that fails to load later is named (and may be skipped). The validation
and test splits are plain datasets (mmseg's tools, ``inference_model`` and ``MMSegInferencer`` read their configs),
so before this check a missing or corrupt validation file crashed the first validation, at iteration 16,000 on
ADE20k, with a data-loader worker's traceback. Now:

* :func:`check_split_configs` (the tools, before anything is built): the folders and annotation file each split
  names exist and it lists at least one sample, with CheckedDataset's messages;
* :class:`SplitCheckHook` (``default_hooks.split_check`` of every config, so mmseg's own tools run it too), before
  the first training step for the validation split and before the first test step for the test split: every file
  the split lists exists (CheckedDataset's check), and every sample goes through the loading steps of the split's
  own pipeline (``Load*`` transforms and ``CheckSegAnnotation``: the image and annotation decode, the annotation has
  its image's size and labels in range). A split has no ``on_bad_sample``: a bad sample is an error here. And the
  class counts agree: the decode and auxiliary heads' ``num_classes``, each split's classes and each
  ``CheckSegAnnotation``'s ``num_classes`` (:func:`check_class_counts`).

Decoding costs one pass over the split, spread over threads (up to 8) and over the processes of a distributed run
(each checks its share). Measured on a shared 2-core CPU (load 2.2) with 2,000 ADE20k-size validation pairs (683x512
JPEGs of 87 KB, twice ADE20k's average, and their PNG annotations) through the ADE20k test pipeline's loading steps:
8.8 s (4.4 ms a pair; 2 threads were no faster on the busy cores), against ~0.02 s for the file checks alone; the
digit scenes' 150 take 0.1 s. ``default_hooks.split_check.decode=False`` keeps only the file checks.
"""
import os
import os.path as osp
import time
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple

from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS

from ..errors import ConfigError, DataError, MissingFileError
from ..datasets.seg_transforms import CheckSegAnnotation
from .checked_data import FILE_KEYS, CheckedDataset, _check_folders

SPLITS = (('val', 'val_dataloader', 'validation'), ('test', 'test_dataloader', 'test'))


def _unwrap(dataset):
    return dataset.dataset if isinstance(dataset, CheckedDataset) else dataset


def _loading_steps(dataset) -> list:
    """The transforms of the dataset's pipeline that read files or check what was read, in order."""
    transforms = getattr(getattr(dataset, 'pipeline', None), 'transforms', [])
    return [t for t in transforms if type(t).__name__.startswith('Load') or isinstance(t, CheckSegAnnotation)]


def _load(dataset, steps: list, index: int) -> Optional[str]:
    """None when sample ``index`` loads, else its files and the error."""
    info = dataset.get_data_info(index)
    try:
        results = dict(info)
        for step in steps:
            results = step(results)
            if results is None:
                raise DataError(f'{type(step).__name__} dropped the sample')
        return None
    except Exception as err:  # noqa: BLE001  whatever breaks a sample is reported with its files
        files = ', '.join(f'{key}={info[key]}' for key in FILE_KEYS if isinstance(info.get(key), str))
        reason = ' '.join(f'{type(err).__name__}: {err}'.split())
        return f'{files or f"index {index}"} ({reason})'


def _gather(found: list) -> list:
    """The union over the processes of a distributed run (each checked its share)."""
    return [item for part in all_gather_object(found) for item in part] if get_dist_info()[1] > 1 else found


def check_split(dataset, split: str, key: str, decode: bool = True, threads: Optional[int] = None) -> float:
    """Checks a built split as CheckedDataset checks a training split, then loads every sample through the loading
    steps of its pipeline (``decode``). Raises :class:`MissingFileError` or :class:`DataError` naming the files and
    ``key`` (the config key of the split); returns the seconds it took."""
    start = time.time()
    dataset = _unwrap(dataset)
    name = type(dataset).__name__
    if not hasattr(dataset, 'get_data_info'):
        return 0.0
    if len(dataset) == 0:
        raise DataError(f'the {split} split ({key}: {name}, data_root={getattr(dataset, "data_root", None)}) holds '
                        'no samples: its folders are empty or their files do not have the names and suffixes it '
                        'reads (img_suffix, seg_map_suffix); see data/README.md for the layouts')
    rank, world_size = get_dist_info()
    indices = range(rank, len(dataset), world_size)
    missing = []
    for index in indices:
        info = dataset.get_data_info(index)
        missing += [info[k] for k in FILE_KEYS if isinstance(info.get(k), str) and not osp.isfile(info[k])]
    missing = _gather(missing)
    if missing:
        raise MissingFileError(
            f'{len(missing)} file(s) of the {split} split ({key}: {name}) do not exist, e.g. '
            f'{", ".join(sorted(missing)[:3])}: every image needs its file and, for segmentation, an annotation of '
            'the same name in the annotation folder. Restore them or remove the images without annotations '
            '(checked before the first training step, so that validation does not fail mid-run)')
    steps = _loading_steps(dataset) if decode else []
    bad = []
    if steps:
        workers = threads or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            bad = [report for report in pool.map(lambda i: _load(dataset, steps, i), indices) if report]
    bad = _gather(bad)
    if bad:
        raise DataError(
            f'{len(bad)} sample(s) of the {split} split ({key}: {name}) cannot be loaded, e.g. {"; ".join(bad[:2])}. '
            'Fix or remove the files (checked before the first training step, so that validation does not fail '
            'mid-run; default_hooks.split_check.decode=False checks only that the files exist)')
    return time.time() - start


def _classes(dataset) -> Optional[Tuple[str, ...]]:
    classes = (getattr(_unwrap(dataset), 'metainfo', None) or {}).get('classes')
    return tuple(classes) if classes is not None else None


def check_class_counts(model, datasets: Sequence[Tuple[str, object]]) -> None:
    """The segmentation heads' ``num_classes``, the classes of each dataset and the ``num_classes`` of each
    ``CheckSegAnnotation`` must agree; raises :class:`ConfigError` listing each with its config key. (Otherwise a
    label a head cannot output stops training at the first step with ``IndexError: Target 10 is out of bounds``,
    or an annotation check counts other classes than the model.) Models without a decode head are not checked."""
    model = model.module if is_model_wrapper(model) else model
    counts = []
    decode_head = getattr(model, 'decode_head', None)
    if decode_head is None or not hasattr(decode_head, 'num_classes'):
        return
    counts.append(('model.decode_head.num_classes', decode_head.num_classes))
    auxiliary = getattr(model, 'auxiliary_head', None)
    for i, head in enumerate(auxiliary if isinstance(auxiliary, Sequence) else [auxiliary] if auxiliary else []):
        suffix = f'.{i}' if isinstance(auxiliary, Sequence) else ''
        counts.append((f'model.auxiliary_head{suffix}.num_classes', head.num_classes))
    for key, dataset in datasets:
        classes = _classes(dataset)
        if classes is not None:
            counts.append((f'the classes of {key} ({type(_unwrap(dataset)).__name__}: '
                           f'{", ".join(classes[:4])}{", ..." if len(classes) > 4 else ""})', len(classes)))
        for step in _loading_steps(_unwrap(dataset)):
            if isinstance(step, CheckSegAnnotation):
                counts.append((f'CheckSegAnnotation.num_classes in the pipeline of {key}', step.num_classes))
    if len({n for _, n in counts}) > 1:
        listed = '; '.join(f'{what}: {n}' for what, n in counts)
        raise ConfigError(f'the class counts do not agree: {listed}. Give the heads, the annotation checks and the '
                          'datasets the same number of classes (to train on other classes, give the datasets those '
                          "classes too, e.g. metainfo=dict(classes=[...]))")


def check_split_configs(cfg, splits: Sequence[str] = ('val', 'test')) -> None:
    """Before anything is built: the folders and annotation file each of ``splits`` names exist, and it lists at
    least one sample (mmseg and MMEngine fail on either with a bare ``FileNotFoundError`` or ``need at least one
    array to concatenate`` while building it)."""
    from mmengine.dataset import BaseDataset
    from mmengine.registry import DATASETS
    seen = []
    for split, key, name in SPLITS:
        if split not in splits or not isinstance(cfg.get(key), dict) or cfg.get(key).get('dataset') is None:
            continue
        dataset_cfg = cfg[key]['dataset']
        if dataset_cfg in seen or dataset_cfg.get('type') == 'CheckedDataset':  # checks itself when built
            continue
        seen.append(dataset_cfg)
        try:
            _check_folders(dataset_cfg)
        except MissingFileError as err:
            raise MissingFileError(f'the {name} split ({key}.dataset): {err}') from None
        with DATASETS.switch_scope_and_registry(cfg.get('default_scope') or 'mmseg') as registry:
            dataset_cls = registry.get(dataset_cfg.get('type'))
            if not (isinstance(dataset_cls, type) and issubclass(dataset_cls, BaseDataset)):
                continue
            dataset = registry.build(dict(dataset_cfg, lazy_init=True))
        if not dataset.load_data_list():
            raise DataError(
                f'the {name} split ({key}.dataset: {type(dataset).__name__}, data_root={dataset.data_root}, '
                f'data_prefix={dataset.data_prefix}) holds no samples: its folders are empty or their files do not '
                'have the names and suffixes it reads (img_suffix, seg_map_suffix); see data/README.md')


@HOOKS.register_module()
class SplitCheckHook(Hook):
    """Checks the validation split before the first training step and the test split before the first test step
    (:func:`check_split`), and that the class counts of model, datasets and annotation checks agree
    (:func:`check_class_counts`).

    Args:
        decode: also load every sample through the loading steps of the split's pipeline (not only ``stat``).
        threads: threads that decode (default: up to 8, as many as there are CPU cores).
    """

    priority = 'VERY_HIGH'

    def __init__(self, decode: bool = True, threads: Optional[int] = None):
        self.decode = decode
        self.threads = threads

    def _check(self, runner, split: str, key: str, dataloader) -> None:
        seconds = check_split(dataloader.dataset, split, key, self.decode, self.threads)
        print_log(f'{split} split checked before its first use: {len(dataloader.dataset)} samples, '
                  f'{"files and decoding" if self.decode else "files"}, {seconds:.1f} s', logger='current')

    def before_train(self, runner) -> None:
        datasets: List[Tuple[str, object]] = [('train_dataloader', runner.train_dataloader.dataset)]
        if runner.val_loop is not None and hasattr(runner.val_loop, 'dataloader'):
            datasets.append(('val_dataloader', runner.val_loop.dataloader.dataset))
        check_class_counts(runner.model, datasets)
        if len(datasets) > 1:
            self._check(runner, 'validation', 'val_dataloader', runner.val_loop.dataloader)

    def before_test(self, runner) -> None:
        check_class_counts(runner.model, [('test_dataloader', runner.test_loop.dataloader.dataset)])
        self._check(runner, 'test', 'test_dataloader', runner.test_loop.dataloader)


__all__ = ['check_split', 'check_class_counts', 'check_split_configs', 'SplitCheckHook']
