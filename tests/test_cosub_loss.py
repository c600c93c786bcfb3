"""cosub_seg/cosub/loss.py: ``cosub_loss`` against the paper's formula and ``cosub_pixel_peer_loss`` (the per-pixel
peer term of fine-tuning), both computed by hand here; no gradient into the teacher; arguments that are refused."""
import math
import re
import warnings

import pytest
import torch

from cosub_seg.cosub import cosub_loss, cosub_pixel_peer_loss


def bce_by_hand(logits, target):
    """Mean over all elements of -(y log σ(o) + (1 - y) log(1 - σ(o))), written out without torch's BCE."""
    total, count = 0.0, 0
    for o_row, y_row in zip(logits.tolist(), target.tolist()):
        for o, y in zip(o_row, y_row):
            p = 1.0 / (1.0 + math.exp(-o))
            total += -(y * math.log(p) + (1 - y) * math.log(1 - p))
            count += 1
    return total / count


def sigmoid(t):
    return 1.0 / (1.0 + torch.exp(-t))


def reference_k2(o1, o2, y):
    """The released DeiT code's cosub loss: 0.25 * the four BCE terms."""
    return 0.25 * (bce_by_hand(o1, y) + bce_by_hand(o2, y) + bce_by_hand(o1, sigmoid(o2)) +
                   bce_by_hand(o2, sigmoid(o1)))


@pytest.fixture
def logits():
    torch.manual_seed(0)
    return torch.randn(3, 4, 5, dtype=torch.float64) * 2


def test_k2_one_hot_matches_reference(logits):
    labels = torch.tensor([0, 3, 4, 1])
    y = torch.nn.functional.one_hot(labels, 5).double()
    out = cosub_loss(logits[:2], labels, lam=0.5)
    assert out.total.item() == pytest.approx(reference_k2(logits[0], logits[1], y), rel=1e-10)
    assert out.label.item() == pytest.approx(0.25 * (bce_by_hand(logits[0], y) + bce_by_hand(logits[1], y)),
                                             rel=1e-10)
    assert (out.label + out.peer).item() == pytest.approx(out.total.item(), rel=1e-12)


def test_k2_soft_mixup_target_matches_reference(logits):
    # A mixup target: 0.7 of one class and 0.3 of another, plus smoothing mass on every class.
    y = torch.full((4, 5), 0.02, dtype=torch.float64)
    y[torch.arange(4), torch.tensor([0, 1, 2, 3])] += 0.7
    y[torch.arange(4), torch.tensor([4, 4, 0, 1])] += 0.22
    out = cosub_loss(logits[:2], y, lam=0.5)
    assert out.total.item() == pytest.approx(reference_k2(logits[0], logits[1], y), rel=1e-10)


def test_binarised_target_is_deit3_bce_loss(logits):
    y = torch.tensor([[0.0, 0.6, 0.4, 0.0, 0.0], [1.0, 0, 0, 0, 0], [0, 0, 0.3, 0.7, 0], [0.5, 0, 0, 0, 0.5]],
                     dtype=torch.float64)
    binary = (y > 0).double()
    out = cosub_loss(logits[:2], y, lam=0.5, binarize_threshold=0.0)
    assert out.total.item() == pytest.approx(reference_k2(logits[0], logits[1], binary), rel=1e-10)
    assert out.total.item() != pytest.approx(reference_k2(logits[0], logits[1], y), rel=1e-3)


@pytest.mark.parametrize('lam', [0.5, 0.2])
def test_k3_each_submodel_learns_from_mean_of_the_others(logits, lam):
    labels = torch.tensor([2, 2, 0, 4])
    y = torch.nn.functional.one_hot(labels, 5).double()
    probs = [sigmoid(logits[i]) for i in range(3)]
    expected = 0.0
    for i in range(3):
        teacher = sum(probs[j] for j in range(3) if j != i) / 2
        expected += (1 - lam) * bce_by_hand(logits[i], y) + lam * bce_by_hand(logits[i], teacher)
    expected /= 3
    out = cosub_loss(logits, labels, lam=lam)
    assert out.total.item() == pytest.approx(expected, rel=1e-10)


def test_k1_is_plain_bce(logits):
    labels = torch.tensor([1, 0, 3, 2])
    out = cosub_loss(logits[:1], labels, lam=0.5)
    y = torch.nn.functional.one_hot(labels, 5).double()
    assert out.total.item() == pytest.approx(bce_by_hand(logits[0], y), rel=1e-10)
    assert out.label.item() == out.total.item()  # all of it is the label term
    assert out.peer.item() == 0.0


def test_ce_variant_uses_softmax_teachers(logits):
    labels = torch.tensor([1, 0, 3, 2])
    y = torch.nn.functional.one_hot(labels, 5).double()

    def ce(o, t):
        return float((-(t * torch.log_softmax(o, -1))).sum(-1).mean())
    expected = 0.25 * (ce(logits[0], y) + ce(logits[1], y) + ce(logits[0], logits[1].softmax(-1)) +
                       ce(logits[1], logits[0].softmax(-1)))
    assert cosub_loss(logits[:2], labels, loss_type='ce').total.item() == pytest.approx(expected, rel=1e-10)


def test_peer_term_sends_no_gradient_into_the_teacher():
    torch.manual_seed(1)
    o1 = torch.randn(4, 5, requires_grad=True)
    o2 = torch.randn(4, 5, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    peer = cosub_loss(torch.stack([o1, o2]), labels).peer
    g1, g2 = torch.autograd.grad(peer, [o1, o2])
    # d/do1 of 0.25*BCE(o1, sg(σ(o2))) is 0.25*(σ(o1) - σ(o2))/numel: only the student's own logits get gradient.
    n = o1.numel()
    assert torch.allclose(g1, 0.25 * (o1.sigmoid() - o2.sigmoid()).detach() / n, atol=1e-7)
    assert torch.allclose(g2, 0.25 * (o2.sigmoid() - o1.sigmoid()).detach() / n, atol=1e-7)
    # Without the stop-gradient the teacher's own logits would get gradient too, and the check above would fail.
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    leaky = 0.25 * (bce(o1, o2.sigmoid()) + bce(o2, o1.sigmoid()))
    (leaky_g1,) = torch.autograd.grad(leaky, [o1])
    assert not torch.allclose(leaky_g1, g1, atol=1e-5)


@pytest.mark.parametrize('bad, match', [
    (dict(logits=torch.zeros(4, 5)), 'shape'),
    (dict(lam=1.5), 'lam'),
    (dict(loss_type='mse'), 'loss_type'),
    (dict(target=torch.zeros(3, dtype=torch.long)), 'rows'),
    (dict(target=torch.zeros(4, 6)), 'classes'),
])
def test_bad_arguments_name_the_culprit(bad, match):
    args = dict(logits=torch.zeros(2, 4, 5), target=torch.zeros(4, dtype=torch.long))
    args.update(bad)
    with pytest.raises(ValueError, match=match):
        cosub_loss(**args)


@pytest.mark.parametrize('lam', [0.5, 0.3])
def test_ce_peer_term_sends_no_gradient_into_the_teacher(lam):
    """The CE form's stop-gradient, against the gradient worked by hand: d/do_i of soft CE -sum(t log softmax(o_i))
    with t fixed is softmax(o_i) - t, so with k = 2 the peer term lam * (CE(o1, sg(p2)) + CE(o2, sg(p1))) / 2 (each
    CE a mean over the B rows) gives o1 exactly lam / 2 * (softmax(o1) - softmax(o2)) / B, and nothing through o1's
    role as o2's teacher."""
    torch.manual_seed(2)
    o1 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    o2 = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 3])
    peer = cosub_loss(torch.stack([o1, o2]), labels, lam=lam, loss_type='ce').peer
    g1, g2 = torch.autograd.grad(peer, [o1, o2])
    batch = o1.shape[0]
    p1, p2 = o1.detach().softmax(-1), o2.detach().softmax(-1)
    torch.testing.assert_close(g1, lam / 2 * (p1 - p2) / batch, rtol=0, atol=1e-15)
    torch.testing.assert_close(g2, lam / 2 * (p2 - p1) / batch, rtol=0, atol=1e-15)
    # The label term: d/do_i of (1 - lam) / 2 * CE(o_i, y) is (1 - lam) / 2 * (softmax(o_i) - onehot(y)) / B.
    label = cosub_loss(torch.stack([o1, o2]), labels, lam=lam, loss_type='ce').label
    (g1_label,) = torch.autograd.grad(label, [o1])
    y = torch.nn.functional.one_hot(labels, 5).double()
    torch.testing.assert_close(g1_label, (1 - lam) / 2 * (p1 - y) / batch, rtol=0, atol=1e-15)


def bce_mean_over_copies(logits, y):
    return sum(bce_by_hand(logits[i], y) for i in range(logits.shape[0])) / logits.shape[0]


def test_lam_0_is_the_label_term_alone_and_lam_1_the_peer_term_alone(logits):
    """The ends of [0, 1] are accepted: lam = 0 leaves only the label term (the mean over the copies of BCE(o_i, y)),
    lam = 1 only the peer term (the mean of BCE(o_i, mean of the other copies' sigmoids)); both worked by hand."""
    labels = torch.tensor([4, 0, 0, 2])
    y = torch.nn.functional.one_hot(labels, 5).double()
    probs = [sigmoid(logits[i]) for i in range(3)]
    peer = sum(bce_by_hand(logits[i], sum(probs[j] for j in range(3) if j != i) / 2) for i in range(3)) / 3
    only_label = cosub_loss(logits, labels, lam=0.0)
    assert only_label.total.item() == pytest.approx(bce_mean_over_copies(logits, y), rel=1e-10)
    assert only_label.peer.item() == 0.0
    only_peer = cosub_loss(logits, labels, lam=1.0)
    assert only_peer.total.item() == pytest.approx(peer, rel=1e-10)
    assert only_peer.label.item() == 0.0
    for outside in (-1e-6, 1 + 1e-6):
        with pytest.raises(ValueError, match=f'lam must be in \\[0, 1\\], got {outside}'):
            cosub_loss(logits, labels, lam=outside)


@pytest.mark.parametrize('dtype', [torch.int64, torch.float32, torch.bool])
def test_a_dense_target_of_another_dtype_is_cast_to_the_logits_dtype(logits, dtype):
    """A (B, C) multi-hot target held as int64, float32 or bool gives the loss of the same target in float64 (the
    logits' dtype), worked by hand."""
    multi_hot = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 1], [1, 1, 0, 0, 0], [0, 0, 0, 1, 0]])
    expected = reference_k2(logits[0], logits[1], multi_hot.double())
    assert cosub_loss(logits[:2], multi_hot.to(dtype), lam=0.5).total.item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize('target, message', [
    (torch.tensor([0.0, 1.0, 2.0, 3.0]), 'a (B,) target must hold class indices (an integer dtype), got torch.float32'),
    (torch.zeros(4, 5, 1), 'target must be (B,) class indices or (B, C) scores, got shape (4, 5, 1)'),
    (torch.zeros(4, 6), 'target has 6 classes but the logits have 5'),
    (torch.zeros(3, dtype=torch.long), 'target has 3 rows but the logits have a batch of 4'),
    (torch.zeros(3, 5), 'target has 3 rows but the logits have a batch of 4'),
])
def test_a_target_of_the_wrong_kind_or_shape_is_refused_with_its_dtype_or_shape(target, message):
    with pytest.raises(ValueError, match=f'^{re.escape(message)}$'):
        cosub_loss(torch.zeros(2, 4, 5), target)


def test_ce_form_runs_without_warnings(logits):
    """Every softmax names its dimension: torch warns about an implicit one ("Implicit dimension choice"), which
    would print once per training step."""
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        cosub_loss(logits, torch.tensor([1, 0, 3, 2]), loss_type='ce')


def _pixel_ce(student, teacher):
    """-sum_c teacher_c log softmax(student)_c, written out with exp and log for one pixel's C logits."""
    log_z = math.log(sum(math.exp(v) for v in student))
    return -sum(t * (s - log_z) for s, t in zip(student, teacher))


def _softmax(values):
    exps = [math.exp(v) for v in values]
    return [e / sum(exps) for e in exps]


def test_pixel_peer_loss_with_three_copies_learns_the_mean_of_the_other_two():
    """k = 3: copy i's teacher at each valid pixel is (softmax(o_j) + softmax(o_l)) / 2 over the two other copies,
    CE averaged over the valid pixels, then over the three copies; worked pixel by pixel here."""
    torch.manual_seed(3)
    logits = torch.randn(3, 2, 4, 2, 3, dtype=torch.float64)
    valid = torch.tensor([[[True, True, False], [False, True, True]], [[True, False, False], [True, True, False]]])
    pixels = [tuple(p) for p in valid.nonzero().tolist()]
    expected = 0.0
    for i in range(3):
        total = 0.0
        for b, y, x in pixels:
            others = [_softmax(logits[j, b, :, y, x].tolist()) for j in range(3) if j != i]
            teacher = [(p + q) / 2 for p, q in zip(*others)]
            total += _pixel_ce(logits[i, b, :, y, x].tolist(), teacher)
        expected += total / len(pixels)
    expected /= 3
    assert cosub_pixel_peer_loss(logits, valid).item() == pytest.approx(expected, rel=1e-10)


def test_pixel_peer_loss_with_one_valid_pixel_is_that_pixels_loss_and_with_none_is_zero():
    """One valid pixel: the mean over valid pixels is that pixel's CE (not half of it); no valid pixel: 0."""
    torch.manual_seed(4)
    logits = torch.randn(2, 1, 3, 2, 2, dtype=torch.float64)
    valid = torch.zeros(1, 2, 2, dtype=torch.bool)
    valid[0, 1, 0] = True
    a, b = logits[0, 0, :, 1, 0].tolist(), logits[1, 0, :, 1, 0].tolist()
    expected = (_pixel_ce(a, _softmax(b)) + _pixel_ce(b, _softmax(a))) / 2
    assert cosub_pixel_peer_loss(logits, valid).item() == pytest.approx(expected, rel=1e-10)
    assert cosub_pixel_peer_loss(logits, torch.zeros(1, 2, 2, dtype=torch.bool)).item() == 0.0


@pytest.mark.parametrize('shape, valid_shape, message', [
    ((2, 3, 2, 2), (3, 2, 2), 'logits must have shape (k, B, C, H, W), got (2, 3, 2, 2)'),
    ((1, 1, 3, 2, 2), (1, 2, 2), 'the peer term needs k >= 2 submodels'),
    ((2, 1, 3, 2, 2), (1, 2, 3), 'valid mask (1, 2, 3) does not match logits (2, 1, 3, 2, 2)'),
    ((2, 1, 3, 2, 2), (2, 2, 2), 'valid mask (2, 2, 2) does not match logits (2, 1, 3, 2, 2)'),
])
def test_pixel_peer_loss_refuses_shapes_it_cannot_pair(shape, valid_shape, message):
    with pytest.raises(ValueError, match=f'^{re.escape(message)}$'):
        cosub_pixel_peer_loss(torch.zeros(shape), torch.ones(valid_shape, dtype=torch.bool))


def test_pixel_peer_loss_by_hand_and_ignore_pixels_do_not_count():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 3, 2, 2, dtype=torch.float64)
    valid = torch.tensor([[[True, False], [True, True]]])
    expected = 0.0
    for i, j in ((0, 1), (1, 0)):
        total = 0.0
        for y, x in ((0, 0), (1, 0), (1, 1)):  # the valid pixels
            teacher = logits[j, 0, :, y, x].softmax(0)
            total += -(teacher * logits[i, 0, :, y, x].log_softmax(0)).sum().item()
        expected += total / 3
    expected /= 2
    assert cosub_pixel_peer_loss(logits, valid).item() == pytest.approx(expected, rel=1e-10)
    # Changing the logits of the ignored pixel changes nothing.
    changed = logits.clone()
    changed[:, 0, :, 0, 1] += 100
    assert cosub_pixel_peer_loss(changed, valid).item() == pytest.approx(expected, rel=1e-10)


def test_pixel_peer_loss_sends_no_gradient_into_the_teacher():
    torch.manual_seed(1)
    student = torch.randn(1, 4, 3, 3, requires_grad=True)
    teacher = torch.randn(1, 4, 3, 3, requires_grad=True)
    valid = torch.ones(1, 3, 3, dtype=torch.bool)
    # With k = 2 each copy is the other's teacher; what reaches `teacher` must be its own student gradient only.
    loss = cosub_pixel_peer_loss(torch.stack([student, teacher]), valid)
    g_student, g_teacher = torch.autograd.grad(loss, [student, teacher])
    n = 9
    # d/do_i of -sum(t * log_softmax(o_i)) = softmax(o_i) - t, with t fixed, averaged over pixels and the 2 copies.
    torch.testing.assert_close(g_student, (student.softmax(1) - teacher.softmax(1)).detach() / n / 2)
    torch.testing.assert_close(g_teacher, (teacher.softmax(1) - student.softmax(1)).detach() / n / 2)
