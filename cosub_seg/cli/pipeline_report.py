"""The report of ``tools/pipeline.py`` as a typed structure: what it holds, its JSON (``report.json``, keys as the
field names, plus ``headline``) and its Markdown (``report.md``) and console summary, both of which open with the
:meth:`PipelineReport.headline`: what was done and what came of it, in sentences."""
import dataclasses
import math
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple


@dataclass
class Configs:
    """The configs given, and as the runs dumped them (command-line options applied)."""
    pretrain: str
    pretrain_as_run: str
    seg: str
    seg_as_run: str
    pretrain_options: List[str]
    seg_options: List[str]


@dataclass
class Checkpoints:
    pretrain: str
    pretrain_choice: str  # 'last' or 'best'
    seg: str


@dataclass
class Setup:
    """What the two runs were, in words for the headline, from the configs as run."""
    backbone: str  # timm name, with its model_kwargs: 'deit3_small_patch16_224 (patch_size=8, depth=6, ...)'
    submodels: Optional[int]  # cosub's k: copies of the network trained together (None: not a cosub model)
    pretrain_data: str  # dataset type and where, e.g. 'ImageFolderDataset (data/digits)'
    pretrain_length: str  # '25 epochs'
    segmentor: str  # 'UperNet'
    seg_data: str
    seg_length: str  # '2000 iterations'
    eval_split: Optional[str] = None  # the evaluation's images: 'validation' (of data_prefix images/validation)


@dataclass
class RandomInit:
    """The same fine-tuning (config, options) from a randomly initialised backbone (``--compare-random-init``),
    evaluated as the pretrained one is. ``gap``: the pretrained fine-tuning's mIoU minus this one's."""
    mIoU: Optional[float]
    aAcc: Optional[float]
    mAcc: Optional[float]
    per_class_iou: Dict[str, float]
    gap: Optional[float]
    config_as_run: str
    checkpoint: str


@dataclass
class Probes:
    """Frozen-backbone probes of the pretrained backbone (``tools/compare_backbones.py``): DINO's weighted kNN and
    DINOv2's linear probe on the features of ``data``'s train and val images, top-1 in %."""
    data: str  # ImageNet-style folder (train/, val/)
    features: List[str]  # 'cls', 'avgpool', ...
    knn_top1: Dict[str, float]  # neighbour count k -> val top-1
    linear_top1: float  # mean over seeds
    linear_top1_std: float  # sample std over seeds (0 for one seed)
    seeds: List[int]
    table: str  # the compare_backbones table (compare.md)

    def words(self) -> str:
        knn = ', '.join(f'k={k} {_fmt(v)} %' for k, v in self.knn_top1.items())
        seeds = f' (mean of seeds {", ".join(map(str, self.seeds))})' if len(self.seeds) > 1 else ''
        return f'kNN top-1 {knn}; linear-probe top-1 {_fmt(self.linear_top1)} %{seeds}'


@dataclass
class OnnxCheck:
    """The last stage: the exported segmentor as ``model.onnx`` (``tools/convert_checkpoint.py onnx``),
    ``tools/segment.py`` with ONNX Runtime on validation scenes (those of the prediction pictures), and ONNX
    Runtime's agreement with PyTorch on them (:func:`cosub_seg.inference.segmenter.backend_agreement`: the
    exported model folder through both backends of the Segmenter, image by image)."""
    status: str  # 'done', 'failed' or 'skipped'
    reason: Optional[str] = None  # why skipped, or what failed (the failing step's last error line)
    failed_stage: Optional[str] = None  # the step that failed: a stage of `commands`, or 'agreement'
    retry: Optional[str] = None  # the command that reruns the failed step
    model: Optional[str] = None  # model.onnx
    images: List[str] = field(default_factory=list)  # the scenes segmented (copies of the validation images)
    overlays: List[str] = field(default_factory=list)  # tools/segment.py's overlays, relative to the report
    mode: Optional[str] = None  # 'whole' or 'slide': the model's test mode
    pixel_agreement: Optional[float] = None  # fraction of the pixels whose class is the same in both backends
    differing_pixels: Optional[int] = None
    pixels: Optional[int] = None
    max_abs_diff: Optional[float] = None  # logits
    max_abs_diff_probabilities: Optional[float] = None  # their softmax
    agreement: Optional[str] = None  # the JSON with the per-image numbers
    export_seconds: Optional[float] = None  # wall time of the ONNX export stage (process included)
    segment_seconds: Optional[float] = None  # of the tools/segment.py stage
    agreement_seconds: Optional[float] = None  # of the comparison (both backends loaded and run)

    def words(self) -> str:
        """One sentence: the agreement, or why there is none."""
        if self.status == 'skipped':
            return f'skipped ({self.reason})'
        if self.status == 'failed':
            return f'failed at the {self.failed_stage} step: {self.reason}'
        return (f'ONNX Runtime vs PyTorch on {len(self.images)} validation scene(s): pixel agreement '
                f'{100 * self.pixel_agreement:.2f} %, logits within {_fmt_e(self.max_abs_diff)}')


@dataclass
class ConfusionMatrix:
    classes: List[str]
    counts: Optional[list]  # counts[i][j]: pixels of true class i predicted as j
    rows: str = 'ground truth'
    columns: str = 'prediction'


@dataclass
class PipelineReport:
    """Results, files and provenance of one pipeline run. Paths are relative to ``paths_relative_to``; picture paths
    to the report's folder (for its links)."""
    top1: Optional[float]
    top5: Optional[float]
    top1_at_epoch: Optional[int]
    mIoU: Optional[float]
    aAcc: Optional[float]
    mAcc: Optional[float]
    per_class_iou: Dict[str, float]
    confusion_matrix: ConfusionMatrix
    wall_time_s: Dict[str, float]  # pretrain, finetune, export, evaluate, pictures, total (+ *_random_init)
    configs: Configs
    checkpoints: Checkpoints
    exports: Dict[str, Dict[str, str]]  # backbone: weights, config, weights_kind; segmentor: config, checkpoint
    paths_relative_to: str
    pictures: Dict[str, object]  # name -> path, 'overlays' -> list of paths
    commands: List[Dict[str, str]]  # stage, command
    environment: Dict[str, str]
    setup: Optional[Setup] = None
    random_init: Optional[RandomInit] = None  # measured with --compare-random-init
    probes: Optional[Probes] = None  # frozen-backbone probes of the pretrained backbone (None: not run)
    onnx: Optional[OnnxCheck] = None  # the ONNX model and tools/segment.py on validation scenes (None: not asked)
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dict(headline=self.headline(), **dataclasses.asdict(self))

    def weakest_class(self) -> Optional[Tuple[str, float]]:
        """The class of lowest IoU (the first of them), classes without a value (NaN) left out."""
        scored = [(name, v) for name, v in self.per_class_iou.items() if v is not None and not math.isnan(v)]
        return min(scored, key=lambda item: item[1]) if scored else None

    def headline(self) -> List[str]:
        """What was done and what it means, one sentence a stage: the backbone's top-1 after pretraining, the
        segmentor's mIoU and its weakest class, and what pretraining adds over random initialisation (when
        measured; else how to measure it)."""
        s = self.setup
        cosub = ('with cosub' if s is None or s.submodels is None else
                 f'with cosub (k={s.submodels})' if s.submodels > 1 else 'without cosub (k=1)')
        pretrain = (f'Pretrained {s.backbone} {cosub} on {s.pretrain_data} for {s.pretrain_length}' if s else
                    f'Pretrained the backbone {cosub}')
        epoch = f' (epoch {self.top1_at_epoch}, the checkpoint handed over)' if self.top1_at_epoch is not None else ''
        lines = [f'{pretrain}: validation top-1 {_fmt(self.top1)} %{epoch}.']
        if self.probes is not None:
            p = self.probes
            lines.append(f'Frozen, its {"+".join(p.features)} features classify the val images of {p.data} at '
                         f'{p.words()}.')
        finetune = (f'Fine-tuned {s.segmentor} on {s.seg_data} for {s.seg_length} from that backbone' if s else
                    'Fine-tuned the segmentor from that backbone')
        weakest = self.weakest_class()
        weakest = f' (weakest class {weakest[0]}: {_fmt(weakest[1])} IoU)' if weakest else ''
        split = f'the {s.eval_split} images' if s and s.eval_split else "the config's test split"
        lines.append(f'{finetune}: mIoU {_fmt(self.mIoU)} on {split}{weakest}.')
        r = self.random_init
        if r is None:
            lines.append('Not compared with random initialisation (--compare-random-init measures what pretraining '
                         'adds; it doubles the fine-tuning time).')
        else:
            gain = ('-' if r.gap is None else f'pretraining adds {r.gap:+.2f} mIoU' if r.gap >= 0 else
                    f'pretraining costs {-r.gap:.2f} mIoU')
            lines.append(f'From random initialisation the same fine-tuning reaches mIoU {_fmt(r.mIoU)}: {gain}.')
        return lines

    def markdown(self) -> str:
        t, c, k, exports, r = self.wall_time_s, self.configs, self.checkpoints, self.exports, self.random_init
        lines = [
            '# cosub_seg pipeline report', '', *self.headline(), '',
            '| stage | config | result | wall time |', '|---|---|---|---|',
            f'| pretraining (cosub) | `{c.pretrain}` | val top-1 {_fmt(self.top1)} %, top-5 {_fmt(self.top5)} % '
            f'(epoch {self.top1_at_epoch}) | {t["pretrain"]:.0f} s |',
            *([f'| frozen-backbone probes (`tools/compare_backbones.py`) | | {self.probes.words()} | '
               f'{t.get("probes", 0):.0f} s |'] if self.probes else []),
            f'| fine-tuning | `{c.seg}` | | {t["finetune"]:.0f} s |',
            f'| evaluation of the exported segmentor | | mIoU {_fmt(self.mIoU)}, mAcc {_fmt(self.mAcc)}, '
            f'aAcc {_fmt(self.aAcc)} | {t["evaluate"]:.0f} s |',
            *([f'| fine-tuning and evaluation from random initialisation | `{c.seg}` | mIoU {_fmt(r.mIoU)} '
               f'(pretraining: {_fmt_gap(r.gap)}), mAcc {_fmt(r.mAcc)}, aAcc {_fmt(r.aAcc)} | '
               f'{t.get("finetune_random_init", 0) + t.get("evaluate_random_init", 0):.0f} s |'] if r else []),
            f'| export, pictures | | | {t["export"] + t["pictures"]:.0f} s |',
            *([f'| ONNX export, `tools/segment.py` with ONNX Runtime | | {self.onnx.words()} | '
               f'{t.get("onnx", 0):.0f} s |'] if self.onnx else []),
            f'| **total** | | | **{t["total"]:.0f} s** |', '',
            '## Per-class IoU', '', f'![per-class IoU]({self.pictures["per_class_iou"]})', '',
            *(['| class | IoU (%) | from random initialisation | pretraining adds |', '|---|---|---|---|',
               *[f'| {name} | {_fmt(iou)} | {_fmt(r.per_class_iou.get(name))} | '
                 f'{_fmt_gap(_difference(iou, r.per_class_iou.get(name)))} |'
                 for name, iou in self.per_class_iou.items()]] if r else
              ['| class | IoU (%) |', '|---|---|',
               *[f'| {name} | {_fmt(iou)} |' for name, iou in self.per_class_iou.items()]]), '',
            '## Training curves', '',
            *(['Validation is drawn at every evaluation (markers), its last value written.', '']
              if any(key.endswith('_curves') for key in self.pictures) else []),
            *[line for key, alt in (('pretrain_curves', 'pretraining'), ('finetune_curves', 'fine-tuning'),
                                    ('finetune_random_init_curves', 'fine-tuning from random initialisation'))
              if key in self.pictures for line in (f'![{alt}]({self.pictures[key]})', '')],
            *[line for note in self.notes if ' curves: ' in note for line in (f'Note: {note}', '')],
        ]
        if 'confusion_matrix' in self.pictures:
            lines += ['## Confusion matrix', '', 'Rows: ground truth, columns: prediction, each row in % of its '
                      'pixels (ignored pixels excluded; the counts are in report.json).', '',
                      f'![confusion matrix]({self.pictures["confusion_matrix"]})', '']
        lines += ['## Predictions on validation images', '',
                  'Each: image | ground truth | prediction | errors (red: pixels predicted wrong; light grey: pixels '
                  'the metric ignores), with the colours of the classes in the legend below.', '',
                  *[f'![{osp.basename(p)}]({p})' for p in self.pictures['overlays']], '']
        if self.onnx is not None:
            lines += self._onnx_markdown()
        backbone, segmentor = exports['backbone'], exports['segmentor']
        lines += [
            '## Files', '', f'Paths are relative to {self.paths_relative_to}.', '',
            f'- configs as run: `{c.pretrain_as_run}`, `{c.seg_as_run}`',
            f'- pretraining checkpoint handed over ({k.pretrain_choice}): `{k.pretrain}`',
            *([f'- frozen-backbone probes: `{self.probes.table}` (and compare.json, compare.png beside it)']
              if self.probes else []),
            f'- fine-tuned checkpoint: `{k.seg}`',
            *([f'- fine-tuned from random initialisation: `{r.checkpoint}` (config as run `{r.config_as_run}`)']
              if r else []),
            f'- backbone for timm ({backbone["weights_kind"]} weights): `{backbone["weights"]}`; '
            f"`timm.create_model('local-dir:{osp.dirname(backbone['weights'])}', pretrained=True)`",
            f'- segmentor for mmseg: `mmseg.apis.init_model({segmentor["config"]!r}, {segmentor["checkpoint"]!r})`',
            '', '## Commands', '', *[f'- {cmd["stage"]}: `{cmd["command"]}`' for cmd in self.commands], '',
            '## Environment', '', ', '.join(f'{name} {v}' for name, v in self.environment.items()), '',
        ]
        return '\n'.join(lines)

    def _onnx_markdown(self) -> List[str]:
        o = self.onnx
        lines = ['## ONNX Runtime', '']
        if o.status == 'skipped':
            return lines + [f'Skipped ({o.reason}): no model.onnx was written and nothing ran through ONNX Runtime.',
                            '']
        if o.status == 'failed':
            lines += [f'The {o.failed_stage} step failed: {o.reason}', '',
                      'Everything above is complete: only this last stage is missing.' +
                      (f' Rerun the step by hand: `{o.retry}`' if o.retry else ''), '']
            return lines
        exported = f' ({o.export_seconds:.0f} s)' if o.export_seconds is not None else ''
        segmented = f' ({o.segment_seconds:.0f} s)' if o.segment_seconds is not None else ''
        lines += [
            f'`{o.model}`, written by `tools/convert_checkpoint.py onnx`{exported}, segmented {len(o.images)} '
            f'validation scene(s) with `tools/segment.py` on ONNX Runtime{segmented}: the scenes of the predictions '
            'above, drawn as the tool draws them (the class colours blended into the image).', '',
            f'Against PyTorch (the same model folder through the Segmenter\'s torch backend, {o.mode} inference, '
            f'image by image): the class of {100 * o.pixel_agreement:.2f} % of the pixels is the same '
            f'({o.differing_pixels} of {o.pixels} differ); the logits differ by at most {_fmt_e(o.max_abs_diff)}, '
            f'the probabilities by at most {_fmt_e(o.max_abs_diff_probabilities)} (per image: `{o.agreement}`).', '',
            *[f'![{osp.basename(p)}]({p})' for p in o.overlays], '']
        return lines

    def summary(self, work_dir: str) -> str:
        """The console's last lines: the headline, then the numbers; ``work_dir`` as it should be shown (relative
        to the repository root)."""
        t, r = self.wall_time_s, self.random_init
        return '\n'.join([
            '', '== cosub_seg pipeline report', *self.headline(), '',
            f'pretraining  val top-1 {_fmt(self.top1)} % (epoch {self.top1_at_epoch})   ({t["pretrain"]:.0f} s)',
            *([f'probes       {self.probes.words()}   ({t.get("probes", 0):.0f} s)'] if self.probes else []),
            f'fine-tuning  val mIoU {_fmt(self.mIoU)}, mAcc {_fmt(self.mAcc)}, aAcc {_fmt(self.aAcc)}   '
            f'({t["finetune"]:.0f} s + evaluation {t["evaluate"]:.0f} s)',
            *([f'random init  val mIoU {_fmt(r.mIoU)} (pretraining: {_fmt_gap(r.gap)})   '
               f'({t.get("finetune_random_init", 0):.0f} s + evaluation {t.get("evaluate_random_init", 0):.0f} s)']
              if r else []),
            'per-class IoU: ' + ', '.join(f'{name} {_fmt(v, 1)}' for name, v in self.per_class_iou.items()),
            *([f'onnx         {self.onnx.words()}' + (f'   ({t["onnx"]:.0f} s)' if 'onnx' in t else '')]
              if self.onnx else []),
            f'report       {osp.join(work_dir, "report.md")} (pictures in {osp.join(work_dir, "pictures")}/)',
            f'total        {t["total"]:.0f} s',
        ])


def _fmt(value, digits=2):
    return '-' if value is None else f'{value:.{digits}f}'


def _fmt_e(value):
    return '-' if value is None else f'{value:.1e}'


def _fmt_gap(value):
    return '-' if value is None or math.isnan(value) else f'{value:+.2f}'


def _difference(a, b):
    return None if a is None or b is None else a - b


__all__ = ['PipelineReport', 'Setup', 'RandomInit', 'Probes', 'OnnxCheck', 'Configs', 'Checkpoints', 'ConfusionMatrix']
