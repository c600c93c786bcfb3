"""cosub_seg/cosub/stochastic_depth.py and cosub_seg/models/stochastic_depth.py (with its use in
models/timm_factory.py): compute-skipping stochastic depth gives the same numbers as masking, the right
distribution, less work, and is safe under DDP; timm's blocks of every family replaced by skipping ones; the
``stochastic_depth`` config entry and the flat arguments of older configs."""
import copy
import math

import pytest
import timm
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from timm.layers import DropPath

from cosub_seg.cosub import cosub_loss
from cosub_seg.cosub.stochastic_depth import SKIP_BREAK_EVEN, StochasticDepth
from cosub_seg.models import CosubClassifier
from cosub_seg.cosub.stochastic_depth import StochasticDepthConfig as SD
from cosub_seg.models.stochastic_depth import SKIPPING_BLOCKS, configure_stochastic_depth, stochastic_depth_slots


class Branch(nn.Module):
    """A residual branch that records how many rows it computed."""

    def __init__(self, dim=5):
        super().__init__()
        self.fc = nn.Linear(dim, dim)
        self.rows_seen = []

    def forward(self, x):
        self.rows_seen.append(x.shape[0])
        return torch.tanh(self.fc(x))


def residual_step(compute, sampling, seed, x, branch, p=0.5):
    sd = StochasticDepth(p, sampling=sampling, compute=compute).train()
    torch.manual_seed(seed)
    out = sd.add_residual(x, branch, anchor=branch)
    (out * torch.arange(out.numel(), dtype=out.dtype).view_as(out)).sum().backward()
    return out


@pytest.mark.parametrize('sampling', ['bernoulli', 'fixed'])
def test_skipping_equals_masking_for_the_same_kept_rows(sampling):
    torch.manual_seed(0)
    branch = Branch().double()
    x = torch.randn(16, 3, 5, dtype=torch.float64)
    results = {}
    for compute in ('mask', 'skip'):
        b = copy.deepcopy(branch)
        xi = x.clone().requires_grad_()
        out = residual_step(compute, sampling, seed=7, x=xi, branch=b)
        results[compute] = (out, xi.grad, b.fc.weight.grad, b.rows_seen[-1])
    (om, gxm, gwm, rows_m), (os_, gxs, gws, rows_s) = results['mask'], results['skip']
    torch.testing.assert_close(os_, om, rtol=0, atol=1e-14)
    torch.testing.assert_close(gxs, gxm, rtol=0, atol=1e-13)
    torch.testing.assert_close(gws, gwm, rtol=0, atol=1e-12)
    # The same rows were kept, and skipping computed only those.
    kept = (om - x).abs().sum(dim=(1, 2)) > 0
    assert rows_m == 16 and rows_s == int(kept.sum())
    assert 0 < rows_s < 16


def test_masked_output_follows_the_formula():
    """x + mask * branch(x) / (1 - p), with the mask read off the output, checked row by row."""
    torch.manual_seed(3)
    x = torch.randn(32, 4, dtype=torch.float64)
    branch = lambda t: t * 2.0 + 1.0  # noqa: E731
    for compute in ('mask', 'skip'):
        sd = StochasticDepth(0.25, compute=compute).train()
        out = sd.add_residual(x, branch)
        for row in range(32):
            kept = torch.allclose(out[row], x[row] + (x[row] * 2 + 1) / 0.75)
            dropped = torch.equal(out[row], x[row])
            assert kept != dropped, (compute, row)


def test_bernoulli_keep_rate_matches_one_minus_p():
    p, batch, steps = 0.3, 64, 400
    sd = StochasticDepth(p, sampling='bernoulli', compute='skip').train()
    branch = Branch(dim=2)
    torch.manual_seed(0)
    with torch.no_grad():
        for _ in range(steps):
            sd.add_residual(torch.zeros(batch, 2), branch)
    n = batch * steps
    rate = sum(branch.rows_seen) / n
    # Binomial(n, 0.7): a 5-sigma band around the expected keep rate.
    assert abs(rate - (1 - p)) < 5 * math.sqrt(p * (1 - p) / n)
    assert len(set(branch.rows_seen)) > 1  # the count varies from step to step


def test_bernoulli_is_unbiased_like_timm():
    """E[drop_path(y)] = y for ours (both computes) and timm's DropPath: the same scaling."""
    torch.manual_seed(0)
    y = torch.ones(20000, 1)
    ours = StochasticDepth(0.4).train()(y).mean()
    timms = DropPath(0.4).train()(y).mean()
    skip = StochasticDepth(0.4, compute='skip').train().add_residual(torch.zeros_like(y), lambda t: t, y).mean()
    for value in (ours, timms, skip):
        assert abs(float(value) - 1.0) < 5 * math.sqrt(0.4 / 0.6 / 20000)
    # A kept row is scaled by 1 / (1 - p), as timm scales it.
    values = StochasticDepth(0.4).train()(torch.ones(50, 1, dtype=torch.float64)).view(-1)
    assert set(values.tolist()) <= {0.0, 1 / 0.6} and len(set(values.tolist())) == 2


@pytest.mark.parametrize('batch,p,expected', [(16, 0.45, 9), (16, 0.2, 13), (8, 0.6, 3), (2, 0.9, 1)])
def test_fixed_mode_keeps_exactly_the_count(batch, p, expected):
    sd = StochasticDepth(p, sampling='fixed', compute='skip').train()
    assert sd.num_kept(batch) == expected == max(1, round(batch * (1 - p) + 1e-9))
    branch = Branch(dim=2)
    x = torch.zeros(batch, 2)
    for seed in range(5):
        torch.manual_seed(seed)
        out = sd.add_residual(x, lambda t: torch.ones_like(t) + 0 * branch(t))
        assert branch.rows_seen[-1] == expected
        # n kept rows carry 1 * B / n in each of 2 columns, dropped rows 0: the sum is 2 B
        torch.testing.assert_close(out.sum(), torch.tensor(2.0 * batch))
    # The same count through masking.
    masked = StochasticDepth(p, sampling='fixed', compute='mask').train()(torch.ones(batch, 1))
    assert int((masked > 0).sum()) == expected


@pytest.mark.parametrize('compute', ['mask', 'skip'])
def test_eval_mode_drops_nothing(compute):
    sd = StochasticDepth(0.6, compute=compute).eval()
    branch = Branch()
    x = torch.randn(10, 5)
    torch.testing.assert_close(sd.add_residual(x, branch), x + branch(x))
    assert branch.rows_seen[0] == 10
    torch.testing.assert_close(sd(x), x)


def test_auto_chooses_from_the_break_even_rate():
    assert not StochasticDepth(SKIP_BREAK_EVEN / 2, compute='auto').skip
    assert StochasticDepth(SKIP_BREAK_EVEN, compute='auto').skip
    assert StochasticDepth(0.45, compute='auto').skip
    assert not StochasticDepth(0.45, compute='mask').skip
    assert StochasticDepth(0.01, compute='skip').skip
    with pytest.raises(ValueError, match='compute'):
        StochasticDepth(0.1, compute='fast')
    with pytest.raises(ValueError, match='drop_prob'):
        StochasticDepth(1.0)


def test_every_row_dropped_still_gives_every_parameter_a_gradient():
    """With skipping, a branch dropped for the whole batch runs nothing; its parameters must still get a (zero)
    gradient, as masking gives them, or DDP waits for them forever."""
    branch = Branch()
    sd = StochasticDepth(0.5, sampling='bernoulli', compute='skip').train()
    sd.draw = lambda batch, device: (torch.zeros(batch, dtype=torch.bool), None, 2.0)  # nobody keeps the branch
    x = torch.randn(4, 5, requires_grad=True)
    out = sd.add_residual(x, branch, anchor=branch)
    out.sum().backward()
    torch.testing.assert_close(out, x)
    assert branch.rows_seen == []
    assert branch.fc.weight.grad is not None and branch.fc.bias.grad is not None
    assert branch.fc.weight.grad.abs().sum() == 0 and branch.fc.bias.grad.abs().sum() == 0


# Tiny members of the six families (fast on a CPU), with what their input needs.
FAMILIES = {
    'vit': ('deit3_small_patch16_224', dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2), 32),
    'pit': ('pit_ti_224', dict(img_size=64), 64),
    'swin': ('swin_tiny_patch4_window7_224',
             dict(img_size=64, window_size=4, embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 1, 2, 2)), 64),
    'convnext': ('convnext_atto', dict(depths=(1, 1, 2, 1)), 64),
    'regnet': ('regnety_002', {}, 32),
    'xcit': ('xcit_nano_12_p16_224', dict(img_size=32, depth=2), 32),  # class attention normalises the cls token
    'xcit-tokens-norm': ('xcit_nano_12_p16_224', dict(img_size=32, depth=2, tokens_norm=True), 32),  # ...every token
}


def bn_in_eval(model):
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


def skip_and_mask_cosub_steps(family, dtype=torch.float64, device='cpu'):
    """One cosub training step of CosubClassifier with compute='mask' and with 'skip', from the same weights and the
    same draws (the same seed before each step, on ``device``): {compute: (loss, {name: grad})}, the two models and
    the input. BatchNorm (RegNet, XCiT's patch interaction) uses its running statistics here, because with skipping
    its batch statistics come from the kept rows only (tested separately). tests/test_gpu.py runs it on CUDA."""
    arch, kwargs, size = FAMILIES[family]
    models = {}
    for compute in ('mask', 'skip'):
        torch.manual_seed(0)
        sd = dict(rate=0.5, schedule='constant', compute=compute)
        model = CosubClassifier(arch, num_classes=4, model_kwargs=kwargs, stochastic_depth=sd)
        models[compute] = model.to(device, dtype)
    models['skip'].load_state_dict(models['mask'].state_dict())
    blocks = [type(m) for m in models['skip'].modules() if type(m) in SKIPPING_BLOCKS.values()]
    assert blocks, f'no block of {arch} was switched to skipping'
    x = torch.randn(3, 3, size, size, dtype=dtype).to(device)
    target = torch.tensor([0, 1, 3], device=device)
    results = {}
    for compute, model in models.items():
        model.train()
        bn_in_eval(model)
        torch.manual_seed(11)
        logits = model.backbone(x.repeat(2, 1, 1, 1)).view(2, 3, -1)
        loss = cosub_loss(logits, target).total
        loss.backward()
        results[compute] = (loss.detach(), {n: p.grad for n, p in model.named_parameters()})
    return results, models, x


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_cosub_step_skipping_matches_masking_in_every_family(family):
    """One cosub training step (float64): skipping gives the loss and gradients of masking for the same kept rows."""
    results, models, x = skip_and_mask_cosub_steps(family)
    torch.testing.assert_close(results['skip'][0], results['mask'][0], rtol=1e-10, atol=1e-12)
    for name, grad in results['mask'][1].items():
        torch.testing.assert_close(results['skip'][1][name], grad, rtol=1e-8, atol=1e-12, msg=name)
    # And in eval mode the converted network is timm's network.
    arch, kwargs, _ = FAMILIES[family]
    reference = timm.create_model(arch, num_classes=4, **kwargs).double().eval()
    reference.load_state_dict(models['skip'].backbone.state_dict())
    models['skip'].eval()
    torch.testing.assert_close(models['skip'].backbone(x), reference(x), rtol=0, atol=0)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_a_step_that_drops_every_branch_for_every_row_touches_every_parameter_as_masking_does(family, monkeypatch):
    """Every skipping block of every family hands its own parameters to add_residual (``anchor``): when a step drops
    each branch for the whole batch the blocks compute nothing, yet every parameter gets the gradient masking gives
    it (zero inside the dropped branches), not None, so DDP does not wait for them."""
    arch, kwargs, size = FAMILIES[family]
    monkeypatch.setattr(StochasticDepth, 'draw',
                        lambda self, batch, device: (torch.zeros(batch, dtype=torch.bool), None, 2.0))
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    grads = {}
    for compute in ('mask', 'skip'):
        torch.manual_seed(0)
        model = CosubClassifier(arch, num_classes=4, model_kwargs=kwargs,
                                stochastic_depth=dict(rate=0.5, schedule='constant', compute=compute)).double()
        model.train()
        bn_in_eval(model)
        model.backbone(x).sum().backward()
        grads[compute] = {name: p.grad for name, p in model.named_parameters()}
    assert not [name for name, grad in grads['skip'].items() if grad is None]
    zero = [name for name, grad in grads['mask'].items() if not grad.abs().sum()]
    assert zero  # the dropped branches' parameters
    for name, grad in grads['mask'].items():
        torch.testing.assert_close(grads['skip'][name], grad, rtol=1e-8, atol=1e-12, msg=name)


def test_batchnorm_statistics_come_from_the_kept_rows_when_skipping():
    """RegNet with skipping: a BatchNorm inside a branch updates its running mean from the kept rows only."""
    torch.manual_seed(0)
    model = timm.create_model('regnety_002', num_classes=3, drop_path_rate=0.5)
    configure_stochastic_depth(model, SD(0.5, 'constant', compute='skip', sampling='fixed'))
    block = model.s3.b2  # a block with an identity shortcut and a drop-path slot
    assert type(block).__name__ == 'RegNetBottleneck'
    block.train()
    x = torch.randn(8, block.conv1.conv.in_channels, 8, 8)
    bn = block.conv1.bn
    bn.reset_running_stats()
    torch.manual_seed(5)
    kept = block.drop_path.draw(8, x.device)[1]
    torch.manual_seed(5)
    with torch.no_grad():
        block(x)
        conv_out = block.conv1.conv(x[kept])
    expected = bn.momentum * conv_out.mean(dim=(0, 2, 3))  # running mean starts at 0
    torch.testing.assert_close(bn.running_mean, expected, rtol=1e-5, atol=1e-6)
    with torch.no_grad():
        all_rows = bn.momentum * block.conv1.conv(x).mean(dim=(0, 2, 3))
    assert not torch.allclose(bn.running_mean, all_rows, atol=1e-4)  # masking would have used all 8 rows


def test_schedules_keep_timm_rates_or_make_them_constant():
    model = timm.create_model('deit3_small_patch16_224', img_size=32, patch_size=8, embed_dim=32, depth=4,
                              num_heads=2, drop_path_rate=0.3)
    timm_rates = [getattr(parent, name).drop_prob if isinstance(getattr(parent, name), DropPath) else 0.0
                  for parent, name in stochastic_depth_slots(model)]
    linear = copy.deepcopy(model)
    configure_stochastic_depth(linear, SD(0.3, 'linear'))
    assert [getattr(p, n).drop_prob for p, n in stochastic_depth_slots(linear)] == pytest.approx(timm_rates)
    assert timm_rates[0] == 0.0 and timm_rates[-1] == pytest.approx(0.3)
    info = configure_stochastic_depth(model, SD(0.3, 'constant', compute='auto'))
    assert [getattr(p, n).drop_prob for p, n in stochastic_depth_slots(model)] == [0.3] * 8
    assert info == dict(slots=8, skipping=8, blocks=4, masked_blocks=0)
    assert all(isinstance(getattr(p, n), StochasticDepth) for p, n in stochastic_depth_slots(model))


def _ddp_worker(rank, world_size, init_file, results):
    dist.init_process_group('gloo', init_method=f'file://{init_file}', rank=rank, world_size=world_size)
    torch.manual_seed(0)
    model = timm.create_model('deit3_small_patch16_224', img_size=16, patch_size=8, embed_dim=16, depth=2,
                              num_heads=2, num_classes=3, drop_path_rate=0.5)
    configure_stochastic_depth(model, SD(0.5, 'constant', compute='skip'))
    # Rank 0 drops every branch for every row; rank 1 keeps them all.
    for _, module in model.named_modules():
        if isinstance(module, StochasticDepth):
            module.draw = (lambda batch, device, keep=bool(rank): (torch.full((batch,), keep), None, 2.0))
    ddp = nn.parallel.DistributedDataParallel(model)  # find_unused_parameters=False: every parameter must report
    optimizer = torch.optim.SGD(ddp.parameters(), lr=0.1)
    for step in range(2):
        torch.manual_seed(step)
        loss = ddp(torch.randn(2, 3, 16, 16)).logsumexp(dim=1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    results[rank] = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    dist.destroy_process_group()


def test_ddp_survives_a_branch_dropped_for_every_row(tmp_path):
    """DistributedDataParallel without find_unused_parameters: one rank drops every branch (skipping computes
    nothing there), the other keeps them; gradients are still reduced and the replicas stay identical."""
    ctx = mp.get_context('spawn')
    with ctx.Manager() as manager:
        results = manager.dict()
        procs = [ctx.Process(target=_ddp_worker, args=(rank, 2, str(tmp_path / 'init'), results)) for rank in (0, 1)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
        codes = [proc.exitcode for proc in procs]
        for proc in procs:
            if proc.is_alive():
                proc.kill()
        assert codes == [0, 0], codes
        torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def _seed_keeping_every_row(batch, p):
    """The first seed whose Bernoulli draw of ``batch`` rows at rate ``p`` keeps every row (torch.rand < 1 - p, as
    StochasticDepth.draw draws), found by replaying the draw here."""
    for seed in range(100):
        torch.manual_seed(seed)
        if bool((torch.rand(batch) < 1 - p).all()):
            return seed
    raise AssertionError('no seed in 0..99 keeps every row')


@pytest.mark.parametrize('batch', [1, 2])
def test_a_draw_that_keeps_every_row_still_scales_the_branch(batch):
    """The skip path's shortcut for a draw in which no row is dropped (the common case in the segmentation recipes:
    2-4 images per GPU at p = 0.1) against x + branch(x) / (1 - p), worked here, and against masking."""
    p = 0.1
    seed = _seed_keeping_every_row(batch, p)
    torch.manual_seed(seed)
    mask, _, scale = StochasticDepth(p).draw(batch, torch.device('cpu'))
    assert bool(mask.all()) and scale == pytest.approx(1 / 0.9)  # the draw this test is about: every row kept
    torch.manual_seed(0)
    x = torch.randn(batch, 3, 4, dtype=torch.float64)
    branch = Branch(dim=4).double()
    with torch.no_grad():
        expected = x + branch(x) / (1 - p)
        outs = {}
        for compute in ('skip', 'mask'):
            sd = StochasticDepth(p, sampling='bernoulli', compute=compute).train()
            torch.manual_seed(seed)
            outs[compute] = sd.add_residual(x, branch, anchor=branch)
    assert branch.rows_seen[-2] == batch  # skipping ran the branch once, on every row (no gather)
    torch.testing.assert_close(outs['skip'], expected, rtol=0, atol=1e-14)
    torch.testing.assert_close(outs['mask'], expected, rtol=0, atol=1e-14)


class _DrawSpy:
    """Wraps every StochasticDepth.draw of a model and records, per slot, the kept row indices of each draw."""

    def __init__(self, model):
        self.kept = {}
        for name, module in model.named_modules():
            if isinstance(module, StochasticDepth):
                module.draw = self._wrap(name, module.draw)

    def _wrap(self, name, draw):
        def spy(batch, device):
            mask, indices, scale = draw(batch, device)
            rows = indices if indices is not None else mask.nonzero().squeeze(1)
            self.kept.setdefault(name, []).append((sorted(rows.tolist()), scale))
            return mask, indices, scale
        return spy


def test_fixed_sampling_through_a_whole_vit_keeps_the_count_and_equals_masking():
    """'fixed' sampling in a tiny timm ViT made skipping by configure_stochastic_depth: every branch of every step
    keeps exactly round(B (1 - p)) rows (worked here: 6 * 0.7 = 4.2 -> 4), its attention / MLP run on those rows
    only (forward hooks), each kept row is scaled by B / n = 6 / 4, and the network's output is the masked network's
    output for the same draws (float64)."""
    batch, p = 6, 0.3
    expected_kept = 4
    assert expected_kept == round(batch * (1 - p))
    kwargs = dict(img_size=16, patch_size=8, embed_dim=16, depth=2, num_heads=2, num_classes=3, drop_path_rate=p,
                  init_values=1.0)  # LayerScale 1, not DeiT III's 1e-6: the branches weigh in the output
    models, spies = {}, {}
    for compute in ('skip', 'mask'):
        torch.manual_seed(0)
        models[compute] = timm.create_model('deit3_small_patch16_224', **kwargs).double()
        info = configure_stochastic_depth(models[compute], SD(p, 'constant', compute=compute, sampling='fixed'))
        assert info['slots'] == 4 and info['blocks'] == 2
        spies[compute] = _DrawSpy(models[compute])
    models['skip'].load_state_dict(models['mask'].state_dict())
    rows = []
    for block in models['skip'].blocks:
        for branch in (block.attn, block.mlp):
            branch.register_forward_hook(lambda mod, inp, out: rows.append(inp[0].shape[0]))
    x = torch.randn(batch, 3, 16, 16, dtype=torch.float64)
    for step in range(3):
        outs = {}
        for compute, model in models.items():
            model.train()
            torch.manual_seed(100 + step)
            outs[compute] = model(x)
        torch.testing.assert_close(outs['skip'], outs['mask'], rtol=0, atol=1e-12)
        assert rows[-4:] == [expected_kept] * 4, step
    for name, draws in spies['skip'].kept.items():
        assert len(draws) == 3
        assert draws == spies['mask'].kept[name]  # masking drew the same rows
        for kept, scale in draws:
            assert len(kept) == expected_kept and len(set(kept)) == expected_kept and scale == batch / expected_kept
    assert sorted(spies['skip'].kept) == ['blocks.0.drop_path1', 'blocks.0.drop_path2', 'blocks.1.drop_path1',
                                          'blocks.1.drop_path2']


# ------------------------------------------------------------------------ the one config entry, StochasticDepthConfig


def test_config_entry_and_the_flat_arguments_of_older_configs():
    """``stochastic_depth=dict(...)`` and the flat drop_path_* arguments (configs written before it) build the same
    setting; flat arguments that are given override the entry's fields, absent ones (None) do not."""
    assert SD.build(dict(rate=0.3, schedule='constant')) == SD(0.3, 'constant', 'auto', 'bernoulli')
    assert SD.build(None, drop_path_rate=0.3, drop_path_schedule='constant', drop_path_compute=None,
                    drop_path_sampling='fixed') == SD(0.3, 'constant', 'auto', 'fixed')
    assert SD.build(dict(rate=0.3, compute='mask'), drop_path_rate=0.1) == SD(0.1, 'linear', 'mask', 'bernoulli')
    assert SD.build(SD(0.2)) == SD(0.2)
    with pytest.raises(ValueError, match=r"stochastic_depth takes rate, schedule, compute and sampling, got \['p'\]"):
        SD.build(dict(p=0.1))
    with pytest.raises(ValueError, match=r"stochastic_depth.schedule must be one of \('linear', 'constant'\)"):
        SD(0.1, 'cosine')
    with pytest.raises(ValueError, match=r'stochastic_depth.rate must be in \[0, 1\), got 1.0'):
        SD(1.0)


def test_classifier_and_backbone_take_the_entry_or_the_flat_arguments_alike():
    from cosub_seg.models import TimmSegBackbone
    kwargs = dict(img_size=16, patch_size=8, embed_dim=16, depth=3, num_heads=2)

    def slots(model):
        return [(type(getattr(p, n)).__name__, round(getattr(p, n).drop_prob, 6), getattr(p, n).sampling,
                 getattr(p, n).skip) for p, n in stochastic_depth_slots(model)]

    new = CosubClassifier('deit3_small_patch16_224', 3, model_kwargs=kwargs,
                          stochastic_depth=dict(rate=0.4, schedule='linear', sampling='fixed'))
    old = CosubClassifier('deit3_small_patch16_224', 3, model_kwargs=kwargs, drop_path_rate=0.4,
                          drop_path_sampling='fixed')
    # timm's linear rule: block i of 3 gets 0.4 * i / 2, in both branches of the block.
    expected = [('StochasticDepth', round(0.4 * i / 2, 6), 'fixed', 0.4 * i / 2 >= 0.05) for i in range(3)
                for _ in range(2)]
    assert slots(new) == slots(old) == expected
    backbone = TimmSegBackbone('deit3_small_patch16_224', img_size=16, model_kwargs=dict(kwargs, img_size=16),
                               stochastic_depth=dict(rate=0.4, schedule='constant'))
    assert {rate for _, rate, _, _ in slots(backbone.model)} == {0.4}


def test_vits_are_built_with_our_block_and_other_blocks_are_left_to_timm():
    """timm's VisionTransformer builds ViTBlock through block_fn (no class swap after the fact); a ViT variant with
    blocks of its own keeps them (block_fn would silently replace them)."""
    from cosub_seg.models.stochastic_depth import ViTBlock
    from cosub_seg.models.timm_factory import builds_standard_vit_blocks, create_timm_model
    from timm.models.vision_transformer import ParallelThingsBlock
    assert builds_standard_vit_blocks('deit3_small_patch16_224', depth=2)
    assert not builds_standard_vit_blocks('vit_small_patch16_18x2_224', depth=2)
    assert not builds_standard_vit_blocks('convnext_atto')  # not a ViT: no probe
    built = []
    original = ViTBlock.__init__

    def spy(self, *args, **kwargs):
        built.append(kwargs.get('stochastic_depth'))
        original(self, *args, **kwargs)

    config = SD(0.2, 'constant')
    ViTBlock.__init__ = spy
    try:
        vit = create_timm_model('deit3_small_patch16_224', stochastic_depth=config, depth=2, embed_dim=16,
                                num_heads=2, img_size=16, patch_size=8)
    finally:
        ViTBlock.__init__ = original
    assert built == [config, config] and all(type(b) is ViTBlock for b in vit.blocks)
    parallel = create_timm_model('vit_small_patch16_18x2_224', stochastic_depth=config, depth=2, embed_dim=16,
                                 num_heads=2, img_size=16, patch_size=8)
    assert all(type(b) is ParallelThingsBlock for b in parallel.blocks)
    assert {getattr(p, n).drop_prob for p, n in stochastic_depth_slots(parallel)} == {0.2}


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_every_branch_is_kept_or_dropped_per_sample_not_per_token(family, monkeypatch):
    """Stochastic depth drops a branch for a whole sample: every draw of a training forward is for the batch's
    samples (3), whatever shape a block gives its tensors in between (Swin flattens the tokens of its windows)."""
    rows = []
    draw = StochasticDepth.draw

    def recording_draw(self, batch, device):
        rows.append(batch)
        return draw(self, batch, device)

    monkeypatch.setattr(StochasticDepth, 'draw', recording_draw)
    arch, kwargs, size = FAMILIES[family]
    model = CosubClassifier(arch, num_classes=4, model_kwargs=kwargs,
                            stochastic_depth=dict(rate=0.5, schedule='constant', compute='mask')).train()
    model.backbone(torch.randn(3, 3, size, size))
    slots = [m for m in model.modules() if isinstance(m, StochasticDepth) and m.drop_prob > 0]
    assert slots and len(rows) >= len(slots)
    assert set(rows) == {3}


def test_a_regnet_bottleneck_without_a_shortcut_is_timms_block():
    """RegNet blocks whose shortcut timm leaves out (downsample='' where the shape changes) have no residual and so
    nothing to drop: our block computes timm's."""
    from timm.models import regnet

    from cosub_seg.models.stochastic_depth import RegNetBottleneck

    torch.manual_seed(0)
    reference = regnet.Bottleneck(8, 16, stride=2, downsample='', group_size=4).train()
    ours = RegNetBottleneck(8, 16, stride=2, downsample='', group_size=4).train()
    assert reference.downsample is None and ours.downsample is None
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(2, 8, 8, 8)
    torch.testing.assert_close(ours(x), reference(x), rtol=0, atol=0)


def test_auto_masks_bernoulli_draws_on_cuda_and_skips_elsewhere():
    """'auto' with Bernoulli draws masks on CUDA (a host sync per branch: a cosub step of DeiT III-B took 4.2 times
    as long as masking on an H200, bench/results/gpu/2026-11-26_h200/cosub_step_base_large.json), and skips on the
    CPU; 'fixed' draws and an explicit 'skip' skip everywhere, 'mask' nowhere."""
    cpu, cuda = torch.device('cpu'), torch.device('cuda')
    auto = StochasticDepth(0.45, compute='auto')
    assert auto.skips_on(cpu) and not auto.skips_on(cuda) and not auto.skips_on('cuda:0')
    assert 'skip (mask on CUDA)' in repr(auto)
    assert StochasticDepth(0.45, sampling='fixed', compute='auto').skips_on(cuda)
    assert StochasticDepth(0.45, compute='skip').skips_on(cuda)
    assert not StochasticDepth(0.45, compute='mask').skips_on(cpu)
    assert not StochasticDepth(SKIP_BREAK_EVEN / 2, compute='auto').skips_on(cpu)
    # On the CPU the branch of an 'auto' module still sees only the kept rows.
    torch.manual_seed(0)
    branch = Branch()
    auto.train().add_residual(torch.randn(64, 5), branch)
    assert 0 < branch.rows_seen[0] < 64
