"""The report of ``tools/pipeline.py`` as a typed structure: what it holds, its JSON (``report.json``, keys as the
field names) and its Markdown (``report.md``) and console summary."""
import dataclasses
import os.path as osp
from dataclasses import dataclass, field
from typing import Dict, List, Optional


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
    wall_time_s: Dict[str, float]  # pretrain, finetune, export, evaluate, pictures, total
    configs: Configs
    checkpoints: Checkpoints
    exports: Dict[str, Dict[str, str]]  # backbone: weights, config, weights_kind; segmentor: config, checkpoint
    paths_relative_to: str
    pictures: Dict[str, object]  # name -> path, 'overlays' -> list of paths
    commands: List[Dict[str, str]]  # stage, command
    environment: Dict[str, str]
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    def markdown(self) -> str:
        t, c, k, exports = self.wall_time_s, self.configs, self.checkpoints, self.exports
        lines = [
            '# cosub_seg pipeline report', '',
            '| stage | config | result | wall time |', '|---|---|---|---|',
            f'| pretraining (cosub) | `{c.pretrain}` | val top-1 {_fmt(self.top1)} %, top-5 {_fmt(self.top5)} % '
            f'(epoch {self.top1_at_epoch}) | {t["pretrain"]:.0f} s |',
            f'| fine-tuning | `{c.seg}` | | {t["finetune"]:.0f} s |',
            f'| evaluation of the exported segmentor | | mIoU {_fmt(self.mIoU)}, mAcc {_fmt(self.mAcc)}, '
            f'aAcc {_fmt(self.aAcc)} | {t["evaluate"]:.0f} s |',
            f'| export, pictures | | | {t["export"] + t["pictures"]:.0f} s |',
            f'| **total** | | | **{t["total"]:.0f} s** |', '',
            '## Per-class IoU', '', f'![per-class IoU]({self.pictures["per_class_iou"]})', '',
            '| class | IoU (%) |', '|---|---|',
            *[f'| {name} | {_fmt(iou)} |' for name, iou in self.per_class_iou.items()], '',
            '## Training curves', '',
            *[line for key, alt in (('pretrain_curves', 'pretraining'), ('finetune_curves', 'fine-tuning'))
              if key in self.pictures for line in (f'![{alt}]({self.pictures[key]})', '')],
            *[line for note in self.notes if ' curves: ' in note for line in (f'Note: {note}', '')],
        ]
        if 'confusion_matrix' in self.pictures:
            lines += ['## Confusion matrix', '', 'Rows: ground truth, columns: prediction, each row in % of its '
                      'pixels (ignored pixels excluded; the counts are in report.json).', '',
                      f'![confusion matrix]({self.pictures["confusion_matrix"]})', '']
        lines += ['## Predictions on validation images', '', 'Each: image | ground truth | prediction.', '',
                  *[f'![{osp.basename(p)}]({p})' for p in self.pictures['overlays']], '']
        backbone, segmentor = exports['backbone'], exports['segmentor']
        lines += [
            '## Files', '', f'Paths are relative to {self.paths_relative_to}.', '',
            f'- configs as run: `{c.pretrain_as_run}`, `{c.seg_as_run}`',
            f'- pretraining checkpoint handed over ({k.pretrain_choice}): `{k.pretrain}`',
            f'- fine-tuned checkpoint: `{k.seg}`',
            f'- backbone for timm ({backbone["weights_kind"]} weights): `{backbone["weights"]}`; '
            f"`timm.create_model('local-dir:{osp.dirname(backbone['weights'])}', pretrained=True)`",
            f'- segmentor for mmseg: `mmseg.apis.init_model({segmentor["config"]!r}, {segmentor["checkpoint"]!r})`',
            '', '## Commands', '', *[f'- {cmd["stage"]}: `{cmd["command"]}`' for cmd in self.commands], '',
            '## Environment', '', ', '.join(f'{name} {v}' for name, v in self.environment.items()), '',
        ]
        return '\n'.join(lines)

    def summary(self, work_dir: str) -> str:
        t = self.wall_time_s
        return '\n'.join([
            '', '== cosub_seg pipeline report',
            f'pretraining  val top-1 {_fmt(self.top1)} % (epoch {self.top1_at_epoch})   ({t["pretrain"]:.0f} s)',
            f'fine-tuning  val mIoU {_fmt(self.mIoU)}, mAcc {_fmt(self.mAcc)}, aAcc {_fmt(self.aAcc)}   '
            f'({t["finetune"]:.0f} s + evaluation {t["evaluate"]:.0f} s)',
            'per-class IoU: ' + ', '.join(f'{name} {_fmt(v, 1)}' for name, v in self.per_class_iou.items()),
            f'report       {osp.join(work_dir, "report.md")} (pictures in {osp.join(work_dir, "pictures")}/)',
            f'total        {t["total"]:.0f} s',
        ])


def _fmt(value, digits=2):
    return '-' if value is None else f'{value:.{digits}f}'


__all__ = ['PipelineReport', 'Configs', 'Checkpoints', 'ConfusionMatrix']
