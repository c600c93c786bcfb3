"""cosub_seg/evaluation/metrics.py: Accuracy (top-k classification accuracy) against hits counted in the test, by hand
and from each label's rank."""
import mmengine.evaluator.metric as mmengine_metric
import numpy as np
import pytest
import torch

from cosub_seg.evaluation import Accuracy

NUM_CLASSES = 6


def _samples(num, seed):
    """``num`` samples with distinct random scores (no ties) and random labels, as the classifier's data samples
    carry them: ``pred_score`` (C,) and ``gt_label`` (1,)."""
    rng = np.random.RandomState(seed)
    scores = rng.permutation(np.arange(num * NUM_CLASSES, dtype=np.float32)).reshape(num, NUM_CLASSES) / 7
    labels = rng.randint(0, NUM_CLASSES, size=num)
    return [dict(pred_score=torch.from_numpy(s), gt_label=torch.tensor([int(y)])) for s, y in zip(scores, labels)]


def _top_k_by_rank(samples, k):
    """Percentage of samples whose label's rank (the number of classes scored strictly higher) is below k."""
    hits = [int((s['pred_score'] > s['pred_score'][int(s['gt_label'])]).sum()) < k for s in samples]
    return 100.0 * sum(hits) / len(hits)


def test_topk_equals_the_share_of_labels_ranked_below_k_and_k_above_the_class_count_counts_all():
    """top1 / top3 / top8 over two batches against the label's rank worked here; 8 > 6 classes: every sample is a
    hit (100 %). The samples are drawn so that top1 and top3 are neither 0 nor 100 and differ."""
    first, second = _samples(9, seed=0), _samples(7, seed=1)
    samples = first + second
    expected = {f'top{k}': _top_k_by_rank(samples, k) for k in (1, 3, 8)}
    assert 0 < expected['top1'] < expected['top3'] < 100 and expected['top8'] == 100.0
    metric = Accuracy(topk=[1, 3, 8])  # a list is accepted, as configs may give one
    metric.process(None, first)
    metric.process(None, second)
    assert metric.evaluate(len(samples)) == pytest.approx({f'accuracy/{k}': v for k, v in expected.items()}, rel=1e-12)


def test_top1_is_the_argmax_and_a_label_ranked_last_is_no_hit_before_k_reaches_the_class_count():
    """Worked by hand: sample 0's label has the highest score (top1 hit), sample 1's the lowest (a hit only at
    k = 6), sample 2's the second highest (a hit from k = 2)."""
    scores = torch.tensor([[0.1, 0.9, 0.3, 0.2, 0.0, 0.4],
                           [0.5, 0.6, 0.7, 0.8, 0.9, 0.05],
                           [0.9, 0.1, 0.2, 0.8, 0.3, 0.4]], dtype=torch.float64)
    samples = [dict(pred_score=s, gt_label=torch.tensor([y])) for s, y in zip(scores, (1, 5, 3))]
    metric = Accuracy(topk=(1, 2, 5, 6))
    metric.process(None, samples)
    assert metric.evaluate(3) == pytest.approx({'accuracy/top1': 100 / 3, 'accuracy/top2': 200 / 3,
                                                'accuracy/top5': 200 / 3, 'accuracy/top6': 100.0}, rel=1e-12)


def test_default_topk_is_1_and_5_and_prefix_and_collect_device_reach_base_metric(monkeypatch):
    """The defaults give top1 and top5; ``prefix`` replaces 'accuracy' in the keys, and ``collect_device`` is the
    device MMEngine's ``collect_results`` gathers the results on (a spy records it; in one process 'gpu' gathers
    nothing, so it runs without a GPU)."""
    devices = []
    real = mmengine_metric.collect_results

    def spy(results, size, device, *args, **kwargs):
        devices.append(device)
        return real(results, size, device, *args, **kwargs)

    monkeypatch.setattr(mmengine_metric, 'collect_results', spy)
    samples = _samples(12, seed=2)
    expected = {k: _top_k_by_rank(samples, int(k[3:])) for k in ('top1', 'top5')}
    metric = Accuracy(collect_device='gpu', prefix='val')
    metric.process(None, samples)
    assert metric.evaluate(len(samples)) == pytest.approx({f'val/{k}': v for k, v in expected.items()}, rel=1e-12)
    assert devices == ['gpu']
    metric = Accuracy()
    metric.process(None, samples)
    assert metric.evaluate(len(samples)) == pytest.approx({f'accuracy/{k}': v for k, v in expected.items()}, rel=1e-12)
    assert devices == ['gpu', 'cpu']


def test_accuracy_against_counting_by_hand():
    metric = Accuracy(topk=(1, 2))
    scores = torch.tensor([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3], [0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])
    labels = [1, 2, 1, 2]
    # top-1 hits: sample 0 only; top-2 hits: 0 (1 is first), 1 (2 is second), 2 (1 is second); 3 misses.
    metric.process(None, [dict(pred_score=s, gt_label=torch.tensor([y])) for s, y in zip(scores, labels)])
    result = metric.compute_metrics(metric.results)
    assert result == pytest.approx(dict(top1=25.0, top2=75.0))
