"""cosub_seg/evaluation/probes.py: frozen-feature probes. kNN against a brute-force count written here (loops over
the val samples: cosine similarities, the k nearest, exp(sim / T) votes summed per class); the linear probe on a
linearly separable labelling (100 %) and its choice of head on the held-out training part, never on val;
extraction on a tiny DeiT III and a ConvNeXt against timm's own forward; feature files; the bad-input errors."""
import io
import math

import pytest
import timm
import torch
from torch.utils.data import DataLoader, TensorDataset

from cosub_seg.errors import ConfigError, ConfigTypeError, DataError, MissingFileError, UnsafeCheckpointError
from cosub_seg.evaluation import probes
from cosub_seg.evaluation.probes import (check_splits, extract_feature_sets, extract_features, knn_class_scores,
                                         knn_evaluate, linear_probe, load_features, save_features,
                                         stratified_holdout)


@pytest.fixture(autouse=True, scope='module')
def _one_thread():
    """The probes' steps are tiny: on a shared 2-core machine a second thread makes them ~5x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _random_split(n, dim, num_classes, seed):
    g = torch.Generator().manual_seed(seed)
    feats = torch.randn(n, dim, generator=g)
    labels = torch.arange(n) % num_classes  # every class present
    return feats, labels[torch.randperm(n, generator=g)]


def _brute_force_scores(train, train_labels, query, k, temperature, num_classes):
    """For each query, one at a time: the cosine similarity to every training sample, the k largest, their votes."""
    scores = torch.zeros(len(query), num_classes, dtype=torch.float64)
    for q in range(len(query)):
        sims = []
        for j in range(len(train)):
            a, b = query[q].double(), train[j].double()
            sims.append((float(a @ b) / (float(a.norm()) * float(b.norm())), j))
        sims.sort(reverse=True)
        for sim, j in sims[:k]:
            scores[q, int(train_labels[j])] += math.exp(sim / temperature)
    return scores


def _brute_force_accuracy(scores, labels, k):
    hits = 0
    for q in range(len(labels)):
        own = float(scores[q, labels[q]])
        higher = sum(1 for c in range(scores.shape[1]) if float(scores[q, c]) > own)
        hits += own > 0 and higher < k
    return hits * 100 / len(labels)


# ------------------------------------------------------------------------------------------------------ kNN

@pytest.mark.parametrize('k', [1, 5, 10, 20, 100])
def test_knn_votes_equal_a_brute_force_count(k):
    train, train_labels = _random_split(40, 6, 7, seed=0)
    val, _ = _random_split(15, 6, 7, seed=1)
    expected = _brute_force_scores(train, train_labels, val, min(k, 40), 0.07, 7)
    got = knn_class_scores(train, train_labels, val, k=k, temperature=0.07, chunk_size=4)  # 4 chunks, the last short
    assert got.shape == (15, 7)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(got.argmax(1), expected.argmax(1))


def test_knn_evaluate_reports_the_brute_force_accuracy_with_k_capped_at_the_train_size():
    train, train_labels = _random_split(40, 6, 7, seed=2)
    val, val_labels = _random_split(30, 6, 7, seed=3)
    # Some signal (class c > 0 leans towards dimension c - 1), so that the accuracies lie between 0 and 100.
    train = train + 1.5 * torch.nn.functional.one_hot(train_labels, 7)[:, 1:].float()
    val = val + 1.5 * torch.nn.functional.one_hot(val_labels, 7)[:, 1:].float()
    result = knn_evaluate(train, train_labels, val, val_labels, chunk_size=7)
    assert sorted(result) == [10, 20, 40]  # k = 100 capped at the 40 training samples
    for k, acc in result.items():
        scores = _brute_force_scores(train, train_labels, val, k, 0.07, 7)
        assert acc['top1'] == pytest.approx(_brute_force_accuracy(scores, val_labels, 1))
        assert acc['top5'] == pytest.approx(_brute_force_accuracy(scores, val_labels, 5))
    assert 0 < result[10]['top1'] < 100 and result[10]['top1'] < result[10]['top5']


def test_knn_temperature_changes_the_weights():
    train, train_labels = _random_split(20, 4, 3, seed=4)
    val, _ = _random_split(5, 4, 3, seed=5)
    for temperature in (0.07, 1.0):
        expected = _brute_force_scores(train, train_labels, val, 10, temperature, 3)
        got = knn_class_scores(train, train_labels, val, k=10, temperature=temperature)
        torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------------------------------------ linear probe

def _separable(n, seed, num_classes=3, dim=5):
    """Labels = argmax of a fixed linear map, keeping only points with a clear margin."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(dim, num_classes, generator=torch.Generator().manual_seed(123))
    z = torch.randn(4 * n, dim, generator=g)
    logits = z @ w
    top2 = logits.topk(2, dim=1).values
    keep = (top2[:, 0] - top2[:, 1]) > 1.0
    x = z * 3 + 1.5  # off-centre and scaled (an affine map keeps it separable): the standardisation matters
    return x[keep][:n], logits[keep][:n].argmax(1)


def test_the_linear_probe_recovers_a_linearly_separable_labelling():
    train, train_labels = _separable(300, seed=0)
    val, val_labels = _separable(100, seed=1)
    assert train_labels.bincount().min() >= 20
    result = linear_probe(train, train_labels, val, val_labels, epochs=30, batch_size=32, seed=0)
    assert result.top1 == 100.0 and result.top5 == 100.0
    assert result.holdout_top1[(result.features, result.lr)] == 100.0
    assert set(result.holdout_top1) == {('features', lr) for lr in probes.SGD_LRS}
    # The returned head works on the raw features (its standardisation folded in).
    assert torch.equal(result.head(val).argmax(1), val_labels)
    # Deterministic given the seed.
    again = linear_probe(train, train_labels, val, val_labels, epochs=30, batch_size=32, seed=0)
    assert torch.equal(again.head.weight, result.head.weight) and again.holdout_top1 == result.holdout_top1


def test_the_linear_probe_trains_heads_on_several_feature_choices_and_refits():
    train, train_labels = _separable(200, seed=2)
    val, val_labels = _separable(60, seed=3)
    noise = torch.randn(200, 5, generator=torch.Generator().manual_seed(0))
    choices = {'useful': train, 'noise': noise}
    val_choices = {'useful': val, 'noise': torch.randn(60, 5)}
    result = linear_probe(choices, train_labels, val_choices, val_labels, lrs=(0.01, 0.1), epochs=20, batch_size=32,
                          refit=True)
    assert result.features == 'useful' and result.top1 == 100.0
    assert len(result.holdout_top1) == 4 and result.holdout_top1[('noise', 0.1)] < 80
    assert result.as_dict()['holdout_top1'][0] == dict(features='useful', lr=0.01,
                                                      top1=result.holdout_top1[('useful', 0.01)])


def test_the_learning_rate_is_chosen_on_the_held_out_training_part_never_on_val(monkeypatch):
    """Val's labels are the opposite of the training labelling: a head that learnt nothing (lr 1e-7: its random
    initialisation) scores ~50 % on val, the head that learnt the labelling 0 %. Choosing on val would take lr 1e-7;
    the probe takes lr 1.0, the best on the held-out training part, and reports its 0 % on val. The choice and the
    head are the same without val and with val's labels shuffled, and every scoring of heads sees held-out rows."""
    g = torch.Generator().manual_seed(0)
    points = torch.randn(600, 2, generator=g)
    points = points[points[:, 0].abs() > 0.3]  # a margin: the trained head gets every training point right
    train, val = points[:200], points[200:280]
    train_labels = (train[:, 0] > 0).long()
    val_labels = (val[:, 0] <= 0).long()
    scored = []
    score_heads = probes._score_heads
    monkeypatch.setattr(probes, '_score_heads', lambda head, x, labels: scored.append(len(x)) or
                        score_heads(head, x, labels))
    args = dict(lrs=(1e-7, 1.0), epochs=20, batch_size=32, seed=3)
    result = linear_probe(train, train_labels, val, val_labels, **args)
    assert result.lr == 1.0 and result.holdout_top1[('features', 1.0)] == 100.0
    assert result.top1 == 0.0  # measured on val, but not chosen on it
    _, held = stratified_holdout(train_labels, 0.1, seed=3)
    assert scored == [len(held)] and len(held) == 20
    without_val = linear_probe(train, train_labels, **args)
    shuffled = linear_probe(train, train_labels, val, val_labels[torch.randperm(80)], **args)
    for other in (without_val, shuffled):
        assert (other.lr, other.features, other.holdout_top1) == (result.lr, result.features, result.holdout_top1)
        assert torch.equal(other.head.weight, result.head.weight)
    assert math.isnan(without_val.top1)
    # The untrained head would have won on val.
    untrained = linear_probe(train, train_labels, val, val_labels, **dict(args, lrs=(1e-7,)))
    assert untrained.top1 > 20


def test_the_held_out_part_is_stratified_and_seeded():
    labels = torch.tensor([0] * 50 + [1] * 30 + [2] * 1)
    fit, held = stratified_holdout(labels, 0.1, seed=0)
    assert labels[held].bincount(minlength=3).tolist() == [5, 3, 0]  # the single sample of class 2 is kept to fit
    assert sorted(fit.tolist() + held.tolist()) == list(range(81))
    assert torch.equal(held, stratified_holdout(labels, 0.1, seed=0)[1])
    assert not torch.equal(held, stratified_holdout(labels, 0.1, seed=1)[1])


def test_the_adamw_probe_also_separates():
    train, train_labels = _separable(200, seed=4)
    val, val_labels = _separable(50, seed=5)
    result = linear_probe(train, train_labels, val, val_labels, optimizer='adamw', epochs=30, batch_size=32,
                          weight_decay=1e-4)
    assert result.top1 == 100.0 and result.lr in probes.ADAMW_LRS


# ---------------------------------------------------------------------------------------------------- extraction

@pytest.fixture(scope='module')
def tiny_vit():
    torch.manual_seed(0)
    return timm.create_model('deit3_small_patch16_224', img_size=32, patch_size=8, embed_dim=32, depth=2,
                             num_heads=2, num_classes=5)


def _loader(n=7, size=32, batch_size=3):
    g = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=g)
    return images, DataLoader(TensorDataset(images, torch.arange(n) % 5), batch_size=batch_size)


@pytest.mark.parametrize('kind,n,dim', [('cls', 1, 32), ('avgpool', 1, 32), ('cls+avgpool', 1, 64), ('cls', 2, 64),
                                        ('cls+avgpool', 2, 128)])
def test_vit_features_have_the_width_of_their_kind(tiny_vit, kind, n, dim):
    images, loader = _loader()
    feats, labels = extract_features(tiny_vit, loader, kind=kind, last_n_blocks=n)
    assert feats.shape == (7, dim) and feats.dtype == torch.float32 and not feats.requires_grad
    assert labels.tolist() == [0, 1, 2, 3, 4, 0, 1]


def test_vit_features_equal_timms_forward(tiny_vit):
    images, loader = _loader()
    tiny_vit.train()  # extraction runs in eval mode and puts the training flags back
    out = io.StringIO()
    feats, _ = extract_feature_sets(tiny_vit, loader, [('cls', 1), ('avgpool', 1), ('cls+avgpool', 2)], progress=out)
    assert tiny_vit.training and all(m.training for m in tiny_vit.modules())
    assert '3/3' in out.getvalue()  # the bar counts the batches
    tiny_vit.eval()
    with torch.no_grad():
        final = tiny_vit.forward_features(images)  # after the final norm
        x = tiny_vit.norm_pre(tiny_vit._pos_embed(tiny_vit.patch_embed(images)))
        first = tiny_vit.norm(tiny_vit.blocks[0](x))  # block 0's tokens through the final norm
    torch.testing.assert_close(feats['cls'], final[:, 0])
    torch.testing.assert_close(feats['avgpool'], final[:, 1:].mean(1))
    torch.testing.assert_close(feats['cls+avgpool/last2'],
                               torch.cat([first[:, 0], first[:, 1:].mean(1), final[:, 0], final[:, 1:].mean(1)], 1))
    alone, _ = extract_features(tiny_vit, loader, kind='cls+avgpool', last_n_blocks=2)
    torch.testing.assert_close(alone, feats['cls+avgpool/last2'])


def test_vit_without_a_class_token_gives_its_pooled_tokens():
    """An average-pooling ViT (no prefix token: timm hands out bare token maps): 'avgpool' is the mean of the final
    tokens, 'cls' is refused."""
    torch.manual_seed(0)
    model = timm.create_model('deit3_small_patch16_224', img_size=32, patch_size=8, embed_dim=32, depth=2,
                              num_heads=2, num_classes=5, class_token=False, global_pool='avg')
    images, loader = _loader()
    feats, _ = extract_features(model, loader, kind='avgpool')
    with torch.no_grad():
        final = model.eval().forward_features(images)
    torch.testing.assert_close(feats, final.mean(1))
    with pytest.raises(ConfigError, match=r"no class token.*kind='avgpool'"):
        extract_features(model, loader, kind='cls')


def test_conv_net_features_are_the_pooled_last_stages():
    torch.manual_seed(0)
    model = timm.create_model('convnext_atto', num_classes=0)
    images, loader = _loader(n=4, size=32, batch_size=2)
    feats, _ = extract_feature_sets(model, loader, [('avgpool', 1), ('avgpool', 2)])
    with torch.no_grad():
        final = model.eval().forward_features(images)
    torch.testing.assert_close(feats['avgpool'], final.mean((2, 3)))
    assert feats['avgpool/last2'].shape == (4, 160 + 320)
    torch.testing.assert_close(feats['avgpool/last2'][:, 160:], feats['avgpool'])
    with pytest.raises(ConfigError, match=r"ConvNeXt has no class token.*kind='avgpool'"):
        extract_features(model, loader, kind='cls')


def test_extraction_refuses_bad_choices_and_batches(tiny_vit):
    _, loader = _loader()
    with pytest.raises(ConfigError, match=r"feature kind 'mean' is unknown: use one of cls, avgpool, cls\+avgpool"):
        extract_features(tiny_vit, loader, kind='mean')
    with pytest.raises(ConfigError, match=r'last_n_blocks=3 does not fit VisionTransformer, which has 2 blocks'):
        extract_features(tiny_vit, loader, last_n_blocks=3)
    with pytest.raises(ConfigTypeError, match=r'batch 0 is a Tensor, not an \(images, labels\) pair'):
        extract_features(tiny_vit, [torch.zeros(2, 3, 32, 32)])
    with pytest.raises(DataError, match='the split is empty'):
        extract_features(tiny_vit, [])
    with pytest.raises(ConfigTypeError, match='has no forward_intermediates'):
        extract_features(torch.nn.Linear(2, 2), loader)


# ---------------------------------------------------------------------------------------------------- feature files

def test_feature_files_round_trip_and_refuse_another_backbone(tmp_path):
    feats, labels = torch.randn(6, 4), torch.arange(6) % 2
    path = str(tmp_path / 'feats' / 'train.pt')
    ckpt = str(tmp_path / 'epoch_10.pth')
    save_features(path, {'cls': feats}, labels, arch='deit3_small_patch16_224', checkpoint=ckpt, split='train')
    loaded = load_features(path, arch='deit3_small_patch16_224', checkpoint=ckpt)
    assert torch.equal(loaded.features['cls'], feats) and torch.equal(loaded.labels, labels)
    assert loaded.meta == dict(split='train', arch='deit3_small_patch16_224', checkpoint=ckpt)
    with pytest.raises(ConfigError, match=rf"{path} holds features of 'deit3_small_patch16_224' .*not of "
                                          r"'convnext_base' as asked: extract the features of this backbone again"):
        load_features(path, arch='convnext_base', checkpoint=ckpt)
    other = str(tmp_path / 'plain' / 'epoch_10.pth')
    with pytest.raises(ConfigError, match=rf'{path} holds features of deit3_small_patch16_224 made from {ckpt}, not '
                                          rf'from {other} as asked'):
        load_features(path, arch='deit3_small_patch16_224', checkpoint=other)
    with pytest.raises(ConfigError, match='made from .*not from random weights'):
        load_features(path, arch='deit3_small_patch16_224')
    assert load_features(path).meta['arch'] == 'deit3_small_patch16_224'  # no backbone asked: no check


def test_feature_files_are_read_without_running_code(tmp_path):
    missing = str(tmp_path / 'none.pt')
    with pytest.raises(MissingFileError, match=f'feature file {missing} does not exist: extract the features first'):
        load_features(missing)
    state = str(tmp_path / 'state.pt')
    torch.save({'weight': torch.zeros(2)}, state)
    with pytest.raises(ConfigTypeError, match=f'{state} is not a feature file of save_features'):
        load_features(state)
    hostile = tmp_path / 'hostile.pt'
    torch.save({'format': probes.FEATURE_FORMAT, 'x': _RunsCode()}, str(hostile))
    with pytest.raises(UnsafeCheckpointError, match=f'{hostile} holds more than tensors'):
        load_features(str(hostile))
    broken = tmp_path / 'broken.pt'
    broken.write_bytes(b'not a zip')
    with pytest.raises(DataError, match=f'{broken} is not a readable feature file'):
        load_features(str(broken))
    with pytest.raises(ConfigTypeError, match='plain values'):
        save_features(str(tmp_path / 'x.pt'), torch.zeros(2, 2), torch.zeros(2), arch='a', bad=object())


class _RunsCode:
    def __reduce__(self):
        return (print, ('this ran',))


# ---------------------------------------------------------------------------------------------------- bad input

def _probes_refuse(error, match, train, train_labels, val, val_labels, **kwargs):
    names = ('runs/a/train.pt', 'runs/a/val.pt')
    for probe in (knn_evaluate, linear_probe):
        with pytest.raises(error, match=match):
            probe(train, train_labels, val, val_labels, names=names, **kwargs)


def test_the_probes_refuse_bad_splits_naming_them():
    train, train_labels = torch.randn(20, 4), torch.arange(20) % 3
    val, val_labels = torch.randn(6, 4), torch.arange(6) % 3
    _probes_refuse(DataError, r'runs/a/train.pt have 4 dimensions but runs/a/val.pt 3: .*extract both splits with '
                   'the same backbone and settings', train, train_labels, val[:, :3], val_labels)
    _probes_refuse(DataError, r'runs/a/val.pt holds no samples: the split is empty', train, train_labels,
                   val[:0], val_labels[:0])
    _probes_refuse(DataError, r'runs/a/train.pt holds no samples', train[:0], train_labels[:0], val, val_labels)
    _probes_refuse(DataError, r'runs/a/val.pt: classes \[3\] \(1 samples\) never occur in runs/a/train.pt.*same '
                   'classes', train, train_labels, val, torch.tensor([0, 1, 2, 3, 0, 1]))
    _probes_refuse(DataError, r'runs/a/train.pt: labels must lie in \[0, 3\) \(num_classes=3\), found \[-1\] in 1 '
                   'samples', train, torch.cat([train_labels[:-1], torch.tensor([-1])]), val, val_labels)
    _probes_refuse(DataError, r'runs/a/val.pt: labels must lie in \[0, 3\) .*found \[5\]', train, train_labels, val,
                   torch.tensor([0, 1, 2, 5, 0, 1]), num_classes=3)
    _probes_refuse(DataError, r'runs/a/train.pt: every sample has class 2: a probe needs at least two classes',
                   train, torch.full((20,), 2), val, torch.full((6,), 2))
    _probes_refuse(DataError, r'runs/a/train.pt: 20 feature rows but 19 labels', train, train_labels[:19], val,
                   val_labels)
    _probes_refuse(DataError, r'runs/a/val.pt: 1 samples have NaN or infinite features', train, train_labels,
                   torch.cat([val[:5], torch.full((1, 4), float('nan'))]), val_labels)
    _probes_refuse(DataError, r'runs/a/train.pt: labels must be a 1-d tensor of class indices', train,
                   train_labels.float(), val, val_labels)


def test_bad_probe_settings_name_the_value():
    train, train_labels = torch.randn(20, 4), torch.arange(20) % 2
    with pytest.raises(ConfigError, match=r'temperature=0 must be > 0'):
        knn_evaluate(train, train_labels, train, train_labels, temperature=0)
    with pytest.raises(ConfigError, match=r'ks=\(0,\)'):
        knn_evaluate(train, train_labels, train, train_labels, ks=(0,))
    with pytest.raises(ConfigError, match=r"optimizer='adam': use 'sgd' or 'adamw'"):
        linear_probe(train, train_labels, optimizer='adam')
    with pytest.raises(ConfigError, match=r'holdout_fraction=0 must lie strictly between 0 and 1'):
        linear_probe(train, train_labels, holdout_fraction=0)
    with pytest.raises(DataError, match=r'4 samples are too few to hold out 10% of any class'):
        linear_probe(train[:4], train_labels[:4])
    with pytest.raises(ConfigError, match=r"hold the feature choices \['cls'\] but runs/val.pt \['avgpool'\]"):
        linear_probe({'cls': train}, train_labels, {'avgpool': train}, train_labels,
                     names=('runs/train.pt', 'runs/val.pt'))
    with pytest.raises(DataError, match=r'query features of shape \(3, 5\) do not fit the training features \(4 '):
        knn_class_scores(train, train_labels, torch.randn(3, 5))
    assert check_splits(train, train_labels, num_classes=4) == 4


def test_a_constant_feature_dimension_does_not_blow_up_the_head():
    train, train_labels = _separable(100, seed=6)
    train = torch.cat([train, torch.ones(100, 1)], 1)  # constant on train, different on val
    val, val_labels = _separable(30, seed=7)
    val = torch.cat([val, torch.full((30, 1), 50.0)], 1)
    result = linear_probe(train, train_labels, val, val_labels, epochs=20, batch_size=32)
    assert result.head.weight[:, -1].abs().max() < 1 and result.top1 == 100.0
